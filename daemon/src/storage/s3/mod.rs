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
//! **The index snapshot**, `index/versions.json`, holds every version record with the
//! ETag it was read under, so that a start reads one object instead of one per version.
//! It is only a cache: the listing decides which records exist, and a record is taken
//! from the snapshot only when its ETag is the one listed (see [`snapshot`]).
//!
//! **Trust** is one object, `trust/trust.json`, changed with `If-Match` and checked by
//! every daemon every few seconds ([`trust`], [`crate::trust::SharedStore`]).
//!
//! **Downloads** are redirects to presigned GET URLs or CloudFront signed URLs (see
//! [`delivery`]).
//!
//! One job a file: [`start`] (start-up check), [`objects`] (single-object requests and
//! the one place S3 answers become [`S3Error`]s), [`upload`] (upload records and
//! sessions), [`append`] (parts and completion), [`parts`] (part buffers reused within a
//! PATCH), [`records`] (version records), [`snapshot`] (the index snapshot that spares a
//! start one read per record),
//! [`recover`] (what crashes and abandoned uploads leave), [`trust`] (the trust store
//! every daemon on the bucket applies). This file holds the wiring:
//! [`S3Storage`] implements [`Storage`] by handing each call to the [`Bucket`].

mod append;
mod client;
mod delivery;
mod error;
mod keys;
mod objects;
mod parts;
mod records;
mod recover;
mod snapshot;
mod start;
mod trust;
mod upload;

pub use client::usable_certificates;
pub use error::{Kind, Op, S3Error};
pub use start::S3StartError;
pub use trust::S3TrustDocument;
pub use upload::{part_size, MAX_IN_FLIGHT_BYTES, MIN_PART_SIZE};

use super::sessions::Sessions;
use super::{
    BlobBody, ByteStream, Cleanup, LoadedVersions, Result, Storage, StorageKind, UploadState,
};
use crate::config::S3Config;
use crate::digest::Digest;
use crate::model::{ImageRef, VersionRecord};
use delivery::Delivery;
use records::Versions;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use upload::UploadEntry;

/// The S3 backend, as the registry holds it. The bucket sits behind an `Arc` because
/// uploads spawn part requests that outlive the call that started them.
#[derive(Clone)]
pub struct S3Storage(Arc<Bucket>);

/// The bucket, the client that reaches it, and what this daemon keeps of it in memory.
struct Bucket {
    client: aws_sdk_s3::Client,
    bucket: String,
    delivery: Delivery,
    refresh_interval: Duration,
    /// Whether part bodies are covered by the SigV4 signature: only over plain HTTP.
    sign_payload: bool,
    /// The uploads this daemon is writing or has a session of.
    uploads: Sessions<UploadEntry>,
    /// Version records already read, by key: they are immutable, so a refresh only
    /// fetches the keys it has not seen. Also what the index snapshot holds.
    versions: Mutex<Versions>,
}

impl S3Storage {
    /// Builds the client and checks the bucket: reachable, in the configured region, and
    /// every permission of the documented policy granted. Fails with one line that names
    /// the bucket, the region, the operation and the missing permission.
    pub async fn open(config: &S3Config) -> std::result::Result<Self, S3StartError> {
        Ok(S3Storage(Arc::new(Bucket::open(config).await?)))
    }
}

#[async_trait::async_trait]
impl Storage for S3Storage {
    fn kind(&self) -> StorageKind {
        StorageKind::S3
    }

    fn refresh_interval(&self) -> Option<Duration> {
        Some(self.0.refresh_interval)
    }

    async fn recover(&self) -> Result<Cleanup> {
        self.0.recover().await
    }

    async fn create_upload(&self, digest: Digest, size: u64) -> Result<UploadState> {
        self.0.create_upload(digest, size).await
    }

    async fn upload_state(&self, id: &str) -> Result<UploadState> {
        self.0.upload_state(id).await
    }

    async fn append_upload(&self, id: &str, offset: u64, body: ByteStream) -> Result<UploadState> {
        self.0.append_upload(id, offset, body).await
    }

    async fn abort_upload(&self, id: &str) -> Result<()> {
        self.0.abort_upload(id).await
    }

    async fn expire_uploads(&self, idle_since: SystemTime) -> Result<usize> {
        self.0.expire_uploads(idle_since).await
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        self.0.blob_size(digest).await
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
        self.0.scan_blob(digest).await
    }

    async fn list_blobs(&self) -> Result<Vec<(Digest, SystemTime)>> {
        self.0.list_blobs().await
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        self.0.delete_blob(digest).await
    }

    async fn put_version(&self, record: &VersionRecord) -> Result<()> {
        self.0.put_version(record).await
    }

    async fn delete_version(&self, application: &str, version: u32) -> Result<()> {
        self.0.delete_version(application, version).await
    }

    async fn delete_application(&self, application: &str) -> Result<()> {
        self.0.delete_application(application).await
    }

    async fn load_versions(&self) -> Result<LoadedVersions> {
        self.0.load_versions().await
    }
}
