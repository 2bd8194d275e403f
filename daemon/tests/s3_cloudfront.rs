//! CloudFront signed URLs, proved with implementations that share nothing with the
//! daemon's: the `openssl` command line verifies the signature over the exact canned
//! policy, and a loopback "edge" (signature checked with *ring*, expiry with the clock)
//! serves the object from the S3 server, so the whole redirect chain runs end to end.
//! Keys are made by `openssl` in PKCS#1 and PKCS#8 form.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Sizes here index byte slices.
const MIB: usize = common::MIB as usize;

const KEYPAIR_ID: &str = "K2JCJMDEHXQW5F";

fn openssl(args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command line is needed by this test (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {out:?}");
    out
}

/// An RSA key pair in `dir`: the private key in PKCS#1 or PKCS#8 PEM, the public key as
/// PEM (for openssl) and as PKCS#1 DER (for ring).
struct KeyPair {
    private_pem: String,
    public_pem: PathBuf,
    public_der: Vec<u8>,
}

fn key_pair(dir: &Path, pkcs8: bool) -> KeyPair {
    let private = dir.join(if pkcs8 { "key8.pem" } else { "key1.pem" });
    let p = private.to_str().unwrap();
    if pkcs8 {
        openssl(&[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            p,
        ]);
    } else {
        openssl(&["genrsa", "-traditional", "-out", p, "2048"]);
    }
    let private_pem = std::fs::read_to_string(&private).unwrap();
    let marker = if pkcs8 {
        "BEGIN PRIVATE KEY"
    } else {
        "BEGIN RSA PRIVATE KEY"
    };
    assert!(private_pem.contains(marker), "{marker}");
    let public_pem = dir.join(if pkcs8 { "pub8.pem" } else { "pub1.pem" });
    openssl(&[
        "rsa",
        "-in",
        p,
        "-pubout",
        "-out",
        public_pem.to_str().unwrap(),
    ]);
    let der = openssl(&["rsa", "-in", p, "-RSAPublicKey_out", "-outform", "DER"]).stdout;
    KeyPair {
        private_pem,
        public_pem,
        public_der: der,
    }
}

fn cloudfront_section(base_url: &str, key: &str, duration: &str) -> String {
    let indented: String = key.lines().map(|l| format!("        {l}\n")).collect();
    format!(
        "    cloudfront:\n      base-url: {base_url}\n      keypair-id: {KEYPAIR_ID}\n      \
         duration: {duration}\n      private-key: |\n{indented}"
    )
}

/// CloudFront's URL-safe base64, undone.
fn decode_signature(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    let standard: String = text
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '=',
            '~' => '/',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(standard)
        .unwrap()
}

/// `(resource, expires, signature, keypair id)` of a canned-policy URL.
fn parse_signed(url: &str) -> (String, u64, String, String) {
    let (resource, query) = url.split_once('?').unwrap();
    let mut expires = None;
    let mut signature = None;
    let mut id = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap();
        match k {
            "Expires" => expires = Some(v.parse().unwrap()),
            "Signature" => signature = Some(v.to_owned()),
            "Key-Pair-Id" => id = Some(v.to_owned()),
            other => panic!("unexpected parameter {other} in {url}"),
        }
    }
    (
        resource.to_owned(),
        expires.unwrap(),
        signature.unwrap(),
        id.unwrap(),
    )
}

