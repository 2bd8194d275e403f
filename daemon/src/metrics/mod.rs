//! What the daemon counts, and the plain-HTTP listener that shows it (`GET /metrics` in the
//! Prometheus text format, `GET /status` as JSON) on `metrics.addr`, never on the mTLS port.
//! The metric names, types and labels are a contract with the charm's dashboard and alert
//! rules (`docs/metrics.md`); renaming one breaks them.
//!
//! One registry per process, reached through [`global`]: every layer counts what it sees
//! (the API its requests and refusals, the registry its index and collections, the storage
//! decorator its operations) without a handle threaded through each constructor. The module
//! is a leaf: it knows nothing of the layers that feed it; the listener is handed the
//! `/status` numbers by whoever starts it.
//!
//! Long on purpose: every metric's registration sits in one place, in the contract's order.

mod histogram;
pub mod http;
pub mod listener;
mod sharded;

pub use histogram::DurationHistogram;
pub use sharded::ShardedCounter;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicI64;
use std::sync::OnceLock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabel {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RequestLabels {
    pub route: String,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteMethodLabels {
    pub route: String,
    pub method: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteLabel {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabel {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageLabels {
    pub backend: &'static str,
    pub operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StorageErrorLabels {
    pub backend: &'static str,
    pub operation: &'static str,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabel {
    backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

type HistogramFamily<L> = Family<L, DurationHistogram>;

/// Why a request was refused before its handler ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// No certificate, or one the trust store does not hold.
    Untrusted,
    Revoked,
    /// A trusted certificate past its validity.
    Expired,
    /// A read-only client tried to write.
    ClientWrite,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::Untrusted => "untrusted",
            Refusal::Revoked => "revoked",
            Refusal::Expired => "expired",
            Refusal::ClientWrite => "client_write",
        }
    }
}

/// How a download was handed elsewhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RedirectKind {
    Presigned,
    CloudFront,
}

impl RedirectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RedirectKind::Presigned => "presigned",
            RedirectKind::CloudFront => "cloudfront",
        }
    }
}

/// Every metric of the contract. The families are reached through the helpers below or
/// [`http`]; a family's label set is built once and its handle kept where the path is hot.
pub struct Metrics {
    registry: Registry,
    // Sharded: every API request moves these (see sharded.rs).
    pub(crate) http_requests: Family<RequestLabels, ShardedCounter>,
    pub(crate) http_duration: HistogramFamily<RouteMethodLabels>,
    pub(crate) http_response_bytes: Family<RouteLabel, ShardedCounter>,
    pub(crate) http_request_bytes: Family<RouteLabel, ShardedCounter>,
    pub uploads_in_progress: Gauge,
    pub upload_bytes: Counter,
    redirects: [Counter; 2],
    pub storage_operations: Family<StorageLabels, Counter>,
    pub storage_errors: Family<StorageErrorLabels, Counter>,
    pub storage_duration: HistogramFamily<StorageLabels>,
    storage_up: Family<BackendLabel, Gauge>,
    pub fs_available_bytes: SetGauge,
    pub fs_size_bytes: SetGauge,
    trust_refreshes: Counter,
    trust_checked: Gauge,
    refused: [Counter; 4],
    index_applications: Gauge,
    index_versions: Gauge,
    index_blob_bytes: Gauge,
    index_unreadable_records: Gauge,
    last_publish: Gauge<i64, AtomicI64>,
    gc_runs: Counter,
    gc_collected_bytes: Counter,
    pub server_certificate_expiry: Gauge,
}

