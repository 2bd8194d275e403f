//! [`Metered`]: any backend, with each operation counted and timed and each failure counted
//! by kind, plus the upload and redirect numbers only the storage boundary sees. A
//! decorator, so that the backends stay free of metrics.

use super::{
    BlobBody, ByteStream, Cleanup, LoadedVersions, Result, Storage, StorageError, StorageKind,
    UploadState,
};
use crate::digest::Digest;
use crate::metrics::{self, DurationHistogram, RedirectKind, StorageErrorLabels, StorageLabels};
use crate::model::{ImageRef, VersionRecord};
use prometheus_client::metrics::counter::Counter;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// The operations, in the order of [`Op`]'s variants, as the `operation` label writes them.
const OPERATIONS: [&str; 15] = [
    "recover",
    "create_upload",
    "upload_state",
    "append_upload",
    "abort_upload",
    "expire_uploads",
    "blob_size",
    "read_blob",
    "scan_blob",
    "list_blobs",
    "delete_blob",
    "put_version",
    "delete_version",
    "delete_application",
    "load_versions",
];

#[derive(Clone, Copy)]
enum Op {
    Recover,
    CreateUpload,
    UploadState,
    AppendUpload,
    AbortUpload,
    ExpireUploads,
    BlobSize,
    ReadBlob,
    ScanBlob,
    ListBlobs,
    DeleteBlob,
    PutVersion,
    DeleteVersion,
    DeleteApplication,
    LoadVersions,
}

/// The `kind` label of a failure.
pub fn error_kind(error: &StorageError) -> &'static str {
    match error {
        StorageError::NotFound(_) => "not_found",
        StorageError::AlreadyExists(_) => "already_exists",
        StorageError::Busy { .. } => "busy",
        StorageError::OffsetMismatch { .. } => "offset_mismatch",
        StorageError::TooLong { .. } => "too_long",
        StorageError::DigestMismatch { .. } => "digest_mismatch",
        StorageError::Damaged(_) => "damaged",
        StorageError::Full(_) => "full",
        StorageError::Unavailable(_) => "unavailable",
        StorageError::BodyInterrupted(_) => "body_interrupted",
        StorageError::Io { .. } => "io",
    }
}

struct OpHandles {
    count: Counter,
    duration: DurationHistogram,
}

pub struct Metered {
    inner: Arc<dyn Storage>,
    backend: &'static str,
    /// Built once: an operation's count is then an atomic add, no label look-up.
    ops: Vec<OpHandles>,
    /// What a redirect of this backend is, for `aar_redirects_total`.
    redirect: RedirectKind,
}

impl Metered {
    /// Wraps `inner`; its downloads that are redirects are counted as `redirect`.
    pub fn new(inner: Arc<dyn Storage>, redirect: RedirectKind) -> Metered {
        let backend = inner.kind().as_str();
        let m = metrics::global();
        let ops = OPERATIONS
            .iter()
            .map(|operation| {
                let labels = StorageLabels { backend, operation };
                OpHandles {
                    count: m.storage_operations.get_or_create_owned(&labels),
                    duration: m.storage_duration.get_or_create_owned(&labels),
                }
            })
            .collect();
        Metered {
            inner,
            backend,
            ops,
            redirect,
        }
    }

    async fn timed<T>(&self, op: Op, call: impl Future<Output = Result<T>>) -> Result<T> {
        let start = Instant::now();
        let result = call.await;
        let handles = &self.ops[op as usize];
        handles.count.inc();
        handles.duration.observe(start.elapsed());
        if let Err(error) = &result {
            metrics::global()
                .storage_errors
                .get_or_create(&StorageErrorLabels {
                    backend: self.backend,
                    operation: OPERATIONS[op as usize],
                    kind: error_kind(error),
                })
                .inc();
        }
        result
    }
}

/// Holds `aar_uploads_in_progress` up while an append runs, however it ends.
struct InProgress;

impl InProgress {
    fn start() -> InProgress {
        metrics::global().uploads_in_progress.inc();
        InProgress
    }
}

impl Drop for InProgress {
    fn drop(&mut self) {
        metrics::global().uploads_in_progress.dec();
    }
}

#[async_trait::async_trait]
impl Storage for Metered {
    fn kind(&self) -> StorageKind {
        self.inner.kind()
    }

