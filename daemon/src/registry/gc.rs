//! Garbage collection: idle uploads, and blobs that no version record references.
//!
//! What is referenced is read from storage at every run, not only from the index: a record
//! the index does not hold (written by another daemon on the same bucket, or by a write
//! this daemon has not indexed yet) still protects its images. A record that cannot be read
//! might name any blob, so while one exists no blob is collected at all.

use super::Registry;
use crate::digest::Digest;
use crate::storage::{Cleanup, StorageError};
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, SystemTime};

impl Registry {
    /// Removes uploads idle for longer than `grace` and blobs no version references that
    /// are older than `grace` (younger ones may be waiting for their publish).
    pub async fn collect_garbage(&self, grace: Duration) -> Result<Cleanup, StorageError> {
        let inner = &self.0;
        let cutoff = SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut cleanup = Cleanup {
            uploads: inner.storage.expire_uploads(cutoff).await?,
            ..Cleanup::default()
        };
        let _writes = inner.writes.lock().await;
        let stored = inner.storage.load_versions().await?;
        if !stored.unreadable.is_empty() {
            tracing::warn!(
                unreadable = stored.unreadable.len(),
                first = stored.unreadable[0],
                "no image collected: a version record cannot be read and might reference any of them; run `aar verify`, then restore or remove the record"
            );
            return Ok(cleanup);
        }
        let mut referenced: HashSet<Digest> = stored
            .records
            .iter()
            .flat_map(|r| r.images.values().map(|i| i.digest))
            .collect();
        referenced.extend(
            inner
                .index
                .read()
                .unwrap()
                .values()
                .flat_map(|v| v.values())
                .flat_map(|r| r.images.values().map(|i| i.digest)),
        );
        let doomed: BTreeSet<Digest> = inner
            .storage
            .list_blobs()
            .await?
            .into_iter()
            .filter(|(digest, stored)| !referenced.contains(digest) && *stored < cutoff)
            .map(|(digest, _)| digest)
            .collect();
        let mut collected_bytes = 0;
        for digest in doomed {
            // Asked first only to be counted; a blob gone already counts for nothing.
            let size = inner.storage.blob_size(&digest).await.ok().flatten();
            match inner.storage.delete_blob(&digest).await {
                Ok(()) | Err(StorageError::NotFound(_)) => {
                    cleanup.blobs += 1;
                    collected_bytes += size.unwrap_or(0);
                }
                Err(e) => return Err(e),
            }
        }
        crate::metrics::global().gc_finished(collected_bytes);
        if cleanup != Cleanup::default() {
            tracing::info!(
                uploads = cleanup.uploads,
                blobs = cleanup.blobs,
                "garbage collected"
            );
        }
        Ok(cleanup)
    }
}
