//! The index snapshot, `index/versions.json`: every version record in one object, so
//! that a start reads one object instead of one per version.
//!
//! It is a cache and nothing more. The listing stays the authority on which records
//! exist (and deletion markers still hide theirs): a record is taken from the snapshot
//! only for a key the listing holds, and only when the snapshot's [`Stamp`] for it is
//! the one the listing shows now; every other listed key is read as before, one
//! GetObject each. So a record changed, removed or added outside is seen as it is, a
//! deleted one never comes back, and a snapshot that is stale, damaged, missing, of
//! another format or written by another daemon costs time, never correctness. That is
//! also why two daemons may both write it (a plain PutObject, last writer wins: each
//! entry is checked on its own), and why a restore or a copy of `apps/` needs no care:
//! a record restored with other bytes has another ETag, one restored with the same bytes
//! has the same record.
//!
//! **The stamp** is the ETag as ListObjectsV2 returns it (quotes included). Some
//! S3-compatible servers (s3s-fs among them) list objects without ETags; there the stamp
//! is the size and the last-modified time to the nanosecond the listing gives. A record
//! read with GetObject gets the listing's stamp only when the read agrees with it (same
//! ETag, or same size), so a record rewritten between the listing and the read is never
//! filed under the older stamp.
//!
//! **When it is written**: after the first load of a process that had to read records
//! one by one (the first start after an upgrade, or one after publishes the snapshot
//! does not have yet), and after a later refresh once the records in memory differ from
//! what the snapshot holds by [`REWRITE_DRIFT`] keys. Never on every publish: the object
//! holds every record, so each write costs as much as the whole registry's metadata,
//! while what a stale snapshot costs is one GET per record it lacks at the next start; a
//! bounded number of misses is the cheaper side.
//! Not after a load that met unreadable records: those are left for an operator to look
//! at, and a snapshot would not hold them anyway. The write runs after the load has
//! answered (the body is built under the lock, sent without it); a failed write is
//! logged and counts as done, so it is tried again only after the next drift, not at
//! every refresh.

use super::error::Kind;
use super::objects::Listed;
use super::{keys, Bucket};
use crate::model::VersionRecord;
use aws_sdk_s3::primitives::ByteStream as S3Body;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::SystemTime;

/// The snapshot's `format`; a snapshot of another is ignored.
const FORMAT: u32 = 1;

/// Keys by which the records in memory may differ from the snapshot before a refresh
/// writes it again: the next start then reads at most this many records one by one.
pub(super) const REWRITE_DRIFT: usize = 64;

/// What identifies one write of an object, as the listing shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(super) enum Stamp {
    Etag(String),
    /// For servers whose listings carry no ETag.
    SizeModified {
        size: u64,
        modified_ns: u64,
    },
}

impl Stamp {
    /// The stamp of a listed object; `None` when the listing says too little.
    pub(super) fn listed(object: &Listed) -> Option<Stamp> {
        if let Some(etag) = &object.etag {
            return Some(Stamp::Etag(etag.clone()));
        }
        let since_epoch = object
            .modified?
            .duration_since(SystemTime::UNIX_EPOCH)
            .ok()?;
        Some(Stamp::SizeModified {
            size: object.size?,
            modified_ns: u64::try_from(since_epoch.as_nanos()).ok()?,
        })
    }

    /// The stamp of `len` bytes that GetObject answered with `etag` for a key listed with
    /// `listed`: the listed one when the read agrees with it, else none.
    pub(super) fn confirmed(
        listed: Option<Stamp>,
        etag: Option<&str>,
        len: usize,
    ) -> Option<Stamp> {
        let agrees = match &listed {
            Some(Stamp::Etag(listed)) => etag == Some(listed.as_str()),
            Some(Stamp::SizeModified { size, .. }) => *size == len as u64,
            None => false,
        };
        listed.filter(|_| agrees)
    }
}