    fn refresh_interval(&self) -> Option<Duration> {
        self.inner.refresh_interval()
    }

    async fn recover(&self) -> Result<Cleanup> {
        self.timed(Op::Recover, self.inner.recover()).await
    }

    async fn create_upload(&self, digest: Digest, size: u64) -> Result<UploadState> {
        self.timed(Op::CreateUpload, self.inner.create_upload(digest, size))
            .await
    }

    async fn upload_state(&self, id: &str) -> Result<UploadState> {
        self.timed(Op::UploadState, self.inner.upload_state(id))
            .await
    }

    async fn append_upload(&self, id: &str, offset: u64, body: ByteStream) -> Result<UploadState> {
        let _in_progress = InProgress::start();
        let result = self
            .timed(Op::AppendUpload, self.inner.append_upload(id, offset, body))
            .await;
        // What the session holds now, less what it held: the bytes it accepted. A failed
        // append keeps what it received before failing (a mismatch keeps nothing).
        let now = match &result {
            Ok(state) => Some(state.offset),
            Err(_) => self.inner.upload_state(id).await.ok().map(|s| s.offset),
        };
        if let Some(now) = now {
            metrics::global()
                .upload_bytes
                .inc_by(now.saturating_sub(offset));
        }
        result
    }

    async fn abort_upload(&self, id: &str) -> Result<()> {
        self.timed(Op::AbortUpload, self.inner.abort_upload(id))
            .await
    }

    async fn expire_uploads(&self, idle_since: SystemTime) -> Result<usize> {
        self.timed(Op::ExpireUploads, self.inner.expire_uploads(idle_since))
            .await
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.timed(Op::BlobSize, self.inner.blob_size(digest)).await
    }

    async fn read_blob(&self, image: &ImageRef, range: Option<(u64, u64)>) -> Result<BlobBody> {
        let body = self
            .timed(Op::ReadBlob, self.inner.read_blob(image, range))
            .await?;
        if let BlobBody::Redirect(_) = body {
            metrics::global().redirected(self.redirect);
        }
        Ok(body)
    }

    async fn scan_blob(&self, digest: &Digest) -> Result<ByteStream> {
        self.timed(Op::ScanBlob, self.inner.scan_blob(digest)).await
    }

    async fn list_blobs(&self) -> Result<Vec<(Digest, SystemTime)>> {
        self.timed(Op::ListBlobs, self.inner.list_blobs()).await
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        self.timed(Op::DeleteBlob, self.inner.delete_blob(digest))
            .await
    }

    async fn put_version(&self, record: &VersionRecord) -> Result<()> {
        self.timed(Op::PutVersion, self.inner.put_version(record))
            .await
    }

    async fn delete_version(&self, application: &str, version: u32) -> Result<()> {
        self.timed(
            Op::DeleteVersion,
            self.inner.delete_version(application, version),
        )
        .await
    }

    async fn delete_application(&self, application: &str) -> Result<()> {
        self.timed(
            Op::DeleteApplication,
            self.inner.delete_application(application),
        )
        .await
    }

    async fn load_versions(&self) -> Result<LoadedVersions> {
        self.timed(Op::LoadVersions, self.inner.load_versions())
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::fs::FsStorage;

    fn count(operation: &'static str) -> u64 {
        metrics::global()
            .storage_operations
            .get_or_create(&StorageLabels {
                backend: "fs",
                operation,
            })
            .get()
    }

    fn errors(operation: &'static str, kind: &'static str) -> u64 {
        metrics::global()
            .storage_errors
            .get_or_create(&StorageErrorLabels {
                backend: "fs",
                operation,
                kind,
            })
            .get()
    }

    #[tokio::test]
    async fn operations_and_failures_are_counted_by_kind() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FsStorage::new(dir.path().join("data"), 0).unwrap();
        let metered = Metered::new(Arc::new(fs), RedirectKind::Presigned);
        let before = (count("upload_state"), errors("upload_state", "not_found"));
        let before_loads = count("load_versions");
        assert!(metered.upload_state("no-such-upload").await.is_err());
        metered.load_versions().await.unwrap();
        // Other tests of this process share the registry: only differences are exact.
        assert_eq!(count("upload_state"), before.0 + 1);
        assert_eq!(errors("upload_state", "not_found"), before.1 + 1);
        assert!(count("load_versions") > before_loads);
    }
}
