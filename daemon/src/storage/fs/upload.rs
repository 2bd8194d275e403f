//! Uploads: `uploads/<id>/info.json` says what is expected, `uploads/<id>/data` holds
//! what arrived. Bytes are hashed and written with O_DIRECT on a blocking thread while
//! the next ones are received, and the file is renamed into `blobs/` once the digest
//! matches.

use super::blobs::READ_CHUNK;
use super::{blocking, FsStorage};
use crate::digest::Digest;
use crate::fsutil::{self, Replace};
use crate::storage::odirect_writer::DirectAppender;
use crate::storage::sessions::{Cached, Held};
use crate::storage::{already_stored, ByteStream, Result, StorageError, UploadState};
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use std::fs::{self, File};
use std::io::{self, Read};
use std::path::Path;
use std::time::{Duration, SystemTime};
use tokio::sync::{mpsc, MutexGuard};

/// Bytes handed to the writer thread at once: large enough that thread hand-offs are
/// noise next to hashing and copying.
pub(super) const WRITE_BATCH: usize = 512 * 1024;
/// Size of each direct write to the upload file.
const WRITE_BUFFER: usize = 1024 * 1024;
/// How long a resumed PATCH waits for the request it replaces to notice its dropped
/// connection and release the upload.
const BUSY_WAIT: Duration = Duration::from_secs(5);

#[derive(Default)]
pub(super) struct Session(tokio::sync::Mutex<Option<HashState>>);

impl Cached for Session {
    fn is_empty(&self) -> bool {
        self.0.try_lock().is_ok_and(|state| state.is_none())
    }
}

