//! Test harness for the `aar` integration tests.
//!
//! * [`Identity`]: client certificates made with rcgen (publisher, client, untrusted, revoked).
//! * [`Instance`]: a temporary directory with a config file, state directory and storage root,
//!   plus helpers to run the CLI against it.
//! * [`Daemon`]: a running `aar serve` on `127.0.0.1:0`; the ready line gives the port and the
//!   server fingerprint. Dropping it kills the process.
//! * [`Client`] / [`Connection`]: HTTPS over hyper 1 + tokio-rustls (ring), pinning the server
//!   fingerprint, with an optional client certificate and a configurable TLS version set.
//! * [`PatternBody`]: a deterministic, streamed request body of any size (never held in memory).
#![allow(dead_code)]

use std::fmt;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

pub const BIN: &str = env!("CARGO_BIN_EXE_aar");
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * 1024 * 1024;

/// How long the daemon may take to print its ready line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// Upper bound for any single request made by the helpers.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type Body = BoxBody<Bytes, BoxError>;

// ---------------------------------------------------------------------------------------------
// Hashing
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Deterministic content of any size
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Identities
// ---------------------------------------------------------------------------------------------

pub struct Identity {
    pub name: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    pub fingerprint: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({}, {})", self.name, self.fingerprint)
    }
}

impl Identity {
    pub fn generate(name: &str) -> Identity {
        Identity::generate_with(name, |_| {})
    }

    /// A self-signed certificate valid from `not_before` to `not_after`.
    pub fn generate_valid(
        name: &str,
        not_before: std::time::SystemTime,
        not_after: std::time::SystemTime,
    ) -> Identity {
        Identity::generate_with(name, |params| {
            params.not_before = not_before.into();
            params.not_after = not_after.into();
        })
    }

    fn generate_with(name: &str, adjust: impl FnOnce(&mut rcgen::CertificateParams)) -> Identity {
        let key = rcgen::KeyPair::generate().expect("key pair");
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        adjust(&mut params);
        let cert = params.self_signed(&key).expect("self-signed certificate");
        let der = cert.der().clone();
        Identity {
            name: name.to_string(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            fingerprint: sha256_hex(&der),
            cert_der: der,
            key_der: key.serialize_der(),
        }
    }

    /// Writes the certificate PEM to `<dir>/<name>.crt` and returns the path.
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let p = dir.join(format!("{}-{}.crt", self.name, &self.fingerprint[..8]));
        fs::write(&p, &self.cert_pem).unwrap();
        p
    }
}

macro_rules! identity {
    ($fn:ident, $name:expr) => {
        pub fn $fn() -> &'static Identity {
            static ID: OnceLock<Identity> = OnceLock::new();
            ID.get_or_init(|| Identity::generate($name))
        }
    };
}
identity!(publisher, "publisher");
identity!(client_id, "client");
identity!(untrusted, "untrusted");
identity!(revoked, "revoked");

// ---------------------------------------------------------------------------------------------
// Instances (config + dirs) and the CLI
// ---------------------------------------------------------------------------------------------

