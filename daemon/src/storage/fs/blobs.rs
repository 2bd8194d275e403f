//! Blobs on disk: their sizes, downloads streamed a chunk ahead of the client without
//! pinning a thread to a stalled one, listing and removal.

use super::FsStorage;
use crate::digest::Digest;
use crate::model::ImageRef;
use crate::storage::{BlobBody, ByteStream, Result, StorageError};
use bytes::Bytes;
use std::fs::{self, File};
use std::io::{self, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

pub(super) const READ_CHUNK: usize = 512 * 1024;
/// Chunks read ahead of the network per download: bounds memory per download.
const READ_DEPTH: usize = 2;
/// How long a reading thread waits for the client to take a chunk before giving up the
/// thread; short next to any write timeout, long next to a loaded machine's hiccups.
const READER_PATIENCE: Duration = Duration::from_millis(500);

/// Opens a blob and says how many bytes it holds.
fn open(storage: &FsStorage, digest: &Digest) -> Result<(File, u64)> {
    let file = match File::open(storage.blob_path(digest)) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(StorageError::NotFound(format!("blob {digest}")))
        }
        Err(e) => return Err(StorageError::io(format!("opening blob {digest}"), e)),
    };
    let size = file
        .metadata()
        .map_err(|e| StorageError::io(format!("opening blob {digest}"), e))?
        .len();
    Ok((file, size))
}

pub(super) fn size(storage: &FsStorage, digest: &Digest) -> Result<Option<u64>> {
    match fs::metadata(storage.blob_path(digest)) {
        Ok(m) => Ok(Some(m.len())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StorageError::io(format!("reading blob {digest}"), e)),
    }
}

pub(super) fn read(
    storage: &FsStorage,
    image: &ImageRef,
    range: Option<(u64, u64)>,
) -> Result<BlobBody> {
    let digest = image.digest;
    let (file, size) = open(storage, &digest)?;
    // A blob whose size differs from its record was damaged outside the registry:
    // serving it would promise bytes that are not there, or send bytes that are wrong.
    if size != image.size {
        return Err(StorageError::Damaged(format!(
            "image {digest} has {size} bytes on disk but {} recorded",
            image.size
        )));
    }
    let (start, end) = range.unwrap_or((0, size));
    Ok(BlobBody::Stream {
        body: stream_file(file, start, end - start)
            .map_err(|e| StorageError::io(format!("reading blob {digest}"), e))?,
        len: end - start,
    })
}

pub(super) fn scan(storage: &FsStorage, digest: &Digest) -> Result<ByteStream> {
    let (file, size) = open(storage, digest)?;
    stream_file(file, 0, size).map_err(|e| StorageError::io(format!("reading blob {digest}"), e))
}

/// Every blob in `dir` with the time it was stored.
pub(super) fn list(dir: &Path) -> Result<Vec<(Digest, SystemTime)>> {
    let mut blobs = Vec::new();
    for entry in fs::read_dir(dir).map_err(|e| StorageError::io("listing blobs", e))? {
        let entry = entry.map_err(|e| StorageError::io("listing blobs", e))?;
        let Ok(digest) = format!("sha256:{}", entry.file_name().to_string_lossy()).parse() else {
            continue; // temporary files and strays are not blobs
        };
        let modified = entry
            .metadata()
            .and_then(|m| m.modified())
            .unwrap_or(SystemTime::UNIX_EPOCH);
        blobs.push((digest, modified));
    }
    Ok(blobs)
}

pub(super) fn delete(storage: &FsStorage, digest: &Digest) -> Result<()> {
    match fs::remove_file(storage.blob_path(digest)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err(StorageError::NotFound(format!("blob {digest}")))
        }
        Err(e) => Err(StorageError::io(format!("deleting blob {digest}"), e)),
    }
}

/// Streams `len` bytes of `file` from `start`, read a chunk ahead of the consumer (see
/// [`feed`]).
pub(super) fn stream_file(mut file: File, start: u64, len: u64) -> io::Result<ByteStream> {
    if start > 0 {
        file.seek(SeekFrom::Start(start))?;
    }
    // Readahead sized for a sequential read of the whole range.
    let _ = rustix::fs::fadvise(
        &file,
        start,
        std::num::NonZeroU64::new(len),
        rustix::fs::Advice::Sequential,
    );
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(READ_DEPTH);
    tokio::spawn(feed(Arc::new(file), len, tx));
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    Ok(Box::pin(body))
}

/// Sends the next `left` bytes of `file` down `tx`, read on a blocking thread for as long
/// as the client keeps up. When it stops reading, the thread is given back and the rest
/// waits here, holding no thread: a few hundred stalled downloads would otherwise take
/// every blocking thread the runtime has, and all file I/O with them, until the write
/// timeout closes their connections.
async fn feed(file: Arc<File>, mut left: u64, tx: mpsc::Sender<io::Result<Bytes>>) {
    let handle = tokio::runtime::Handle::current();
    while left > 0 {
        let (file, tx_reader, handle) = (file.clone(), tx.clone(), handle.clone());
        let outcome =
            tokio::task::spawn_blocking(move || read_ahead(&file, left, &tx_reader, &handle))
                .await
                .unwrap_or_else(|e| Feed::Stalled(Err(io::Error::other(e)), 0));
        match outcome {
            Feed::Done | Feed::Gone => return,
            Feed::Stalled(next, rest) => {
                left = rest;
                let failed = next.is_err();
                if tx.send(next).await.is_err() || failed {
                    return;
                }
            }
        }
    }
}

enum Feed {
    Done,
    /// The client went away.
    Gone,
    /// The client is not keeping up (or the read failed): this chunk is next, then `.1`
    /// bytes more.
    Stalled(io::Result<Bytes>, u64),
}

fn read_ahead(
    file: &File,
    mut left: u64,
    tx: &mpsc::Sender<io::Result<Bytes>>,
    handle: &tokio::runtime::Handle,
) -> Feed {
    while left > 0 {
        let want = READ_CHUNK.min(usize::try_from(left).unwrap_or(READ_CHUNK));
        let chunk = match read_chunk(file, want) {
            Ok(chunk) => chunk,
            Err(e) => return Feed::Stalled(Err(e), 0),
        };
        left -= chunk.len() as u64;
        match handle.block_on(tokio::time::timeout(READER_PATIENCE, tx.reserve())) {
            Ok(Ok(permit)) => permit.send(Ok(chunk)),
            Ok(Err(_)) => return Feed::Gone,
            Err(_) => return Feed::Stalled(Ok(chunk), left),
        }
    }
    Feed::Done
}

/// Up to `want` bytes from the file's position on.
fn read_chunk(file: &File, want: usize) -> io::Result<Bytes> {
    // Read into uninitialised capacity: zeroing each buffer first cost ~5% of a download's CPU.
    let mut buf = Vec::with_capacity(want);
    match rustix::io::read(file, rustix::buffer::spare_capacity(&mut buf)) {
        Ok(0) => Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "blob shorter than recorded",
        )),
        Ok(_) => Ok(Bytes::from(buf)),
        Err(e) => Err(e.into()),
    }
}
