//! TLS: the generated server certificate, protocol versions, and robustness against garbage.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_certificate_is_generated_at_first_start() {
    let mut d = Daemon::start("");
    let crt = d.state_dir.join("certs/server.crt");
    let key = d.state_dir.join("certs/server.key");
    assert!(crt.is_file(), "{} missing", crt.display());
    assert!(key.is_file(), "{} missing", key.display());
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "key file mode is {mode:o}");

    let pem = std::fs::read(&crt).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("certificate PEM");
    assert_eq!(pem.label, "CERTIFICATE");
    assert_eq!(
        sha256_hex(&pem.contents),
        d.fingerprint,
        "ready line fingerprint is the SHA-256 of the certificate DER"
    );
    let cert = pem.parse_x509().expect("X.509 certificate");
    let san = cert
        .subject_alternative_name()
        .expect("valid SAN extension")
        .expect("certificate has SANs");
    let ips: Vec<Vec<u8>> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::IPAddress(ip) => Some(ip.to_vec()),
            _ => None,
        })
        .collect();
    assert!(
        ips.contains(&vec![127, 0, 0, 1]),
        "SANs must include 127.0.0.1: {:?}",
        san.value.general_names
    );
    assert!(cert.validity().is_valid(), "certificate valid now");

    let key_pem = std::fs::read_to_string(&key).unwrap();
    assert!(key_pem.contains("PRIVATE KEY"), "key file is a PEM key");

    // GET /1.0 reports the same fingerprint.
    let (status, v) = d.anonymous().get_json("/1.0").await;
    assert_eq!(status, 200);
    assert_eq!(v["metadata"]["server_fingerprint"], d.fingerprint.as_str());

    // A restart keeps the certificate (the harness checks the fingerprint is unchanged).
    let before = std::fs::read(&crt).unwrap();
    d.restart();
    assert_eq!(
        std::fs::read(&crt).unwrap(),
        before,
        "certificate regenerated"
    );
    let (status, _) = d.anonymous().get_json("/1.0").await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_refused_by_default() {
    let d = Daemon::start("");
    let c12 = Client::new(d.addr, &d.fingerprint, Some(publisher()), TLS12_ONLY);
    let err = c12.tls().await.err();
    assert!(err.is_some(), "a TLS 1.2-only client must be refused");
    eprintln!("TLS 1.2 handshake refused as expected: {}", err.unwrap());

    let c13 = Client::new(d.addr, &d.fingerprint, Some(publisher()), TLS13_ONLY);
    let tls = c13.tls().await.expect("TLS 1.3 handshake");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    drop(tls);
    d.publisher().get("/1.0/applications").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_accepted_when_configured() {
    let d = Daemon::start("http: {tls: {min-version: \"1.2\"}}");
    let c12 = Client::new(d.addr, &d.fingerprint, Some(publisher()), TLS12_ONLY);
    let tls = c12.tls().await.expect("TLS 1.2 handshake");
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_2)
    );
    drop(tls);
    let r = c12.get("/1.0").await;
    r.expect(200);
    assert_eq!(r.metadata()["role"], "publisher");
    c12.get("/1.0/applications").await.expect(200);
    // TLS 1.3 still preferred when both are offered.
    let tls = d.publisher().tls().await.unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_server_fingerprint_is_detected_by_pinning() {
    // Sanity check of the harness: pinning another fingerprint fails the handshake.
    let d = Daemon::start("");
    let c = Client::new(d.addr, &"0".repeat(64), None, ALL_VERSIONS);
    assert!(c.tls().await.is_err());
}