fn merge_yaml(base: &mut serde_yaml_ng::Value, over: serde_yaml_ng::Value) {
    use serde_yaml_ng::Value;
    match (base, over) {
        (Value::Mapping(b), Value::Mapping(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(bv) if bv.is_mapping() && v.is_mapping() => merge_yaml(bv, v),
                    _ => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

pub struct Instance {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub state_dir: PathBuf,
    pub root_dir: PathBuf,
    pub config_text: String,
}

impl Instance {
    /// A temp dir holding `config.yaml`, `state/` and `data/`; `overrides` (YAML) is merged
    /// over the base config. `root_dir` replaces the storage root when given.
    pub fn new(overrides: &str, root_dir: Option<&Path>) -> Instance {
        let dir = tempfile::Builder::new()
            .prefix("aar-test-")
            .tempdir()
            .unwrap();
        let state_dir = dir.path().join("state");
        let root = root_dir
            .map(Path::to_path_buf)
            .unwrap_or_else(|| dir.path().join("data"));
        fs::create_dir_all(&state_dir).unwrap();
        fs::create_dir_all(&root).unwrap();
        let base = format!(
            r#"
http:
  addr: 127.0.0.1:0
  shutdown-timeout: 5s
  tls:
    min-version: "1.3"
  limits:
    header-timeout: 10s
    body-timeout: 10s
    max-metadata-size: 64KiB
    max-image-size: 2GiB
state-directory: {state}
storage:
  fs:
    root-directory: {root}
    min-free: 0
gc:
  interval: 1h
  upload-expiry: 24h
"#,
            state = state_dir.display(),
            root = root.display()
        );
        let mut value: serde_yaml_ng::Value = serde_yaml_ng::from_str(&base).unwrap();
        if !overrides.trim().is_empty() {
            let o: serde_yaml_ng::Value =
                serde_yaml_ng::from_str(overrides).expect("overrides must be valid YAML");
            merge_yaml(&mut value, o);
        }
        let config_text = serde_yaml_ng::to_string(&value).unwrap();
        let config_path = dir.path().join("config.yaml");
        fs::write(&config_path, &config_text).unwrap();
        Instance {
            dir,
            config_path,
            state_dir,
            root_dir: root,
            config_text,
        }
    }

    /// `aar <words...> --config FILE` with stdin closed (not a tty).
    pub fn cmd(&self, words: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(words)
            .arg("--config")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .env_remove("AAR_CONFIG");
        c
    }

    pub fn run(&self, words: &[&str], extra: &[&str]) -> Output {
        let out = self.cmd(words).args(extra).output().expect("run aar");
        out
    }

    pub fn trust_add(&self, id: &Identity, publisher: bool) {
        let path = id.write_pem(self.dir.path());
        let mut c = self.cmd(&["trust", "add"]);
        c.arg(&path);
        if publisher {
            c.arg("--publisher");
        }
        let out = c.output().unwrap();
        assert_success(&out, &format!("aar trust add {}", id.name));
    }

    pub fn trust_revoke(&self, fp: &str) {
        let out = self.run(&["trust", "revoke"], &[fp, "--yes"]);
        assert_success(&out, "aar trust revoke --yes");
    }

    pub fn trust_remove(&self, fp: &str) {
        let out = self.run(&["trust", "remove"], &[fp]);
        assert_success(&out, "aar trust remove");
    }

    /// `aar trust list --format json [--revoked]`, parsed.
    pub fn trust_list_json(&self, revoked: bool) -> Value {
        let mut extra = vec!["--format", "json"];
        if revoked {
            extra.push("--revoked");
        }
        let out = self.run(&["trust", "list"], &extra);
        assert_success(&out, "aar trust list --format json");
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "trust list json is not JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })
    }
}

pub fn out_text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(out.status.success(), "{what} failed: {}", out_text(out));
}

/// Every file (not directory) under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(p),
                Ok(_) => out.push(p),
                Err(_) => {}
            }
        }
    }
    out.sort();
    out
}

/// Every path (files and directories) under `dir` whose name starts with `.tmp-`.
pub fn tmp_files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_name().to_string_lossy().starts_with(".tmp-") {
                out.push(p.clone());
            }
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                stack.push(p);
            }
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------------

pub struct DaemonBuilder {
    overrides: String,
    trust: bool,
    revoked: bool,
    root_dir: Option<PathBuf>,
    env: Vec<(String, String)>,
}

