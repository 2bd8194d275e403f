//! Streaming a blob out of a read-only memory map.
//!
//! Reading into buffers costs a kernel-to-user copy per byte and a thread hand-off per
//! buffer; with a map, TLS encrypts straight from the page cache. A blocking thread walks
//! the map ahead of the network: it faults each chunk in (so a cold read from disk never
//! stalls the async runtime) and releases chunks the network has passed (so the file's
//! pages do not accumulate in the daemon's resident set, whatever the image size).

use super::ByteStream;
use bytes::Bytes;
use memmap2::{Advice, Mmap, MmapOptions, UncheckedAdvice};
use std::fs::File;
use std::io;
use std::sync::Arc;
use tokio::sync::mpsc;

const CHUNK: usize = 1024 * 1024;
/// Chunks faulted in ahead of the network per download.
const AHEAD: usize = 2;

/// A chunk of the map that keeps the whole map alive while the network holds it.
struct MapSlice {
    map: Arc<Mmap>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for MapSlice {
    fn as_ref(&self) -> &[u8] {
        &self.map[self.start..self.end]
    }
}

/// Streams bytes `start..end` of `file`.
pub fn stream(file: &File, start: u64, end: u64) -> io::Result<ByteStream> {
    if start >= end {
        return Ok(Box::pin(futures_util::stream::empty()));
    }
    let page = rustix::param::page_size() as u64;
    let map_start = start - start % page;
    let len = usize::try_from(end - map_start).map_err(io::Error::other)?;
    // SAFETY: blob files are immutable once committed (written under uploads/, renamed into
    // blobs/, never modified or truncated afterwards), and deleting one (unlink) leaves a
    // live mapping valid. Only an outside process truncating a blob under the daemon could
    // invalidate the map.
    let map = unsafe { MmapOptions::new().offset(map_start).len(len).map(file)? };
    let _ = map.advise(Advice::Sequential);
    let map = Arc::new(map);
    let (tx, rx) = mpsc::channel::<io::Result<Bytes>>(AHEAD);
    tokio::task::spawn_blocking(move || {
        let total = map.len();
        let mut pos = (start - map_start) as usize;
        let mut released = 0;
        while pos < total {
            let next = (pos + CHUNK).min(total);
            if map
                .advise_range(Advice::PopulateRead, pos, next - pos)
                .is_err()
            {
                // Kernels before 5.14 lack MADV_POPULATE_READ: touch a byte per page.
                for at in (pos..next).step_by(page as usize) {
                    std::hint::black_box(map[at]);
                }
            }
            let chunk = Bytes::from_owner(MapSlice {
                map: map.clone(),
                start: pos,
                end: next,
            });
            if tx.blocking_send(Ok(chunk)).is_err() {
                return; // the client went away
            }
            pos = next;
            let passed = pos.saturating_sub((AHEAD + 2) * CHUNK);
            if passed > released {
                // SAFETY: on a shared read-only file mapping, MADV_DONTNEED only drops
                // the page-table entries: a later access (should the network still hold
                // that chunk) faults the same bytes back in from the page cache.
                unsafe {
                    let _ = map.unchecked_advise_range(
                        UncheckedAdvice::DontNeed,
                        released,
                        passed - released,
                    );
                }
                released = passed;
            }
        }
    });
    Ok(Box::pin(futures_util::stream::unfold(
        rx,
        |mut rx| async move { rx.recv().await.map(|item| (item, rx)) },
    )))
}