/// Opens a raw TCP connection, writes `bytes`, and returns how long the server took to close
/// it (None: still open after `wait`).
async fn garbage_connection(
    addr: std::net::SocketAddr,
    bytes: Vec<u8>,
    wait: Duration,
) -> Option<Duration> {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).await.ok()?;
    let _ = s.write_all(&bytes).await;
    let mut buf = [0u8; 4096];
    let deadline = start + wait;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(start.elapsed()),
            Ok(Ok(_)) => continue, // an alert, maybe: keep reading until closed
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_on_the_tls_port_does_not_disturb_legitimate_clients() {
    let d = Daemon::start("");
    let c = d.publisher();
    c.publish_simple("garbage-app", Some(1), &["x"], &["amd64"])
        .await;

    let mut payloads: Vec<Vec<u8>> = vec![
        b"GET /1.0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".to_vec(),
        b"\x00\x01\x02\x03\xff\xfe\xfd".repeat(1000),
        pattern(7, 0, 64 * 1024),
        // A TLS record header announcing a huge handshake record, followed by junk.
        [&[0x16u8, 0x03, 0x01, 0xff, 0xff][..], &pattern(8, 0, 4096)].concat(),
        // A ClientHello-looking start with a bogus length.
        vec![
            0x16, 0x03, 0x03, 0x00, 0x10, 0x01, 0x00, 0xff, 0xff, 0x03, 0x03,
        ],
    ];
    for i in 0..10u64 {
        payloads.push(pattern(100 + i, 0, 1 + (i as usize * 997) % 20000));
    }
    let addr = d.addr;
    let garbage = tokio::spawn(async move {
        let mut handles = Vec::new();
        for p in payloads {
            let complete = p.len() > 16; // the short bogus ClientHello may wait for more bytes
            handles.push((
                complete,
                tokio::spawn(garbage_connection(
                    addr,
                    p,
                    Duration::from_secs(if complete { 8 } else { 1 }),
                )),
            ));
        }
        let mut closed = Vec::new();
        for (complete, h) in handles {
            closed.push((complete, h.await.unwrap()));
        }
        closed
    });

    // Meanwhile: a kept-alive connection and fresh connections keep working.
    let mut conn = c.connect().await.unwrap();
    for i in 0..20 {
        let r = conn.get("/1.0/applications/garbage-app").await;
        r.expect(200);
        if i % 4 == 0 {
            let r = d.reader().get("/1.0/applications").await;
            r.expect(200);
            assert!(r.text().contains("garbage-app"));
        }
    }
    let closed = garbage.await.unwrap();
    for (i, (complete, t)) in closed.iter().enumerate() {
        if *complete {
            assert!(
                t.is_some(),
                "garbage connection #{i} was not closed by the server within 8 s"
            );
        }
    }
    // Still serving afterwards.
    conn.get("/1.0").await.expect(200);
    d.anonymous().get("/1.0").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_connections() {
    let d = Daemon::start("");
    d.publisher()
        .publish_simple("popular", Some(1), &["x"], &["amd64"])
        .await;
    let mut tasks = Vec::new();
    for i in 0..100 {
        let c = if i % 3 == 0 {
            d.publisher()
        } else {
            d.reader()
        };
        tasks.push(tokio::spawn(async move {
            let mut conn = c.connect().await.unwrap();
            for _ in 0..5 {
                conn.get("/1.0/applications/popular").await.expect(200);
            }
            let r = conn
                .get("/1.0/applications/popular/versions/1/images/amd64")
                .await;
            r.expect(200);
            r.body.len()
        }));
    }
    let mut sizes = std::collections::HashSet::new();
    for t in tasks {
        sizes.insert(t.await.unwrap());
    }
    assert_eq!(sizes.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_provided_certificate_is_used() {
    let dir = tempfile::tempdir().unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".into(), "registry.example".into()]).unwrap();
    let cert = params.self_signed(&key).unwrap();
    let crt_path = dir.path().join("my.crt");
    let key_path = dir.path().join("my.key");
    std::fs::write(&crt_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    let d = Daemon::start(&format!(
        "http: {{tls: {{certificate: {}, key: {}}}}}",
        crt_path.display(),
        key_path.display()
    ));
    assert_eq!(d.fingerprint, sha256_hex(cert.der()));
    d.publisher().get("/1.0/applications").await.expect(200);
    assert!(
        !d.state_dir.join("certs/server.key").exists(),
        "no certificate generated when one is configured"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listens_on_ipv6_loopback() {
    if std::net::TcpListener::bind("[::1]:0").is_err() {
        eprintln!("SKIPPED listens_on_ipv6_loopback: no IPv6 loopback here");
        return;
    }
    let d = Daemon::start("http: {addr: \"[::1]:0\"}");
    assert!(d.addr.is_ipv6(), "{}", d.ready_line);
    assert!(d.ready_line.contains("https://[::1]:"), "{}", d.ready_line);
    let r = d.publisher().get("/1.0").await;
    r.expect(200);
    assert_eq!(r.metadata()["role"], "publisher");
}
