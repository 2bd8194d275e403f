//! What crashes and abandoned uploads leave in the bucket: interrupted deletes, start-up
//! probes, unreadable upload records, multipart uploads no record names, and uploads
//! idle past their expiry.

use super::error::{Kind, Op};
use super::upload::{last_write, UploadRecord};
use super::{keys, Bucket};
use crate::storage::{Cleanup, Result};
use std::collections::HashSet;
use std::time::{Duration, SystemTime};

/// A multipart upload no record names is aborted at start only when it is older than
/// this: another daemon may be between creating one and recording it.
const ORPHAN_AGE: Duration = Duration::from_secs(60 * 60);

impl Bucket {
    pub(super) async fn recover(&self) -> Result<Cleanup> {
        let mut cleanup = Cleanup::default();
        cleanup.temp_files += self.finish_deletions().await?;
        cleanup.temp_files += self.remove_probes().await?;
        let (removed, known) = self.sweep_upload_records().await?;
        cleanup.uploads += removed;
        cleanup.uploads += self.abort_orphans(&known).await?;
        Ok(cleanup)
    }

    /// Finishes the application deletes a crash interrupted; returns how many.
    async fn finish_deletions(&self) -> Result<usize> {
        let markers = self
            .deletions()
            .await
            .map_err(|e| e.into_storage("reading deletion markers"))?;
        for (marker, doomed) in &markers {
            self.finish_deletion(marker, doomed)
                .await
                .map_err(|e| e.into_storage("finishing an interrupted delete"))?;
        }
        Ok(markers.len())
    }

    /// Removes the scratch keys of start-up checks that were interrupted (this one's was
    /// removed already).
    async fn remove_probes(&self) -> Result<usize> {
        let probes = self
            .list(keys::PROBES)
            .await
            .map_err(|e| e.into_storage("listing start-up probes"))?;
        for (key, _) in &probes {
            self.delete_key(key)
                .await
                .map_err(|e| e.into_storage("removing a start-up probe"))?;
        }
        Ok(probes.len())
    }

    /// Removes the upload records nobody can resume (unreadable ones); returns how many,
    /// and the multipart uploads the others name.
    async fn sweep_upload_records(&self) -> Result<(usize, HashSet<String>)> {
        let mut removed = 0;
        let mut known = HashSet::new();
        for (id, key, _) in self.upload_records().await? {
            let readable = match self.get_bytes(&key).await {
                Ok((bytes, _)) => serde_json::from_slice::<UploadRecord>(&bytes).ok(),
                Err(e) if e.kind == Kind::NotFound => continue,
                Err(e) => return Err(e.into_storage(format!("reading upload {id}"))),
            };
            match readable {
                Some(record) if record.hasher().is_some() => {
                    known.extend(record.multipart);
                }
                _ => {
                    self.delete_key(&key)
                        .await
                        .map_err(|e| e.into_storage(format!("removing upload {id}")))?;
                    removed += 1;
                }
            }
        }
        Ok((removed, known))
    }

    /// Every upload record in the bucket: its upload's id, its key and when it last
    /// changed.
    async fn upload_records(&self) -> Result<Vec<(String, String, SystemTime)>> {
        Ok(self
            .list(keys::UPLOADS)
            .await
            .map_err(|e| e.into_storage("listing uploads"))?
            .into_iter()
            .filter_map(|(key, modified)| {
                let id = keys::parse_upload(&key)?.to_owned();
                Some((id, key, modified))
            })
            .collect())
    }

    /// Aborts multipart uploads under `blobs/` that no upload record names. Servers
    /// without ListMultipartUploads (501) are tolerated: records are then the only list.
    async fn abort_orphans(&self, known: &HashSet<String>) -> Result<usize> {
        let mut aborted = 0;
        let mut key_marker: Option<String> = None;
        let mut id_marker: Option<String> = None;
        let cutoff = SystemTime::now() - ORPHAN_AGE;
        loop {
            let page = match self
                .client
                .list_multipart_uploads()
                .bucket(&self.bucket)
                .prefix(keys::BLOBS)
                .set_key_marker(key_marker.take())
                .set_upload_id_marker(id_marker.take())
                .send()
                .await
            {
                Ok(page) => page,
                Err(e) => {
                    let e = self.err(Op::ListMultipartUploads, None, e);
                    if e.kind == Kind::NotImplemented {
                        tracing::info!(
                            "the S3 server does not list multipart uploads; abandoned uploads \
                             are found through their uploads/ records only"
                        );
                        return Ok(0);
                    }
                    return Err(e.into_storage("listing multipart uploads"));
                }
            };
            for upload in page.uploads() {
                let (Some(key), Some(id)) = (upload.key(), upload.upload_id()) else {
                    continue;
                };
                let started = upload
                    .initiated()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                if known.contains(id) || started > cutoff {
                    continue;
                }
                self.abort_multipart(key, id)
                    .await
                    .map_err(|e| e.into_storage("aborting an abandoned multipart upload"))?;
                aborted += 1;
            }
            if page.is_truncated() != Some(true) {
                return Ok(aborted);
            }
            key_marker = page.next_key_marker().map(str::to_owned);
            id_marker = page.next_upload_id_marker().map(str::to_owned);
            if key_marker.is_none() {
                return Ok(aborted);
            }
        }
    }

    /// Removes uploads not written to since `idle_since`, by this daemon or (as the
    /// record's last change shows) any other; never one being written.
    pub(super) async fn expire_uploads(&self, idle_since: SystemTime) -> Result<usize> {
        let mut expired = 0;
        for (id, key, modified) in self.upload_records().await? {
            let id = id.as_str();
            // Held (the bucket lists it) so that no PATCH starts while it is collected.
            let entry = self.uploads.hold(id);
            // An upload being written right now is never collected, however old.
            let Ok(mut guard) = entry.session.clone().try_lock_owned() else {
                continue;
            };
            if modified.max(last_write(&entry)) >= idle_since {
                continue;
            }
            match self.get_bytes(&key).await {
                Ok((bytes, _)) => match serde_json::from_slice::<UploadRecord>(&bytes) {
                    Ok(record) => self.discard(id, &record).await?,
                    Err(_) => self
                        .delete_key(&key)
                        .await
                        .map_err(|e| e.into_storage(format!("removing upload {id}")))?,
                },
                Err(e) if e.kind == Kind::NotFound => {
                    // Gone meanwhile (another daemon on the bucket): so is what was kept of it.
                    *guard = None;
                    continue;
                }
                Err(e) => return Err(e.into_storage(format!("reading upload {id}"))),
            }
            *guard = None;
            expired += 1;
        }
        Ok(expired)
    }
}
