//! `/metrics` and `/status` on `metrics.addr`, `aar status`, and the audit trail: a scripted
//! session against the real binary, with each counter checked to have moved by exactly what
//! the session did.

mod common;

use common::*;
use hyper::Method;
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

/// A loopback port nothing listens on now.
fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// `GET path` over plain HTTP: (status line, body).
fn plain_get(addr: SocketAddr, path: &str) -> std::io::Result<(String, String)> {
    let mut stream = TcpStream::connect(addr)?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer)?;
    let (head, body) = answer.split_once("\r\n\r\n").expect("an HTTP answer");
    Ok((head.lines().next().unwrap().to_string(), body.to_string()))
}

/// Every sample of a scrape: series (name with labels, as exposed) → value.
fn scrape(addr: SocketAddr) -> BTreeMap<String, f64> {
    let (status, body) = plain_get(addr, "/metrics").expect("scrape");
    assert!(status.contains("200"), "{status}");
    assert!(body.ends_with("# EOF\n"), "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line");
            (series.to_string(), value.parse().expect("sample value"))
        })
        .collect()
}

fn value(scrape: &BTreeMap<String, f64>, series: &str) -> f64 {
    scrape.get(series).copied().unwrap_or(0.0)
}

fn requests(route: &str, method: &str, status: u16) -> String {
    format!("aar_http_requests_total{{route=\"{route}\",method=\"{method}\",status=\"{status}\"}}")
}

const IMAGES: &str = "/1.0/applications/{name}/versions/{version}/images/{arch}";

