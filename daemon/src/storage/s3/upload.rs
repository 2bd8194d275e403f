//! Upload records (`uploads/<id>.json`) and the sessions this daemon keeps of them:
//! creating an upload, reporting where it stands, aborting it. Appending is in
//! [`super::append`].

use super::error::{Kind, Op, S3Error};
use super::{keys, Bucket};
use crate::digest::Digest;
use crate::storage::sessions::{Cached, Held};
use crate::storage::{already_stored, Result, StorageError, UploadState};
use aws_sdk_s3::primitives::ByteStream as S3Body;
use sha2_resumable::digest::common::hazmat::SerializableState;
use sha2_resumable::{Digest as _, Sha256};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Smallest part: S3 refuses parts under 5 MiB except the last; 8 MiB keeps the number of
/// requests low and, at 10,000 parts, allows images up to 78 GiB before parts must grow.
pub const MIN_PART_SIZE: u64 = 8 << 20;
/// S3's limit on the number of parts; a margin is kept below it.
const MAX_PARTS: u64 = 9_000;
/// Bytes of parts being sent at once (at least one part).
pub const MAX_IN_FLIGHT_BYTES: u64 = 32 << 20;
/// How long a resumed PATCH waits for the request it replaces to release the upload.
const BUSY_WAIT: Duration = Duration::from_secs(5);

/// The part size for an upload of `size` bytes: a whole number of MiB, so that parts
/// always end on a SHA-256 block boundary.
pub fn part_size(size: u64) -> u64 {
    let needed = size.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20;
    needed.max(MIN_PART_SIZE)
}

/// What this daemon knows of one upload it has touched.
pub(super) struct UploadEntry {
    /// Bytes held, durable and pending, readable while a PATCH holds `session`;
    /// `u64::MAX` until known.
    pub(super) offset: AtomicU64,
    /// Seconds since the epoch of the last byte received, for expiry.
    pub(super) last_write: AtomicU64,
    pub(super) session: Arc<tokio::sync::Mutex<Option<Session>>>,
}

impl Default for UploadEntry {
    fn default() -> Self {
        UploadEntry {
            offset: AtomicU64::new(u64::MAX),
            last_write: AtomicU64::new(0),
            session: Arc::default(),
        }
    }
}

/// A session read from the record costs a GET to rebuild, so it is what is kept.
impl Cached for UploadEntry {
    fn is_empty(&self) -> bool {
        self.session
            .try_lock()
            .is_ok_and(|session| session.is_none())
    }
}

impl UploadEntry {
    /// The upload's session lock, waited for at most [`BUSY_WAIT`].
    pub(super) async fn lock(
        &self,
        id: &str,
    ) -> Result<tokio::sync::OwnedMutexGuard<Option<Session>>> {
        tokio::time::timeout(BUSY_WAIT, self.session.clone().lock_owned())
            .await
            .map_err(|_| StorageError::Busy { id: id.to_owned() })
    }

    /// Marks that a byte was received now.
    pub(super) fn touch(&self) {
        self.last_write
            .store(epoch_secs(SystemTime::now()), Ordering::Relaxed);
    }
}

pub(super) struct Session {
    pub(super) record: UploadRecord,
    /// ETag of `uploads/<id>.json` as last written, for `If-Match`.
    pub(super) record_etag: Option<String>,
    /// SHA-256 of every byte received: the parts and `pending`.
    pub(super) hasher: Sha256,
    /// Bytes after the last part, fewer than a part.
    pub(super) pending: Vec<u8>,
}

impl Session {
    pub(super) fn offset(&self) -> u64 {
        self.record.durable() + self.pending.len() as u64
    }
}

/// `uploads/<id>.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct UploadRecord {
    pub(super) digest: Digest,
    pub(super) size: u64,
    pub(super) part_size: u64,
    /// The S3 multipart upload, created with the first full part (an image smaller than
    /// a part is stored with one PutObject).
    pub(super) multipart: Option<String>,
    /// ETags of parts 1..=n, each `part_size` bytes.
    pub(super) parts: Vec<String>,
    /// Hex of the serialised SHA-256 state after the parts.
    pub(super) hash_state: String,
}

impl UploadRecord {
    pub(super) fn durable(&self) -> u64 {
        self.parts.len() as u64 * self.part_size
    }

