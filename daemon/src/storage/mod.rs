//! Storage backends: the single source of truth for image blobs *and* metadata.
//!
//! The registry layer above keeps an in-memory index, but it is rebuilt from
//! [`Storage::load_versions`] at every start, so nothing lives only in memory.
//! Every backend reports the same [`StorageError`] variants, so callers (and the
//! HTTP layer that maps them to status codes) never see backend details.

pub mod fs;
pub mod metered;
mod odirect_writer;
pub mod pending;
pub mod s3;
mod sessions;

use crate::digest::Digest;
use crate::model::{ImageRef, VersionRecord};
use bytes::Bytes;
use futures_util::Stream;
use std::io;
use std::pin::Pin;
use std::time::{Duration, SystemTime};

/// A request or response body as a stream of chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0} already exists")]
    AlreadyExists(String),
    #[error("upload {id} is being written by another request; retry when it has finished")]
    Busy { id: String },
    #[error(
        "the upload holds {expected} bytes but this append starts at offset {got}: resume from offset {expected}"
    )]
    OffsetMismatch { id: String, expected: u64, got: u64 },
    #[error("the upload declared {declared} bytes but more were sent")]
    TooLong { declared: u64 },
    #[error("digest mismatch: the publisher declared {expected} but the bytes received hash to {actual}; nothing was kept")]
    DigestMismatch { expected: Digest, actual: Digest },
    /// A stored blob disagrees with its record (size today; the digest under `aar verify`).
    #[error("{0}; the registry refuses to serve it: run `aar verify --repair` on the registry, then upload the image again")]
    Damaged(String),
    #[error("storage is full: {0}")]
    Full(String),
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    #[error("the request body was cut off: {0}")]
    BodyInterrupted(io::Error),
    #[error("{context}: {source}")]
    Io { context: String, source: io::Error },
}

impl StorageError {
    /// Wraps an I/O error, recognising a full disk so that it reaches the caller as 507.
    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        let context = context.into();
        if is_disk_full(&source) {
            return StorageError::Full(format!(
                "{context}: no space left on the device; free space or raise the storage quota"
            ));
        }
        StorageError::Io { context, source }
    }
}

pub fn is_disk_full(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(code) if code == rustix::io::Errno::NOSPC.raw_os_error() || code == rustix::io::Errno::DQUOT.raw_os_error())
        || err.kind() == io::ErrorKind::StorageFull
}

/// Where an upload stands; persisted by the backend so that it survives a dropped
/// connection (and, for the filesystem backend, a restart).
#[derive(Debug, Clone)]
pub struct UploadState {
    /// Empty when the blob already existed and no upload was needed.
    pub id: String,
    pub digest: Digest,
    pub size: u64,
    pub offset: u64,
    pub complete: bool,
}

/// How an image is delivered: streamed by the daemon or fetched by the client elsewhere.
pub enum BlobBody {
    Stream { body: ByteStream, len: u64 },
    Redirect(String),
}

/// Which backend holds the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StorageKind {
    Fs,
    S3,
}

impl StorageKind {
    /// The name `GET /1.0` and the start-up line use.
    pub fn as_str(self) -> &'static str {
        match self {
            StorageKind::Fs => "fs",
            StorageKind::S3 => "s3",
        }
    }
}

impl std::fmt::Display for StorageKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every version record storage holds, and where the ones that cannot be read are.
#[derive(Debug, Default)]
pub struct LoadedVersions {
    pub records: Vec<VersionRecord>,
    /// Paths or keys of records that exist but do not parse (or do not match their
    /// place); they are left in place for inspection and repair.
    pub unreadable: Vec<String>,
}

/// What the start-up recovery and the garbage collector removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Cleanup {
    pub temp_files: usize,
    pub uploads: usize,
    pub blobs: usize,
}

#[async_trait::async_trait]
pub trait Storage: Send + Sync + 'static {
    fn kind(&self) -> StorageKind;

    /// How often the index should be rebuilt from storage, for backends that other
    /// daemons may write to (a shared bucket); `None`: only this daemon writes.
    fn refresh_interval(&self) -> Option<Duration> {
        None
    }

    /// Removes what a crash left half-done (temporary files, half-deleted trees).
    async fn recover(&self) -> Result<Cleanup>;

    /// Starts an upload; when the blob already exists, answers `complete` at once and
    /// restarts its garbage-collection grace period, since a publish will follow.
    async fn create_upload(&self, digest: Digest, size: u64) -> Result<UploadState>;
    async fn upload_state(&self, id: &str) -> Result<UploadState>;
    /// Appends `body` at `offset`. Bytes received before the body fails are kept, so the
    /// publisher can resume. When the upload reaches its declared size its digest is
    /// verified and the blob committed; a mismatch deletes the upload.
    async fn append_upload(&self, id: &str, offset: u64, body: ByteStream) -> Result<UploadState>;
    async fn abort_upload(&self, id: &str) -> Result<()>;
    /// Removes uploads not written to since `idle_since`, never one being written.
    async fn expire_uploads(&self, idle_since: SystemTime) -> Result<usize>;

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>>;
    /// Opens `image` for a download of `range` (inclusive start, exclusive end, already
    /// checked against the recorded size). A backend that streams checks the stored size
    /// against the record first and answers `Damaged` when they differ.
    async fn read_blob(&self, image: &ImageRef, range: Option<(u64, u64)>) -> Result<BlobBody>;
    /// Every byte of a blob as stored, whatever its record says, for verification.
    async fn scan_blob(&self, digest: &Digest) -> Result<ByteStream>;
    /// Every blob with the time it was stored, for the garbage collector.
    async fn list_blobs(&self) -> Result<Vec<(Digest, SystemTime)>>;
    async fn delete_blob(&self, digest: &Digest) -> Result<()>;

    /// Stores a version record; `AlreadyExists` if that version exists (versions are immutable).
    async fn put_version(&self, record: &VersionRecord) -> Result<()>;
    async fn delete_version(&self, application: &str, version: u32) -> Result<()>;
    async fn delete_application(&self, application: &str) -> Result<()>;
    async fn load_versions(&self) -> Result<LoadedVersions>;
}

/// The answer to an upload of a blob storage already holds: complete, with no upload.
fn already_stored(digest: Digest, size: u64) -> UploadState {
    UploadState {
        id: String::new(),
        digest,
        size,
        offset: size,
        complete: true,
    }
}
