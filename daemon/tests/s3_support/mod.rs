//! Test support for the S3 backend: a real S3 server on loopback and the `aar` binary
//! configured against it.
//!
//! * [`S3Server`]: `s3s-fs` (the file-system S3 server of the `s3s` project) with
//!   `SimpleAuth`, so every request's SigV4 signature (header or presigned query) is
//!   verified, served over plain HTTP on `127.0.0.1`. It runs on its own thread and
//!   runtime so that a test can stop it (every connection dies with it) and start it
//!   again on the same port, as an outage and a recovery.
//! * [`Aar`]: `aar serve` with an `s3` storage section, a publisher and a client trusted.
//! * [`Https`]: a small mTLS client (hyper + tokio-rustls) for the registry, and
//!   [`plain_get`] for following redirects to the S3 server.
//!
//! Kept apart from `tests/common` (the file-system harness) so the S3 tests depend only on
//! what they need; nothing here is specific to a test.
#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_aar");
pub const ACCESS_KEY: &str = "AKIAAARTESTKEY000001";
pub const SECRET_KEY: &str = "aarTestSecretKey/ForTheLoopbackS3Server+0";
pub const BUCKET: &str = "aar0";
pub const REGION: &str = "us-east-1";
pub const MIB: usize = 1 << 20;

// ---------------------------------------------------------------------------------------
// The S3 server
// ---------------------------------------------------------------------------------------

pub struct S3Server {
    pub root: PathBuf,
    pub addr: SocketAddr,
    /// PEM of the server's self-signed certificate when it serves HTTPS.
    pub certificate: Option<String>,
    tls: Option<Arc<rustls::ServerConfig>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl S3Server {
    /// A fresh server with an empty bucket [`BUCKET`], on a free port.
    pub fn start() -> S3Server {
        S3Server::start_denying(&[])
    }

    /// As [`S3Server::start`], answering `AccessDenied` to the operations named (as an
    /// IAM policy without their permission would).
    pub fn start_denying(ops: &[&'static str]) -> S3Server {
        S3Server::start_with(ops, None)
    }

    /// As [`S3Server::start`], over HTTPS with a self-signed certificate for 127.0.0.1
    /// (in [`S3Server::certificate`]).
    pub fn start_tls() -> S3Server {
        let key = rcgen::KeyPair::generate().unwrap();
        let params =
            rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
                .unwrap();
        let cert = params.self_signed(&key).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .unwrap();
        let mut server = S3Server::start_with(&[], Some(Arc::new(config)));
        server.certificate = Some(cert.pem());
        server
    }

    fn start_with(ops: &[&'static str], tls: Option<Arc<rustls::ServerConfig>>) -> S3Server {
        let dir = tempfile::Builder::new()
            .prefix("aar-s3-")
            .tempdir()
            .unwrap();
        std::fs::create_dir_all(dir.path().join(BUCKET)).unwrap();
        let mut server = S3Server::serve(
            dir.path().to_owned(),
            "127.0.0.1:0".parse().unwrap(),
            ops.to_vec(),
            tls,
        );
        server._dir = Some(dir);
        server
    }

    fn serve(
        root: PathBuf,
        addr: SocketAddr,
        denied: Vec<&'static str>,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> S3Server {
        let acceptor = tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served = root.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let fs = s3s_fs::FileSystem::new(&served).unwrap();
                let mut builder = s3s::service::S3ServiceBuilder::new(fs);
                builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
                builder.set_access(Deny(denied));
                let service = builder.build();
                let listener = bind_retrying(addr).await;
                ready_tx.send(listener.local_addr().unwrap()).unwrap();
                let mut stop_rx = stop_rx;
                loop {
                    let (socket, _) = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok(a) => a,
                            Err(_) => continue,
                        },
                        _ = &mut stop_rx => break,
                    };
                    let service = service.clone();
                    let acceptor = acceptor.clone();
                    tokio::spawn(async move {
                        let http = hyper::server::conn::http1::Builder::new();
                        let _ = match acceptor {
                            Some(acceptor) => match acceptor.accept(socket).await {
                                Ok(tls) => http.serve_connection(TokioIo::new(tls), service).await,
                                Err(_) => return,
                            },
                            None => http.serve_connection(TokioIo::new(socket), service).await,
                        };
                    });
                }
            });
            // Dropping the runtime ends every connection task: the server is gone.
            runtime.shutdown_timeout(Duration::from_secs(1));
        });
        let addr = ready_rx
            .recv_timeout(Duration::from_secs(20))
            .expect("S3 server started");
        S3Server {
            root,
            addr,
            certificate: None,
            tls,
            stop: Some(stop_tx),
            thread: Some(thread),
            _dir: None,
        }
    }

    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Stops serving (connections are dropped, the port is closed).
    pub fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }

    /// Serves again, same port, same data.
    pub fn resume(&mut self) {
        assert!(self.thread.is_none(), "still serving");
        let mut again = S3Server::serve(self.root.clone(), self.addr, Vec::new(), self.tls.clone());
        self.stop = again.stop.take();
        self.thread = again.thread.take();
    }

    /// The file of an object, as s3s-fs keeps it.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(key)
    }

    /// Keys under `prefix` (files of the bucket directory; s3s-fs keeps its own metadata
    /// in dot-files, which are skipped).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let mut out = Vec::new();
        let bucket = self.root.join(BUCKET);
        walk(&bucket, &bucket, &mut out);
        out.retain(|k| k.starts_with(prefix));
        out.sort();
        out
    }

    /// An SDK client of the server, for tests that inspect or change the bucket directly.
    pub async fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .region(aws_sdk_s3::config::Region::new(REGION))
            .endpoint_url(self.endpoint())
            .force_path_style(true)
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                ACCESS_KEY, SECRET_KEY, None, None, "test",
            ))
            .http_client(
                aws_smithy_http_client::Builder::new()
                    .tls_provider(aws_smithy_http_client::tls::Provider::Rustls(
                        aws_smithy_http_client::tls::rustls_provider::CryptoMode::Ring,
                    ))
                    .build_https(),
            )
            .request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            )
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }
}