impl DaemonBuilder {
    /// Do not trust the publisher and client identities before starting.
    pub fn no_trust(mut self) -> Self {
        self.trust = false;
        self
    }
    /// Trust then revoke [`revoked()`] before starting.
    pub fn with_revoked(mut self) -> Self {
        self.revoked = true;
        self
    }
    pub fn root_dir(mut self, p: &Path) -> Self {
        self.root_dir = Some(p.to_path_buf());
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
    pub fn start(self) -> Daemon {
        let inst = Instance::new(&self.overrides, self.root_dir.as_deref());
        if self.trust {
            inst.trust_add(publisher(), true);
            inst.trust_add(client_id(), false);
        }
        if self.revoked {
            inst.trust_add(revoked(), false);
            inst.trust_revoke(&revoked().fingerprint);
        }
        let mut d = Daemon {
            inst,
            child: None,
            addr: "127.0.0.1:0".parse().unwrap(),
            fingerprint: String::new(),
            ready_line: String::new(),
            env: self.env,
        };
        d.spawn();
        d
    }
}

pub struct Daemon {
    pub inst: Instance,
    child: Option<Child>,
    pub addr: SocketAddr,
    pub fingerprint: String,
    pub ready_line: String,
    env: Vec<(String, String)>,
}

impl Deref for Daemon {
    type Target = Instance;
    fn deref(&self) -> &Instance {
        &self.inst
    }
}

/// Parses `aar <version> serving https://<ip>:<port> (storage fs, server fingerprint <hex>)`.
pub fn parse_ready_line(line: &str) -> Option<(String, SocketAddr, String, String)> {
    let rest = line.strip_prefix("aar ")?;
    let (version, rest) = rest.split_once(" serving https://")?;
    let (addr, rest) = rest.split_once(" (storage ")?;
    let (storage, rest) = rest.split_once(", server fingerprint ")?;
    let fp = rest.strip_suffix(')')?;
    if fp.len() != 64
        || !fp
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    Some((
        version.to_string(),
        addr.parse().ok()?,
        storage.to_string(),
        fp.to_string(),
    ))
}

impl Daemon {
    pub fn builder(overrides: &str) -> DaemonBuilder {
        DaemonBuilder {
            overrides: overrides.to_string(),
            trust: true,
            revoked: false,
            root_dir: None,
            env: Vec::new(),
        }
    }

    /// Starts a daemon with the base config plus `overrides`, publisher and client trusted.
    pub fn start(overrides: &str) -> Daemon {
        Daemon::builder(overrides).start()
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.inst.dir.path().join("daemon.stderr")
    }

