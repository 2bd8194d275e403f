//! The AWS S3 backend (and S3-compatible stores: MinIO, Ceph RGW, the test server).
//!
//! The bucket is the source of truth for blobs *and* metadata (layout in [`keys`]); the
//! daemon keeps nothing that a new unit pointed at the same bucket would miss, except the
//! tail of an upload that has not yet filled a part (see below).
//!
//! **Uploads** are S3 multipart uploads written straight to the blob's final key: the
//! object appears only when the upload is completed, and that happens only after the
//! bytes hashed on their way through match the declared digest, so nothing half-written
//! or unverified is ever visible. PATCH bodies are cut into parts of [`part_size`] bytes;
//! at most [`MAX_IN_FLIGHT_BYTES`] of parts are being sent at once, and the bytes of a part
//! not yet full wait in memory, so memory is bounded whatever the image size. Each open
//! upload has a record, `uploads/<id>.json`, rewritten after every part with `If-Match`:
//! the multipart upload id, the ETags of its parts and the SHA-256 state after them
//! (serialised midstate). That record is how uploads are resumed after a restart (S3 has
//! no way to read back the parts of an unfinished upload, so re-hashing them is not an
//! option), how abandoned uploads are found and aborted on servers without
//! ListMultipartUploads, and how another daemon on the same bucket can see them. The tail
//! held in memory is not in the record: after a restart the upload's offset goes back to
//! the last full part, which `HEAD` reports and the publisher resumes from.
//!
//! **Metadata** records are created with `If-None-Match: *`, so two daemons on one bucket
//! can never overwrite each other's versions; upload records are updated with `If-Match`.
//! An application is deleted by first writing the list of its records under
//! `deletions/`, which hides them at once; the records are then removed and the marker
//! last, and start-up finishes a delete a crash interrupted.
//!
//! **Downloads** are redirects to presigned GET URLs or CloudFront signed URLs (see
//! [`delivery`]).

mod client;
mod delivery;
mod error;
mod keys;

pub use client::usable_certificates;
pub use error::{Kind, Op, S3Error};

use super::sessions::{Cached, Held, Sessions};
use super::{
    BlobBody, ByteStream, Cleanup, LoadedVersions, Result, Storage, StorageError, StorageKind,
    UploadState,
};
use crate::cloudfront::{CloudFrontError, CloudFrontSigner};
use crate::config::S3Config;
use crate::digest::Digest;
use crate::model::{ImageRef, VersionRecord};
use aws_sdk_s3::primitives::ByteStream as S3Body;
use aws_sdk_s3::types::{CompletedMultipartUpload, CompletedPart};
use bytes::{Bytes, BytesMut};
use delivery::Delivery;
use futures_util::stream::{FuturesOrdered, StreamExt};
use sha2_resumable::digest::common::hazmat::SerializableState;
use sha2_resumable::{Digest as _, Sha256};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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
/// Records fetched at once when the index is (re)loaded.
const LOAD_CONCURRENCY: usize = 16;
/// A multipart upload no record names is aborted at start only when it is older than
/// this: another daemon may be between creating one and recording it.
const ORPHAN_AGE: Duration = Duration::from_secs(60 * 60);

/// The part size for an upload of `size` bytes: a whole number of MiB, so that parts
/// always end on a SHA-256 block boundary.
pub fn part_size(size: u64) -> u64 {
    let needed = size.div_ceil(MAX_PARTS).div_ceil(1 << 20) << 20;
    needed.max(MIN_PART_SIZE)
}

/// The region a GetBucketLocation answer names, when it names one: AWS answers nothing
/// (or "") for us-east-1 and "EU" for eu-west-1; an S3-compatible store (a custom
/// endpoint) that answers nothing may not speak of regions at all.
fn bucket_region(constraint: Option<&str>, custom_endpoint: bool) -> Option<&str> {
    match constraint {
        None | Some("") if custom_endpoint => None,
        None | Some("") => Some("us-east-1"),
        Some("EU") => Some("eu-west-1"),
        Some(region) => Some(region),
    }
}

/// Why the S3 backend could not start. One line, naming the bucket and region, never a
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum S3StartError {
    #[error("storage.s3 bucket {bucket} (region {region}): {failure}")]
    Request {
        bucket: String,
        region: String,
        // Not a `source`: its text is already in this one line.
        failure: Box<S3Error>,
    },
    #[error(
        "storage.s3 bucket {bucket} is in region {actual}, not {configured}: set \
         storage.s3.region: {actual}"
    )]
    WrongRegion {
        bucket: String,
        configured: String,
        actual: String,
    },
    #[error(transparent)]
    CloudFront(#[from] CloudFrontError),
}

pub struct S3Storage {
    client: aws_sdk_s3::Client,
    bucket: String,
    delivery: Delivery,
    refresh_interval: Duration,
    /// Whether part bodies are covered by the SigV4 signature: only over plain HTTP.
    sign_payload: bool,
    /// The uploads this daemon is writing or has a session of.
    uploads: Sessions<UploadEntry>,
    /// Version records already read, by key: they are immutable, so a refresh only
    /// fetches the keys it has not seen.
    versions: Mutex<HashMap<String, VersionRecord>>,
}

