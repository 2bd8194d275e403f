//! Faults: invalid input, size limits, stalled clients, a full disk.
//!
//! Long on purpose: one fault per test function, each with its own daemon.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_names_versions_and_architectures() {
    let d = Daemon::start("");
    let p = d.publisher();
    p.publish_simple("valid-app", Some(1), &[], &["amd64"])
        .await;
    let digest = p.upload(b"an image").await;

    let long = "a".repeat(65);
    let bad_names = [
        "..",
        "%2E%2E",
        "a..b",
        "a%2Fb",
        "a%2F..%2Fb",
        "a%20b",
        "%20",
        "a%01b",
        "a%0Ab",
        "a%7Fb",
        "a%5Cb",
        "-leading-dash",
        ".hidden",
        "caf%C3%A9",
        long.as_str(),
    ];
    for name in bad_names {
        for (method, path) in [
            (Method::GET, format!("/1.0/applications/{name}")),
            (Method::GET, format!("/1.0/applications/{name}/versions/1")),
            (Method::DELETE, format!("/1.0/applications/{name}")),
        ] {
            let r = p.req(method.clone(), &path).await;
            let e = r.expect_error(400);
            assert!(e.contains("name"), "{method} {path}: {e}");
        }
        let r = p
            .publish(name, Some(1), &manifest(name, &[]), &[("amd64", &digest)])
            .await;
        let e = r.expect_error(400);
        assert!(e.contains("name"), "publish {name}: {e}");
    }
    // The boundary: 64 characters is a valid (unknown) name.
    let ok = "a".repeat(64);
    p.get(&format!("/1.0/applications/{ok}"))
        .await
        .expect_error(404);
    let r = p
        .publish(&ok, Some(1), &manifest(&ok, &[]), &[("amd64", &digest)])
        .await;
    r.expect(201);

    // Versions.
    for v in ["0", "-1", "abc", "1.5", "4294967296", "%201"] {
        let e = p
            .get(&format!("/1.0/applications/valid-app/versions/{v}"))
            .await
            .expect_error(400);
        assert!(e.contains("version"), "version {v}: {e}");
    }
    p.get("/1.0/applications/valid-app/versions/4294967295")
        .await
        .expect_error(404);
    let r = p
        .publish(
            "valid-app",
            Some(0),
            &manifest("valid-app", &[]),
            &[("amd64", &digest)],
        )
        .await;
    assert!(r.expect_error(400).contains("version"));

    // Architectures.
    for arch in ["..", "a%2Fb", "x%20y", &"b".repeat(65)] {
        let e = p
            .get(&format!(
                "/1.0/applications/valid-app/versions/1/images/{arch}"
            ))
            .await
            .expect_error(400);
        assert!(e.contains("arch"), "arch {arch}: {e}");
    }
    for arch in ["../x", "a b", ""] {
        let r = p
            .publish(
                "valid-app",
                Some(2),
                &manifest("valid-app", &[]),
                &[(arch, &digest)],
            )
            .await;
        let e = r.expect_error(400);
        assert!(e.contains("arch"), "publish arch {arch:?}: {e}");
    }
    // Digests.
    let r = p
        .publish(
            "valid-app",
            Some(2),
            &manifest("valid-app", &[]),
            &[("amd64", "sha256:xyz")],
        )
        .await;
    assert!(r.expect_error(400).contains("digest"));

    // Nothing odd appeared on disk.
    let apps: Vec<String> = std::fs::read_dir(d.root_dir.join("apps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let mut apps = apps;
    apps.sort();
    assert_eq!(apps, [ok.clone(), "valid-app".to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_publish_requests() {
    let d = Daemon::start("");
    let p = d.publisher();
    let digest = p.upload(b"an image").await;
    let images = [("amd64", digest.as_str())];

    for (man, needle) in [
        ("name: [unclosed\n", "manifest"),
        ("name: x\n  bad indentation: : :\n", "manifest"),
        ("just a string\n", "manifest"),
        ("- a\n- list\n", "manifest"),
        ("instance-type: a2.3\n", "name"),
        ("name: app\ntags: not-a-list\n", "tags"),
        ("", "manifest"),
    ] {
        let r = p.publish("app", Some(1), man, &images).await;
        let e = r.expect_error(400);
        assert!(e.contains(needle), "manifest {man:?}: {e}");
    }

    let path = "/1.0/applications/app/versions";
    for (body, needle) in [
        ("{not json", "json"),
        ("[]", ""),
        (
            r#"{"version":"one","manifest":"name: app\n","images":{}}"#,
            "version",
        ),
        (r#"{"version":1,"images":{}}"#, "manifest"),
        (r#"{"version":1,"manifest":"name: app\n"}"#, "images"),
    ] {
        let r = p
            .req_with(
                Method::POST,
                path,
                &[("content-type", "application/json")],
                full_body(body.to_string()),
            )
            .await;
        let e = r.expect_error(400);
        assert!(e.contains(needle), "body {body}: {e}");
    }
    let (_, l) = p.get_json("/1.0/applications").await;
    assert_eq!(l["metadata"], serde_json::json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn size_limits() {
    let d = Daemon::start("http: {limits: {max-metadata-size: 16KiB, max-image-size: 1MiB}}");
    let p = d.publisher();
    let digest = p.upload(&pattern(1, 0, MIB as usize)).await; // exactly the limit: fine

    // Metadata over max-metadata-size: 413 (with Content-Length and chunked).
    let mut man = manifest("app", &[]);
    man.push_str(&format!("description: {}\n", "x".repeat(20 * 1024)));
    let r = p.publish("app", Some(1), &man, &[("amd64", &digest)]).await;
    let e = r.expect_error(413);
    assert!(
        e.contains("size") || e.contains("large") || e.contains("limit"),
        "{e}"
    );
    let body = serde_json::to_vec(&serde_json::json!({
        "version": 1, "manifest": man, "images": {"amd64": digest}
    }))
    .unwrap();
    let len = body.len() as u64;
    // Chunked: a body whose size is not announced.
    let chunked = ChunkedBody::new(body, 1024).boxed();
    let r = p
        .req_with(Method::POST, "/1.0/applications/app/versions", &[], chunked)
        .await;
    assert_eq!(r.status, 413, "chunked {len} bytes: {}", r.text());

    // X-AAR-Size over max-image-size: 413.
    let big = digest_of(b"big");
    let r = p.create_upload(&big, MIB + 1).await;
    let e = r.expect_error(413);
    assert!(e.contains("size") || e.contains("large"), "{e}");
    let r = p.create_upload(&big, 64 * GIB).await;
    r.expect_error(413);
    assert!(files_under(&d.root_dir.join("uploads")).is_empty());

    // A manifest just under the limit is fine.
    p.publish("app", Some(1), &manifest("app", &[]), &[("amd64", &digest)])
        .await
        .expect(201);
}

/// Reads from `s` until the server closes the connection; returns (elapsed since `start`,
/// everything read), or None if still open at `deadline`.
async fn until_closed<S: tokio::io::AsyncRead + Unpin>(
    s: &mut S,
    start: Instant,
    deadline: Duration,
) -> Option<(Duration, Vec<u8>)> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_sub(start.elapsed());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some((start.elapsed(), got)),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_clients_are_cut_off_while_others_are_served() {
    let d = Daemon::start("http: {limits: {header-timeout: 2s, body-timeout: 2s}}");
    let p = d.publisher();
    p.publish_simple("busy", Some(1), &[], &["amd64"]).await;
    let size = MIB;
    let digest = pattern_digest(3, size);
    let r = p.create_upload(&digest, size).await;
    r.expect(201);
    let id = upload_id(&r);
    let limit = Duration::from_secs(2 + 4); // the timeout plus slack for a loaded machine

    // 1. Headers sent slowly, a line every 500 ms (slowloris).
    let slow_headers = {
        let p = p.clone();
        tokio::spawn(async move {
            let s = p.tls().await.unwrap();
            let (mut r, mut w) = tokio::io::split(s);
            let start = Instant::now();
            let writer = tokio::spawn(async move {
                w.write_all(b"GET /1.0/applications HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    .await?;
                for i in 0..40 {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    w.write_all(format!("X-Slow-{i}: a\r\n").as_bytes()).await?;
                }
                std::io::Result::Ok(())
            });
            let res = until_closed(&mut r, start, Duration::from_secs(30)).await;
            writer.abort();
            res
        })
    };

    // 2. Half a body, then nothing.
    let half_body = {
        let p = p.clone();
        let id = id.clone();
        tokio::spawn(async move {
            let mut s = p.tls().await.unwrap();
            let head = format!(
                "PATCH /1.0/uploads/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Offset: 0\r\n\
                 Content-Type: application/octet-stream\r\nContent-Length: {size}\r\n\r\n"
            );
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(&pattern(3, 0, (size / 2) as usize))
                .await
                .unwrap();
            s.flush().await.unwrap();
            let start = Instant::now();
            until_closed(&mut s, start, Duration::from_secs(30)).await
        })
    };

    // 3. A TLS connection that never sends a request; 4. a TCP connection that never
    //    starts TLS.
    let idle_tls = {
        let p = p.clone();
        tokio::spawn(async move {
            let mut s = p.tls().await.unwrap();
            until_closed(&mut s, Instant::now(), Duration::from_secs(30)).await
        })
    };
    let addr = d.addr;
    let idle_tcp = tokio::spawn(async move {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        until_closed(&mut s, Instant::now(), Duration::from_secs(30)).await
    });

    // Meanwhile, others are served promptly.
    let t = Instant::now();
    let mut worst = Duration::ZERO;
    while t.elapsed() < Duration::from_secs(4) {
        let s = Instant::now();
        d.reader().get("/1.0/applications/busy").await.expect(200);
        worst = worst.max(s.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        worst < Duration::from_millis(1500),
        "a request took {worst:?} during the stalls"
    );

    let (t1, got1) = slow_headers
        .await
        .unwrap()
        .expect("slow headers: connection still open after 30 s");
    eprintln!(
        "slow headers cut off after {t1:?}: {:?}",
        String::from_utf8_lossy(&got1)
    );
    assert!(t1 <= limit, "slow headers cut off only after {t1:?}");
    let resp = String::from_utf8_lossy(&got1);
    assert!(
        !resp.starts_with("HTTP/1.1 200"),
        "the slow request must not be served: {resp}"
    );

    let (t2, got2) = half_body
        .await
        .unwrap()
        .expect("half body: connection still open after 30 s");
    let resp = String::from_utf8_lossy(&got2).to_string();
    eprintln!("half body cut off after {t2:?}: {resp:?}");
    assert!(t2 <= limit, "stalled body cut off only after {t2:?}");
    assert!(
        t2 >= Duration::from_millis(1500),
        "cut off too early: {t2:?}"
    );
    if !resp.is_empty() {
        assert!(
            resp.starts_with("HTTP/1.1 408"),
            "stalled body answer: {resp}"
        );
    }

    let idle = idle_tls.await.unwrap();
    eprintln!("idle TLS connection: {idle:?}");
    assert!(
        idle.as_ref()
            .is_some_and(|(t, _)| *t <= Duration::from_secs(12)),
        "an idle TLS connection must be closed: {idle:?}"
    );
    let idle = idle_tcp.await.unwrap();
    eprintln!("idle TCP connection: {idle:?}");
    assert!(
        idle.as_ref()
            .is_some_and(|(t, _)| *t <= Duration::from_secs(12)),
        "a TCP connection that never starts TLS must be closed: {idle:?}"
    );

    // The bytes of the stalled body were kept; the upload can be resumed.
    let h = p.req(Method::HEAD, &format!("/1.0/uploads/{id}")).await;
    assert_eq!(h.status, 200);
    let off: u64 = h.header("upload-offset").unwrap().parse().unwrap();
    eprintln!("stalled upload kept {off} bytes");
    assert!(off <= size / 2);
    let r = p
        .patch_upload(&id, off, size - off, PatternBody::new(3, off, size).boxed())
        .await;
    r.expect(200);
    assert_eq!(r.metadata()["complete"], true);
}

struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::Builder::new()
            .prefix("aar-tmpfs-")
            .tempdir()
            .unwrap()
            .keep();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            let _ = std::fs::remove_dir(&dir);
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir))
    }
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

fn available_bytes(p: &Path) -> u64 {
    let out = Command::new("df")
        .args(["--output=avail", "-B1"])
        .arg(p)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .nth(1)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_disk_answers_507_and_keeps_serving() {
    let fs = match Tmpfs::mount("8m") {
        Ok(fs) => fs,
        Err(e) => {
            eprintln!(
                "SKIPPED full_disk_answers_507_and_keeps_serving: cannot mount a tmpfs ({e})"
            );
            return;
        }
    };
    let d = Daemon::builder("").root_dir(fs.path()).start();
    let p = d.publisher();

    // Something published before the disk fills up.
    let before = pattern(31, 0, (2 * MIB) as usize);
    let before_digest = p.upload(&before).await;
    p.publish(
        "before",
        Some(1),
        &manifest("before", &[]),
        &[("amd64", &before_digest)],
    )
    .await
    .expect(201);
    let free_before = available_bytes(fs.path());

    // 16 MiB into an 8 MiB filesystem: 507, either up front or while writing.
    let size = 16 * MIB;
    let digest = pattern_digest(32, size);
    let r = p.create_upload(&digest, size).await;
    let (status, msg, id) = if r.status == 201 {
        let id = upload_id(&r);
        let r = p
            .patch_upload(&id, 0, size, PatternBody::new(32, 0, size).boxed())
            .await;
        (r.status, r.error(), Some(id))
    } else {
        (r.status, r.error(), None)
    };
    assert_eq!(status, 507, "upload bigger than the disk: {msg}");
    let m = msg.to_lowercase();
    assert!(
        m.contains("space") || m.contains("full") || m.contains("storage"),
        "507 message says what is wrong: {msg}"
    );
    eprintln!("507 message: {msg}");

    // Nothing half-written: no blob, no temporary file; the upload's space is given back.
    assert!(!d.root_dir.join("blobs/sha256").join(&digest[7..]).exists());
    let tmp = tmp_files_under(fs.path());
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    if let Some(id) = &id {
        let h = p.req(Method::HEAD, &format!("/1.0/uploads/{id}")).await;
        if h.status == 200 {
            eprintln!(
                "upload kept after 507 at offset {:?}; deleting it",
                h.header("upload-offset")
            );
            p.delete(&format!("/1.0/uploads/{id}")).await.expect(200);
        }
    }
    let free_after = available_bytes(fs.path());
    assert!(
        free_after + 64 * KIB >= free_before,
        "space not given back: {free_before} free before, {free_after} after"
    );

    // Still serving: reads, and a small upload + publish.
    d.anonymous().get("/1.0").await.expect(200);
    let r = d
        .reader()
        .get("/1.0/applications/before/versions/1/images/amd64")
        .await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), &before[..]);
    let small = pattern(33, 0, (MIB) as usize);
    let small_digest = p.upload(&small).await;
    p.publish(
        "after",
        Some(1),
        &manifest("after", &[]),
        &[("amd64", &small_digest)],
    )
    .await
    .expect(201);
    let r = d
        .reader()
        .get("/1.0/applications/after/versions/1/images/amd64")
        .await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), &small[..]);

    // Two uploads that each fit when they start but not together: the second runs out of
    // space while writing (ENOSPC, not the up-front check) and must still end in a 507
    // that keeps nothing.
    let each = available_bytes(fs.path()) * 2 / 3;
    let (first, second) = (pattern_digest(34, each), pattern_digest(35, each));
    let first_id = upload_id(p.create_upload(&first, each).await.expect(201));
    let second_id = upload_id(p.create_upload(&second, each).await.expect(201));
    let r = p
        .patch_upload(&first_id, 0, each, PatternBody::new(34, 0, each).boxed())
        .await;
    r.expect(200);
    let r = p
        .patch_upload(&second_id, 0, each, PatternBody::new(35, 0, each).boxed())
        .await;
    assert_eq!(
        r.status.as_u16(),
        507,
        "out of space while writing: {}",
        r.error()
    );
    assert!(r.error().contains("no space left"), "{}", r.error());
    assert!(!d.root_dir.join("blobs/sha256").join(&second[7..]).exists());
    assert!(
        !d.root_dir.join("uploads").join(&second_id).exists(),
        "the failed upload is removed"
    );
    let tmp = tmp_files_under(fs.path());
    assert!(tmp.is_empty(), "temporary files left: {tmp:?}");
    d.reader()
        .get("/1.0/applications/before/versions/1/images/amd64")
        .await
        .expect(200);
    drop(d);
    drop(fs);
}

fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_off_transfers_leak_nothing() {
    let d = Daemon::start("");
    let p = d.publisher();
    let size = 16 * MIB;
    let digest = p.upload_pattern(91, size).await;
    p.publish(
        "leak",
        Some(1),
        &manifest("leak", &[]),
        &[("amd64", &digest)],
    )
    .await
    .expect(201);
    // Warm up, then count the daemon's file descriptors.
    d.reader().get("/1.0/applications/leak").await.expect(200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let baseline = open_fds(d.pid());

    for i in 0..20u64 {
        // A download dropped after its first bytes.
        let (conn, resp) = d
            .reader()
            .send(
                request(
                    Method::GET,
                    "/1.0/applications/leak/versions/1/images/amd64",
                )
                .body(empty_body())
                .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut body = resp.into_body();
        let _ = http_body_util::BodyExt::frame(&mut body).await;
        drop(body);
        drop(conn);
        // An upload dropped mid-body.
        let r = p.create_upload(&pattern_digest(200 + i, MIB), MIB).await;
        let id = upload_id(&r);
        let req = request(Method::PATCH, &format!("/1.0/uploads/{id}"))
            .header("upload-offset", "0")
            .header("content-length", MIB.to_string())
            .body(
                PatternBody::new(200 + i, 0, MIB)
                    .failing_at(MIB / 2)
                    .boxed(),
            )
            .unwrap();
        let _ = p.call(req).await;
        p.delete(&format!("/1.0/uploads/{id}")).await;
    }
    let settled = eventually(Duration::from_secs(10), || async {
        let n = open_fds(d.pid());
        (n <= baseline + 2).then_some(n)
    })
    .await;
    assert!(
        settled.is_some(),
        "file descriptors: {baseline} before, {} after 20 broken transfers",
        open_fds(d.pid())
    );
    d.reader().get("/1.0/applications/leak").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_body_is_not_cut_off() {
    // body-timeout is about a stalled body (no data for that long), not a slow one.
    let d = Daemon::start("http: {limits: {header-timeout: 2s, body-timeout: 2s}}");
    let p = d.publisher();
    // The payload is a file, streamed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("image.bin");
    std::fs::write(&path, pattern(95, 0, 3000)).unwrap();
    let (digest, size) = file_digest(&path);
    let r = p.create_upload(&digest, size).await;
    let id = upload_id(&r);
    let mut tls = p.tls().await.unwrap();
    let head = format!(
        "PATCH /1.0/uploads/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Offset: 0\r\n\
         Content-Length: {size}\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    let data = std::fs::read(&path).unwrap();
    let start = Instant::now();
    for chunk in data.chunks(600) {
        tls.write_all(chunk).await.unwrap();
        tls.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(900)).await;
    }
    // The answer, then the close once the kept-alive connection idles past header-timeout.
    let got = until_closed(&mut tls, start, Duration::from_secs(15))
        .await
        .map(|(_, g)| String::from_utf8_lossy(&g).to_string())
        .unwrap_or_default();
    assert!(got.starts_with("HTTP/1.1 200"), "slow body answer: {got:?}");
    let h = p.req(Method::HEAD, &format!("/1.0/uploads/{id}")).await;
    let r = p.create_upload(&digest, size).await;
    assert_eq!(
        r.status,
        200,
        "a {size}-byte body sent over {:?} was not accepted (upload HEAD {:?})",
        start.elapsed(),
        h.header("upload-offset")
    );

    // And the streamed-file helper.
    let path2 = dir.path().join("image2.bin");
    std::fs::write(&path2, pattern(96, 0, 700_000)).unwrap();
    let d2 = p.upload_file(&path2).await;
    assert_eq!(d2, file_digest(&path2).0);
}
