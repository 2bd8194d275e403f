//! HTTPS to the daemon over hyper 1 + tokio-rustls (ring), pinning the server fingerprint,
//! with an optional client certificate and a chosen set of TLS versions; and plain HTTP for
//! following redirects to an S3 server.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme, SupportedProtocolVersion};
use serde_json::Value;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::{empty_body, sha256_hex, Body, BoxError, Hasher, Identity, REQUEST_TIMEOUT};

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
}

/// A plain-HTTP GET of an absolute `http://` URL (an S3 server or a test edge), as a
/// client following a redirect makes it.
pub async fn plain_get(url: &str, headers: &[(&str, &str)]) -> Resp {
    let uri: hyper::Uri = url.parse().unwrap();
    assert_eq!(uri.scheme_str(), Some("http"), "{url}");
    let authority = uri.authority().unwrap().as_str().to_owned();
    let tcp = TcpStream::connect(&authority).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let task = tokio::spawn(conn);
    let mut req = Request::builder()
        .uri(uri.path_and_query().unwrap().as_str())
        .header("host", &authority);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender.send_request(req.body(empty_body()).unwrap()).await;
    let resp = read_body(resp.unwrap_or_else(|e| panic!("GET {url}: {e}")))
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    task.abort();
    resp
}