/// The process's metrics.
pub fn global() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::default();
        let build_info = Family::<VersionLabel, Gauge>::default();
        build_info
            .get_or_create(&VersionLabel {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "aar_build_info",
            "The daemon's version, as a label of a constant 1",
            build_info,
        );
        let metrics = Metrics {
            http_requests: Family::default(),
            http_duration: Family::default(),
            http_response_bytes: Family::default(),
            http_request_bytes: Family::default(),
            uploads_in_progress: Gauge::default(),
            upload_bytes: Counter::default(),
            redirects: Default::default(),
            storage_operations: Family::default(),
            storage_errors: Family::default(),
            storage_duration: Family::default(),
            storage_up: Family::default(),
            fs_available_bytes: SetGauge::default(),
            fs_size_bytes: SetGauge::default(),
            trust_refreshes: Counter::default(),
            trust_checked: Gauge::default(),
            refused: Default::default(),
            index_applications: Gauge::default(),
            index_versions: Gauge::default(),
            index_blob_bytes: Gauge::default(),
            index_unreadable_records: Gauge::default(),
            last_publish: Gauge::default(),
            gc_runs: Counter::default(),
            gc_collected_bytes: Counter::default(),
            server_certificate_expiry: Gauge::default(),
            registry: Registry::default(),
        };
        // The crate appends `_total` to counters' names: they are registered without it.
        let r = &mut registry;
        r.register(
            "aar_http_requests",
            "API requests answered, by route template, method and status",
            metrics.http_requests.clone(),
        );
        r.register(
            "aar_http_request_duration_seconds",
            "Time from a request's arrival to its response's head",
            metrics.http_duration.clone(),
        );
        r.register(
            "aar_http_response_bytes",
            "Response body bytes sent, images included",
            metrics.http_response_bytes.clone(),
        );
        r.register(
            "aar_http_request_bytes",
            "Request body bytes received, uploads included",
            metrics.http_request_bytes.clone(),
        );
        r.register(
            "aar_uploads_in_progress",
            "Upload requests streaming bytes into storage now",
            metrics.uploads_in_progress.clone(),
        );
        r.register(
            "aar_upload_bytes",
            "Bytes accepted into upload sessions",
            metrics.upload_bytes.clone(),
        );
        r.register(
            "aar_redirects",
            "Downloads answered with a redirect, by kind",
            RedirectFamily(metrics.redirects.clone()),
        );
        r.register(
            "aar_storage_operations",
            "Storage backend operations, by backend and operation",
            metrics.storage_operations.clone(),
        );
        r.register(
            "aar_storage_errors",
            "Storage backend operations that failed, by backend, operation and kind",
            metrics.storage_errors.clone(),
        );
        r.register(
            "aar_storage_operation_duration_seconds",
            "Time a storage operation took (for reads: until the data starts)",
            metrics.storage_duration.clone(),
        );
        r.register(
            "aar_storage_up",
            "1 when the last load or refresh of the index from storage succeeded, 0 when it failed",
            metrics.storage_up.clone(),
        );
        r.register(
            "aar_storage_fs_available_bytes",
            "Bytes available to the daemon on the data directory's filesystem",
            metrics.fs_available_bytes.clone(),
        );
        r.register(
            "aar_storage_fs_size_bytes",
            "Size of the data directory's filesystem in bytes",
            metrics.fs_size_bytes.clone(),
        );
        r.register(
            "aar_trust_refreshes",
            "Times the trust store was read again after its file changed",
            metrics.trust_refreshes.clone(),
        );
        r.register(
            "aar_trust_store_checked_timestamp_seconds",
            "With S3 storage, when the trust store in the bucket was last read or found \
             unchanged (Unix seconds); 0 with fs storage",
            metrics.trust_checked.clone(),
        );
        r.register(
            "aar_refused_requests",
            "Requests refused before their handler ran, by reason",
            RefusalFamily(metrics.refused.clone()),
        );
        r.register(
            "aar_index_applications",
            "Applications in the index",
            metrics.index_applications.clone(),
        );
        r.register(
            "aar_index_versions",
            "Versions in the index",
            metrics.index_versions.clone(),
        );
        r.register(
            "aar_index_blob_bytes",
            "Bytes of the distinct images the index references",
            metrics.index_blob_bytes.clone(),
        );
        r.register(
            "aar_index_unreadable_records",
            "Stored version records the last index load could not read; while above 0 the application lists answer 503",
            metrics.index_unreadable_records.clone(),
        );
        r.register(
            "aar_last_publish_timestamp_seconds",
            "Creation time of the newest version published (Unix seconds; 0: none)",
            metrics.last_publish.clone(),
        );
        r.register(
            "aar_gc_runs",
            "Garbage collections that ran to their end",
            metrics.gc_runs.clone(),
        );
        r.register(
            "aar_gc_collected_bytes",
            "Bytes of unreferenced images garbage collection removed",
            metrics.gc_collected_bytes.clone(),
        );
        r.register(
            "aar_server_certificate_expiry_timestamp_seconds",
            "When the server's TLS certificate expires (Unix seconds)",
            metrics.server_certificate_expiry.clone(),
        );
        Metrics {
            registry,
            ..metrics
        }
    }

    /// The Prometheus exposition (OpenMetrics text) of every metric.
    pub fn encode(&self) -> String {
        let mut text = String::with_capacity(16 * 1024);
        // Writing into a String cannot fail.
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("metrics encode into a String");
        text
    }

    pub fn refused(&self, reason: Refusal) {
        self.refused[reason as usize].inc();
    }

    pub fn redirected(&self, kind: RedirectKind) {
        self.redirects[kind as usize].inc();
    }

    pub fn trust_refreshed(&self) {
        self.trust_refreshes.inc();
    }

    /// The shared trust store answered a check at `unix_time`.
    pub fn trust_checked(&self, unix_time: i64) {
        self.trust_checked.set(unix_time);
    }

    pub fn storage_up(&self, backend: &'static str, up: bool) {
        self.storage_up
            .get_or_create(&BackendLabel { backend })
            .set(i64::from(up));
    }

    /// Whether the last load or refresh of the index succeeded (`false` before the first).
    pub fn storage_is_up(&self) -> bool {
        ["fs", "s3"].into_iter().any(|backend| {
            self.storage_up
                .get(&BackendLabel { backend })
                .is_some_and(|g| g.get() == 1)
        })
    }

    pub fn set_index(&self, applications: usize, versions: usize, blob_bytes: u64) {
        let gauge = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.index_applications.set(gauge(applications as u64));
        self.index_versions.set(gauge(versions as u64));
        self.index_blob_bytes.set(gauge(blob_bytes));
    }

    /// Records the last index load could not read (listings answer 503 meanwhile).
    pub fn set_unreadable_records(&self, records: usize) {
        self.index_unreadable_records
            .set(i64::try_from(records).unwrap_or(i64::MAX));
    }

    /// The index's numbers as last set: (applications, versions, blob bytes).
    pub fn index(&self) -> (u64, u64, u64) {
        let n = |g: &Gauge| u64::try_from(g.get()).unwrap_or(0);
        (
            n(&self.index_applications),
            n(&self.index_versions),
            n(&self.index_blob_bytes),
        )
    }

    /// Moves the last-publish time forward to `unix_seconds`, never back: a deleted
    /// version does not undo that a publish happened.
    pub fn published_at(&self, unix_seconds: i64) {
        self.last_publish
            .inner()
            .fetch_max(unix_seconds, std::sync::atomic::Ordering::Relaxed);
    }

    /// The last publish, in Unix seconds, if any.
    pub fn last_publish(&self) -> Option<i64> {
        Some(self.last_publish.get()).filter(|t| *t > 0)
    }

    pub fn gc_finished(&self, collected_bytes: u64) {
        self.gc_runs.inc();
        self.gc_collected_bytes.inc_by(collected_bytes);
    }
}

