//! [`Pending`]: a backend that could not be reached when the daemon started, standing in
//! until it can. Every operation answers `Unavailable` (503 with Retry-After) until the
//! real backend is [set](Pending::set); from then on each one is handed to it. It lets the
//! daemon serve, and say clearly that it cannot answer yet, instead of exiting: a client
//! gets a 503 it retries, never an empty list (AMS deletes what vanishes).

use super::{
    BlobBody, ByteStream, Cleanup, LoadedVersions, Result, Storage, StorageError, StorageKind,
    UploadState,
};
use crate::digest::Digest;
use crate::model::{ImageRef, VersionRecord};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

pub struct Pending {
    kind: StorageKind,
    refresh_interval: Option<Duration>,
    /// Why the backend is not there yet, as told to every caller until it is.
    why: String,
    backend: OnceLock<Arc<dyn Storage>>,
}

impl Pending {
    pub fn new(kind: StorageKind, refresh_interval: Option<Duration>, why: String) -> Pending {
        Pending {
            kind,
            refresh_interval,
            why,
            backend: OnceLock::new(),
        }
    }

    /// The backend, now reachable; every later operation goes to it.
    pub fn set(&self, backend: Arc<dyn Storage>) {
        let _ = self.backend.set(backend);
    }

    fn backend(&self) -> Result<&dyn Storage> {
        self.backend.get().map(|b| b.as_ref()).ok_or_else(|| {
            StorageError::Unavailable(format!(
                "not reached since the registry started ({})",
                self.why
            ))
        })
    }
}

#[async_trait::async_trait]
impl Storage for Pending {
    fn kind(&self) -> StorageKind {
        self.kind
    }

    fn refresh_interval(&self) -> Option<Duration> {
        self.refresh_interval
    }

    async fn recover(&self) -> Result<Cleanup> {
        self.backend()?.recover().await
    }

    async fn create_upload(&self, digest: Digest, size: u64) -> Result<UploadState> {
        self.backend()?.create_upload(digest, size).await
    }

    async fn upload_state(&self, id: &str) -> Result<UploadState> {
        self.backend()?.upload_state(id).await
    }

    async fn append_upload(&self, id: &str, offset: u64, body: ByteStream) -> Result<UploadState> {
        self.backend()?.append_upload(id, offset, body).await
    }

    async fn abort_upload(&self, id: &str) -> Result<()> {
        self.backend()?.abort_upload(id).await
    }

    async fn expire_uploads(&self, idle_since: SystemTime) -> Result<usize> {
        self.backend()?.expire_uploads(idle_since).await
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.backend()?.blob_size(digest).await
    }

    async fn read_blob(&self, image: &ImageRef, range: Option<(u64, u64)>) -> Result<BlobBody> {
        self.backend()?.read_blob(image, range).await
    }

    async fn scan_blob(&self, digest: &Digest) -> Result<ByteStream> {
        self.backend()?.scan_blob(digest).await
    }

    async fn list_blobs(&self) -> Result<Vec<(Digest, SystemTime)>> {
        self.backend()?.list_blobs().await
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        self.backend()?.delete_blob(digest).await
    }

    async fn put_version(&self, record: &VersionRecord) -> Result<()> {
        self.backend()?.put_version(record).await
    }

    async fn delete_version(&self, application: &str, version: u32) -> Result<()> {
        self.backend()?.delete_version(application, version).await
    }

    async fn delete_application(&self, application: &str) -> Result<()> {
        self.backend()?.delete_application(application).await
    }

    async fn load_versions(&self) -> Result<LoadedVersions> {
        self.backend()?.load_versions().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::fs::FsStorage;

    #[tokio::test]
    async fn unavailable_until_set_then_the_backend_answers() {
        let dir = tempfile::tempdir().unwrap();
        let pending = Pending::new(StorageKind::Fs, None, "connection refused".into());
        let err = pending.load_versions().await.unwrap_err();
        assert!(matches!(err, StorageError::Unavailable(_)), "{err}");
        assert!(err.to_string().contains("connection refused"), "{err}");
        assert!(pending.blob_size(&Digest::of(b"x")).await.is_err());

        pending.set(Arc::new(FsStorage::new(dir.path(), 0).unwrap()));
        assert!(pending.load_versions().await.unwrap().records.is_empty());
        assert_eq!(pending.blob_size(&Digest::of(b"x")).await.unwrap(), None);
    }
}