#[tokio::test(flavor = "multi_thread")]
async fn a_session_moves_each_counter_by_what_it_did() {
    let metrics = free_port();
    let d = Daemon::builder(&format!("metrics: {{addr: \"{metrics}\"}}"))
        .with_revoked()
        .start();
    let before = scrape(metrics);
    assert_eq!(
        value(&before, &format!("aar_build_info{{version=\"{VERSION}\"}}")),
        1.0
    );
    assert_eq!(value(&before, "aar_storage_up{backend=\"fs\"}"), 1.0);
    assert!(value(&before, "aar_storage_fs_size_bytes") > 0.0);
    assert!(value(&before, "aar_storage_fs_available_bytes") > 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    assert!(value(&before, "aar_server_certificate_expiry_timestamp_seconds") > now);
    assert_eq!(value(&before, "aar_index_versions"), 0.0);
    assert_eq!(value(&before, "aar_last_publish_timestamp_seconds"), 0.0);

    // The session: one upload, one publish, one download, and four refusals.
    let image = b"an image of the metrics test\n".repeat(1000);
    let size = image.len() as f64;
    let publisher = d.publisher();
    let digest = publisher.upload(&image).await;
    publisher
        .publish(
            "metered",
            None,
            &manifest("metered", &[]),
            &[("amd64", &digest)],
        )
        .await
        .expect(201);
    let download = d
        .reader()
        .get("/1.0/applications/metered/versions/1/images/amd64")
        .await;
    download.expect(200);
    assert_eq!(download.body.len(), image.len());
    d.client(Some(untrusted()))
        .get("/1.0/applications")
        .await
        .expect(403);
    d.client(Some(revoked()))
        .get("/1.0/applications")
        .await
        .expect(403);
    d.reader()
        .create_upload(&digest_of(b"not allowed"), 11)
        .await
        .expect(403);
    d.reader()
        .req(Method::DELETE, "/1.0/applications/metered")
        .await
        .expect(403);
    d.reader().get("/no/such/endpoint").await.expect(404);

    let after = scrape(metrics);
    let delta = |series: &str| value(&after, series) - value(&before, series);
    for (series, moved) in [
        (requests("/1.0/uploads", "POST", 201), 1.0),
        (requests("/1.0/uploads/{id}", "PATCH", 200), 1.0),
        (requests("/1.0/applications/{name}/versions", "POST", 201), 1.0),
        (requests(IMAGES, "GET", 200), 1.0),
        (requests("/1.0/applications", "GET", 403), 2.0),
        (requests("/1.0/uploads", "POST", 403), 1.0),
        (requests("/1.0/applications/{name}", "DELETE", 403), 1.0),
        (requests("unmatched", "GET", 404), 1.0),
        ("aar_refused_requests_total{reason=\"untrusted\"}".into(), 1.0),
        ("aar_refused_requests_total{reason=\"revoked\"}".into(), 1.0),
        ("aar_refused_requests_total{reason=\"client_write\"}".into(), 2.0),
        ("aar_refused_requests_total{reason=\"expired\"}".into(), 0.0),
        ("aar_upload_bytes_total".into(), size),
        (
            "aar_http_request_bytes_total{route=\"/1.0/uploads/{id}\"}".into(),
            size,
        ),
        (
            format!("aar_http_response_bytes_total{{route=\"{IMAGES}\"}}"),
            size,
        ),
        (
            "aar_http_request_duration_seconds_count{route=\"/1.0/uploads/{id}\",method=\"PATCH\"}"
                .into(),
            1.0,
        ),
        (
            "aar_storage_operations_total{backend=\"fs\",operation=\"create_upload\"}".into(),
            1.0,
        ),
        (
            "aar_storage_operations_total{backend=\"fs\",operation=\"append_upload\"}".into(),
            1.0,
        ),
        (
            "aar_storage_operations_total{backend=\"fs\",operation=\"put_version\"}".into(),
            1.0,
        ),
        (
            "aar_storage_operations_total{backend=\"fs\",operation=\"read_blob\"}".into(),
            1.0,
        ),
        (
            "aar_storage_operation_duration_seconds_count{backend=\"fs\",operation=\"put_version\"}"
                .into(),
            1.0,
        ),
        ("aar_redirects_total{kind=\"presigned\"}".into(), 0.0),
        ("aar_trust_refreshes_total".into(), 0.0),
    ] {
        assert_eq!(delta(&series), moved, "{series}\n{after:#?}");
    }
    assert_eq!(value(&after, "aar_index_applications"), 1.0);
    assert_eq!(value(&after, "aar_index_versions"), 1.0);
    assert_eq!(value(&after, "aar_index_blob_bytes"), size);
    assert_eq!(value(&after, "aar_uploads_in_progress"), 0.0);
    let published = value(&after, "aar_last_publish_timestamp_seconds");
    assert!((now - 5.0..now + 60.0).contains(&published), "{published}");

    // A trust change is seen at the next request: one re-read.
    d.inst.trust_remove(&client_id().fingerprint);
    d.reader().get("/1.0/applications").await.expect(403);
    let later = scrape(metrics);
    assert_eq!(
        value(&later, "aar_trust_refreshes_total") - value(&after, "aar_trust_refreshes_total"),
        1.0
    );
    assert_eq!(
        value(&later, "aar_refused_requests_total{reason=\"untrusted\"}")
            - value(&after, "aar_refused_requests_total{reason=\"untrusted\"}"),
        1.0
    );

    // The collection at start (the next is an hour away) removed nothing.
    let mut gc = later;
    for _ in 0..100 {
        if value(&gc, "aar_gc_runs_total") >= 1.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        gc = scrape(metrics);
    }
    assert_eq!(value(&gc, "aar_gc_runs_total"), 1.0);
    assert_eq!(value(&gc, "aar_gc_collected_bytes_total"), 0.0);

    // /status and `aar status` tell the same numbers.
    let (line, body) = plain_get(metrics, "/status").unwrap();
    assert!(line.contains("200"), "{line}");
    let status: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(status["applications"], 1, "{status}");
    assert_eq!(status["versions"], 1, "{status}");
    assert_eq!(status["blob_bytes"], image.len(), "{status}");
    assert_eq!(status["trusted_publishers"], 1, "{status}");
    assert_eq!(status["trusted_clients"], 0, "{status}");
    assert_eq!(status["storage"], "fs", "{status}");
    assert_eq!(status["index_loaded"], true, "{status}");
    let last = status["last_publish"].as_str().expect("a last publish");
    assert!(last.ends_with('Z') && last.len() == 20, "{last}");

    let out = d.inst.run(&["status"], &["--format", "json"]);
    assert_success(&out, "aar status --format json");
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed, status);
    let out = d.inst.run(&["status"], &[]);
    assert_success(&out, "aar status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("applications:       1\n"), "{text}");
    assert!(
        text.contains(&format!("last publish:       {last}\n")),
        "{text}"
    );

    // Other paths and methods on the metrics listener.
    let (line, _) = plain_get(metrics, "/1.0").unwrap();
    assert!(line.contains("404"), "{line}");

    // The audit trail: each write and refused write is one event naming the caller.
    let log = d.stderr();
    let audit: Vec<&str> = log.lines().filter(|l| l.contains("aar::audit")).collect();
    let publish: Vec<_> = audit
        .iter()
        .filter(|l| l.contains("action=\"publish\""))
        .collect();
    assert_eq!(publish.len(), 1, "{audit:#?}");
    assert!(publish[0].contains(&publisher_fp()), "{}", publish[0]);
    assert!(publish[0].contains("outcome=\"ok\""), "{}", publish[0]);
    let refused: Vec<_> = audit
        .iter()
        .filter(|l| l.contains("outcome=\"refused\""))
        .collect();
    assert_eq!(refused.len(), 2, "{audit:#?}");
    assert!(refused.iter().all(|l| l.contains("reason=\"client_write\"")
        && l.contains("role=\"client\"")
        && l.contains(&client_id().fingerprint)));
    assert!(!log.contains("BEGIN"), "no PEM in the log");
}

fn publisher_fp() -> String {
    publisher().fingerprint.clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_address_serves_nothing_and_json_logs_are_one_object_a_line() {
    let d = Daemon::start("metrics: {addr: \"\"}\nlog: {format: json}");
    d.publisher()
        .publish_simple("quiet", None, &[], &["amd64"])
        .await;
    d.reader()
        .req(Method::DELETE, "/1.0/applications/quiet")
        .await
        .expect(403);
    let out = d.inst.run(&["status"], &[]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("metrics.addr is \"\""), "{said}");

    let log = d.stderr();
    assert!(!log.contains("/metrics"), "{log}");
    let mut audits = Vec::new();
    for line in log.lines().filter(|l| !l.trim().is_empty()) {
        let event: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: not JSON: {line}"));
        if event["target"] == "aar::audit" {
            audits.push(event);
        }
    }
    assert_eq!(audits.len(), 2, "{log}");
    let (published, refused) = (&audits[0], &audits[1]);
    assert_eq!(published["action"], "publish", "{published}");
    assert_eq!(published["fingerprint"], publisher_fp(), "{published}");
    assert_eq!(published["role"], "publisher", "{published}");
    assert_eq!(published["outcome"], "ok", "{published}");
    assert_eq!(refused["action"], "delete_application", "{refused}");
    assert_eq!(
        refused["fingerprint"],
        client_id().fingerprint.as_str(),
        "{refused}"
    );
    assert_eq!(refused["role"], "client", "{refused}");
    assert_eq!(refused["outcome"], "refused", "{refused}");
    assert_eq!(refused["object"], "/1.0/applications/quiet", "{refused}");
}

#[test]
fn aar_status_says_when_no_daemon_answers() {
    let inst = Instance::new(&format!("metrics: {{addr: \"{}\"}}", free_port()), None);
    let out = inst.run(&["status"], &[]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("is the daemon running"), "{said}");
}

#[test]
fn trust_changes_are_audited() {
    let inst = Instance::new("log: {format: json}", None);
    let pem = client_id().write_pem(inst.dir.path());
    let out = inst.run(&["trust", "add"], &[pem.to_str().unwrap()]);
    assert_success(&out, "aar trust add");
    let line = String::from_utf8_lossy(&out.stderr);
    let event: Value = serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("{e}: {line}"));
    assert_eq!(event["target"], "aar::audit");
    assert_eq!(event["action"], "trust_add");
    assert_eq!(event["object"], client_id().fingerprint.as_str());
    assert_eq!(event["outcome"], "added");
    assert_eq!(event["role"], "operator");
}

/// With S3 a download is a redirect, counted by kind, and the trust store in the bucket
/// carries the time it last answered (what `AarTrustStoreUnread` watches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_s3_downloads_count_as_redirects_and_trust_checks_are_timestamped() {
    let s3 = S3Server::start();
    let metrics = free_port();
    let d = Daemon::builder(&format!("metrics: {{addr: \"{metrics}\"}}"))
        .storage(&s3_storage(&s3, SECRET_KEY, ""))
        .start();
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as f64;
    let before = scrape(metrics);
    assert_eq!(value(&before, "aar_storage_up{backend=\"s3\"}"), 1.0);
    let checked = value(&before, "aar_trust_store_checked_timestamp_seconds");
    assert!(checked >= started - 60.0, "trust checked at {checked}");

    let image = b"an image behind a redirect\n".repeat(100);
    let publisher = d.publisher();
    let digest = publisher.upload(&image).await;
    publisher
        .publish(
            "redirected",
            None,
            &manifest("redirected", &[]),
            &[("amd64", &digest)],
        )
        .await
        .expect(201);
    d.reader()
        .get("/1.0/applications/redirected/versions/1/images/amd64")
        .await
        .expect(307);

    // The refresh task moves the trust timestamp on every few seconds.
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    let after = scrape(metrics);
    let delta = |series: &str| value(&after, series) - value(&before, series);
    assert_eq!(delta("aar_redirects_total{kind=\"presigned\"}"), 1.0);
    assert_eq!(delta("aar_redirects_total{kind=\"cloudfront\"}"), 0.0);
    assert_eq!(delta(&requests(IMAGES, "GET", 307)), 1.0);
    assert!(
        value(&after, "aar_trust_store_checked_timestamp_seconds") > checked,
        "the trust store's check time did not move"
    );
}