/// What this daemon knows of one upload it has touched.
struct UploadEntry {
    /// Bytes held, durable and pending, readable while a PATCH holds `session`;
    /// `u64::MAX` until known.
    offset: AtomicU64,
    /// Seconds since the epoch of the last byte received, for expiry.
    last_write: AtomicU64,
    session: Arc<tokio::sync::Mutex<Option<Session>>>,
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

struct Session {
    record: UploadRecord,
    /// ETag of `uploads/<id>.json` as last written, for `If-Match`.
    record_etag: Option<String>,
    /// SHA-256 of every byte received: the parts and `pending`.
    hasher: Sha256,
    /// Bytes after the last part, fewer than a part.
    pending: BytesMut,
}

impl Session {
    fn offset(&self) -> u64 {
        self.record.durable() + self.pending.len() as u64
    }
}

/// `uploads/<id>.json`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct UploadRecord {
    digest: Digest,
    size: u64,
    part_size: u64,
    /// The S3 multipart upload, created with the first full part (an image smaller than
    /// a part is stored with one PutObject).
    multipart: Option<String>,
    /// ETags of parts 1..=n, each `part_size` bytes.
    parts: Vec<String>,
    /// Hex of the serialised SHA-256 state after the parts.
    hash_state: String,
}

impl UploadRecord {
    fn durable(&self) -> u64 {
        self.parts.len() as u64 * self.part_size
    }

    fn hasher(&self) -> Option<Sha256> {
        let bytes = hex::decode(&self.hash_state).ok()?;
        let state = bytes.as_slice().try_into().ok()?;
        Sha256::deserialize(state).ok()
    }
}

fn hash_state(hasher: &Sha256) -> String {
    hex::encode(hasher.serialize().as_slice())
}

fn epoch_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

fn valid_upload_id(id: &str) -> Result<()> {
    // Ids are generated by us; anything else cannot name an upload (nor reach a key).
    if uuid::Uuid::try_parse(id).is_err() {
        return Err(StorageError::NotFound(format!("upload {id:?}")));
    }
    Ok(())
}

impl S3Storage {
    /// Builds the client and checks the bucket: reachable, in the configured region, and
    /// every permission of the documented policy granted. Fails with one line that names
    /// the bucket, the region, the operation and the missing permission.
    pub async fn open(config: &S3Config) -> std::result::Result<Self, S3StartError> {
        let delivery = match &config.cloudfront {
            Some(cloudfront) => Delivery::cloudfront(CloudFrontSigner::new(cloudfront)?),
            None => Delivery::presign(config.presign_duration),
        };
        let storage = S3Storage {
            client: client::build(config).await,
            bucket: config.bucket.clone(),
            delivery,
            refresh_interval: config.refresh_interval,
            sign_payload: config
                .endpoint
                .as_deref()
                .is_some_and(|e| e.starts_with("http://")),
            uploads: Sessions::new(),
            versions: Mutex::default(),
        };
        let start_err = |e: S3Error| S3StartError::Request {
            bucket: config.bucket.clone(),
            region: config.region.clone(),
            failure: Box::new(e),
        };
        let location = storage
            .client
            .get_bucket_location()
            .bucket(&storage.bucket)
            .send()
            .await
            .map_err(|e| storage.err(Op::GetBucketLocation, None, e))
            .map_err(start_err)?;
        let constraint = location.location_constraint().map(|c| c.as_str());
        if let Some(actual) = bucket_region(constraint, config.endpoint.is_some()) {
            if actual != config.region {
                return Err(S3StartError::WrongRegion {
                    bucket: config.bucket.clone(),
                    configured: config.region.clone(),
                    actual: actual.to_owned(),
                });
            }
        }
        storage.probe().await.map_err(start_err)?;
        Ok(storage)
    }

