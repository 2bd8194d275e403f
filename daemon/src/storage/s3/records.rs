//! Version records in the bucket, and deleting a whole application behind a marker that
//! hides its records at once.

use super::error::{Kind, S3Error};
use super::snapshot::{self, Snapshot, Stamp};
use super::{keys, Bucket};
use crate::model::VersionRecord;
use crate::storage::{LoadedVersions, Result, StorageError};
use aws_sdk_s3::primitives::ByteStream as S3Body;
use bytes::Bytes;
use futures_util::stream::StreamExt;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Records fetched at once when the index is (re)loaded.
const LOAD_CONCURRENCY: usize = 16;

/// The version records this daemon holds, and what it knows of the index snapshot.
#[derive(Default)]
pub(super) struct Versions {
    records: HashMap<String, Known>,
    /// The stamps of the bucket's snapshot as this process last read or wrote it; `None`
    /// until a load has completed.
    snapshot: Option<HashMap<String, Stamp>>,
}

struct Known {
    record: VersionRecord,
    /// The write of the object the record was read from; `None` when that is not known
    /// for certain (then the snapshot leaves the record out).
    stamp: Option<Stamp>,
}

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
        let etag = self
            .put(&key, S3Body::from(data), Some("application/json"), true)
            .await
            .map_err(|e| e.into_storage(what))?;
        let known = Known {
            record: record.clone(),
            stamp: etag.map(Stamp::Etag),
        };
        self.versions.lock().unwrap().records.insert(key, known);
        Ok(())
    }

    pub(super) async fn delete_version(&self, application: &str, version: u32) -> Result<()> {
        let key = keys::version(application, version);
        self.delete_existing(&key, format!("version {version} of {application}"))
            .await?;
        self.versions.lock().unwrap().records.remove(&key);
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
            self.versions.lock().unwrap().records.remove(key);
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
    /// not read before are fetched, from the index snapshot where it has them unchanged
    /// (it is read at the first load only), else one by one.
    pub(super) async fn load_versions(self: &Arc<Self>) -> Result<LoadedVersions> {
        let first = self.versions.lock().unwrap().snapshot.is_none();
        let (listed, mut cached) = if first {
            let (listed, cached) = tokio::join!(self.visible_versions(), self.read_snapshot());
            (listed?, cached)
        } else {
            (self.visible_versions().await?, Snapshot::default())
        };
        let stored = first.then(|| cached.stamps());
        let mut taken = Vec::new();
        let mut missing = Vec::new();
        {
            let known = self.versions.lock().unwrap();
            for (key, stamp) in &listed {
                if known.records.contains_key(key) {
                    continue;
                }
                match cached.take(key, stamp.as_ref()) {
                    Some(record) => taken.push((key.clone(), record, stamp.clone())),
                    None => missing.push((key.clone(), stamp.clone())),
                }
            }
        }
        drop(cached);
        let read_one_by_one = missing.len();
        if first {
            tracing::info!(
                from_snapshot = taken.len(),
                read_one_by_one,
                "loading version records"
            );
        }
        type Fetched = (
            String,
            Option<Stamp>,
            std::result::Result<(Bytes, Option<String>), S3Error>,
        );
        let fetched: Vec<Fetched> = futures_util::stream::iter(missing)
            .map(|(key, stamp)| async move {
                let got = self.get_bytes(&key).await;
                (key, stamp, got)
            })
            .buffer_unordered(LOAD_CONCURRENCY)
            .collect()
            .await;
        let mut unreadable = Vec::new();
        let mut guard = self.versions.lock().unwrap();
        let versions = &mut *guard;
        for (key, record, stamp) in taken {
            versions.records.insert(key, Known { record, stamp });
        }
        for (key, listed_stamp, got) in fetched {
            let (bytes, etag) = match got {
                Ok(found) => found,
                // Deleted between the listing and the read.
                Err(e) if e.kind == Kind::NotFound => continue,
                Err(e) => return Err(e.into_storage("reading versions")),
            };
            match parse_version(&key, &bytes) {
                Some(record) => {
                    let stamp = Stamp::confirmed(listed_stamp, etag.as_deref(), bytes.len());
                    versions.records.insert(key, Known { record, stamp });
                }
                None => unreadable.push(key),
            }
        }
        let listed: HashSet<&String> = listed.iter().map(|(key, _)| key).collect();
        versions.records.retain(|key, _| listed.contains(key));
        if let Some(stored) = stored {
            versions.snapshot = Some(stored);
        }
        let write = versions.snapshot_due(first, read_one_by_one, unreadable.len());
        let loaded = LoadedVersions {
            records: versions
                .records
                .values()
                .map(|k| k.record.clone())
                .collect(),
            unreadable,
        };
        drop(guard);
        if let Some((body, entries)) = write {
            // The load has its answer already: writing the cache must not delay it.
            let bucket = Arc::clone(self);
            tokio::spawn(async move { bucket.write_snapshot(body, entries).await });
        }
        Ok(loaded)
    }

    /// The keys of version records, less those a deletion marker hides, with their
    /// stamps.
    async fn visible_versions(&self) -> Result<Vec<(String, Option<Stamp>)>> {
        let hidden: HashSet<String> = self
            .deletions()
            .await
            .map_err(|e| e.into_storage("reading deletion markers"))?
            .into_iter()
            .flat_map(|(_, keys)| keys)
            .collect();
        Ok(self
            .list_objects(keys::APPS)
            .await
            .map_err(|e| e.into_storage("listing versions"))?
            .into_iter()
            .filter(|o| keys::parse_version(&o.key).is_some() && !hidden.contains(&o.key))
            .map(|o| {
                let stamp = Stamp::listed(&o);
                (o.key, stamp)
            })
            .collect())
    }
}

impl Versions {
    /// The snapshot to write after a load (its body and number of entries), when one is
    /// due; it then counts as what the bucket holds, written or not (see [`snapshot`]).
    fn snapshot_due(
        &mut self,
        first_load: bool,
        read_one_by_one: usize,
        unreadable: usize,
    ) -> Option<(Vec<u8>, usize)> {
        let stamped = || {
            self.records
                .iter()
                .filter_map(|(key, k)| Some((key.as_str(), k.stamp.as_ref()?, &k.record)))
        };
        let stored = self.snapshot.as_ref().expect("set by the first load");
        let drift = snapshot::drift(stamped().map(|(key, stamp, _)| (key, stamp)), stored);
        if !snapshot::due(first_load, read_one_by_one, unreadable, drift) {
            return None;
        }
        let body = snapshot::encode(stamped());
        let now: HashMap<String, Stamp> = stamped()
            .map(|(key, stamp, _)| (key.to_owned(), stamp.clone()))
            .collect();
        let entries = now.len();
        self.snapshot = Some(now);
        Some((body, entries))
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
