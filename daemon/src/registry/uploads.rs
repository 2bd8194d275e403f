//! Resumable, digest-verified uploads of images, before a publish references them.

use super::detached::detached;
use super::{Registry, RegistryError};
use crate::digest::Digest;
use crate::storage::{ByteStream, StorageError, UploadState};

impl Registry {
    /// Starts an upload. Serialised with garbage collection, so a blob answered as
    /// already present cannot be collected before the publish that follows.
    pub async fn create_upload(
        &self,
        digest: Digest,
        size: u64,
    ) -> Result<UploadState, RegistryError> {
        let this = self.clone();
        detached(async move {
            let inner = &this.0;
            let _writes = inner.writes.lock().await;
            let upload = inner.storage.create_upload(digest, size).await?;
            if !upload.complete {
                tracing::info!(upload = %upload.id, %digest, size, "upload started");
            }
            Ok(upload)
        })
        .await
    }

    pub async fn upload_state(&self, id: &str) -> Result<UploadState, RegistryError> {
        Ok(self.0.storage.upload_state(id).await?)
    }

    /// Appends `body` at `offset`; at the declared size the digest is verified and the
    /// blob committed. Runs to its end even when the client hangs up, so that what the
    /// storage received and what it reports afterwards never differ.
    pub async fn append_upload(
        &self,
        id: &str,
        offset: u64,
        body: ByteStream,
    ) -> Result<UploadState, RegistryError> {
        let this = self.clone();
        let id = id.to_owned();
        detached(async move {
            match this.0.storage.append_upload(&id, offset, body).await {
                Ok(upload) => {
                    if upload.complete {
                        tracing::info!(upload = %id, digest = %upload.digest, "upload complete and verified");
                    }
                    Ok(upload)
                }
                Err(e) => {
                    if let StorageError::DigestMismatch { .. } = e {
                        tracing::info!(upload = %id, error = %e, "upload rejected");
                    }
                    Err(e.into())
                }
            }
        })
        .await
    }

    pub async fn abort_upload(&self, id: &str) -> Result<(), RegistryError> {
        let this = self.clone();
        let id = id.to_owned();
        detached(async move { Ok(this.0.storage.abort_upload(&id).await?) }).await
    }
}