    fn err<E>(
        &self,
        op: Op,
        key: Option<&str>,
        err: aws_sdk_s3::error::SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
    ) -> S3Error
    where
        E: aws_sdk_s3::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let e = S3Error::from_sdk(op, &self.bucket, key, err);
        if e.kind == Kind::Transient {
            tracing::warn!(error = %e, "S3 request failed after retries");
        }
        e
    }

    /// Exercises every permission the backend needs on a scratch key, so that a missing
    /// one is reported at start rather than at the first upload.
    async fn probe(&self) -> std::result::Result<(), S3Error> {
        let c = &self.client;
        let key = keys::probe(&uuid::Uuid::new_v4().to_string());
        let k = Some(key.as_str());
        c.list_objects_v2()
            .bucket(&self.bucket)
            .prefix(keys::APPS)
            .max_keys(1)
            .send()
            .await
            .map_err(|e| self.err(Op::ListObjectsV2, None, e))?;
        let put = || {
            c.put_object()
                .bucket(&self.bucket)
                .key(&key)
                .if_none_match("*")
                .body(S3Body::from_static(b"aar start-up check"))
                .send()
        };
        put().await.map_err(|e| self.err(Op::PutObject, k, e))?;
        let result = async {
            match put().await {
                Ok(_) => tracing::warn!(
                    bucket = %self.bucket,
                    "the S3 server ignores If-None-Match on PutObject: two daemons sharing this \
                     bucket could overwrite each other's version records"
                ),
                Err(e) => {
                    let e = self.err(Op::PutObject, k, e);
                    if e.kind != Kind::PreconditionFailed {
                        return Err(e);
                    }
                }
            }
            c.get_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| self.err(Op::GetObject, k, e))?;
            let multipart = c
                .create_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| self.err(Op::CreateMultipartUpload, k, e))?;
            let upload_id = multipart.upload_id().unwrap_or_default();
            // The backend never needs ListParts (upload records keep the ETags); it is
            // called only to report a policy without it. Other failures (some stores
            // answer it in a form the SDK cannot read) are not worth refusing to start.
            let listed = match c
                .list_parts()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(upload_id)
                .send()
                .await
            {
                Ok(_) => Ok(()),
                Err(e) => {
                    let e = self.err(Op::ListParts, k, e);
                    if e.kind == Kind::Denied {
                        Err(e)
                    } else {
                        tracing::warn!(error = %e, "ignored at start: the backend does not use ListParts");
                        Ok(())
                    }
                }
            };
            let aborted = c
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&key)
                .upload_id(upload_id)
                .send()
                .await
                .map_err(|e| self.err(Op::AbortMultipartUpload, k, e));
            listed?;
            aborted?;
            Ok(())
        }
        .await;
        let deleted = c
            .delete_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| self.err(Op::DeleteObject, k, e));
        result?;
        deleted?;
        Ok(())
    }

    /// The entry of upload `id`. One is made only for an upload the bucket holds, so that
    /// ids naming no upload leave nothing behind; that costs a GET when this daemon has no
    /// session of the upload (after a restart or a failure).
    async fn hold_upload(&self, id: &str) -> Result<Held<'_, UploadEntry>> {
        valid_upload_id(id)?;
        if let Some(entry) = self.uploads.get(id) {
            return Ok(entry);
        }
        self.load_session(id).await?;
        Ok(self.uploads.hold(id))
    }

    async fn get_bytes(&self, key: &str) -> std::result::Result<(Bytes, Option<String>), S3Error> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err(Op::GetObject, Some(key), e))?;
        let etag = out.e_tag().map(str::to_owned);
        let body = out.body.collect().await.map_err(|e| S3Error {
            op: Op::GetObject,
            bucket: self.bucket.clone(),
            key: Some(key.to_owned()),
            kind: Kind::Transient,
            status: None,
            code: None,
            detail: e.to_string(),
            bucket_region: None,
        })?;
        Ok((body.into_bytes(), etag))
    }

    /// Every key under `prefix`, with its last-modified time.
    async fn list(&self, prefix: &str) -> std::result::Result<Vec<(String, SystemTime)>, S3Error> {
        let mut out = Vec::new();
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(&self.bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| self.err(Op::ListObjectsV2, None, e))?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                let modified = object
                    .last_modified()
                    .and_then(|t| SystemTime::try_from(*t).ok())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                out.push((key.to_owned(), modified));
            }
        }
        Ok(out)
    }

    async fn delete_key(&self, key: &str) -> std::result::Result<(), S3Error> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.err(Op::DeleteObject, Some(key), e))?;
        Ok(())
    }

    async fn exists(
        &self,
        key: &str,
    ) -> std::result::Result<Option<(u64, Option<String>)>, S3Error> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(out) => Ok(Some((
                out.content_length().unwrap_or(0).max(0) as u64,
                out.e_tag().map(str::to_owned),
            ))),
            Err(e) => {
                let e = self.err(Op::HeadObject, Some(key), e);
                if e.kind == Kind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    async fn load_session(&self, id: &str) -> Result<Session> {
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
            pending: BytesMut::new(),
        })
    }

    /// Writes the upload's record: created with `If-None-Match: *`, then replaced with
    /// `If-Match` on the ETag last written, so that a record another daemon changed is
    /// never overwritten (this daemon's copy is then stale, and the write fails).
    async fn write_record(
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

    async fn upload_part(
        &self,
        key: String,
        multipart: String,
        number: i32,
        bytes: Bytes,
    ) -> std::result::Result<String, S3Error> {
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(&key)
            .upload_id(multipart)
            .part_number(number)
            .content_length(bytes.len() as i64)
            .body(S3Body::from(bytes));
        let sent = if self.sign_payload {
            request.send().await
        } else {
            // Over TLS the payload's integrity is TLS's, and the image's is the SHA-256
            // checked before completion: hashing every part a second time for SigV4 would
            // only cost CPU.
            request.customize().disable_payload_signing().send().await
        };
        let out = sent.map_err(|e| self.err(Op::UploadPart, Some(&key), e))?;
        out.e_tag().map(str::to_owned).ok_or_else(|| S3Error {
            op: Op::UploadPart,
            bucket: self.bucket.clone(),
            key: Some(key),
            kind: Kind::Other,
            status: None,
            code: None,
            detail: "the server answered without an ETag".into(),
            bucket_region: None,
        })
    }

    async fn abort_multipart(
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

    /// Aborts the multipart upload of `record` and removes the record.
    async fn discard(&self, id: &str, record: &UploadRecord) -> Result<()> {
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

    /// Sends the part held in `bytes` as part `number`; returns its ETag.
    fn start_part(
        self: &Arc<Self>,
        key: &str,
        multipart: &str,
        number: usize,
        bytes: Bytes,
        state: String,
    ) -> impl std::future::Future<Output = std::result::Result<(String, String), S3Error>> + Send + 'static
    {
        let this = self.clone();
        let (key, multipart) = (key.to_owned(), multipart.to_owned());
        async move {
            let number = i32::try_from(number).expect("at most 10,000 parts");
            let etag = this.upload_part(key, multipart, number, bytes).await?;
            Ok((etag, state))
        }
    }

    async fn finish_upload(&self, id: &str, session: &mut Session) -> Result<()> {
        let record = &mut session.record;
        let key = keys::blob(&record.digest);
        let actual = Digest::from_bytes(session.hasher.clone().finalize().into());
        if actual != record.digest {
            let expected = record.digest;
            let _ = self.discard(id, record).await;
            return Err(StorageError::DigestMismatch { expected, actual });
        }
        let what = || format!("storing blob {} from upload {id}", record.digest);
        let tail = std::mem::take(&mut session.pending).freeze();
        match record.multipart.clone() {
            None => {
                self.client
                    .put_object()
                    .bucket(&self.bucket)
                    .key(&key)
                    .content_length(tail.len() as i64)
                    .body(S3Body::from(tail))
                    .send()
                    .await
                    .map_err(|e| self.err(Op::PutObject, Some(&key), e).into_storage(what()))?;
            }
            Some(multipart) => {
                if !tail.is_empty() {
                    let etag = self
                        .upload_part(
                            key.clone(),
                            multipart.clone(),
                            record.parts.len() as i32 + 1,
                            tail,
                        )
                        .await
                        .map_err(|e| e.into_storage(what()))?;
                    record.parts.push(etag);
                }
                let parts = record
                    .parts
                    .iter()
                    .enumerate()
                    .map(|(i, etag)| {
                        CompletedPart::builder()
                            .part_number(i as i32 + 1)
                            .e_tag(etag)
                            .build()
                    })
                    .collect();
                let completed = self
                    .client
                    .complete_multipart_upload()
                    .bucket(&self.bucket)
                    .key(&key)
                    .upload_id(&multipart)
                    .multipart_upload(
                        CompletedMultipartUpload::builder()
                            .set_parts(Some(parts))
                            .build(),
                    )
                    .send()
                    .await;
                if let Err(e) = completed {
                    let e = self.err(Op::CompleteMultipartUpload, Some(&key), e);
                    // Some S3-compatible stores (moto) answer 200 with a body the SDK
                    // cannot read. Whether the object is there, at its size, says whether
                    // the upload was completed.
                    let stored = e.status == Some(200)
                        && e.kind == Kind::Other
                        && matches!(self.exists(&key).await, Ok(Some((size, _))) if size == record.size);
                    if !stored {
                        return Err(e.into_storage(what()));
                    }
                    tracing::debug!(error = %e, "completion answer unreadable, but the object is stored");
                }
            }
        }
        // The blob is stored; a record left behind by a failure here is expired later.
        if let Err(e) = self.delete_key(&keys::upload(id)).await {
            tracing::warn!(upload = id, error = %e, "could not remove a finished upload's record");
        }
        Ok(())
    }

    /// Records parts that finished, in order.
    async fn commit_part(
        &self,
        id: &str,
        session: &mut Session,
        etag: String,
        state: String,
    ) -> Result<()> {
        let mut record = session.record.clone();
        record.parts.push(etag);
        record.hash_state = state;
        let new_etag = self
            .write_record(id, &record, session.record_etag.as_deref())
            .await
            .map_err(|e| match e.kind {
                // Someone else changed the record: this session is stale.
                Kind::PreconditionFailed => StorageError::Busy { id: id.to_owned() },
                _ => e.into_storage(format!("upload {id}")),
            })?;
        session.record = record;
        session.record_etag = new_etag;
        Ok(())
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

    /// Finishes application deletes that a crash interrupted; returns what they hid.
    async fn deletions(&self) -> std::result::Result<Vec<(String, Vec<String>)>, S3Error> {
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
}

/// `deletions/<id>.json`: the version records an application delete removes.
#[derive(serde::Serialize, serde::Deserialize)]
struct Deletion {
    application: String,
    keys: Vec<String>,
}

/// The backend behind an `Arc`, as the trait object is held: uploads spawn part requests
/// that outlive a borrow.
#[derive(Clone)]
pub struct SharedS3(Arc<S3Storage>);

impl SharedS3 {
    pub fn new(storage: S3Storage) -> Self {
        SharedS3(Arc::new(storage))
    }
}

#[async_trait::async_trait]
impl Storage for SharedS3 {
    fn kind(&self) -> StorageKind {
        StorageKind::S3
    }

    fn refresh_interval(&self) -> Option<Duration> {
        Some(self.0.refresh_interval)
    }

    async fn recover(&self) -> Result<Cleanup> {
        let s = &self.0;
        let mut cleanup = Cleanup::default();
        for (marker, doomed) in s
            .deletions()
            .await
            .map_err(|e| e.into_storage("reading deletion markers"))?
        {
            for key in doomed {
                s.delete_key(&key)
                    .await
                    .map_err(|e| e.into_storage("finishing an interrupted delete"))?;
            }
            s.delete_key(&marker)
                .await
                .map_err(|e| e.into_storage("finishing an interrupted delete"))?;
            cleanup.temp_files += 1;
        }
        for (key, _) in s
            .list(keys::PROBES)
            .await
            .map_err(|e| e.into_storage("listing start-up probes"))?
        {
            // Left by a start-up check that was interrupted; ours was removed already.
            s.delete_key(&key)
                .await
                .map_err(|e| e.into_storage("removing a start-up probe"))?;
            cleanup.temp_files += 1;
        }
        let mut known = HashSet::new();
        for (key, _) in s
            .list(keys::UPLOADS)
            .await
            .map_err(|e| e.into_storage("listing uploads"))?
        {
            let Some(id) = keys::parse_upload(&key) else {
                continue;
            };
            let readable = match s.get_bytes(&key).await {
                Ok((bytes, _)) => serde_json::from_slice::<UploadRecord>(&bytes).ok(),
                Err(e) if e.kind == Kind::NotFound => continue,
                Err(e) => return Err(e.into_storage(format!("reading upload {id}"))),
            };
            match readable {
                Some(record) if record.hasher().is_some() => {
                    known.extend(record.multipart);
                }
                // Nobody can resume an upload whose record cannot be read.
                _ => {
                    s.delete_key(&key)
                        .await
                        .map_err(|e| e.into_storage(format!("removing upload {id}")))?;
                    cleanup.uploads += 1;
                }
            }
        }
        cleanup.uploads += s.abort_orphans(&known).await?;
        Ok(cleanup)
    }

    async fn create_upload(&self, digest: Digest, size: u64) -> Result<UploadState> {
        let s = &self.0;
        if let Some(existing) = self.blob_size(&digest).await? {
            return Ok(UploadState {
                id: String::new(),
                digest,
                size: existing,
                offset: existing,
                complete: true,
            });
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
        let etag = s
            .write_record(&id, &record, None)
            .await
            .map_err(|e| e.into_storage("creating upload"))?;
        let entry = s.uploads.hold(&id);
        entry.offset.store(0, Ordering::Relaxed);
        entry
            .last_write
            .store(epoch_secs(SystemTime::now()), Ordering::Relaxed);
        *entry.session.lock().await = Some(Session {
            record,
            record_etag: etag,
            hasher: Sha256::new(),
            pending: BytesMut::new(),
        });
        Ok(UploadState {
            id,
            digest,
            size,
            offset: 0,
            complete: false,
        })
    }

    async fn upload_state(&self, id: &str) -> Result<UploadState> {
        valid_upload_id(id)?;
        let s = &self.0;
        if let Some(entry) = s.uploads.get(id) {
            let offset = entry.offset.load(Ordering::Relaxed);
            if let Ok(guard) = entry.session.try_lock() {
                if let Some(session) = guard.as_ref() {
                    return Ok(UploadState {
                        id: id.to_owned(),
                        digest: session.record.digest,
                        size: session.record.size,
                        offset: session.offset(),
                        complete: false,
                    });
                }
            } else if offset != u64::MAX {
                // Being written: the record has the digest and size, the entry the bytes.
                let record = s.load_session(id).await?.record;
                return Ok(UploadState {
                    id: id.to_owned(),
                    digest: record.digest,
                    size: record.size,
                    offset,
                    complete: false,
                });
            }
        }
        let session = s.load_session(id).await?;
        Ok(UploadState {
            id: id.to_owned(),
            digest: session.record.digest,
            size: session.record.size,
            offset: session.offset(),
            complete: false,
        })
    }

    async fn append_upload(
        &self,
        id: &str,
        offset: u64,
        mut body: ByteStream,
    ) -> Result<UploadState> {
        let s = &self.0;
        let entry = s.hold_upload(id).await?;
        let mut guard = tokio::time::timeout(BUSY_WAIT, entry.session.clone().lock_owned())
            .await
            .map_err(|_| StorageError::Busy { id: id.to_owned() })?;
        if guard.is_none() {
            // Read under the lock: a writer that held it may have moved the record on.
            let session = s.load_session(id).await?;
            entry.offset.store(session.offset(), Ordering::Relaxed);
            *guard = Some(session);
        }
        let session = guard.as_mut().expect("loaded above");
        let current = session.offset();
        if offset != current {
            return Err(StorageError::OffsetMismatch {
                id: id.to_owned(),
                expected: current,
                got: offset,
            });
        }
        let size = session.record.size;
        let part = session.record.part_size;
        let max_in_flight = (MAX_IN_FLIGHT_BYTES / part).max(1) as usize;
        let blob_key = keys::blob(&session.record.digest);
        let mut in_flight = FuturesOrdered::new();
        let mut received = current;
        let mut body_done = false;
        // A failure of the request body: what was received is kept.
        let mut body_failure: Option<StorageError> = None;
        // A failure of S3: the session no longer matches the bucket and is dropped.
        let mut s3_failure: Option<StorageError> = None;
        loop {
            if body_done && in_flight.is_empty() {
                break;
            }
            tokio::select! {
                biased;
                Some(done) = in_flight.next(), if !in_flight.is_empty() => {
                    let done: std::result::Result<(String, String), S3Error> = done;
                    let committed = match done {
                        Ok((etag, state)) => s.commit_part(id, session, etag, state).await,
                        Err(e) => Err(e.into_storage(format!("writing upload {id}"))),
                    };
                    if let Err(e) = committed {
                        s3_failure = Some(e);
                        break;
                    }
                }
                chunk = body.next(), if !body_done && in_flight.len() < max_in_flight => {
                    let mut chunk = match chunk {
                        None => { body_done = true; continue; }
                        Some(Err(e)) => {
                            body_failure = Some(StorageError::BodyInterrupted(e));
                            body_done = true;
                            continue;
                        }
                        Some(Ok(chunk)) => chunk,
                    };
                    received += chunk.len() as u64;
                    if received > size {
                        body_failure = Some(StorageError::TooLong { declared: size });
                        body_done = true;
                        continue;
                    }
                    entry.last_write.store(epoch_secs(SystemTime::now()), Ordering::Relaxed);
                    // Cut at part boundaries, so that the hash state recorded with a part
                    // covers exactly the bytes up to its end.
                    while !chunk.is_empty() {
                        let room = (part - session.pending.len() as u64) as usize;
                        let piece = chunk.split_to(room.min(chunk.len()));
                        session.hasher.update(&piece);
                        session.pending.extend_from_slice(&piece);
                        let held = session.record.durable()
                            + (in_flight.len() as u64) * part
                            + session.pending.len() as u64;
                        entry.offset.store(held, Ordering::Relaxed);
                        // A full part that is not the last one goes out now; the last one
                        // waits for the digest check.
                        if session.pending.len() as u64 == part && held < size {
                            if session.record.multipart.is_none() {
                                if let Err(e) = start_multipart(s, id, session, &blob_key).await {
                                    s3_failure = Some(e);
                                    break;
                                }
                            }
                            let number = session.record.parts.len() + in_flight.len() + 1;
                            // Allocated at full size once, rather than grown by doubling.
                            let bytes = std::mem::replace(
                                &mut session.pending,
                                BytesMut::with_capacity(part as usize),
                            )
                            .freeze();
                            in_flight.push_back(self.0.start_part(
                                &blob_key,
                                session.record.multipart.as_deref().expect("created above"),
                                number,
                                bytes,
                                hash_state(&session.hasher),
                            ));
                        }
                    }
                    if s3_failure.is_some() {
                        break;
                    }
                }
            }
        }
        if let Some(e) = s3_failure {
            // Parts sent but not recorded are overwritten when the upload resumes from its
            // record; the bytes held in memory are gone with the session.
            drop(in_flight);
            *guard = None;
            entry.offset.store(u64::MAX, Ordering::Relaxed);
            return Err(e);
        }
        let offset = session.offset();
        entry.offset.store(offset, Ordering::Relaxed);
        if let Some(e) = body_failure {
            return Err(e);
        }
        if offset < size {
            return Ok(UploadState {
                id: id.to_owned(),
                digest: session.record.digest,
                size,
                offset,
                complete: false,
            });
        }
        let digest = session.record.digest;
        let finished = s.finish_upload(id, session).await;
        // Ended, or to be reloaded from the record on the next attempt: either way the
        // session goes, and the entry with it once nobody holds it.
        *guard = None;
        entry.offset.store(u64::MAX, Ordering::Relaxed);
        finished?;
        Ok(UploadState {
            id: id.to_owned(),
            digest,
            size,
            offset,
            complete: true,
        })
    }

    async fn abort_upload(&self, id: &str) -> Result<()> {
        let s = &self.0;
        let entry = s.hold_upload(id).await?;
        let mut guard = tokio::time::timeout(BUSY_WAIT, entry.session.clone().lock_owned())
            .await
            .map_err(|_| StorageError::Busy { id: id.to_owned() })?;
        let result = match s.load_session(id).await {
            Ok(session) => s.discard(id, &session.record).await,
            Err(e) => Err(e),
        };
        *guard = None;
        result
    }

    async fn expire_uploads(&self, idle_since: SystemTime) -> Result<usize> {
        let s = &self.0;
        let mut expired = 0;
        for (key, modified) in s
            .list(keys::UPLOADS)
            .await
            .map_err(|e| e.into_storage("listing uploads"))?
        {
            let Some(id) = keys::parse_upload(&key) else {
                continue;
            };
            // Held (the bucket lists it) so that no PATCH starts while it is collected.
            let entry = s.uploads.hold(id);
            // An upload being written right now is never collected, however old.
            let Ok(mut guard) = entry.session.clone().try_lock_owned() else {
                continue;
            };
            let wrote = SystemTime::UNIX_EPOCH
                + Duration::from_secs(entry.last_write.load(Ordering::Relaxed));
            let last = modified.max(wrote);
            if last >= idle_since {
                continue;
            }
            match s.get_bytes(&key).await {
                Ok((bytes, _)) => match serde_json::from_slice::<UploadRecord>(&bytes) {
                    Ok(record) => s.discard(id, &record).await?,
                    Err(_) => s
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

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.0
            .exists(&keys::blob(digest))
            .await
            .map(|found| found.map(|(size, _)| size))
            .map_err(|e| e.into_storage(format!("blob {digest}")))
    }

    async fn read_blob(&self, image: &ImageRef, _range: Option<(u64, u64)>) -> Result<BlobBody> {
        // The client sends its Range to S3 or CloudFront itself. Sizes are not checked per
        // download: that would cost a HEAD request each, and objects are written whole
        // with their checksum; `aar verify` and the scrub hash them.
        let s = &self.0;
        s.delivery
            .url(&s.client, &s.bucket, &image.digest, SystemTime::now())
            .await
            .map(|url| BlobBody::Redirect(url.to_string()))
    }

    async fn scan_blob(&self, digest: &Digest) -> Result<ByteStream> {
        let s = &self.0;
        let key = keys::blob(digest);
        let out = s
            .client
            .get_object()
            .bucket(&s.bucket)
            .key(&key)
            .send()
            .await
            .map_err(|e| {
                s.err(Op::GetObject, Some(&key), e)
                    .into_storage(format!("blob {digest}"))
            })?;
        let body = futures_util::stream::unfold(out.body, |mut body| async move {
            match body.try_next().await {
                Ok(Some(chunk)) => Some((Ok(chunk), body)),
                Ok(None) => None,
                Err(e) => Some((Err(std::io::Error::other(e)), body)),
            }
        });
        Ok(Box::pin(body))
    }

    async fn list_blobs(&self) -> Result<Vec<(Digest, SystemTime)>> {
        Ok(self
            .0
            .list(keys::BLOBS)
            .await
            .map_err(|e| e.into_storage("listing blobs"))?
            .into_iter()
            .filter_map(|(key, modified)| Some((keys::parse_blob(&key)?, modified)))
            .collect())
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        let key = keys::blob(digest);
        let what = format!("blob {digest}");
        // S3 answers a delete of a missing key with success; every backend says NotFound.
        if self
            .0
            .exists(&key)
            .await
            .map_err(|e| e.into_storage(what.clone()))?
            .is_none()
        {
            return Err(StorageError::NotFound(what));
        }
        self.0
            .delete_key(&key)
            .await
            .map_err(|e| e.into_storage(what))
    }

    async fn put_version(&self, record: &VersionRecord) -> Result<()> {
        let s = &self.0;
        let key = keys::version(&record.application, record.version);
        let what = format!("version {} of {}", record.version, record.application);
        let data = serde_json::to_vec_pretty(record).expect("serialisable");
        s.client
            .put_object()
            .bucket(&s.bucket)
            .key(&key)
            .if_none_match("*")
            .content_type("application/json")
            .body(S3Body::from(data))
            .send()
            .await
            .map_err(|e| s.err(Op::PutObject, Some(&key), e).into_storage(what))?;
        s.versions.lock().unwrap().insert(key, record.clone());
        Ok(())
    }

    async fn delete_version(&self, application: &str, version: u32) -> Result<()> {
        let s = &self.0;
        let key = keys::version(application, version);
        let what = format!("version {version} of {application}");
        if s.exists(&key)
            .await
            .map_err(|e| e.into_storage(what.clone()))?
            .is_none()
        {
            return Err(StorageError::NotFound(what));
        }
        s.delete_key(&key).await.map_err(|e| e.into_storage(what))?;
        s.versions.lock().unwrap().remove(&key);
        Ok(())
    }

    async fn delete_application(&self, application: &str) -> Result<()> {
        let s = &self.0;
        let what = format!("application {application}");
        let doomed: Vec<String> = s
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
        s.client
            .put_object()
            .bucket(&s.bucket)
            .key(&marker)
            .if_none_match("*")
            .body(S3Body::from(body))
            .send()
            .await
            .map_err(|e| {
                s.err(Op::PutObject, Some(&marker), e)
                    .into_storage(what.clone())
            })?;
        for key in &doomed {
            s.delete_key(key)
                .await
                .map_err(|e| e.into_storage(what.clone()))?;
            s.versions.lock().unwrap().remove(key);
        }
        s.delete_key(&marker)
            .await
            .map_err(|e| e.into_storage(what))
    }

    async fn load_versions(&self) -> Result<LoadedVersions> {
        let s = &self.0;
        let hidden: HashSet<String> = s
            .deletions()
            .await
            .map_err(|e| e.into_storage("reading deletion markers"))?
            .into_iter()
            .flat_map(|(_, keys)| keys)
            .collect();
        let listed: Vec<String> = s
            .list(keys::APPS)
            .await
            .map_err(|e| e.into_storage("listing versions"))?
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| keys::parse_version(key).is_some() && !hidden.contains(key))
            .collect();
        let missing: Vec<String> = {
            let known = s.versions.lock().unwrap();
            listed
                .iter()
                .filter(|k| !known.contains_key(*k))
                .cloned()
                .collect()
        };
        let fetched: Vec<(String, std::result::Result<Bytes, S3Error>)> =
            futures_util::stream::iter(missing)
                .map(|key| async move {
                    let got = s.get_bytes(&key).await.map(|(bytes, _)| bytes);
                    (key, got)
                })
                .buffer_unordered(LOAD_CONCURRENCY)
                .collect()
                .await;
        let mut unreadable = Vec::new();
        let mut known = s.versions.lock().unwrap();
        for (key, got) in fetched {
            let bytes = match got {
                Ok(bytes) => bytes,
                // Deleted between the listing and the read.
                Err(e) if e.kind == Kind::NotFound => continue,
                Err(e) => return Err(e.into_storage("reading versions")),
            };
            let (name, number) = keys::parse_version(&key).expect("filtered above");
            match serde_json::from_slice::<VersionRecord>(&bytes) {
                Ok(record) if record.application == name && record.version == number => {
                    known.insert(key, record);
                }
                Ok(_) => {
                    tracing::error!(key, "version record does not match its key; skipped");
                    unreadable.push(key);
                }
                // Kept for inspection rather than deleted: evidence of outside damage.
                Err(e) => {
                    tracing::error!(key, error = %e, "unreadable version record; skipped");
                    unreadable.push(key);
                }
            }
        }
        let listed: HashSet<&String> = listed.iter().collect();
        known.retain(|key, _| listed.contains(key));
        Ok(LoadedVersions {
            records: known.values().cloned().collect(),
            unreadable,
        })
    }
}

async fn start_multipart(s: &S3Storage, id: &str, session: &mut Session, key: &str) -> Result<()> {
    let out = s
        .client
        .create_multipart_upload()
        .bucket(&s.bucket)
        .key(key)
        .send()
        .await
        .map_err(|e| {
            s.err(Op::CreateMultipartUpload, Some(key), e)
                .into_storage(format!("upload {id}"))
        })?;
    let multipart = out.upload_id().unwrap_or_default().to_owned();
    let mut record = session.record.clone();
    record.multipart = Some(multipart.clone());
    match s
        .write_record(id, &record, session.record_etag.as_deref())
        .await
    {
        Ok(etag) => {
            session.record = record;
            session.record_etag = etag;
            Ok(())
        }
        Err(e) => {
            // Unrecorded, it would be found only by ListMultipartUploads: abort it now.
            let _ = s.abort_multipart(key, &multipart).await;
            Err(match e.kind {
                Kind::PreconditionFailed => StorageError::Busy { id: id.to_owned() },
                _ => e.into_storage(format!("upload {id}")),
            })
        }
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
    fn bucket_regions() {
        assert_eq!(bucket_region(None, false), Some("us-east-1"));
        assert_eq!(bucket_region(Some(""), false), Some("us-east-1"));
        assert_eq!(bucket_region(Some("EU"), false), Some("eu-west-1"));
        assert_eq!(bucket_region(Some("eu-west-3"), false), Some("eu-west-3"));
        assert_eq!(bucket_region(None, true), None);
        assert_eq!(bucket_region(Some("us-west-2"), true), Some("us-west-2"));
        let err = S3StartError::WrongRegion {
            bucket: "aar0".into(),
            configured: "eu-west-3".into(),
            actual: "eu-west-1".into(),
        };
        assert_eq!(
            err.to_string(),
            "storage.s3 bucket aar0 is in region eu-west-1, not eu-west-3: set \
             storage.s3.region: eu-west-1"
        );
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
