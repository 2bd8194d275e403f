//! What the tests send and check: SHA-256 digests, deterministic content of any size and
//! the request bodies that stream it.

use std::fs;
use std::io::Read;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, SizeHint};

use super::MIB;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

/// SHA-256 (ring: assembly, fast even in debug builds) as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(ring::digest::digest(&ring::digest::SHA256, data).as_ref())
}

/// `sha256:<hex>` of `data`.
pub fn digest_of(data: &[u8]) -> String {
    format!("sha256:{}", sha256_hex(data))
}

#[derive(Clone)]
pub struct Hasher(ring::digest::Context);

impl Default for Hasher {
    fn default() -> Self {
        Hasher(ring::digest::Context::new(&ring::digest::SHA256))
    }
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data)
    }
    pub fn finish_hex(self) -> String {
        hex(self.0.finish().as_ref())
    }
}

const PATTERN_BLOCK: usize = 64 * 1024;

type PatternCache = Mutex<Vec<(u64, Arc<Vec<u8>>)>>;

fn pattern_base(seed: u64) -> Arc<Vec<u8>> {
    static CACHE: OnceLock<PatternCache> = OnceLock::new();
    let cache = CACHE.get_or_init(|| Mutex::new(Vec::new()));
    let mut cache = cache.lock().unwrap();
    if let Some((_, b)) = cache.iter().find(|(s, _)| *s == seed) {
        return b.clone();
    }
    // xorshift64*, seeded; good enough to defeat compression and make every seed distinct.
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut v = Vec::with_capacity(PATTERN_BLOCK);
    while v.len() < PATTERN_BLOCK {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        v.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    let b = Arc::new(v);
    cache.push((seed, b.clone()));
    b
}

/// The bytes `[offset, offset+len)` of the deterministic stream `seed`: 64 KiB blocks of
/// pseudo-random bytes whose first 8 bytes are the block index, so no two blocks are equal.
pub fn pattern(seed: u64, offset: u64, len: usize) -> Vec<u8> {
    let base = pattern_base(seed);
    let mut out = Vec::with_capacity(len);
    let mut pos = offset;
    while out.len() < len {
        let block = pos / PATTERN_BLOCK as u64;
        let i = (pos % PATTERN_BLOCK as u64) as usize;
        let n = (PATTERN_BLOCK - i).min(len - out.len());
        let start = out.len();
        out.extend_from_slice(&base[i..i + n]);
        // Overlay the block index on bytes 0..8 of the block.
        let idx = block.to_le_bytes();
        for (k, b) in idx.iter().enumerate() {
            if k >= i && k < i + n {
                out[start + k - i] = *b;
            }
        }
        pos += n as u64;
    }
    out
}

/// SHA-256 digest (`sha256:<hex>`) of the first `size` bytes of pattern `seed`.
pub fn pattern_digest(seed: u64, size: u64) -> String {
    let mut h = Hasher::default();
    let mut pos = 0;
    while pos < size {
        let n = (size - pos).min(MIB) as usize;
        h.update(&pattern(seed, pos, n));
        pos += n as u64;
    }
    format!("sha256:{}", h.finish_hex())
}

/// A streamed request body producing `pattern(seed)[start..end)`, optionally failing (which
/// makes hyper drop the connection) once `fail_at` bytes of the stream have been produced.
pub struct PatternBody {
    pub seed: u64,
    pub pos: u64,
    pub end: u64,
    pub chunk: usize,
    pub fail_at: Option<u64>,
    /// Report no exact size, so hyper sends the body chunked.
    pub chunked: bool,
    /// Bytes produced so far (absolute position in the stream).
    pub sent: Arc<std::sync::atomic::AtomicU64>,
    /// Pause between frames (a slow but steady sender).
    pub pace: Option<Duration>,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl PatternBody {
    pub fn new(seed: u64, start: u64, end: u64) -> Self {
        PatternBody {
            seed,
            pos: start,
            end,
            chunk: 256 * 1024,
            fail_at: None,
            chunked: false,
            sent: Arc::new(std::sync::atomic::AtomicU64::new(start)),
            pace: None,
            sleep: None,
        }
    }
    /// Sends `chunk`-byte frames with `pause` between them.
    pub fn paced(mut self, chunk: usize, pause: Duration) -> Self {
        self.chunk = chunk;
        self.pace = Some(pause);
        self
    }
    pub fn failing_at(mut self, at: u64) -> Self {
        self.fail_at = Some(at);
        self
    }
    pub fn chunked(mut self) -> Self {
        self.chunked = true;
        self
    }
    pub fn boxed(self) -> Body {
        BodyExt::boxed(self)
    }
}

impl hyper::body::Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(sleep) = self.sleep.as_mut() {
            std::task::ready!(std::future::Future::poll(sleep.as_mut(), cx));
            self.sleep = None;
        }
        if let Some(pause) = self.pace {
            self.sleep = Some(Box::pin(tokio::time::sleep(pause)));
        }
        let limit = self.fail_at.map_or(self.end, |f| f.min(self.end));
        if self.pos >= limit {
            if self.fail_at.is_some() && self.pos < self.end {
                return Poll::Ready(Some(Err("simulated client disconnect".into())));
            }
            return Poll::Ready(None);
        }
        let n = (limit - self.pos).min(self.chunk as u64) as usize;
        let data = pattern(self.seed, self.pos, n);
        self.pos += n as u64;
        self.sent
            .store(self.pos, std::sync::atomic::Ordering::SeqCst);
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(data)))))
    }

    fn is_end_stream(&self) -> bool {
        self.fail_at.is_none() && self.pos >= self.end
    }

    fn size_hint(&self) -> SizeHint {
        if self.chunked {
            return SizeHint::default();
        }
        SizeHint::with_exact(self.end - self.pos)
    }
}