#[derive(Serialize)]
struct Document<'a> {
    format: u32,
    versions: Vec<EntryRef<'a>>,
}

#[derive(Serialize)]
struct EntryRef<'a> {
    key: &'a str,
    stamp: &'a Stamp,
    record: &'a VersionRecord,
}

#[derive(Deserialize)]
struct Stored {
    format: u32,
    versions: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    key: String,
    stamp: Stamp,
    record: VersionRecord,
}

/// A snapshot as read, by key.
#[derive(Debug, Default)]
pub(super) struct Snapshot {
    entries: HashMap<String, (Stamp, VersionRecord)>,
}

impl Snapshot {
    /// The snapshot in `bytes`, and how many of its entries were dropped because their
    /// record is not the one their key names; `Err` says why none can be used.
    pub(super) fn parse(bytes: &[u8]) -> Result<(Snapshot, usize), String> {
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if stored.format != FORMAT {
            return Err(format!("format {}, not {FORMAT}", stored.format));
        }
        let total = stored.versions.len();
        let entries: HashMap<_, _> = stored
            .versions
            .into_iter()
            .filter(|e| names(&e.key, &e.record))
            .map(|e| (e.key, (e.stamp, e.record)))
            .collect();
        let dropped = total - entries.len();
        Ok((Snapshot { entries }, dropped))
    }

    /// The stamp of every entry: what the bucket's snapshot holds.
    pub(super) fn stamps(&self) -> HashMap<String, Stamp> {
        self.entries
            .iter()
            .map(|(key, (stamp, _))| (key.clone(), stamp.clone()))
            .collect()
    }

    /// The record of `key` when the snapshot has it under the stamp the listing shows.
    pub(super) fn take(&mut self, key: &str, listed: Option<&Stamp>) -> Option<VersionRecord> {
        match self.entries.get(key) {
            Some((stamp, _)) if Some(stamp) == listed => self.entries.remove(key).map(|e| e.1),
            _ => None,
        }
    }
}

/// Whether `record` is the one `key` names.
fn names(key: &str, record: &VersionRecord) -> bool {
    keys::parse_version(key) == Some((record.application.as_str(), record.version))
}

/// How many keys differ between the records in memory (those with a stamp) and the
/// snapshot's entries: present on one side only, or under another stamp.
pub(super) fn drift<'a>(
    current: impl Iterator<Item = (&'a str, &'a Stamp)>,
    stored: &HashMap<String, Stamp>,
) -> usize {
    let (mut differing, mut shared) = (0, 0);
    for (key, stamp) in current {
        match stored.get(key) {
            Some(s) => {
                shared += 1;
                differing += usize::from(s != stamp);
            }
            None => differing += 1,
        }
    }
    differing + (stored.len() - shared)
}

/// Whether a load should write the snapshot (see the module docs).
pub(super) fn due(
    first_load: bool,
    read_one_by_one: usize,
    unreadable: usize,
    drift: usize,
) -> bool {
    unreadable == 0
        && if first_load {
            read_one_by_one > 0 && drift > 0
        } else {
            drift >= REWRITE_DRIFT
        }
}

/// The snapshot's bytes, entries sorted by key.
pub(super) fn encode<'a>(
    entries: impl Iterator<Item = (&'a str, &'a Stamp, &'a VersionRecord)>,
) -> Vec<u8> {
    let mut versions: Vec<EntryRef> = entries
        .map(|(key, stamp, record)| EntryRef { key, stamp, record })
        .collect();
    versions.sort_unstable_by_key(|e| e.key);
    serde_json::to_vec(&Document {
        format: FORMAT,
        versions,
    })
    .expect("serialisable")
}