    pub(super) fn hasher(&self) -> Option<Sha256> {
        let bytes = hex::decode(&self.hash_state).ok()?;
        let state = bytes.as_slice().try_into().ok()?;
        Sha256::deserialize(state).ok()
    }

    /// Upload `id` as the API reports it, holding `offset` bytes.
    pub(super) fn state(&self, id: &str, offset: u64, complete: bool) -> UploadState {
        UploadState {
            id: id.to_owned(),
            digest: self.digest,
            size: self.size,
            offset,
            complete,
        }
    }
}

pub(super) fn hash_state(hasher: &Sha256) -> String {
    hex::encode(hasher.serialize().as_slice())
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

/// When upload `entry` last received a byte from this daemon.
pub(super) fn last_write(entry: &UploadEntry) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(entry.last_write.load(Ordering::Relaxed))
}

fn valid_upload_id(id: &str) -> Result<()> {
    // Ids are generated by us; anything else cannot name an upload (nor reach a key).
    if uuid::Uuid::try_parse(id).is_err() {
        return Err(StorageError::NotFound(format!("upload {id:?}")));
    }
    Ok(())
}

impl Bucket {
    pub(super) async fn create_upload(&self, digest: Digest, size: u64) -> Result<UploadState> {
        if let Some(existing) = self.blob_size(&digest).await? {
            return Ok(already_stored(digest, existing));
        }
        let id = uuid::Uuid::new_v4().to_string();
        let record = UploadRecord {
            digest,
            size,
            part_size: part_size(size),
            multipart: None,
            parts: Vec::new(),
            hash_state: hash_state(&Sha256::new()),
        };
        let etag = self
            .write_record(&id, &record, None)
            .await
            .map_err(|e| e.into_storage("creating upload"))?;
        let state = record.state(&id, 0, false);
        let entry = self.uploads.hold(&id);
        entry.offset.store(0, Ordering::Relaxed);
        entry.touch();
        *entry.session.lock().await = Some(Session {
            record,
            record_etag: etag,
            hasher: Sha256::new(),
            pending: Vec::new(),
        });
        Ok(state)
    }

    pub(super) async fn upload_state(&self, id: &str) -> Result<UploadState> {
        valid_upload_id(id)?;
        if let Some(entry) = self.uploads.get(id) {
            let offset = entry.offset.load(Ordering::Relaxed);
            if let Ok(guard) = entry.session.try_lock() {
                if let Some(session) = guard.as_ref() {
                    return Ok(session.record.state(id, session.offset(), false));
                }
            } else if offset != u64::MAX {
                // Being written: the record has the digest and size, the entry the bytes.
                let record = self.load_session(id).await?.record;
                return Ok(record.state(id, offset, false));
            }
        }
        let session = self.load_session(id).await?;
        Ok(session.record.state(id, session.offset(), false))
    }

    pub(super) async fn abort_upload(&self, id: &str) -> Result<()> {
        let entry = self.hold_upload(id).await?;
        let mut guard = entry.lock(id).await?;
        let result = match self.load_session(id).await {
            Ok(session) => self.discard(id, &session.record).await,
            Err(e) => Err(e),
        };
        *guard = None;
        result
    }