/// Refuses unsigned requests (as s3s does by default) and the operations listed.
struct Deny(Vec<&'static str>);

#[async_trait::async_trait]
impl s3s::access::S3Access for Deny {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        if cx.credentials().is_none() {
            return Err(s3s::s3_error!(AccessDenied, "Signature is required"));
        }
        if self.0.contains(&cx.s3_op().name()) {
            return Err(s3s::s3_error!(AccessDenied, "Access Denied"));
        }
        Ok(())
    }
}

fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        if path.is_dir() {
            walk(base, &path, out);
        } else {
            out.push(
                path.strip_prefix(base)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
}

async fn bind_retrying(addr: SocketAddr) -> tokio::net::TcpListener {
    // Rebinding the port a stopped server used may race its sockets' teardown.
    for _ in 0..100 {
        if let Ok(listener) = tokio::net::TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("cannot bind {addr}");
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}

// ---------------------------------------------------------------------------------------
// Identities
// ---------------------------------------------------------------------------------------

pub struct Identity {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    pub key_der: Vec<u8>,
}

impl Identity {
    pub fn generate(name: &str) -> Identity {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        Identity {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            key_der: key.serialize_der(),
        }
    }
}

// ---------------------------------------------------------------------------------------
// The daemon
// ---------------------------------------------------------------------------------------

pub struct Aar {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub addr: SocketAddr,
    pub fingerprint: String,
    pub publisher: Arc<Identity>,
    pub client: Arc<Identity>,
    child: Option<Child>,
    env: Vec<(String, Option<String>)>,
}

/// The `storage:` section for `server` (presigned URLs valid `presign`), plus `extra`
/// lines under `s3:` (indented by four spaces).
pub fn s3_storage(server: &S3Server, secret: &str, extra: &str) -> String {
    format!(
        "storage:\n  s3:\n    region: {REGION}\n    bucket: {BUCKET}\n    access-key: {ACCESS_KEY}\n    \
         secret-access-key: {secret}\n    endpoint: {}\n    path-style: true\n{extra}",
        server.endpoint()
    )
}

impl Aar {
    /// Writes the config (`storage` is a `storage:` section), trusts a publisher and a
    /// client. Not started.
    pub fn prepare(storage: &str) -> Aar {
        let dir = tempfile::Builder::new()
            .prefix("aar-s3-daemon-")
            .tempdir()
            .unwrap();
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        let config = dir.path().join("config.yaml");
        std::fs::write(
            &config,
            format!(
                "http:\n  addr: 127.0.0.1:0\n  shutdown-timeout: 2s\nstate-directory: {}\n{storage}\n",
                state.display()
            ),
        )
        .unwrap();
        let aar = Aar {
            dir,
            config,
            addr: "127.0.0.1:0".parse().unwrap(),
            fingerprint: String::new(),
            publisher: Arc::new(Identity::generate("publisher")),
            client: Arc::new(Identity::generate("client")),
            child: None,
            env: Vec::new(),
        };
        aar.trust(&aar.publisher, true);
        aar.trust(&aar.client, false);
        aar
    }

    pub fn env(mut self, key: &str, value: Option<&str>) -> Self {
        self.env.push((key.to_owned(), value.map(str::to_owned)));
        self
    }

    fn trust(&self, id: &Identity, publisher: bool) {
        let path = self.dir.path().join(format!("trust-{}.pem", publisher));
        std::fs::write(&path, &id.cert_pem).unwrap();
        let mut cmd = Command::new(BIN);
        cmd.args(["trust", "add"]).arg(&path);
        if publisher {
            cmd.arg("--publisher");
        }
        let out = cmd
            .arg("--config")
            .arg(&self.config)
            .env_remove("AAR_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "aar trust add: {out:?}");
    }

    fn stderr_path(&self) -> PathBuf {
        self.dir.path().join("stderr.log")
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.stderr_path()).unwrap_or_default()
    }

    /// Starts `aar serve`; `Err(stderr)` if it exits before its ready line.
    pub fn try_start(&mut self) -> Result<(), String> {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.stderr_path())
            .unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("serve")
            .arg("--config")
            .arg(&self.config)
            .env_remove("AAR_CONFIG")
            .env("AAR_LOG", "info,aar=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        for (k, v) in &self.env {
            match v {
                Some(v) => cmd.env(k, v),
                None => cmd.env_remove(k),
            };
        }
        let mut child = cmd.spawn().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = tx.send(lines.next().and_then(Result::ok));
            for _ in lines {}
        });
        let line = rx.recv_timeout(Duration::from_secs(60)).ok().flatten();
        let Some(line) = line else {
            let _ = child.kill();
            let status = child.wait().unwrap();
            return Err(format!("exit {status}: {}", self.stderr()));
        };
        // `aar <version> serving https://<addr> (storage s3, server fingerprint <hex>)`
        let addr = line
            .split("https://")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .unwrap_or_else(|| panic!("ready line {line:?}"));
        assert!(line.contains("(storage s3,"), "{line}");
        self.addr = addr.parse().unwrap();
        self.fingerprint = line
            .trim_end_matches(')')
            .rsplit(' ')
            .next()
            .unwrap()
            .to_owned();
        self.child = Some(child);
        Ok(())
    }

    pub fn start(mut self) -> Aar {
        if let Err(e) = self.try_start() {
            panic!("aar serve failed to start: {e}");
        }
        self
    }

    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn publisher(&self) -> Https {
        Https::new(self.addr, self.publisher.clone())
    }

    pub fn reader(&self) -> Https {
        Https::new(self.addr, self.client.clone())
    }
}

