//! Uploads: resumable, digest-verified, deduplicated.
//!
//! Long on purpose: one upload rule per test function, each with its own daemon.

mod common;

use std::time::{Duration, Instant};

use common::*;
use hyper::Method;

/// Size of the big resumable upload: 1 GiB, or `AAR_TEST_BIG_UPLOAD_MIB`.
fn big_size() -> u64 {
    std::env::var("AAR_TEST_BIG_UPLOAD_MIB")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(GIB, |m: u64| m * MIB)
}

async fn head_offset(c: &Client, id: &str) -> Option<u64> {
    let r = c.req(Method::HEAD, &format!("/1.0/uploads/{id}")).await;
    if r.status != 200 {
        return None;
    }
    r.header("upload-offset")?.parse().ok()
}

/// HEAD until the offset stops moving (the server may still be draining the broken body).
async fn settled_offset(c: &Client, id: &str) -> u64 {
    let mut last = None;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let now = head_offset(c, id).await;
        if let Some(n) = now {
            if now == last {
                return n;
            }
        }
        assert!(
            Instant::now() < deadline,
            "upload offset never settled: {now:?}"
        );
        last = now;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_upload_broken_off_resumed_and_downloaded_identical() {
    let size = big_size();
    let seed = 42;
    let started = Instant::now();
    let digest = pattern_digest(seed, size);
    let d = Daemon::start("");
    let p = d.publisher();

    let r = p.create_upload(&digest, size).await;
    r.expect(201);
    let m = r.metadata();
    assert_eq!(m["digest"], digest.as_str());
    assert_eq!(m["size"], size);
    assert_eq!(m["offset"], 0);
    assert_eq!(m["complete"], false);
    let id = upload_id(&r);
    assert_eq!(head_offset(&p, &id).await, Some(0));

    // Send ~40% of the image with a Content-Length for all of it, then drop the connection.
    let cut = size / 5 * 2 + 12345;
    let req = request(Method::PATCH, &format!("/1.0/uploads/{id}"))
        .header("upload-offset", "0")
        .header("content-length", size.to_string())
        .header("content-type", "application/octet-stream")
        .body(PatternBody::new(seed, 0, size).failing_at(cut).boxed())
        .unwrap();
    let res = p.call(req).await;
    assert!(
        res.is_err() || !res.as_ref().unwrap().status.is_success(),
        "a broken-off PATCH must not succeed: {res:?}"
    );

    let kept = settled_offset(&p, &id).await;
    eprintln!(
        "broken off after {cut} bytes, server kept {kept} ({:.1?})",
        started.elapsed()
    );
    assert!(kept > 0, "bytes received before the drop are kept");
    assert!(
        kept <= cut,
        "server cannot hold more than was sent ({kept} > {cut})"
    );
    let (s, st) = p.get_json(&format!("/1.0/uploads/{id}")).await;
    assert_eq!(s, 200, "{st}");
    assert_eq!(st["metadata"]["offset"], kept);
    assert_eq!(st["metadata"]["complete"], false);

    // A wrong offset: 409 with the server's offset.
    let r = p
        .patch_upload(&id, kept + 1, 10, full_body(pattern(seed, kept + 1, 10)))
        .await;
    r.expect_error(409);
    assert_eq!(r.header("upload-offset"), Some(kept.to_string()));

    // Resume from the kept offset.
    let r = p
        .patch_upload(
            &id,
            kept,
            size - kept,
            PatternBody::new(seed, kept, size).boxed(),
        )
        .await;
    r.expect(200);
    let m = r.metadata();
    assert_eq!(m["complete"], true, "{m}");
    assert_eq!(m["offset"], size, "{m}");
    assert_eq!(m["digest"], digest.as_str());
    eprintln!("upload complete ({:.1?})", started.elapsed());

    // Nothing left in uploads/, the blob in place.
    let hex = &digest["sha256:".len()..];
    let blob = d.root_dir.join("blobs/sha256").join(hex);
    assert_eq!(std::fs::metadata(&blob).unwrap().len(), size);
    assert!(files_under(&d.root_dir.join("uploads")).is_empty());

    // Publish and download it back.
    p.publish("big", Some(1), &manifest("big", &[]), &[("amd64", &digest)])
        .await
        .expect(201);
    let (_c, resp) = d
        .reader()
        .send(
            request(Method::GET, "/1.0/applications/big/versions/1/images/amd64")
                .body(empty_body())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-length"], size.to_string().as_str());
    let (n, got) = hash_body(resp).await.unwrap();
    assert_eq!(n, size);
    assert_eq!(
        got, digest,
        "downloaded bytes differ from the uploaded ones"
    );
    eprintln!(
        "{} MiB round trip took {:.1?}",
        size / MIB,
        started.elapsed()
    );

    // Memory stays bounded, independent of the image size.
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.pid())).unwrap();
    let hwm_kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    eprintln!("daemon peak RSS: {} MiB", hwm_kib / 1024);
    assert!(
        hwm_kib * KIB < 256 * MIB,
        "daemon peak RSS {} MiB for a {} MiB image",
        hwm_kib / 1024,
        size / MIB
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_image() {
    let d = Daemon::start("");
    let p = d.publisher();
    let digest = digest_of(b"");
    let r = p.create_upload(&digest, 0).await;
    match r.status.as_u16() {
        200 => assert_eq!(r.metadata()["complete"], true),
        201 => {
            let id = upload_id(&r);
            let r = p.patch_upload(&id, 0, 0, empty_body()).await;
            r.expect(200);
            assert_eq!(r.metadata()["complete"], true, "{}", r.text());
        }
        s => panic!("empty upload: {s} {}", r.text()),
    }
    p.publish(
        "empty",
        Some(1),
        &manifest("empty", &[]),
        &[("amd64", &digest)],
    )
    .await
    .expect(201);
    let url = "/1.0/applications/empty/versions/1/images/amd64";
    let r = d.reader().get(url).await;
    r.expect(200);
    assert_eq!(r.header("content-length").as_deref(), Some("0"));
    assert!(r.body.is_empty());
    let r = d
        .reader()
        .req_with(Method::GET, url, &[("range", "bytes=0-")], empty_body())
        .await;
    assert_eq!(r.status, 416, "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_digest_is_refused_and_nothing_is_kept() {
    let d = Daemon::start("");
    let p = d.publisher();
    let data = pattern(5, 0, (MIB + 17) as usize);
    let wrong = digest_of(b"something else");
    let r = p.create_upload(&wrong, data.len() as u64).await;
    r.expect(201);
    let id = upload_id(&r);
    let r = p
        .patch_upload(&id, 0, data.len() as u64, full_body(data.clone()))
        .await;
    let e = r.expect_error(400);
    assert!(e.contains("digest"), "{e}");
    assert!(
        e.contains(&digest_of(&data)[7..20]) || e.contains(&wrong[7..20]),
        "{e}"
    );

    assert!(
        files_under(&d.root_dir.join("blobs")).is_empty(),
        "blobs/: {:?}",
        files_under(&d.root_dir.join("blobs"))
    );
    assert!(
        files_under(&d.root_dir.join("uploads")).is_empty(),
        "uploads/: {:?}",
        files_under(&d.root_dir.join("uploads"))
    );
    assert_eq!(head_offset(&p, &id).await, None, "the upload is deleted");
    p.get(&format!("/1.0/uploads/{id}")).await.expect_error(404);
    assert!(tmp_files_under(&d.root_dir).is_empty());

    // Cannot be published.
    let r = p
        .publish("bad", Some(1), &manifest("bad", &[]), &[("amd64", &wrong)])
        .await;
    assert!(r.status.is_client_error(), "{}", r.text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_chunks_and_overflow() {
    let d = Daemon::start("");
    let p = d.publisher();
    let size = 300 * KIB;
    let seed = 9;
    let digest = pattern_digest(seed, size);
    let r = p.create_upload(&digest, size).await;
    r.expect(201);
    let id = upload_id(&r);

    // Three PATCHes: Content-Length, chunked, Content-Length.
    let r = p
        .patch_upload(&id, 0, 1000, PatternBody::new(seed, 0, 1000).boxed())
        .await;
    r.expect(200);
    assert_eq!(r.metadata()["offset"], 1000);
    assert_eq!(r.metadata()["complete"], false);

    // Wrong offsets: 409 with the real one.
    for wrong in [0, 999, 1001, size] {
        let r = p
            .patch_upload(&id, wrong, 10, full_body(pattern(seed, wrong, 10)))
            .await;
        let e = r.expect_error(409);
        assert!(e.contains("offset"), "{e}");
        assert_eq!(r.header("upload-offset").as_deref(), Some("1000"));
    }
    assert_eq!(head_offset(&p, &id).await, Some(1000));

    let r = p
        .req_with(
            Method::PATCH,
            &format!("/1.0/uploads/{id}"),
            &[("upload-offset", "1000")],
            PatternBody::new(seed, 1000, 100 * KIB).chunked().boxed(),
        )
        .await;
    r.expect(200);
    assert_eq!(r.metadata()["offset"], 100 * KIB);

    // Bytes past the size: 400, and the upload keeps its offset (or is dropped).
    let r = p
        .patch_upload(
            &id,
            100 * KIB,
            size,
            PatternBody::new(seed, 100 * KIB, 100 * KIB + size).boxed(),
        )
        .await;
    let e = r.expect_error(400);
    assert!(
        e.contains(&size.to_string()),
        "names the declared size: {e}"
    );
    if let Some(off) = head_offset(&p, &id).await {
        assert!(off <= size);
        let r = p
            .patch_upload(
                &id,
                off,
                size - off,
                PatternBody::new(seed, off, size).boxed(),
            )
            .await;
        r.expect(200);
        assert_eq!(r.metadata()["complete"], true);
    } else {
        eprintln!("upload was dropped after the overflow; starting again");
        let r = p.create_upload(&digest, size).await;
        let id = upload_id(&r);
        p.patch_upload(&id, 0, size, PatternBody::new(seed, 0, size).boxed())
            .await
            .expect(200);
    }
    assert!(d.root_dir.join("blobs/sha256").join(&digest[7..]).is_file());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn existing_digest_is_deduplicated() {
    let d = Daemon::start("");
    let p = d.publisher();
    let data = pattern(11, 0, 200_000);
    let digest = p.upload(&data).await;
    let r = p.create_upload(&digest, data.len() as u64).await;
    r.expect(200);
    let m = r.metadata();
    assert_eq!(m["complete"], true, "{m}");
    assert_eq!(m["digest"], digest.as_str());
    assert_eq!(m["size"], data.len());
    assert_eq!(files_under(&d.root_dir.join("blobs")).len(), 1);
    assert!(files_under(&d.root_dir.join("uploads")).is_empty());
    // Two applications share the blob.
    p.publish("one", Some(1), &manifest("one", &[]), &[("amd64", &digest)])
        .await
        .expect(201);
    p.publish("two", Some(1), &manifest("two", &[]), &[("amd64", &digest)])
        .await
        .expect(201);
    assert_eq!(files_under(&d.root_dir.join("blobs")).len(), 1);
    let r = d
        .reader()
        .get("/1.0/applications/two/versions/1/images/amd64")
        .await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), &data[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_status_abort_and_bad_headers() {
    let d = Daemon::start("");
    let p = d.publisher();
    let data = b"hello, registry";
    let digest = digest_of(data);
    let r = p.create_upload(&digest, data.len() as u64).await;
    r.expect(201);
    let id = upload_id(&r);

    let h = p.req(Method::HEAD, &format!("/1.0/uploads/{id}")).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("upload-offset").as_deref(), Some("0"));
    let (s, v) = p.get_json(&format!("/1.0/uploads/{id}")).await;
    assert_eq!(s, 200);
    let m = &v["metadata"];
    assert_eq!(m["id"], id.as_str());
    assert_eq!(m["digest"], digest.as_str());
    assert_eq!(m["size"], data.len());
    assert_eq!(m["offset"], 0);
    assert_eq!(m["complete"], false);

    p.patch_upload(&id, 0, 5, full_body(&data[..5]))
        .await
        .expect(200);
    p.delete(&format!("/1.0/uploads/{id}")).await.expect(200);
    assert_eq!(head_offset(&p, &id).await, None);
    p.patch_upload(&id, 5, 5, full_body(&data[5..10]))
        .await
        .expect_error(404);
    assert!(files_under(&d.root_dir.join("uploads")).is_empty());
    assert!(files_under(&d.root_dir.join("blobs")).is_empty());
    p.get("/1.0/uploads/not-an-upload").await.expect(404);

    // Bad or missing headers name the header.
    let size = data.len().to_string();
    for (headers, needle) in [
        (vec![("x-aar-size", size.as_str())], "x-aar-digest"),
        (
            vec![("x-aar-digest", "md5:abcdef"), ("x-aar-size", &size)],
            "x-aar-digest",
        ),
        (
            vec![
                (
                    "x-aar-digest",
                    &digest.to_uppercase().replace("SHA256", "sha256"),
                ),
                ("x-aar-size", &size),
            ],
            "x-aar-digest",
        ),
        (vec![("x-aar-digest", digest.as_str())], "x-aar-size"),
        (
            vec![("x-aar-digest", digest.as_str()), ("x-aar-size", "-5")],
            "x-aar-size",
        ),
        (
            vec![("x-aar-digest", digest.as_str()), ("x-aar-size", "ten")],
            "x-aar-size",
        ),
    ] {
        let r = p
            .req_with(Method::POST, "/1.0/uploads", &headers, empty_body())
            .await;
        assert!(
            r.status == 400 || r.status == 411,
            "{headers:?}: {} {}",
            r.status,
            r.text()
        );
        let e = r.error().to_lowercase();
        assert!(
            e.contains(needle),
            "{headers:?}: message should name {needle}: {e}"
        );
    }

    // PATCH without, or with a malformed, Upload-Offset.
    let r = p.create_upload(&digest, data.len() as u64).await;
    let id = upload_id(&r);
    for headers in [
        vec![],
        vec![("upload-offset", "zero")],
        vec![("upload-offset", "-1")],
    ] {
        let r = p
            .req_with(
                Method::PATCH,
                &format!("/1.0/uploads/{id}"),
                &headers,
                full_body(&data[..]),
            )
            .await;
        let e = r.expect_error(400);
        assert!(e.contains("upload-offset"), "{headers:?}: {e}");
    }
    assert_eq!(head_offset(&p, &id).await, Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patch_with_expect_100_continue() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let d = Daemon::start("");
    let p = d.publisher();
    let size = 256 * KIB;
    let digest = pattern_digest(83, size);
    let r = p.create_upload(&digest, size).await;
    let id = upload_id(&r);

    // As curl does for large bodies: headers first, the body only after "100 Continue".
    let mut tls = p.tls().await.unwrap();
    let head = format!(
        "PATCH /1.0/uploads/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Offset: 0\r\n\
         Content-Length: {size}\r\nExpect: 100-continue\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("no 100 Continue within 5 s")
        .unwrap();
    let interim = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(
        interim.starts_with("HTTP/1.1 100"),
        "interim response: {interim:?}"
    );
    tls.write_all(&pattern(83, 0, size as usize)).await.unwrap();
    tls.flush().await.unwrap();
    let mut resp = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !String::from_utf8_lossy(&resp).contains("\"complete\"") && Instant::now() < deadline {
        let n = tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        if n == 0 {
            break;
        }
        resp.extend_from_slice(&buf[..n]);
    }
    let resp = String::from_utf8_lossy(&resp).to_string();
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp.contains("\"complete\":true"), "{resp}");

    // A wrong offset with Expect: refused without waiting for the body.
    let r = p.create_upload(&pattern_digest(84, size), size).await;
    let id = upload_id(&r);
    let mut tls = p.tls().await.unwrap();
    let head = format!(
        "PATCH /1.0/uploads/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Offset: 7\r\n\
         Content-Length: {size}\r\nExpect: 100-continue\r\n\r\n"
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    let n = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("no answer within 5 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 409"), "{answer:?}");
}

fn blob_exists(d: &Daemon, digest: &str) -> bool {
    d.root_dir.join("blobs/sha256").join(&digest[7..]).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_collection_keeps_what_is_referenced_or_fresh() {
    let d = Daemon::start("gc: {interval: 1s, upload-expiry: 3s}");
    let p = d.publisher();
    let x = pattern(71, 0, 100_000);
    let dx = p.upload(&x).await;
    p.publish("keep", Some(1), &manifest("keep", &[]), &[("amd64", &dx)])
        .await
        .expect(201);
    let dz = p.upload(&pattern(72, 0, 100_000)).await; // never published
    let r = p.create_upload(&digest_of(b"idle upload"), 11).await;
    let idle = upload_id(&r);

    // Young blobs and uploads survive the first passes: a blob may be waiting for its publish.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        blob_exists(&d, &dz),
        "a fresh unreferenced blob was collected"
    );
    assert_eq!(head_offset(&p, &idle).await, Some(0));

    // Then the unreferenced blob and the idle upload go; the referenced blob stays.
    let gone = eventually(Duration::from_secs(10), || async {
        (!blob_exists(&d, &dz) && head_offset(&p, &idle).await.is_none()).then_some(())
    })
    .await;
    assert!(
        gone.is_some(),
        "unreferenced blob or idle upload never collected"
    );
    assert!(blob_exists(&d, &dx), "a referenced blob was collected");
    assert!(files_under(&d.root_dir.join("uploads")).is_empty());
    d.reader()
        .get("/1.0/applications/keep/versions/1/images/amd64")
        .await
        .expect(200);

    // Deleting the application leaves its (old) blob unreferenced. Asking to upload it
    // again while it still exists answers "complete"; the publish that follows must then
    // still find it, even with collections running in between.
    p.delete("/1.0/applications/keep").await.expect(200);
    let r = p.create_upload(&dx, x.len() as u64).await;
    if r.status == 200 {
        tokio::time::sleep(Duration::from_millis(2500)).await;
    } else {
        let id = upload_id(&r);
        p.patch_upload(&id, 0, x.len() as u64, full_body(x.clone()))
            .await
            .expect(200);
    }
    let r = p
        .publish("reuse", Some(1), &manifest("reuse", &[]), &[("amd64", &dx)])
        .await;
    assert_eq!(
        r.status,
        201,
        "a blob deduplicated by POST /1.0/uploads was collected before its publish: {}",
        r.text()
    );
    let r = d
        .reader()
        .get("/1.0/applications/reuse/versions/1/images/amd64")
        .await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), &x[..]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_uploads_of_one_blob_and_busy_uploads() {
    let d = Daemon::start("");
    let p = d.publisher();
    let size = 4 * MIB;
    let digest = pattern_digest(81, size);

    // Four uploads of the same bytes at once: all complete, one blob.
    let mut ids = Vec::new();
    for _ in 0..4 {
        let r = p.create_upload(&digest, size).await;
        r.expect(201);
        ids.push(upload_id(&r));
    }
    let mut tasks = Vec::new();
    for id in ids {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            p.patch_upload(&id, 0, size, PatternBody::new(81, 0, size).boxed())
                .await
        }));
    }
    for t in tasks {
        let r = t.await.unwrap();
        r.expect(200);
        assert_eq!(r.metadata()["complete"], true);
    }
    assert_eq!(files_under(&d.root_dir.join("blobs")).len(), 1);
    assert!(files_under(&d.root_dir.join("uploads")).is_empty());
    assert!(tmp_files_under(&d.root_dir).is_empty());

    // An incomplete upload cannot be published.
    let size2 = 64 * KIB;
    let digest2 = pattern_digest(82, size2);
    let r = p.create_upload(&digest2, size2).await;
    let id = upload_id(&r);
    p.patch_upload(&id, 0, 1000, full_body(pattern(82, 0, 1000)))
        .await
        .expect(200);
    let r = p
        .publish(
            "early",
            Some(1),
            &manifest("early", &[]),
            &[("amd64", &digest2)],
        )
        .await;
    assert!(r.status.is_client_error(), "{}", r.text());

    // While one PATCH is in flight, a second one on the same upload is refused, and the
    // upload is not corrupted.
    let mut tls = p.tls().await.unwrap();
    use tokio::io::AsyncWriteExt;
    let head = format!(
        "PATCH /1.0/uploads/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Offset: 1000\r\n\
         Content-Length: {}\r\n\r\n",
        size2 - 1000
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&pattern(82, 1000, 1000)).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let r = p
        .patch_upload(
            &id,
            1000,
            size2 - 1000,
            PatternBody::new(82, 1000, size2).boxed(),
        )
        .await;
    assert_eq!(r.status, 409, "concurrent PATCH: {}", r.text());
    // The first PATCH finishes the upload.
    tls.write_all(&pattern(82, 2000, (size2 - 2000) as usize))
        .await
        .unwrap();
    tls.flush().await.unwrap();
    let done = eventually(Duration::from_secs(10), || async {
        let r = p.create_upload(&digest2, size2).await;
        (r.status == 200).then_some(())
    })
    .await;
    assert!(
        done.is_some(),
        "the first PATCH did not complete the upload"
    );
    drop(tls);
    p.publish(
        "early",
        Some(1),
        &manifest("early", &[]),
        &[("amd64", &digest2)],
    )
    .await
    .expect(201);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_active_upload_is_not_collected_as_idle() {
    // upload-expiry is about idle uploads: one that keeps receiving bytes for longer than
    // that must not be collected under its sender.
    let d = Daemon::start("gc: {interval: 1s, upload-expiry: 2s}");
    let p = d.publisher();
    let size = 2 * MIB;
    let digest = pattern_digest(97, size);
    let r = p.create_upload(&digest, size).await;
    let id = upload_id(&r);
    let started = Instant::now();
    // 32 KiB every 100 ms: about 6.5 s for the whole body.
    let r = p
        .patch_upload(
            &id,
            0,
            size,
            PatternBody::new(97, 0, size)
                .paced(32 * 1024, Duration::from_millis(100))
                .boxed(),
        )
        .await;
    eprintln!("slow upload took {:?}", started.elapsed());
    assert!(started.elapsed() > Duration::from_secs(4));
    assert_eq!(
        r.status,
        200,
        "an upload receiving data was collected: {}",
        r.text()
    );
    assert_eq!(r.metadata()["complete"], true);

    // Across several PATCHes, each shorter than the expiry, too.
    let digest = pattern_digest(98, size);
    let r = p.create_upload(&digest, size).await;
    let id = upload_id(&r);
    let step = size / 4;
    for i in 0..4 {
        let r = p
            .patch_upload(
                &id,
                i * step,
                step,
                PatternBody::new(98, i * step, (i + 1) * step)
                    .paced(64 * 1024, Duration::from_millis(150))
                    .boxed(),
            )
            .await;
        assert_eq!(r.status, 200, "part {i}: {}", r.text());
    }
}

/// PATCHes `count` upload ids that look like the daemon's but name no upload, over four
/// kept-alive connections.
async fn patch_unknown_uploads(p: &Client, first: u64, count: u64) {
    let mut tasks = Vec::new();
    for lane in 0..4 {
        let p = p.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = p.connect().await.unwrap();
            for i in (first + lane..first + count).step_by(4) {
                let id = format!("{:08x}-0000-4000-8000-{i:012x}", lane);
                let req = request(Method::PATCH, &format!("/1.0/uploads/{id}"))
                    .header("upload-offset", "0")
                    .header("content-type", "application/octet-stream")
                    .body(full_body(&b"x"[..]))
                    .unwrap();
                let r = conn.call(req).await.unwrap();
                assert_eq!(r.status, 404, "PATCH {id}: {}", r.text());
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn patches_to_unknown_uploads_leave_nothing_behind() {
    let d = Daemon::start("");
    let p = d.publisher();
    // Warm up allocator and connections first, so that what follows measures growth only.
    patch_unknown_uploads(&p, 0, 2_000).await;
    let before = rss_kib(d.pid());
    let started = Instant::now();
    patch_unknown_uploads(&p, 2_000, 50_000).await;
    let after = rss_kib(d.pid());
    eprintln!(
        "RSS {before} KiB before, {after} KiB after 50,000 PATCHes to unknown uploads ({:?})",
        started.elapsed()
    );
    assert!(
        after < before + 2048,
        "50,000 PATCHes to unknown uploads grew the daemon from {before} to {after} KiB"
    );
    // Uploads still work.
    let digest = p.upload(b"still uploading").await;
    assert!(blob_exists(&d, &digest));
}