    /// The entry of upload `id`. One is made only for an upload the bucket holds, so that
    /// ids naming no upload leave nothing behind; that costs a GET when this daemon has no
    /// session of the upload (after a restart or a failure).
    pub(super) async fn hold_upload(&self, id: &str) -> Result<Held<'_, UploadEntry>> {
        valid_upload_id(id)?;
        if let Some(entry) = self.uploads.get(id) {
            return Ok(entry);
        }
        self.load_session(id).await?;
        Ok(self.uploads.hold(id))
    }

    pub(super) async fn load_session(&self, id: &str) -> Result<Session> {
        let key = keys::upload(id);
        let (bytes, etag) = self
            .get_bytes(&key)
            .await
            .map_err(|e| e.into_storage(format!("upload {id}")))?;
        let record: UploadRecord = serde_json::from_slice(&bytes).map_err(|e| {
            StorageError::io(format!("reading upload {id}"), std::io::Error::other(e))
        })?;
        let hasher = record.hasher().ok_or_else(|| {
            StorageError::io(
                format!("reading upload {id}"),
                std::io::Error::other("the record's hash state is unreadable"),
            )
        })?;
        Ok(Session {
            record,
            record_etag: etag,
            hasher,
            pending: Vec::new(),
        })
    }

    /// Writes the upload's record: created with `If-None-Match: *`, then replaced with
    /// `If-Match` on the ETag last written, so that a record another daemon changed is
    /// never overwritten (this daemon's copy is then stale, and the write fails).
    pub(super) async fn write_record(
        &self,
        id: &str,
        record: &UploadRecord,
        etag: Option<&str>,
    ) -> std::result::Result<Option<String>, S3Error> {
        let key = keys::upload(id);
        let body = serde_json::to_vec(record).expect("serialisable");
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(S3Body::from(body));
        let request = match etag {
            Some(etag) => request.if_match(etag),
            None => request.if_none_match("*"),
        };
        let out = request
            .send()
            .await
            .map_err(|e| self.err(Op::PutObject, Some(&key), e))?;
        Ok(out.e_tag().map(str::to_owned))
    }

    /// Writes `record` over the session's own and adopts it; a record someone else
    /// changed makes this session stale, which the caller hears as `Busy`.
    pub(super) async fn replace_record(
        &self,
        id: &str,
        session: &mut Session,
        record: UploadRecord,
    ) -> std::result::Result<(), S3Error> {
        let etag = self
            .write_record(id, &record, session.record_etag.as_deref())
            .await?;
        session.record = record;
        session.record_etag = etag;
        Ok(())
    }

    /// Aborts the multipart upload of `record` and removes the record.
    pub(super) async fn discard(&self, id: &str, record: &UploadRecord) -> Result<()> {
        if let Some(multipart) = &record.multipart {
            self.abort_multipart(&keys::blob(&record.digest), multipart)
                .await
                .map_err(|e| e.into_storage(format!("aborting upload {id}")))?;
        }
        self.delete_key(&keys::upload(id))
            .await
            .map_err(|e| e.into_storage(format!("removing upload {id}")))?;
        Ok(())
    }

    /// Starts a multipart upload to `key`; returns its id.
    pub(super) async fn create_multipart(&self, key: &str) -> std::result::Result<String, S3Error> {
        let out = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err(Op::CreateMultipartUpload, Some(key), e))?;
        Ok(out.upload_id().unwrap_or_default().to_owned())
    }

    pub(super) async fn abort_multipart(
        &self,
        key: &str,
        multipart: &str,
    ) -> std::result::Result<(), S3Error> {
        match self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(multipart)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) => {
                let e = self.err(Op::AbortMultipartUpload, Some(key), e);
                // Already gone (completed, aborted, or expired by a lifecycle rule).
                if e.kind == Kind::NotFound {
                    Ok(())
                } else {
                    Err(e)
                }
            }
        }
    }
}

/// A failed write of an upload's record: stale (another writer changed it) or not.
pub(super) fn record_write_error(id: &str, e: S3Error) -> StorageError {
    match e.kind {
        // Someone else changed the record: this session is stale.
        Kind::PreconditionFailed => StorageError::Busy { id: id.to_owned() },
        _ => e.into_storage(format!("upload {id}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_bounded_and_block_aligned() {
        assert_eq!(part_size(0), MIN_PART_SIZE);
        assert_eq!(part_size(4 << 30), MIN_PART_SIZE);
        assert_eq!(part_size(64 << 30), MIN_PART_SIZE);
        let huge = 200u64 << 30;
        let p = part_size(huge);
        assert_eq!(p % (1 << 20), 0);
        assert!(huge.div_ceil(p) <= MAX_PARTS);
    }

    #[test]
    fn hash_state_round_trips() {
        let mut hasher = Sha256::new();
        hasher.update(vec![7u8; 1 << 20]);
        let record = UploadRecord {
            digest: Digest::of(b""),
            size: 2 << 20,
            part_size: 1 << 20,
            multipart: None,
            parts: vec!["\"e1\"".into()],
            hash_state: hash_state(&hasher),
        };
        let mut resumed = record.hasher().unwrap();
        resumed.update(vec![8u8; 1 << 20]);
        hasher.update(vec![8u8; 1 << 20]);
        assert_eq!(resumed.finalize(), hasher.finalize());
        let broken = UploadRecord {
            hash_state: "00".into(),
            ..record
        };
        assert!(broken.hasher().is_none());
    }
}