    pub fn stderr(&self) -> String {
        fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    fn spawn(&mut self) {
        assert!(self.child.is_none(), "daemon already running");
        let stderr = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.inst.config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .env_remove("AAR_CONFIG");
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn aar serve");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut first = true;
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if first {
                    let _ = tx.send(line);
                    first = false;
                } else {
                    eprintln!("[aar stdout] {line}");
                }
            }
        });
        self.child = Some(child);
        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(l) => l,
            Err(e) => {
                let status = self.child.as_mut().unwrap().try_wait().ok().flatten();
                let _ = self.child.as_mut().unwrap().kill();
                let _ = self.child.as_mut().unwrap().wait();
                self.child = None;
                panic!(
                    "aar serve did not print its ready line ({e:?}, exit status {status:?})\n\
                     --- config\n{}\n--- stderr\n{}",
                    self.inst.config_text,
                    self.stderr()
                );
            }
        };
        let Some((version, addr, storage, fp)) = parse_ready_line(&line) else {
            panic!(
                "unexpected ready line: {line:?}\n--- stderr\n{}",
                self.stderr()
            );
        };
        assert_eq!(version, VERSION, "version in ready line {line:?}");
        assert_eq!(storage, "fs", "storage in ready line {line:?}");
        if !self.fingerprint.is_empty() {
            assert_eq!(
                fp, self.fingerprint,
                "server fingerprint changed across restarts"
            );
        }
        self.addr = addr;
        self.fingerprint = fp;
        self.ready_line = line;
    }

    /// Sends `signal` (name as for `kill -s`, e.g. `TERM`) to the daemon.
    pub fn signal(&self, signal: &str) {
        let st = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(st.success(), "kill -s {signal} failed");
    }

    /// Waits for the daemon to exit (up to `timeout`); `None` if it is still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Some(st) = child.try_wait().unwrap() {
                self.child = None;
                return Some(st);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` and waits (30 s at most) for the daemon to exit.
    pub fn stop_with(&mut self, signal: &str) -> ExitStatus {
        self.signal(signal);
        match self.wait_exit(Duration::from_secs(30)) {
            Some(st) => st,
            None => panic!(
                "daemon still running 30 s after SIG{signal}\n--- stderr\n{}",
                self.stderr()
            ),
        }
    }

    /// SIGKILL.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => c.try_wait().unwrap().is_none(),
            None => false,
        }
    }

    /// Starts the daemon again with the same config and directories (stops it first with
    /// SIGTERM if it is still running). The port may change.
    pub fn restart(&mut self) {
        if self.is_running() {
            self.stop_with("TERM");
        }
        self.child = None;
        self.spawn();
    }

    pub fn client(&self, id: Option<&Identity>) -> Client {
        Client::new(self.addr, &self.fingerprint, id, ALL_VERSIONS)
    }
    pub fn publisher(&self) -> Client {
        self.client(Some(publisher()))
    }
    pub fn reader(&self) -> Client {
        self.client(Some(client_id()))
    }
    pub fn anonymous(&self) -> Client {
        self.client(None)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if std::thread::panicking() {
            let s = self.stderr();
            let tail: String = if s.len() > 8000 {
                s[s.len() - 8000..].to_string()
            } else {
                s
            };
            eprintln!(
                "--- aar daemon stderr (tail) [{}]\n{tail}",
                self.inst.dir.path().display()
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTPS client
// ---------------------------------------------------------------------------------------------

pub static ALL_VERSIONS: &[&SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];
pub static TLS12_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS12];
pub static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];

/// Accepts exactly the server certificate whose SHA-256 is the pinned fingerprint.
#[derive(Debug)]
struct PinnedServer {
    fingerprint: String,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedServer {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let got = sha256_hex(end_entity);
        if got == self.fingerprint {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(format!(
                "server fingerprint {got} is not the pinned {}",
                self.fingerprint
            )))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Clone)]
pub struct Client {
    pub addr: SocketAddr,
    config: Arc<ClientConfig>,
}

/// A response whose body has been read entirely.
#[derive(Debug)]
pub struct Resp {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| v.to_str().expect("ascii header").to_string())
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "response ({}) is not JSON ({e}): {:?}",
                self.status,
                self.text()
            )
        })
    }
    pub fn metadata(&self) -> Value {
        self.json()["metadata"].clone()
    }
    /// The envelope's `error` text.
    pub fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected status; body: {}",
            self.text()
        );
        self
    }
    /// Asserts an error envelope with `status` and returns its lowercased error text.
    #[track_caller]
    pub fn expect_error(&self, status: u16) -> String {
        self.expect(status);
        let j = self.json();
        assert_eq!(j["type"], "error", "error envelope: {j}");
        assert_eq!(j["error_code"], status, "error envelope: {j}");
        let e = j["error"].as_str().unwrap_or_default().to_string();
        assert!(!e.is_empty(), "error text must not be empty: {j}");
        e.to_lowercase()
    }
}

pub fn request(method: Method, path: &str) -> hyper::http::request::Builder {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1")
}

pub async fn read_body(resp: Response<Incoming>) -> Result<Resp, BoxError> {
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Resp {
        status: parts.status,
        headers: parts.headers,
        body,
    })
}

/// Streams a response body into SHA-256, returning (bytes, `sha256:<hex>`).
pub async fn hash_body(resp: Response<Incoming>) -> Result<(u64, String), BoxError> {
    let mut body = resp.into_body();
    let mut h = Hasher::default();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame?.into_data() {
            n += data.len() as u64;
            h.update(&data);
        }
    }
    Ok((n, format!("sha256:{}", h.finish_hex())))
}

/// One HTTP/1.1 connection, for several requests on the same kept-alive connection.
pub struct Connection {
    sender: SendRequest<Body>,
    task: tokio::task::JoinHandle<()>,
}

impl Connection {
    pub async fn send(&mut self, req: Request<Body>) -> Result<Response<Incoming>, BoxError> {
        self.sender.ready().await?;
        Ok(self.sender.send_request(req).await?)
    }
    pub async fn call(&mut self, req: Request<Body>) -> Result<Resp, BoxError> {
        let r = tokio::time::timeout(REQUEST_TIMEOUT, async {
            let resp = self.send(req).await?;
            read_body(resp).await
        })
        .await;
        r.map_err(|_| "request timed out")?
    }
    pub async fn get(&mut self, path: &str) -> Resp {
        self.call(request(Method::GET, path).body(empty_body()).unwrap())
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }
    pub fn is_closed(&self) -> bool {
        self.sender.is_closed()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Client {
    pub fn new(
        addr: SocketAddr,
        fingerprint: &str,
        id: Option<&Identity>,
        versions: &[&'static SupportedProtocolVersion],
    ) -> Client {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(versions)
            .expect("protocol versions")
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedServer {
                fingerprint: fingerprint.to_string(),
                provider,
            }));
        let config = match id {
            Some(id) => builder
                .with_client_auth_cert(
                    vec![id.cert_der.clone()],
                    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der.clone())),
                )
                .expect("client certificate"),
            None => builder.with_no_client_auth(),
        };
        Client {
            addr,
            config: Arc::new(config),
        }
    }

    /// A TLS stream to the daemon (handshake done).
    pub async fn tls(&self) -> std::io::Result<TlsStream<TcpStream>> {
        let tcp = TcpStream::connect(self.addr).await?;
        tcp.set_nodelay(true)?;
        let name = ServerName::from(self.addr.ip());
        TlsConnector::from(self.config.clone())
            .connect(name, tcp)
            .await
    }

    pub async fn connect(&self) -> Result<Connection, BoxError> {
        let tls = tokio::time::timeout(Duration::from_secs(30), self.tls())
            .await
            .map_err(|_| "TLS handshake timed out")??;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok(Connection { sender, task })
    }

    /// Sends `req` on a new connection and reads the whole response.
    pub async fn call(&self, req: Request<Body>) -> Result<Resp, BoxError> {
        let mut c = self.connect().await?;
        c.call(req).await
    }

    /// Sends `req` on a new connection; the body is left to the caller.
    pub async fn send(
        &self,
        req: Request<Body>,
    ) -> Result<(Connection, Response<Incoming>), BoxError> {
        let mut c = self.connect().await?;
        let r = c.send(req).await?;
        Ok((c, r))
    }

    pub async fn req(&self, method: Method, path: &str) -> Resp {
        self.req_with(method, path, &[], empty_body()).await
    }

    pub async fn req_with(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Body,
    ) -> Resp {
        let mut b = request(method.clone(), path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        self.call(b.body(body).unwrap())
            .await
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.req(Method::GET, path).await
    }

    pub async fn get_json(&self, path: &str) -> (StatusCode, Value) {
        let r = self.get(path).await;
        let j = r.json();
        (r.status, j)
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.req(Method::DELETE, path).await
    }

    /// `POST /1.0/uploads` for `digest`/`size`.
    pub async fn create_upload(&self, digest: &str, size: u64) -> Resp {
        self.req_with(
            Method::POST,
            "/1.0/uploads",
            &[("x-aar-digest", digest), ("x-aar-size", &size.to_string())],
            empty_body(),
        )
        .await
    }

    /// `PATCH /1.0/uploads/{id}` at `offset` with `body` of `len` bytes.
    pub async fn patch_upload(&self, id: &str, offset: u64, len: u64, body: Body) -> Resp {
        self.req_with(
            Method::PATCH,
            &format!("/1.0/uploads/{id}"),
            &[
                ("upload-offset", &offset.to_string()),
                ("content-length", &len.to_string()),
                ("content-type", "application/octet-stream"),
            ],
            body,
        )
        .await
    }

    /// Uploads `data` in one PATCH; returns its digest. Panics unless the upload completes.
    pub async fn upload(&self, data: &[u8]) -> String {
        let digest = digest_of(data);
        let r = self.create_upload(&digest, data.len() as u64).await;
        match r.status.as_u16() {
            200 => {
                assert_eq!(r.metadata()["complete"], true, "{}", r.text());
            }
            201 => {
                let id = upload_id(&r);
                let p = self
                    .patch_upload(&id, 0, data.len() as u64, full_body(data.to_vec()))
                    .await;
                p.expect(200);
                assert_eq!(p.metadata()["complete"], true, "{}", p.text());
            }
            _ => panic!("POST /1.0/uploads: {} {}", r.status, r.text()),
        }
        digest
    }

    /// Uploads `size` bytes of pattern `seed`, streamed; returns the digest.
    pub async fn upload_pattern(&self, seed: u64, size: u64) -> String {
        let digest = pattern_digest(seed, size);
        let r = self.create_upload(&digest, size).await;
        if r.status == StatusCode::OK {
            return digest;
        }
        r.expect(201);
        let id = upload_id(&r);
        let p = self
            .patch_upload(&id, 0, size, PatternBody::new(seed, 0, size).boxed())
            .await;
        p.expect(200);
        assert_eq!(p.metadata()["complete"], true, "{}", p.text());
        digest
    }

    /// Uploads a file, streamed; returns the digest. Panics unless the upload completes.
    pub async fn upload_file(&self, path: &Path) -> String {
        let (digest, size) = file_digest(path);
        let r = self.create_upload(&digest, size).await;
        if r.status == StatusCode::OK {
            return digest;
        }
        r.expect(201);
        let id = upload_id(&r);
        let body = FileBody::open(path).unwrap().boxed();
        let p = self.patch_upload(&id, 0, size, body).await;
        p.expect(200);
        assert_eq!(p.metadata()["complete"], true, "{}", p.text());
        digest
    }

    /// `POST /1.0/applications/{name}/versions`.
    pub async fn publish(
        &self,
        name: &str,
        version: Option<u64>,
        manifest: &str,
        images: &[(&str, &str)],
    ) -> Resp {
        let mut imgs = serde_json::Map::new();
        for (arch, digest) in images {
            imgs.insert(arch.to_string(), json!(digest));
        }
        let mut body = json!({"manifest": manifest, "images": imgs});
        if let Some(v) = version {
            body["version"] = json!(v);
        }
        self.req_with(
            Method::POST,
            &format!("/1.0/applications/{name}/versions"),
            &[("content-type", "application/json")],
            full_body(serde_json::to_vec(&body).unwrap()),
        )
        .await
    }

    /// Uploads one small distinct image per architecture and publishes them; returns the
    /// version object (metadata) and the digests.
    pub async fn publish_simple(
        &self,
        name: &str,
        version: Option<u64>,
        tags: &[&str],
        arches: &[&str],
    ) -> (Value, Vec<(String, Vec<u8>)>) {
        let mut images = Vec::new();
        for arch in arches {
            let data = format!("image of {name} version {version:?} for {arch}\n").repeat(50);
            let d = self.upload(data.as_bytes()).await;
            images.push((arch.to_string(), d, data.into_bytes()));
        }
        let refs: Vec<(&str, &str)> = images
            .iter()
            .map(|(a, d, _)| (a.as_str(), d.as_str()))
            .collect();
        let r = self
            .publish(name, version, &manifest(name, tags), &refs)
            .await;
        r.expect(201);
        (
            r.metadata(),
            images.into_iter().map(|(a, _, b)| (a, b)).collect(),
        )
    }
}

pub fn upload_id(r: &Resp) -> String {
    let m = r.metadata();
    let id = m["id"]
        .as_str()
        .unwrap_or_else(|| panic!("upload without id: {}", r.text()))
        .to_string();
    if let Some(loc) = r.header("location") {
        assert_eq!(loc, format!("/1.0/uploads/{id}"), "Location header");
    }
    id
}

/// The version numbers of an application object, from the keys of its `versions` object
/// (`{"1": {…}, "2": {…}}`, the shape AMS decodes into a `map[int]`), in order.
pub fn version_numbers(app: &Value) -> Vec<u64> {
    let mut numbers: Vec<u64> = app["versions"]
        .as_object()
        .unwrap_or_else(|| panic!("versions is an object keyed by number: {app}"))
        .keys()
        .map(|k| {
            k.parse()
                .unwrap_or_else(|_| panic!("version key {k:?}: {app}"))
        })
        .collect();
    numbers.sort_unstable();
    numbers
}

/// An AMS-style application manifest.
pub fn manifest(name: &str, tags: &[&str]) -> String {
    let mut m = format!(
        "name: {name}\ninstance-type: a2.3\nboot-package: com.example.{}\n",
        name.replace(['-', '_'], ".")
    );
    if !tags.is_empty() {
        m.push_str("tags:\n");
        for t in tags {
            m.push_str(&format!("  - {t}\n"));
        }
    }
    m.push_str("resources:\n  cpus: 2\n  memory: 3GB\nx-custom-key: kept verbatim # comment\n");
    m
}

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads a file into a string, or "" if it does not exist.
pub fn read_string(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}
