//! Appending multi-GiB uploads without going through the page cache.
//!
//! An image is written once and read much later (often from another machine, through
//! S3 or a CDN), so copying it into the page cache only costs CPU (page allocation and a
//! copy per byte) and evicts hotter data. `O_DIRECT` writes whole aligned blocks straight
//! from our buffer; only the unaligned tail of an upload (or of a part that a dropped
//! connection cut short) goes through an ordinary buffered write. Filesystems that refuse
//! `O_DIRECT` (tmpfs on older kernels, some network filesystems) get buffered writes.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;
use std::sync::mpsc;
use std::thread;

/// Alignment that satisfies every logical block size in use (512 and 4096 bytes).
const BLOCK: usize = 4096;
/// One being filled, one queued, one being written.
const BUFFERS: usize = 3;

/// A heap buffer whose usable part starts on a [`BLOCK`] boundary, as `O_DIRECT` requires.
struct AlignedBuf {
    storage: Vec<u8>,
    start: usize,
    capacity: usize,
    len: usize,
}

impl AlignedBuf {
    fn new(capacity: usize) -> Self {
        let storage = vec![0u8; capacity + BLOCK];
        let start = storage.as_ptr().align_offset(BLOCK);
        AlignedBuf {
            storage,
            start,
            capacity,
            len: 0,
        }
    }

    fn filled(&self) -> &[u8] {
        &self.storage[self.start..self.start + self.len]
    }

    /// Copies as much of `data` as fits; returns how much that was.
    fn fill(&mut self, data: &[u8]) -> usize {
        let n = data.len().min(self.capacity - self.len);
        let at = self.start + self.len;
        self.storage[at..at + n].copy_from_slice(&data[..n]);
        self.len += n;
        n
    }

    fn is_full(&self) -> bool {
        self.len == self.capacity
    }
}

/// Writes buffers at their positions, direct when the filesystem allows it.
struct Writer {
    direct: Option<File>,
    buffered: File,
}

impl Writer {
    fn write_at(&mut self, data: &[u8], pos: u64) -> io::Result<()> {
        if let Some(direct) = &self.direct {
            match direct.write_all_at(data, pos) {
                // Some filesystems accept the O_DIRECT open but not the write.
                Err(e) if e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) => {
                    self.direct = None
                }
                other => return other,
            }
        }
        self.buffered.write_all_at(data, pos)
    }
}

/// Appends to a file through two buffers: the caller fills one while a dedicated thread
/// writes the other, so hashing and copying never wait for the disk.
pub struct DirectAppender {
    buf: AlignedBuf,
    /// File position of the first byte in `buf`; block-aligned while writes are direct.
    pos: u64,
    capacity: usize,
    /// Buffers allocated so far, at most [`BUFFERS`].
    allocated: usize,
    to_io: Option<mpsc::SyncSender<(AlignedBuf, u64)>>,
    from_io: mpsc::Receiver<io::Result<AlignedBuf>>,
    io: Option<thread::JoinHandle<Writer>>,
}

