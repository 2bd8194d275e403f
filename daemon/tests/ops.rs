//! Operations: the ready line, graceful shutdown on SIGTERM, and logs without secrets.

mod common;

use std::time::{Duration, Instant};

use common::*;
use http_body_util::BodyExt;
use hyper::Method;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_line_and_server_info() {
    let d = Daemon::start("");
    assert_eq!(
        d.ready_line,
        format!(
            "aar {VERSION} serving https://{} (storage fs, server fingerprint {})",
            d.addr, d.fingerprint
        )
    );
    assert_ne!(d.addr.port(), 0);
    let r = d.anonymous().get("/1.0").await;
    r.expect(200);
    let v = r.json();
    assert_eq!(v["type"], "sync");
    assert_eq!(v["status"], "Success");
    assert_eq!(v["status_code"], 200);
    assert_eq!(v["metadata"]["version"], VERSION);
    // Unknown endpoints answer an enveloped 404.
    d.publisher()
        .get("/1.0/nothing-here")
        .await
        .expect_error(404);
    d.publisher().get("/2.0").await.expect_error(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_when_idle_exits_cleanly() {
    let mut d = Daemon::start("");
    // A kept-alive idle connection must not hold the shutdown up.
    let mut conn = d.publisher().connect().await.unwrap();
    conn.get("/1.0").await.expect(200);
    let t = Instant::now();
    let st = d.stop_with("TERM");
    assert!(st.success(), "exit status {st:?}\n{}", d.stderr());
    assert!(
        t.elapsed() < Duration::from_secs(7),
        "took {:?}",
        t.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_a_download_finish_and_refuses_new_connections() {
    let mut d = Daemon::start("http: {shutdown-timeout: 20s}");
    let p = d.publisher();
    let size = 48 * MIB;
    let digest = p.upload_pattern(61, size).await;
    p.publish("dl", Some(1), &manifest("dl", &[]), &[("amd64", &digest)])
        .await
        .expect(201);

    let c = d.reader();
    let (_conn, resp) = c
        .send(
            request(Method::GET, "/1.0/applications/dl/versions/1/images/amd64")
                .body(empty_body())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.into_body();
    let mut h = Hasher::default();
    let mut n = 0u64;
    // Read the first MiB, then SIGTERM.
    while n < MIB {
        let f = body.frame().await.expect("frame").expect("body");
        if let Ok(data) = f.into_data() {
            n += data.len() as u64;
            h.update(&data);
        }
    }
    let t = Instant::now();
    d.signal("TERM");
    tokio::time::sleep(Duration::from_millis(500)).await;

    // New connections are refused (or at least never served) while the download goes on.
    let fresh = tokio::time::timeout(Duration::from_secs(3), async {
        match c.connect().await {
            Ok(mut conn) => conn
                .call(request(Method::GET, "/1.0").body(empty_body()).unwrap())
                .await
                .map(|r| r.status),
            Err(e) => Err(e),
        }
    })
    .await;
    assert!(
        !matches!(fresh, Ok(Ok(s)) if s.is_success()),
        "a new connection was served after SIGTERM: {fresh:?}"
    );

    // Read the rest slowly; it must all arrive.
    let mut frames = 0u64;
    while let Some(f) = body.frame().await {
        let f = f.unwrap_or_else(|e| panic!("download broken off after {n} bytes: {e}"));
        if let Ok(data) = f.into_data() {
            n += data.len() as u64;
            h.update(&data);
        }
        frames += 1;
        if frames % 64 == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    assert_eq!(n, size, "whole image received");
    assert_eq!(format!("sha256:{}", h.finish_hex()), digest);
    eprintln!("download finished {:?} after SIGTERM", t.elapsed());

    let st = d
        .wait_exit(Duration::from_secs(25))
        .expect("daemon exits after the download");
    assert!(st.success(), "exit status {st:?}");
    assert!(t.elapsed() < Duration::from_secs(22));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_timeout_bounds_a_stuck_transfer() {
    let mut d = Daemon::start("http: {shutdown-timeout: 2s}");
    let p = d.publisher();
    let size = 64 * MIB;
    let digest = p.upload_pattern(62, size).await;
    p.publish("dl", Some(1), &manifest("dl", &[]), &[("amd64", &digest)])
        .await
        .expect(201);
    // A download whose reader never reads.
    let (_conn, resp) = d
        .reader()
        .send(
            request(Method::GET, "/1.0/applications/dl/versions/1/images/amd64")
                .body(empty_body())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let t = Instant::now();
    d.signal("TERM");
    let st = d.wait_exit(Duration::from_secs(10));
    assert!(
        st.is_some(),
        "daemon still running 10 s after SIGTERM with shutdown-timeout 2s"
    );
    eprintln!(
        "exited {:?} after SIGTERM with exit status {st:?}",
        t.elapsed()
    );
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "did not wait for the transfer"
    );
    drop(resp);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_never_contain_secrets() {
    let mut d = Daemon::builder("")
        .with_revoked()
        .env("AAR_LOG", "trace")
        .env("RUST_LOG", "trace")
        .start();
    let p = d.publisher();
    p.publish_simple("logged", Some(1), &["t"], &["amd64"])
        .await;
    d.reader().get("/1.0/applications").await.expect(200);
    d.client(Some(untrusted()))
        .get("/1.0/applications")
        .await
        .expect(403);
    d.client(Some(revoked()))
        .get("/1.0/applications")
        .await
        .expect(403);
    p.get("/1.0/applications/nope").await.expect(404);
    p.publish("logged", Some(1), &manifest("logged", &[]), &[])
        .await;
    let r = p.create_upload(&digest_of(b"x"), 2).await;
    let id = upload_id(&r);
    p.patch_upload(&id, 0, 2, full_body(&b"xy"[..]))
        .await
        .expect(400);
    d.trust_revoke(&client_id().fingerprint);
    d.reader().get("/1.0/applications").await.expect(403);
    d.restart();
    d.publisher().get("/1.0").await.expect(200);
    d.stop_with("TERM");

    let log = d.stderr();
    assert!(!log.is_empty(), "the daemon logs something to stderr");
    assert!(
        !log.contains("PRIVATE KEY"),
        "a private key PEM in the logs"
    );
    let key = std::fs::read_to_string(d.state_dir.join("certs/server.key")).unwrap();
    for secret in [&key, &publisher().key_pem, &client_id().key_pem] {
        for line in secret
            .lines()
            .filter(|l| l.len() >= 40 && !l.starts_with("-----"))
        {
            assert!(!log.contains(line), "key material in the logs: {line}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_lets_an_upload_finish() {
    let mut d = Daemon::start("http: {shutdown-timeout: 20s}");
    let p = d.publisher();
    let size = 32 * MIB;
    let digest = pattern_digest(63, size);
    let r = p.create_upload(&digest, size).await;
    let id = upload_id(&r);

    // A slow upload: 256 KiB frames with a pause after each.
    let body = PatternBody::new(63, 0, size).paced(256 * 1024, Duration::from_millis(15));
    let sent = body.sent.clone();
    let p2 = p.clone();
    let upload = tokio::spawn(async move { p2.patch_upload(&id, 0, size, body.boxed()).await });
    while sent.load(std::sync::atomic::Ordering::SeqCst) < 2 * MIB {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let t = Instant::now();
    d.signal("TERM");
    let r = upload.await.unwrap();
    eprintln!("upload finished {:?} after SIGTERM", t.elapsed());
    r.expect(200);
    assert_eq!(r.metadata()["complete"], true);
    let st = d
        .wait_exit(Duration::from_secs(25))
        .expect("daemon exits after the upload");
    assert!(st.success(), "exit status {st:?}");
    // The blob is there after a restart.
    d.restart();
    let r = d.publisher().create_upload(&digest, size).await;
    r.expect(200);
}

#[test]
fn s3_secrets_never_reach_the_output() {
    // Whatever the S3 backend does with an unreachable endpoint (retry, refuse to start),
    // the secret access key and the CloudFront private key stay out of its output.
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzSECRETzKEY";
    let key_line = "MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu";
    let inst = Instance::new(
        &format!(
            "storage:\n  fs: null\n  s3:\n    region: eu-west-3\n    bucket: aar-test\n    \
             endpoint: http://127.0.0.1:1\n    access-key: AKIAEXAMPLEKEY\n    \
             secret-access-key: {secret}\n    cloudfront:\n      base-url: d1.cloudfront.net\n      \
             keypair-id: ADF443JOEF3423JF\n      private-key: |\n        \
             -----BEGIN RSA PRIVATE KEY-----\n        {key_line}\n        \
             -----END RSA PRIVATE KEY-----\n"
        ),
        None,
    );
    // The merge keeps `fs: null` next to `s3`; drop the fs key from the written file.
    let text = std::fs::read_to_string(&inst.config_path).unwrap();
    let mut doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    doc["storage"]
        .as_mapping_mut()
        .unwrap()
        .remove(serde_yaml_ng::Value::from("fs"));
    std::fs::write(&inst.config_path, serde_yaml_ng::to_string(&doc).unwrap()).unwrap();

    let out_path = inst.dir.path().join("out");
    let err_path = inst.dir.path().join("err");
    let mut child = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&inst.config_path)
        .env("AAR_LOG", "trace")
        .env("RUST_LOG", "trace")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(5) && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let all = format!(
        "{}{}",
        std::fs::read_to_string(&out_path).unwrap(),
        std::fs::read_to_string(&err_path).unwrap()
    );
    eprintln!("output with an unreachable S3 endpoint:\n{all}");
    assert!(!all.contains(secret), "secret access key in the output");
    assert!(!all.contains(key_line), "CloudFront key in the output");
    assert!(!all.contains("PRIVATE KEY"), "a private key in the output");
}