/// A body sent in `chunk`-sized frames with no announced size (so hyper sends it chunked).
pub struct ChunkedBody {
    data: Bytes,
    chunk: usize,
}

impl ChunkedBody {
    pub fn new(data: impl Into<Bytes>, chunk: usize) -> Self {
        ChunkedBody {
            data: data.into(),
            chunk,
        }
    }
    pub fn boxed(self) -> Body {
        BodyExt::boxed(self)
    }
}

impl hyper::body::Body for ChunkedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.data.is_empty() {
            return Poll::Ready(None);
        }
        let n = self.chunk.min(self.data.len());
        let part = self.data.split_to(n);
        Poll::Ready(Some(Ok(Frame::data(part))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_empty()
    }
}

/// A body streamed from a file in 256 KiB frames (blocking reads: test files are local).
pub struct FileBody {
    file: fs::File,
    left: u64,
}

impl FileBody {
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = fs::File::open(path)?;
        let left = file.metadata()?.len();
        Ok(FileBody { file, left })
    }
    pub fn boxed(self) -> Body {
        BodyExt::boxed(self)
    }
}

impl hyper::body::Body for FileBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        let mut buf = vec![0u8; self.left.min(256 * 1024) as usize];
        match self.file.read(&mut buf) {
            Ok(0) => Poll::Ready(Some(Err("file shrank while being sent".into()))),
            Ok(n) => {
                buf.truncate(n);
                self.left -= n as u64;
                Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
            }
            Err(e) => Poll::Ready(Some(Err(e.into()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

/// `sha256:<hex>` and size of a file, streamed.
pub fn file_digest(path: &Path) -> (String, u64) {
    let mut f = fs::File::open(path).unwrap();
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        let k = f.read(&mut buf).unwrap();
        if k == 0 {
            break;
        }
        h.update(&buf[..k]);
        n += k as u64;
    }
    (format!("sha256:{}", h.finish_hex()), n)
}

pub fn empty_body() -> Body {
    Empty::<Bytes>::new().map_err(|n| match n {}).boxed()
}

pub fn full_body(b: impl Into<Bytes>) -> Body {
    Full::new(b.into()).map_err(|n| match n {}).boxed()
}