impl DirectAppender {
    /// Opens `path` (created if missing) to append after its first `len` bytes, with
    /// buffers of `capacity` bytes (rounded to whole blocks).
    pub fn open(path: &Path, len: u64, capacity: usize) -> io::Result<Self> {
        let capacity = capacity.max(BLOCK) / BLOCK * BLOCK;
        // 0600: the file becomes the blob by rename, and images are the registry's to serve.
        let buffered = OpenOptions::new()
            .create(true)
            .mode(0o600)
            .truncate(false)
            .read(true)
            .write(true)
            .open(path)?;
        let direct = OpenOptions::new()
            .write(true)
            .custom_flags(rustix::fs::OFlags::DIRECT.bits() as i32)
            .open(path)
            .ok();
        let mut buf = AlignedBuf::new(capacity);
        let mut pos = len;
        if direct.is_some() {
            // Rewrite the partial last block in full, so every direct write stays aligned.
            let tail = (len % BLOCK as u64) as usize;
            pos = len - tail as u64;
            if tail > 0 {
                let mut bytes = vec![0u8; tail];
                buffered.read_exact_at(&mut bytes, pos)?;
                buf.fill(&bytes);
            }
        }
        let (to_io, io_rx) = mpsc::sync_channel::<(AlignedBuf, u64)>(1);
        let (io_tx, from_io) = mpsc::channel();
        let mut writer = Writer { direct, buffered };
        let io = thread::Builder::new()
            .name("aar-upload-io".into())
            .spawn(move || {
                for (buf, pos) in io_rx {
                    let result = writer.write_at(buf.filled(), pos).map(|()| buf);
                    let failed = result.is_err();
                    if io_tx.send(result).is_err() || failed {
                        break;
                    }
                }
                writer
            })?;
        Ok(DirectAppender {
            buf,
            pos,
            capacity,
            allocated: 1,
            to_io: Some(to_io),
            from_io,
            io: Some(io),
        })
    }

    pub fn write(&mut self, mut data: &[u8]) -> io::Result<()> {
        while !data.is_empty() {
            let n = self.buf.fill(data);
            data = &data[n..];
            if self.buf.is_full() {
                self.hand_off()?;
            }
        }
        Ok(())
    }

    /// Sends the full buffer to the I/O thread and continues in the other one.
    fn hand_off(&mut self) -> io::Result<()> {
        let next = if self.allocated < BUFFERS {
            self.allocated += 1;
            AlignedBuf::new(self.capacity)
        } else {
            self.collect()?
        };
        let full = std::mem::replace(&mut self.buf, next);
        let len = full.len as u64;
        self.to_io
            .as_ref()
            .expect("open until finish")
            .send((full, self.pos))
            .map_err(|_| self.io_failure())?;
        self.pos += len;
        Ok(())
    }

    /// The error that stopped the I/O thread (it reports it before exiting).
    fn io_failure(&self) -> io::Error {
        self.from_io
            .try_iter()
            .find_map(Result::err)
            .unwrap_or_else(|| io::Error::other("upload writer thread stopped"))
    }

    fn collect(&mut self) -> io::Result<AlignedBuf> {
        let mut buf = self.from_io.recv().map_err(|_| self.io_failure())??;
        buf.len = 0;
        Ok(buf)
    }

    /// Writes everything still buffered and returns the file's length.
    pub fn finish(mut self) -> io::Result<u64> {
        drop(self.to_io.take());
        let mut first_error = None;
        for result in self.from_io.iter() {
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        let mut writer = self
            .io
            .take()
            .expect("joined once")
            .join()
            .map_err(|_| io::Error::other("upload writer thread panicked"))?;
        if let Some(e) = first_error {
            return Err(e);
        }
        let data = self.buf.filled();
        let aligned = if writer.direct.is_some() {
            data.len() / BLOCK * BLOCK
        } else {
            0
        };
        if aligned > 0 {
            writer.write_at(&data[..aligned], self.pos)?;
        }
        // The unaligned tail cannot go direct.
        writer
            .buffered
            .write_all_at(&data[aligned..], self.pos + aligned as u64)?;
        Ok(self.pos + data.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_across_unaligned_resumes_byte_for_byte() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data");
        let data: Vec<u8> = (0..100_000u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut written = 0u64;
        // Pieces that end off block boundaries, as dropped connections do.
        for piece in [1usize, 4095, 4097, 10_000, 33, 70_000, 11_774] {
            let mut w = DirectAppender::open(&path, written, 8192).unwrap();
            for chunk in data[written as usize..written as usize + piece].chunks(3000) {
                w.write(chunk).unwrap();
            }
            written = w.finish().unwrap();
        }
        assert_eq!(written, data.len() as u64);
        assert_eq!(std::fs::read(&path).unwrap(), data);
    }
}