/// A gauge shown only once set: the filesystem gauges mean nothing on S3, where a 0 would
/// read as a full disk to an alert rule.
#[derive(Clone, Debug, Default)]
pub struct SetGauge {
    gauge: Gauge,
    set: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl SetGauge {
    pub fn set(&self, value: i64) {
        self.gauge.set(value);
        self.set.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

impl prometheus_client::metrics::TypedMetric for SetGauge {
    const TYPE: prometheus_client::metrics::MetricType =
        prometheus_client::metrics::MetricType::Gauge;
}

impl prometheus_client::encoding::EncodeMetric for SetGauge {
    fn encode(
        &self,
        encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        prometheus_client::encoding::EncodeMetric::encode(&self.gauge, encoder)
    }

    fn metric_type(&self) -> prometheus_client::metrics::MetricType {
        prometheus_client::metrics::MetricType::Gauge
    }

    fn is_empty(&self) -> bool {
        !self.set.load(std::sync::atomic::Ordering::Relaxed)
    }
}

/// Fixed-label counter families kept as plain arrays, so that counting one is an index and
/// an atomic add, and every label value shows at 0 before it first happens.
#[derive(Debug)]
struct RedirectFamily([Counter; 2]);

#[derive(Debug)]
struct RefusalFamily([Counter; 4]);

macro_rules! fixed_family {
    ($ty:ident, $label:ident, $field:ident, [$($variant:expr),*]) => {
        impl prometheus_client::metrics::TypedMetric for $ty {
            const TYPE: prometheus_client::metrics::MetricType =
                prometheus_client::metrics::MetricType::Counter;
        }

        impl prometheus_client::encoding::EncodeMetric for $ty {
            fn encode(
                &self,
                mut encoder: prometheus_client::encoding::MetricEncoder,
            ) -> Result<(), std::fmt::Error> {
                for (variant, counter) in [$($variant),*].into_iter().zip(&self.0) {
                    let labels = $label { $field: variant.as_str() };
                    prometheus_client::encoding::EncodeMetric::encode(
                        counter,
                        encoder.encode_family(&labels)?,
                    )?;
                }
                Ok(())
            }

            fn metric_type(&self) -> prometheus_client::metrics::MetricType {
                prometheus_client::metrics::MetricType::Counter
            }
        }
    };
}

fixed_family!(
    RedirectFamily,
    KindLabel,
    kind,
    [RedirectKind::Presigned, RedirectKind::CloudFront]
);
fixed_family!(
    RefusalFamily,
    ReasonLabel,
    reason,
    [
        Refusal::Untrusted,
        Refusal::Revoked,
        Refusal::Expired,
        Refusal::ClientWrite
    ]
);

/// What `GET /status` answers and `aar status` prints.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    pub applications: u64,
    pub versions: u64,
    pub blob_bytes: u64,
    pub trusted_clients: u64,
    pub trusted_publishers: u64,
    /// RFC 3339, UTC, to the second.
    pub last_publish: Option<String>,
    pub storage: String,
    /// Whether the last load or refresh of the index from storage succeeded.
    pub index_loaded: bool,
}

#[cfg(test)]
mod tests;
