//! Version records in the bucket, and deleting a whole application behind a marker that
//! hides its records at once.

use super::error::{Kind, S3Error};
use super::{keys, Bucket};
use crate::model::VersionRecord;
use crate::storage::{LoadedVersions, Result, StorageError};
use aws_sdk_s3::primitives::ByteStream as S3Body;
use bytes::Bytes;
use futures_util::stream::StreamExt;
use std::collections::HashSet;

/// Records fetched at once when the index is (re)loaded.
const LOAD_CONCURRENCY: usize = 16;

/// `deletions/<id>.json`: the version records an application delete removes.
#[derive(serde::Serialize, serde::Deserialize)]
struct Deletion {
    application: String,
    keys: Vec<String>,
}

impl Bucket {
    pub(super) async fn put_version(&self, record: &VersionRecord) -> Result<()> {
        let key = keys::version(&record.application, record.version);
        let what = format!("version {} of {}", record.version, record.application);
        let data = serde_json::to_vec_pretty(record).expect("serialisable");
        self.put_new(&key, S3Body::from(data), Some("application/json"))
            .await
            .map_err(|e| e.into_storage(what))?;
        self.versions.lock().unwrap().insert(key, record.clone());
        Ok(())
    }

    pub(super) async fn delete_version(&self, application: &str, version: u32) -> Result<()> {
        let key = keys::version(application, version);
        self.delete_existing(&key, format!("version {version} of {application}"))
            .await?;
        self.versions.lock().unwrap().remove(&key);
        Ok(())
    }

    pub(super) async fn delete_application(&self, application: &str) -> Result<()> {
        let what = format!("application {application}");
        let doomed: Vec<String> = self
            .list(&keys::application(application))
            .await
            .map_err(|e| e.into_storage(what.clone()))?
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| keys::parse_version(key).is_some_and(|(name, _)| name == application))
            .collect();
        if doomed.is_empty() {
            return Err(StorageError::NotFound(what));
        }
        // The marker hides every record at once; removing them may then take its time,
        // and start-up finishes it after a crash.
        let marker = keys::deletion(&uuid::Uuid::new_v4().simple().to_string());
        let body = serde_json::to_vec(&Deletion {
            application: application.to_owned(),
            keys: doomed.clone(),
        })
        .expect("serialisable");
        self.put_new(&marker, S3Body::from(body), None)
            .await
            .map_err(|e| e.into_storage(what.clone()))?;
        self.finish_deletion(&marker, &doomed)
            .await
            .map_err(|e| e.into_storage(what))
    }

    /// Removes the records a deletion marker names, then the marker.
    pub(super) async fn finish_deletion(
        &self,
        marker: &str,
        doomed: &[String],
    ) -> std::result::Result<(), S3Error> {
        for key in doomed {
            self.delete_key(key).await?;
            self.versions.lock().unwrap().remove(key);
        }
        self.delete_key(marker).await
    }

    /// Every deletion marker, with the keys it hides.
    pub(super) async fn deletions(
        &self,
    ) -> std::result::Result<Vec<(String, Vec<String>)>, S3Error> {
        let mut out = Vec::new();
        for (key, _) in self.list(keys::DELETIONS).await? {
            let (bytes, _) = match self.get_bytes(&key).await {
                Ok(found) => found,
                Err(e) if e.kind == Kind::NotFound => continue,
                Err(e) => return Err(e),
            };
            match serde_json::from_slice::<Deletion>(&bytes) {
                Ok(deletion) => out.push((key, deletion.keys)),
                Err(e) => {
                    tracing::error!(key, error = %e, "unreadable deletion marker; ignored")
                }
            }
        }
        Ok(out)
    }

    /// Every version record the bucket holds and no deletion marker hides; only the ones
    /// not read before are fetched.
    pub(super) async fn load_versions(&self) -> Result<LoadedVersions> {
        let listed = self.visible_versions().await?;
        let missing: Vec<String> = {
            let known = self.versions.lock().unwrap();
            listed
                .iter()
                .filter(|k| !known.contains_key(*k))
                .cloned()
                .collect()
        };
        let fetched: Vec<(String, std::result::Result<Bytes, S3Error>)> =
            futures_util::stream::iter(missing)
                .map(|key| async move {
                    let got = self.get_bytes(&key).await.map(|(bytes, _)| bytes);
                    (key, got)
                })
                .buffer_unordered(LOAD_CONCURRENCY)
                .collect()
                .await;
        let mut unreadable = Vec::new();
        let mut known = self.versions.lock().unwrap();
        for (key, got) in fetched {
            let bytes = match got {
                Ok(bytes) => bytes,
                // Deleted between the listing and the read.
                Err(e) if e.kind == Kind::NotFound => continue,
                Err(e) => return Err(e.into_storage("reading versions")),
            };
            match parse_version(&key, &bytes) {
                Some(record) => {
                    known.insert(key, record);
                }
                None => unreadable.push(key),
            }
        }
        let listed: HashSet<&String> = listed.iter().collect();
        known.retain(|key, _| listed.contains(key));
        Ok(LoadedVersions {
            records: known.values().cloned().collect(),
            unreadable,
        })
    }

    /// The keys of version records, less those a deletion marker hides.
    async fn visible_versions(&self) -> Result<Vec<String>> {
        let hidden: HashSet<String> = self
            .deletions()
            .await
            .map_err(|e| e.into_storage("reading deletion markers"))?
            .into_iter()
            .flat_map(|(_, keys)| keys)
            .collect();
        Ok(self
            .list(keys::APPS)
            .await
            .map_err(|e| e.into_storage("listing versions"))?
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| keys::parse_version(key).is_some() && !hidden.contains(key))
            .collect())
    }
}

/// The record stored at `key`, or `None` (logged) when it does not parse or does not
/// match its key.
fn parse_version(key: &str, bytes: &[u8]) -> Option<VersionRecord> {
    let (name, number) = keys::parse_version(key).expect("listed as a version");
    match serde_json::from_slice::<VersionRecord>(bytes) {
        Ok(record) if record.application == name && record.version == number => Some(record),
        Ok(_) => {
            tracing::error!(key, "version record does not match its key; skipped");
            None
        }
        // Kept for inspection rather than deleted: evidence of outside damage.
        Err(e) => {
            tracing::error!(key, error = %e, "unreadable version record; skipped");
            None
        }
    }
}
