//! A histogram of durations made of atomics only. The crate's own histogram takes a mutex at
//! every observation, which would put a lock on every request; this one costs two relaxed
//! atomic adds in the calling thread's shard (`sharded.rs`), and a scrape that races an
//! observation may see its count a moment before its sum, which Prometheus tolerates.

use super::sharded::{shard, Padded, SHARDS};
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Upper bounds, in seconds, of the request and storage-operation buckets: from a metadata
/// answer out of memory (well under a millisecond) to a multi-gigabyte upload.
pub const BOUNDS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0, 300.0,
];

#[derive(Clone, Debug)]
pub struct DurationHistogram(Arc<[Padded<Shard>; SHARDS]>);

impl Default for DurationHistogram {
    fn default() -> DurationHistogram {
        DurationHistogram(Arc::new(Default::default()))
    }
}

/// One thread's share: fifteen buckets and the sum fill its 128 bytes.
#[derive(Debug, Default)]
struct Shard {
    /// Observations per bucket, not cumulative; the last one is `+Inf`.
    buckets: [AtomicU64; BOUNDS.len() + 1],
    sum_nanos: AtomicU64,
}

impl DurationHistogram {
    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let slot = BOUNDS.partition_point(|bound| *bound < seconds);
        let shard = &self.0[shard()].0;
        shard.buckets[slot].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        shard.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Observations in bucket `i` (not cumulative), over every shard.
    fn bucket(&self, i: usize) -> u64 {
        self.0
            .iter()
            .map(|s| s.0.buckets[i].load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }

    pub fn count(&self) -> u64 {
        (0..=BOUNDS.len())
            .map(|i| self.bucket(i))
            .fold(0, u64::wrapping_add)
    }
}

impl TypedMetric for DurationHistogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for DurationHistogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let mut buckets = [(0.0, 0u64); BOUNDS.len() + 1];
        for (i, slot) in buckets.iter_mut().enumerate() {
            let bound = BOUNDS.get(i).copied().unwrap_or(f64::INFINITY);
            *slot = (bound, self.bucket(i));
        }
        let count = buckets.iter().map(|(_, n)| n).sum();
        let sum_nanos = self
            .0
            .iter()
            .map(|s| s.0.sum_nanos.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add);
        let sum = sum_nanos as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = DurationHistogram::default();
        h.observe(Duration::from_micros(100));
        h.observe(Duration::from_millis(1)); // on a bound: `le` includes it
        h.observe(Duration::from_secs(1000));
        assert_eq!(h.bucket(0), 1);
        assert_eq!(h.bucket(1), 1);
        assert_eq!(h.bucket(BOUNDS.len()), 1);
        assert_eq!(h.count(), 3);
    }
}
