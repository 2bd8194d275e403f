//! Counters split into per-thread shards for the metrics every API request moves.
//!
//! One shared atomic per series made each request's adds travel between the cores: the
//! two runtime threads take turns on the same cache lines, which cost the metadata reads
//! about 0.6 µs of CPU per request (bench/results/metrics-cost.md), several times the
//! instructions involved. Here a thread adds to its own shard, on a cache line of its own,
//! and a scrape sums the shards. A shard only ever grows, and a scrape reads each one after
//! the previous scrape did, so a counter read twice never goes back.

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::{MetricType, TypedMetric};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// More than the runtime's worker threads on the machines the daemon runs on; threads past
/// that share shards, which stays correct and costs only the sharing.
pub const SHARDS: usize = 8;

/// Two cache lines: some processors fetch lines in pairs, which would make neighbours
/// share again.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// The calling thread's shard, handed out in turn to threads as they first count.
pub fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % SHARDS;
    }
    // A thread being torn down counts into the first shard.
    SHARD.try_with(|s| *s).unwrap_or(0)
}

/// A monotonic counter, exposed exactly like the crate's `Counter` (`_total`).
#[derive(Clone, Debug)]
pub struct ShardedCounter(Arc<[Padded<AtomicU64>; SHARDS]>);

impl Default for ShardedCounter {
    fn default() -> ShardedCounter {
        ShardedCounter(Arc::new(Default::default()))
    }
}

impl ShardedCounter {
    pub fn inc(&self) {
        self.inc_by(1);
    }

    pub fn inc_by(&self, n: u64) {
        self.0[shard()].0.fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        // Wrapping, as the atomic adds themselves do.
        self.0
            .iter()
            .map(|s| s.0.load(Ordering::Relaxed))
            .fold(0, u64::wrapping_add)
    }
}

impl TypedMetric for ShardedCounter {
    const TYPE: MetricType = MetricType::Counter;
}

impl EncodeMetric for ShardedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_counter::<NoLabelSet, _, u64>(&self.get(), None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counter_sums_what_every_thread_added() {
        let c = ShardedCounter::default();
        let threads: Vec<_> = (0..2 * SHARDS)
            .map(|i| {
                let c = c.clone();
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        c.inc();
                    }
                    c.inc_by(i as u64);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let added: u64 = (0..2 * SHARDS as u64).sum();
        assert_eq!(c.get(), 2 * SHARDS as u64 * 1000 + added);
    }
}