/// The running hash of an upload's first `offset` bytes.
pub(super) struct HashState {
    offset: u64,
    hasher: Sha256,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct UploadInfo {
    digest: Digest,
    size: u64,
}

impl UploadInfo {
    /// Upload `id` as the API reports it, holding `offset` bytes.
    fn state(&self, id: &str, offset: u64, complete: bool) -> UploadState {
        UploadState {
            id: id.to_string(),
            digest: self.digest,
            size: self.size,
            offset,
            complete,
        }
    }
}

pub(super) async fn create(storage: &FsStorage, digest: Digest, size: u64) -> Result<UploadState> {
    if let Some(existing) = super::blobs::size(storage, &digest)? {
        // The caller will not send the bytes and will publish soon: restart the
        // garbage collector's grace period for this blob.
        File::open(storage.blob_path(&digest))
            .and_then(|f| f.set_modified(SystemTime::now()))
            .map_err(|e| StorageError::io(format!("refreshing blob {digest}"), e))?;
        return Ok(already_stored(digest, existing));
    }
    storage.check_free_space(size)?;
    let id = uuid::Uuid::new_v4().to_string();
    let info = serde_json::to_vec(&UploadInfo { digest, size }).expect("serialisable");
    let path = storage.upload_dir(&id).join("info.json");
    blocking(move || {
        fsutil::write_atomic(&path, &info, 0o600, Replace::Never)
            .map_err(|e| StorageError::io("creating upload", e))
    })
    .await?;
    Ok(UploadState {
        id,
        digest,
        size,
        offset: 0,
        complete: false,
    })
}

pub(super) fn state(storage: &FsStorage, id: &str) -> Result<UploadState> {
    let (info, offset) = read_upload(storage, id)?;
    Ok(info.state(id, offset, false))
}

pub(super) async fn append(
    storage: &FsStorage,
    id: &str,
    offset: u64,
    body: ByteStream,
) -> Result<UploadState> {
    let session = hold_upload(storage, id)?;
    let mut guard = lock(&session, id).await?;
    let (info, current) = read_held_upload(storage, id, &mut guard)?;
    if offset != current {
        return Err(StorageError::OffsetMismatch {
            id: id.to_string(),
            expected: current,
            got: offset,
        });
    }
    let cached = guard.take().filter(|s| s.offset == current);
    let data_path = storage.upload_dir(id).join("data");

    // Hashing and writing run on a blocking thread fed through a small channel, so TLS
    // decryption (on the runtime) and hashing overlap on two cores while memory stays
    // bounded by the channel depth.
    let (tx, rx) = mpsc::channel::<Vec<Bytes>>(4);
    let writer = tokio::task::spawn_blocking(move || write_upload(&data_path, current, cached, rx));
    let failure = send_body(body, &tx, current, info.size).await;
    drop(tx);
    let written = writer
        .await
        .map_err(|e| StorageError::io("upload writer", io::Error::other(e)))?;
    // After a failure the file and the hash may disagree: the state is dropped, so that a
    // resume rehashes the file.
    let state = written.map_err(|e| {
        let err = StorageError::io(format!("writing upload {id}"), e);
        if matches!(err, StorageError::Full(_)) {
            // Nothing can resume into a full disk; do not leave the bytes occupying it.
            let _ = fs::remove_dir_all(storage.upload_dir(id));
        }
        err
    })?;
    let offset = state.offset;
    if let Some(failure) = failure {
        *guard = Some(state);
        return Err(failure);
    }
    if offset < info.size {
        *guard = Some(state);
        return Ok(info.state(id, offset, false));
    }
    let done = info.state(id, offset, true);
    let actual = Digest::from_bytes(state.hasher.finalize().into());
    let this_id = id.to_string();
    let dir = storage.upload_dir(id);
    let blob = storage.blob_path(&info.digest);
    // Still holding the upload, so that a PATCH arriving meanwhile finds it gone rather
    // than half committed. Its session, left empty, goes with the last holder.
    let committed = blocking(move || commit(&this_id, &dir, &blob, &info, actual)).await;
    drop(guard);
    drop(session);
    committed?;
    Ok(done)
}

pub(super) async fn abort(storage: &FsStorage, id: &str) -> Result<()> {
    let session = hold_upload(storage, id)?;
    let mut guard = lock(&session, id).await?;
    read_held_upload(storage, id, &mut guard)?;
    fs::remove_dir_all(storage.upload_dir(id))
        .map_err(|e| StorageError::io(format!("removing upload {id}"), e))?;
    *guard = None;
    Ok(())
}

pub(super) fn expire(storage: &FsStorage, idle_since: SystemTime) -> Result<usize> {
    let mut expired = 0;
    let entries =
        fs::read_dir(storage.uploads_dir()).map_err(|e| StorageError::io("listing uploads", e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StorageError::io("listing uploads", e))?;
        let id = entry.file_name().to_string_lossy().into_owned();
        let session = storage.sessions.hold(&id);
        // An upload being written right now is never collected, however old.
        let Ok(mut guard) = session.0.try_lock() else {
            continue;
        };
        let path = entry.path();
        let last_write = fs::metadata(path.join("data"))
            .or_else(|_| fs::metadata(&path))
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        if last_write < idle_since {
            fs::remove_dir_all(&path)
                .map_err(|e| StorageError::io(format!("removing upload {id}"), e))?;
            *guard = None;
            expired += 1;
        }
    }
    Ok(expired)
}

/// The session of upload `id`, which must exist: ids that name no upload are refused
/// before an entry is made for them.
fn hold_upload<'a>(storage: &'a FsStorage, id: &str) -> Result<Held<'a, Session>> {
    read_upload(storage, id)?;
    Ok(storage.sessions.hold(id))
}

/// The upload's lock, waited for at most [`BUSY_WAIT`].
async fn lock<'a>(session: &'a Session, id: &str) -> Result<MutexGuard<'a, Option<HashState>>> {
    tokio::time::timeout(BUSY_WAIT, session.0.lock())
        .await
        .map_err(|_| StorageError::Busy { id: id.to_string() })
}

/// [`read_upload`] under the upload's lock: the request that held the lock before may
/// have completed or aborted the upload, and a session of an upload that is gone must
/// not be kept.
fn read_held_upload(
    storage: &FsStorage,
    id: &str,
    state: &mut Option<HashState>,
) -> Result<(UploadInfo, u64)> {
    let read = read_upload(storage, id);
    if let Err(StorageError::NotFound(_)) = read {
        *state = None;
    }
    read
}

fn read_upload(storage: &FsStorage, id: &str) -> Result<(UploadInfo, u64)> {
    // Ids are generated by us; anything else cannot name an upload (and must never
    // reach a path).
    if uuid::Uuid::try_parse(id).is_err() {
        return Err(StorageError::NotFound(format!("upload {id:?}")));
    }
    let dir = storage.upload_dir(id);
    let info = match fs::read(dir.join("info.json")) {
        Ok(bytes) => serde_json::from_slice::<UploadInfo>(&bytes)
            .map_err(|e| StorageError::io(format!("reading upload {id}"), io::Error::other(e)))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StorageError::NotFound(format!("upload {id}")))
        }
        Err(e) => return Err(StorageError::io(format!("reading upload {id}"), e)),
    };
    let offset = match fs::metadata(dir.join("data")) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(StorageError::io(format!("reading upload {id}"), e)),
    };
    Ok((info, offset))
}