/// The canned policy, written out here independently of the daemon's code.
fn policy(resource: &str, expires: u64) -> String {
    let mut p = String::from("{\"Statement\":[{\"Resource\":\"");
    p.push_str(resource);
    p.push_str("\",\"Condition\":{\"DateLessThan\":{\"AWS:EpochTime\":");
    p.push_str(&expires.to_string());
    p.push_str("}}}]}");
    p
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn openssl_verifies(dir: &Path, public_pem: &Path, message: &str, signature: &[u8]) -> bool {
    let msg = dir.join("policy.txt");
    let sig = dir.join("sig.bin");
    std::fs::write(&msg, message).unwrap();
    std::fs::write(&sig, signature).unwrap();
    let out = Command::new("openssl")
        .args(["dgst", "-sha1", "-verify"])
        .arg(public_pem)
        .arg("-signature")
        .arg(&sig)
        .arg(&msg)
        .output()
        .unwrap();
    out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Verified OK")
}

/// A CloudFront stand-in on loopback: checks the key pair id, the expiry and the
/// signature over the policy rebuilt from the request, then serves the object from S3.
struct Edge {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Edge {
    async fn start(public_der: Vec<u8>, s3: aws_sdk_s3::Client) -> Edge {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let key = Arc::new(public_der);
        let s3 = Arc::new(s3);
        let task = tokio::spawn(async move {
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let (key, s3) = (key.clone(), s3.clone());
                tokio::spawn(async move {
                    let service =
                        hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                            let (key, s3) = (key.clone(), s3.clone());
                            async move {
                                Ok::<_, std::convert::Infallible>(edge(addr, &key, &s3, req).await)
                            }
                        });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Edge { addr, task }
    }

    fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn edge(
    addr: SocketAddr,
    key: &[u8],
    s3: &aws_sdk_s3::Client,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let deny = |why: &str| {
        Response::builder()
            .status(StatusCode::FORBIDDEN)
            .body(Full::new(Bytes::from(why.to_owned())))
            .unwrap()
    };
    let url = format!("http://{addr}{}", req.uri());
    let Some((resource, expires, signature, id)) =
        std::panic::catch_unwind(|| parse_signed(&url)).ok()
    else {
        return deny("malformed signed URL");
    };
    if id != KEYPAIR_ID {
        return deny("unknown key pair");
    }
    if expires <= now() {
        return deny("expired");
    }
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA1_FOR_LEGACY_USE_ONLY,
        key,
    );
    if public
        .verify(
            policy(&resource, expires).as_bytes(),
            &decode_signature(&signature),
        )
        .is_err()
    {
        return deny("bad signature");
    }
    let object_key = req.uri().path().trim_start_matches('/').to_owned();
    match s3.get_object().bucket(BUCKET).key(&object_key).send().await {
        Ok(out) => Response::new(Full::new(out.body.collect().await.unwrap().into_bytes())),
        Err(_) => Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::new()))
            .unwrap(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_urls_verify_independently_and_the_edge_serves_them() {
    let keys = tempfile::tempdir().unwrap();
    let s3 = S3Server::start();
    for pkcs8 in [false, true] {
        let pair = key_pair(keys.path(), pkcs8);
        let edge = Edge::start(pair.public_der.clone(), s3.client().await).await;
        let storage = s3_storage(
            &s3,
            SECRET_KEY,
            &cloudfront_section(&edge.base_url(), &pair.private_pem, "1m"),
        );
        let aar = Daemon::s3(&storage).start();
        let image = pattern(pkcs8 as u64, 0, 9 * MIB + 5);
        let digest = aar.publisher().upload_in_pieces(&image, 4 * MIB).await;
        let app = if pkcs8 { "pkcs8" } else { "pkcs1" };
        aar.publisher()
            .publish(app, Some(1), &manifest(app, &["s3"]), &[("amd64", &digest)])
            .await;

        let asked_at = now();
        let r = aar
            .reader()
            .get(&format!("/1.0/applications/{app}/versions/1/images/amd64"))
            .await;
        assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT, "{}", r.text());
        let url = r.header("location").unwrap().to_owned();
        let hex = digest.strip_prefix("sha256:").unwrap();
        let (resource, expires, signature, id) = parse_signed(&url);
        assert_eq!(resource, format!("{}/blobs/sha256/{hex}", edge.base_url()));
        assert_eq!(id, KEYPAIR_ID);
        assert!(
            (asked_at + 60..=asked_at + 62).contains(&expires),
            "Expires {expires} is not now ({asked_at}) + 1m"
        );
        assert!(
            !signature.contains(['+', '/', '=']),
            "not CloudFront's URL-safe base64: {signature}"
        );
        let signature = decode_signature(&signature);
        assert_eq!(signature.len(), 256);
        // openssl, over the exact policy text.
        let exact = policy(&resource, expires);
        assert_eq!(
            exact,
            format!(
                r#"{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
            )
        );
        assert!(openssl_verifies(
            keys.path(),
            &pair.public_pem,
            &exact,
            &signature
        ));
        assert!(!openssl_verifies(
            keys.path(),
            &pair.public_pem,
            &policy(&resource, expires + 1),
            &signature
        ));

        // The chain: registry → 307 → edge → S3.
        let got = plain_get(&url, &[]).await;
        assert_eq!(got.status, StatusCode::OK, "{}", got.text());
        assert!(got.body == image, "bytes differ");
        // Tampering is caught by the edge.
        let later = url.replace(
            &format!("Expires={expires}"),
            &format!("Expires={}", expires + 3600),
        );
        assert_eq!(plain_get(&later, &[]).await.status, StatusCode::FORBIDDEN);
        let elsewhere = url.replace(hex, &"0".repeat(64));
        assert_eq!(
            plain_get(&elsewhere, &[]).await.status,
            StatusCode::FORBIDDEN
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_urls_expire_at_the_edge() {
    let keys = tempfile::tempdir().unwrap();
    let s3 = S3Server::start();
    let pair = key_pair(keys.path(), false);
    let edge = Edge::start(pair.public_der.clone(), s3.client().await).await;
    let aar = Daemon::s3(&s3_storage(
        &s3,
        SECRET_KEY,
        &cloudfront_section(&edge.base_url(), &pair.private_pem, "2s"),
    ))
    .start();
    let digest = aar
        .publisher()
        .upload_in_pieces(b"short-lived", 1 << 20)
        .await;
    aar.publisher()
        .publish(
            "brief",
            Some(1),
            &manifest("brief", &["s3"]),
            &[("amd64", &digest)],
        )
        .await;
    let url = aar
        .reader()
        .get("/1.0/applications/brief/versions/1/images/amd64")
        .await
        .header("location")
        .unwrap()
        .to_owned();
    assert_eq!(plain_get(&url, &[]).await.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let late = plain_get(&url, &[]).await;
    assert_eq!(late.status, StatusCode::FORBIDDEN);
    assert_eq!(late.text(), "expired");
}

/// The documented form (a bare domain) and a full URL give the same `https://` prefix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn base_url_with_or_without_scheme() {
    let keys = tempfile::tempdir().unwrap();
    let s3 = S3Server::start();
    let pair = key_pair(keys.path(), true);
    for base in [
        "d1dfsdfjmcefekdotjm.cloudfront.net",
        "https://d1dfsdfjmcefekdotjm.cloudfront.net/",
    ] {
        let aar = Daemon::s3(&s3_storage(
            &s3,
            SECRET_KEY,
            &cloudfront_section(base, &pair.private_pem, "1m"),
        ))
        .start();
        let digest = aar
            .publisher()
            .upload_in_pieces(b"cdn image", 1 << 20)
            .await;
        aar.publisher()
            .publish(
                "cdn",
                Some(1),
                &manifest("cdn", &["s3"]),
                &[("amd64", &digest)],
            )
            .await;
        let url = aar
            .reader()
            .get("/1.0/applications/cdn/versions/1/images/amd64")
            .await
            .header("location")
            .unwrap()
            .to_owned();
        let hex = digest.strip_prefix("sha256:").unwrap();
        assert!(
            url.starts_with(&format!(
                "https://d1dfsdfjmcefekdotjm.cloudfront.net/blobs/sha256/{hex}?Expires="
            )),
            "{url}"
        );
        let (resource, expires, signature, _) = parse_signed(&url);
        assert!(openssl_verifies(
            keys.path(),
            &pair.public_pem,
            &policy(&resource, expires),
            &decode_signature(&signature)
        ));
    }
}

/// A key that looks like PEM but is not an RSA key is caught by `aar config check`, and
/// again at start, without showing the key.
#[test]
fn a_bad_private_key_is_refused_by_config_check_and_at_start() {
    let keys = tempfile::tempdir().unwrap();
    let s3 = S3Server::start();
    let fake = "-----BEGIN RSA PRIVATE KEY-----\nTm90QVJlYWxLZXlTZWNyZXRQYXJ0\n-----END RSA PRIVATE KEY-----";
    let mut aar = Daemon::s3(&s3_storage(
        &s3,
        SECRET_KEY,
        &cloudfront_section("d1.cloudfront.net", fake, "1m"),
    ))
    .prepare();
    let check = Command::new(BIN)
        .args(["config", "check"])
        .arg(&aar.config_path)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&check.stderr).into_owned();
    assert!(!check.status.success(), "{said}");
    assert!(
        said.contains("storage.s3.cloudfront.private-key is not a readable RSA private key"),
        "{said}"
    );
    assert!(
        !said.contains("Tm90QVJlYWxLZXlTZWNyZXRQYXJ0"),
        "the key leaked: {said}"
    );
    let err = aar.try_start().expect_err("started with a bad key");
    assert!(err.contains("not a readable RSA private key"), "{err}");

    let good = key_pair(keys.path(), false);
    let valid = Daemon::s3(&s3_storage(
        &s3,
        SECRET_KEY,
        &cloudfront_section("d1.cloudfront.net", &good.private_pem, "1m"),
    ))
    .prepare();
    let check = Command::new(BIN)
        .args(["config", "check"])
        .arg(&valid.config_path)
        .output()
        .unwrap();
    assert!(check.status.success(), "{check:?}");
}