impl Drop for Aar {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("--- aar stderr\n{}", self.stderr());
        }
    }
}

// ---------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------

/// The registry's certificate is self-signed and pinned by the tests that care; this
/// client only needs the connection.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

pub struct Response {
    pub status: StatusCode,
    pub headers: hyper::HeaderMap,
    pub body: Bytes,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("{} not JSON ({e}): {:?}", self.status, self.text()))
    }
    pub fn metadata(&self) -> serde_json::Value {
        self.json()["metadata"].clone()
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

pub struct Https {
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
}

impl Https {
    pub fn new(addr: SocketAddr, id: Arc<Identity>) -> Https {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
            .with_client_auth_cert(
                vec![CertificateDer::from(id.cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.key_der.clone())),
            )
            .unwrap();
        Https {
            addr,
            config: Arc::new(config),
        }
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> Response {
        let tcp = tokio::net::TcpStream::connect(self.addr).await.unwrap();
        let tls = tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(ServerName::try_from("localhost").unwrap(), tcp)
            .await
            .unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .unwrap();
        tokio::spawn(conn);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("host", "localhost");
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        let response = sender
            .send_request(request.body(Full::new(body.into())).unwrap())
            .await
            .unwrap();
        let (parts, body) = response.into_parts();
        Response {
            status: parts.status,
            headers: parts.headers,
            body: body.collect().await.unwrap().to_bytes(),
        }
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(Method::GET, path, &[], Bytes::new()).await
    }

    /// `POST /1.0/uploads`; returns the upload id (empty when the blob exists).
    pub async fn create_upload(&self, data: &[u8]) -> Response {
        let digest = digest_of(data);
        let size = data.len().to_string();
        self.request(
            Method::POST,
            "/1.0/uploads",
            &[("x-aar-digest", &digest), ("x-aar-size", &size)],
            Bytes::new(),
        )
        .await
    }

    pub async fn patch(&self, id: &str, offset: u64, data: Bytes) -> Response {
        self.request(
            Method::PATCH,
            &format!("/1.0/uploads/{id}"),
            &[("upload-offset", &offset.to_string())],
            data,
        )
        .await
    }

    /// Uploads `data` in PATCHes of `chunk` bytes; returns the digest.
    pub async fn upload(&self, data: &[u8], chunk: usize) -> String {
        let created = self.create_upload(data).await;
        let meta = created.metadata();
        if meta["complete"] == true {
            return digest_of(data);
        }
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text());
        let id = meta["id"].as_str().unwrap().to_owned();
        let mut offset = 0;
        let mut last = None;
        for piece in data.chunks(chunk.max(1)) {
            let r = self.patch(&id, offset, Bytes::copy_from_slice(piece)).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.text());
            offset += piece.len() as u64;
            assert_eq!(r.metadata()["offset"], offset);
            last = Some(r);
        }
        assert_eq!(last.unwrap().metadata()["complete"], true);
        digest_of(data)
    }

    pub async fn publish(&self, name: &str, version: u32, images: &[(&str, &str)]) -> Response {
        let images: serde_json::Map<String, serde_json::Value> = images
            .iter()
            .map(|(arch, digest)| (arch.to_string(), serde_json::json!(digest)))
            .collect();
        let body = serde_json::json!({
            "version": version,
            "manifest": format!("name: {name}\ninstance-type: a2.3\ntags: [s3]\n"),
            "images": images,
        });
        self.request(
            Method::POST,
            &format!("/1.0/applications/{name}/versions"),
            &[("content-type", "application/json")],
            serde_json::to_vec(&body).unwrap(),
        )
        .await
    }
}

/// A plain-HTTP GET of an absolute `http://` URL (the S3 server or the test edge).
pub async fn plain_get(url: &str, headers: &[(&str, &str)]) -> Response {
    let uri: hyper::Uri = url.parse().unwrap();
    assert_eq!(uri.scheme_str(), Some("http"), "{url}");
    let authority = uri.authority().unwrap().as_str().to_owned();
    let tcp = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut request = Request::builder()
        .uri(uri.path_and_query().unwrap().as_str())
        .header("host", &authority);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = sender
        .send_request(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let (parts, body) = response.into_parts();
    Response {
        status: parts.status,
        headers: parts.headers,
        body: body.collect().await.unwrap().to_bytes(),
    }
}

pub fn digest_of(data: &[u8]) -> String {
    use sha2::Digest as _;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

/// Deterministic bytes that do not repeat within a part.
pub fn pattern(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}