/// Reads `body` into batches for the writer, counting from `received` bytes; returns
/// what ended the body early, if anything. A writer that stopped taking batches has
/// failed, and its error is the one reported.
async fn send_body(
    mut body: ByteStream,
    tx: &mpsc::Sender<Vec<Bytes>>,
    mut received: u64,
    size: u64,
) -> Option<StorageError> {
    let mut batch = Vec::new();
    let mut batch_len = 0usize;
    let mut failure = None;
    while let Some(chunk) = body.next().await {
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(e) => {
                failure = Some(StorageError::BodyInterrupted(e));
                break;
            }
        };
        received += chunk.len() as u64;
        if received > size {
            failure = Some(StorageError::TooLong { declared: size });
            break;
        }
        batch_len += chunk.len();
        batch.push(chunk);
        if batch_len >= WRITE_BATCH {
            batch_len = 0;
            if tx.send(std::mem::take(&mut batch)).await.is_err() {
                break;
            }
        }
    }
    if !batch.is_empty() {
        let _ = tx.send(batch).await;
    }
    failure
}

/// The writer thread: hashes and appends every batch from `rx` to the file at `path`,
/// which holds `current` bytes, starting from `cached` when it covers them.
fn write_upload(
    path: &Path,
    current: u64,
    cached: Option<HashState>,
    mut rx: mpsc::Receiver<Vec<Bytes>>,
) -> io::Result<HashState> {
    let mut state = match cached {
        Some(state) => state,
        None => rehash(path, current)?,
    };
    append_batches(path, current, &mut state, &mut rx)?;
    Ok(state)
}

/// Appends what arrives on `rx` and checks the file holds what was received. Bytes
/// received before a failure are kept, so the publisher can resume.
fn append_batches(
    path: &Path,
    current: u64,
    state: &mut HashState,
    rx: &mut mpsc::Receiver<Vec<Bytes>>,
) -> io::Result<()> {
    let mut file = DirectAppender::open(path, current, WRITE_BUFFER)?;
    let mut result = Ok(());
    'receive: while let Some(batch) = rx.blocking_recv() {
        for chunk in batch {
            state.hasher.update(&chunk);
            state.offset += chunk.len() as u64;
            if let Err(e) = file.write(&chunk) {
                result = Err(e);
                break 'receive;
            }
        }
    }
    let len = result.and_then(|()| file.finish())?;
    if len != state.offset {
        return Err(io::Error::other(format!(
            "upload file holds {len} bytes, {} were received",
            state.offset
        )));
    }
    Ok(())
}

/// The hash of the first `len` bytes of the upload file at `path`.
fn rehash(path: &Path, len: u64) -> io::Result<HashState> {
    let mut hasher = Sha256::new();
    let mut file = match File::open(path) {
        Ok(f) => f.take(len),
        Err(e) if e.kind() == io::ErrorKind::NotFound && len == 0 => {
            return Ok(HashState {
                offset: len,
                hasher,
            })
        }
        Err(e) => return Err(e),
    };
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(HashState {
                offset: len,
                hasher,
            });
        }
        hasher.update(&buf[..n]);
    }
}

/// Moves a complete upload's bytes to `blob` once their digest matches, then removes the
/// upload; a mismatch removes the upload and keeps nothing.
fn commit(id: &str, dir: &Path, blob: &Path, info: &UploadInfo, actual: Digest) -> Result<()> {
    if actual != info.digest {
        let _ = fs::remove_dir_all(dir);
        return Err(StorageError::DigestMismatch {
            expected: info.digest,
            actual,
        });
    }
    let io_err = |e| StorageError::io(format!("storing blob {} from upload {id}", info.digest), e);
    let data = dir.join("data");
    if !blob.exists() {
        File::open(&data)
            .and_then(|f| f.sync_all())
            .map_err(io_err)?;
        fs::rename(&data, blob).map_err(io_err)?;
        fsutil::fsync_dir(blob.parent().unwrap()).map_err(io_err)?;
    }
    fs::remove_dir_all(dir).map_err(io_err)
}
