//! A real S3 server on loopback: `s3s-fs` (the file-system S3 server of the `s3s` project)
//! with `SimpleAuth`, so every request's SigV4 signature (header or presigned query) is
//! verified. It runs on its own thread and runtime so that a test can stop it (every
//! connection dies with it) and start it again on the same port, as an outage and a recovery.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

use super::files_under;

pub const ACCESS_KEY: &str = "AKIAAARTESTKEY000001";
pub const SECRET_KEY: &str = "aarTestSecretKey/ForTheLoopbackS3Server+0";
pub const BUCKET: &str = "aar0";
pub const REGION: &str = "us-east-1";

pub struct S3Server {
    pub root: PathBuf,
    pub addr: SocketAddr,
    /// PEM of the server's self-signed certificate when it serves HTTPS.
    pub certificate: Option<String>,
    tls: Option<Arc<rustls::ServerConfig>>,
    /// Requests served so far, by operation name (`GetObject`, …).
    served: Served,
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
            Served::default(),
        );
        server._dir = Some(dir);
        server
    }

    fn serve(
        root: PathBuf,
        addr: SocketAddr,
        denied: Vec<&'static str>,
        tls: Option<Arc<rustls::ServerConfig>>,
        served: Served,
    ) -> S3Server {
        let acceptor = tls.clone().map(tokio_rustls::TlsAcceptor::from);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let served_root = root.clone();
        let counted = served.clone();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let fs = s3s_fs::FileSystem::new(&served_root).unwrap();
                let mut builder = s3s::service::S3ServiceBuilder::new(fs);
                builder.set_auth(s3s::auth::SimpleAuth::from_single(ACCESS_KEY, SECRET_KEY));
                builder.set_access(Deny(denied, counted));
                let service = Atomic::new(builder.build());
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
            served,
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
        let mut again = S3Server::serve(
            self.root.clone(),
            self.addr,
            Vec::new(),
            self.tls.clone(),
            self.served.clone(),
        );
        self.stop = again.stop.take();
        self.thread = again.thread.take();
    }

    /// How many `op` requests (`GetObject`, …) the server has answered or refused.
    pub fn served(&self, op: &str) -> usize {
        self.served.lock().unwrap().get(op).copied().unwrap_or(0)
    }

    /// The file of an object, as s3s-fs keeps it.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join(key)
    }

    /// Keys under `prefix` (files of the bucket directory; s3s-fs keeps its own metadata
    /// in dot-files, which are skipped).
    pub fn keys(&self, prefix: &str) -> Vec<String> {
        let bucket = self.root.join(BUCKET);
        let mut keys: Vec<String> = files_under(&bucket)
            .into_iter()
            .filter_map(|path| {
                let key = path.strip_prefix(&bucket).unwrap();
                let hidden = key
                    .components()
                    .any(|c| c.as_os_str().to_string_lossy().starts_with('.'));
                let key = key.to_string_lossy().into_owned();
                (!hidden && key.starts_with(prefix)).then_some(key)
            })
            .collect();
        keys.sort();
        keys
    }

    /// The daemon's S3 backend on this server, as the registry opens it.
    pub async fn storage(&self) -> Arc<dyn aar::storage::Storage> {
        let config = aar::config::S3Config {
            access_key: Some(ACCESS_KEY.into()),
            secret_access_key: Some(aar::config::Secret::new(SECRET_KEY)),
            endpoint: Some(self.endpoint()),
            path_style: true,
            ..aar::config::S3Config::new(REGION, BUCKET)
        };
        Arc::new(aar::storage::s3::S3Storage::open(&config).await.unwrap())
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
/// s3s-fs checks a write's `If-Match` / `If-None-Match` and then writes, in two steps, so
/// two conditional writes of one key can both pass their check. S3 does both at once (a
/// conditional write racing another fails with 412 or 409), and the registry's
/// read-modify-write of its trust store relies on that: this service runs conditional
/// writes one at a time, so the test server keeps S3's promise.
#[derive(Clone)]
struct Atomic {
    inner: s3s::service::S3Service,
    writes: Arc<tokio::sync::Mutex<()>>,
}

impl Atomic {
    fn new(inner: s3s::service::S3Service) -> Atomic {
        Atomic {
            inner,
            writes: Arc::default(),
        }
    }
}

impl hyper::service::Service<hyper::Request<hyper::body::Incoming>> for Atomic {
    type Response = <s3s::service::S3Service as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Response;
    type Error = <s3s::service::S3Service as hyper::service::Service<
        hyper::Request<hyper::body::Incoming>,
    >>::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn call(&self, request: hyper::Request<hyper::body::Incoming>) -> Self::Future {
        let conditional = request.method() == hyper::Method::PUT
            && (request.headers().contains_key("if-match")
                || request.headers().contains_key("if-none-match"));
        let this = self.clone();
        Box::pin(async move {
            let _one_at_a_time = match conditional {
                true => Some(this.writes.lock().await),
                false => None,
            };
            hyper::service::Service::call(&this.inner, request).await
        })
    }
}

/// Requests by operation name, counted as they are checked.
type Served = Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>;

struct Deny(Vec<&'static str>, Served);

#[async_trait::async_trait]
impl s3s::access::S3Access for Deny {
    async fn check(&self, cx: &mut s3s::access::S3AccessContext<'_>) -> s3s::S3Result<()> {
        let op = cx.s3_op().name().to_owned();
        *self.1.lock().unwrap().entry(op).or_default() += 1;
        if cx.credentials().is_none() {
            return Err(s3s::s3_error!(AccessDenied, "Signature is required"));
        }
        if self.0.contains(&cx.s3_op().name()) {
            return Err(s3s::s3_error!(AccessDenied, "Access Denied"));
        }
        Ok(())
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

/// The `storage:` section for `server` with `secret` as the secret key, plus `extra` lines
/// under `s3:` (indented by four spaces).
pub fn s3_storage(server: &S3Server, secret: &str, extra: &str) -> String {
    format!(
        "storage:\n  s3:\n    region: {REGION}\n    bucket: {BUCKET}\n    access-key: {ACCESS_KEY}\n    \
         secret-access-key: {secret}\n    endpoint: {}\n    path-style: true\n{extra}",
        server.endpoint()
    )
}