impl Bucket {
    /// The bucket's snapshot, or an empty one (after one log line) when there is none
    /// that can be used.
    pub(super) async fn read_snapshot(&self) -> Snapshot {
        let key = keys::SNAPSHOT;
        let bytes = match self.get_bytes(key).await {
            Ok((bytes, _)) => bytes,
            Err(e) if e.kind == Kind::NotFound => {
                tracing::info!(
                    key,
                    "no index snapshot yet; version records are read one by one"
                );
                return Snapshot::default();
            }
            Err(e) => {
                tracing::warn!(error = %e, "index snapshot not read; version records are read one by one");
                return Snapshot::default();
            }
        };
        match Snapshot::parse(&bytes) {
            Ok((snapshot, 0)) => snapshot,
            Ok((snapshot, dropped)) => {
                tracing::warn!(
                    key,
                    dropped,
                    "index snapshot entries whose record is not the one their key names are \
                     not used; those records are read one by one"
                );
                snapshot
            }
            Err(reason) => {
                tracing::warn!(
                    key,
                    reason,
                    "index snapshot unusable and ignored; version records are read one by one"
                );
                Snapshot::default()
            }
        }
    }

    /// Replaces the bucket's snapshot with `body` (`entries` records); a failure is
    /// logged, as the snapshot only saves time.
    pub(super) async fn write_snapshot(&self, body: Vec<u8>, entries: usize) {
        match self
            .put(
                keys::SNAPSHOT,
                S3Body::from(body),
                Some("application/json"),
                false,
            )
            .await
        {
            Ok(_) => tracing::info!(entries, "index snapshot written"),
            Err(e) => tracing::warn!(
                error = %e,
                "index snapshot not written; the next start reads the records it lacks one by one"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::time::Duration;

    fn record(application: &str, version: u32) -> VersionRecord {
        VersionRecord {
            application: application.into(),
            version,
            manifest: format!("name: {application}\n"),
            tags: vec![],
            instance_type: None,
            boot_package: None,
            images: BTreeMap::new(),
            created_at: "2026-01-01T00:00:00Z".into(),
            vm: false,
            settings: None,
        }
    }

    fn etag(s: &str) -> Stamp {
        Stamp::Etag(format!("\"{s}\""))
    }

    fn listed(etag: Option<&str>, size: Option<u64>, modified: Option<SystemTime>) -> Listed {
        Listed {
            key: "apps/a/versions/1.json".into(),
            modified,
            etag: etag.map(str::to_owned),
            size,
        }
    }

    #[test]
    fn stamps_prefer_the_etag_and_fall_back_to_size_and_time() {
        let at = SystemTime::UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        assert_eq!(
            Stamp::listed(&listed(Some("\"e1\""), Some(5), Some(at))),
            Some(etag("e1"))
        );
        assert_eq!(
            Stamp::listed(&listed(None, Some(5), Some(at))),
            Some(Stamp::SizeModified {
                size: 5,
                modified_ns: 1_700_000_000_123_456_789
            })
        );
        assert_eq!(Stamp::listed(&listed(None, None, Some(at))), None);
        assert_eq!(Stamp::listed(&listed(None, Some(5), None)), None);
    }

    #[test]
    fn a_read_keeps_the_listed_stamp_only_when_it_agrees() {
        let sized = Stamp::SizeModified {
            size: 5,
            modified_ns: 1,
        };
        assert_eq!(
            Stamp::confirmed(Some(etag("e1")), Some("\"e1\""), 5),
            Some(etag("e1"))
        );
        // Rewritten between the listing and the read.
        assert_eq!(Stamp::confirmed(Some(etag("e1")), Some("\"e2\""), 5), None);
        assert_eq!(Stamp::confirmed(Some(etag("e1")), None, 5), None);
        assert_eq!(
            Stamp::confirmed(Some(sized.clone()), Some("\"e9\""), 5),
            Some(sized.clone())
        );
        assert_eq!(Stamp::confirmed(Some(sized), None, 6), None);
        assert_eq!(Stamp::confirmed(None, Some("\"e1\""), 5), None);
    }

    #[test]
    fn entries_are_taken_only_under_the_listed_stamp() {
        let (a1, a2) = (record("a", 1), record("a", 2));
        let body = encode(
            [
                ("apps/a/versions/1.json", &etag("e1"), &a1),
                ("apps/a/versions/2.json", &etag("e2"), &a2),
            ]
            .into_iter(),
        );
        let (mut snapshot, dropped) = Snapshot::parse(&body).unwrap();
        assert_eq!(dropped, 0);
        assert_eq!(snapshot.stamps().len(), 2);
        // Changed since: another ETag.
        assert_eq!(
            snapshot.take("apps/a/versions/1.json", Some(&etag("e9"))),
            None
        );
        // A listing without a stamp proves nothing.
        assert_eq!(snapshot.take("apps/a/versions/1.json", None), None);
        // Not in the snapshot.
        assert_eq!(
            snapshot.take("apps/a/versions/3.json", Some(&etag("e3"))),
            None
        );
        assert_eq!(
            snapshot.take("apps/a/versions/2.json", Some(&etag("e2"))),
            Some(a2)
        );
        // ETags are compared as returned, quotes included.
        assert_eq!(
            snapshot.take("apps/a/versions/1.json", Some(&Stamp::Etag("e1".into()))),
            None
        );
        assert_eq!(
            snapshot.take("apps/a/versions/1.json", Some(&etag("e1"))),
            Some(a1)
        );
    }

    #[test]
    fn unusable_snapshots_and_entries_are_refused() {
        assert!(Snapshot::parse(b"not json").is_err());
        assert!(Snapshot::parse(b"{\"versions\": []}").is_err());
        assert!(Snapshot::parse(b"{\"format\": 2, \"versions\": []}")
            .unwrap_err()
            .contains("format 2"));
        // An entry whose record is not the one its key names is dropped, the rest kept.
        let (b1, a1) = (record("b", 1), record("a", 1));
        let body = encode(
            [
                ("apps/a/versions/1.json", &etag("e1"), &b1),
                ("apps/a/versions/2.json", &etag("e2"), &a1),
                ("apps/b/versions/1.json", &etag("e3"), &b1),
                ("blobs/sha256/00", &etag("e4"), &b1),
            ]
            .into_iter(),
        );
        let (mut snapshot, dropped) = Snapshot::parse(&body).unwrap();
        assert_eq!(dropped, 3);
        assert_eq!(
            snapshot.take("apps/a/versions/1.json", Some(&etag("e1"))),
            None
        );
        assert_eq!(
            snapshot.take("apps/b/versions/1.json", Some(&etag("e3"))),
            Some(b1)
        );
    }

    #[test]
    fn drift_counts_keys_added_removed_or_changed() {
        let stored: HashMap<String, Stamp> = (0..10)
            .map(|i| (format!("k{i}"), etag(&i.to_string())))
            .collect();
        let view = |v: &[(String, Stamp)]| drift(v.iter().map(|(k, s)| (k.as_str(), s)), &stored);
        let mut current: Vec<(String, Stamp)> = stored.clone().into_iter().collect();
        assert_eq!(view(&current), 0);
        // k0 changed, k1 gone, k10 new.
        current.retain(|(k, _)| k != "k1");
        for (k, s) in current.iter_mut() {
            if k == "k0" {
                *s = etag("new");
            }
        }
        current.push(("k10".into(), etag("10")));
        assert_eq!(view(&current), 3);
        assert_eq!(view(&[]), 10);
    }

    #[test]
    fn written_after_a_first_load_that_read_records_or_after_enough_drift() {
        assert!(due(true, 5, 0, 5));
        assert!(!due(true, 0, 0, 0), "everything came from the snapshot");
        assert!(!due(true, 5, 1, 5), "a record is unreadable");
        assert!(!due(false, 1, 0, REWRITE_DRIFT - 1), "not yet worth it");
        assert!(due(false, 1, 0, REWRITE_DRIFT));
        assert!(due(false, 0, 0, REWRITE_DRIFT), "deletions count too");
        assert!(!due(false, 100, 2, 100));
    }
}
