//! Crash safety: `kill -9` in the middle of uploads and publishing, then restart.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use hyper::Method;
use serde_json::Value;

/// Checks that every listed application and version is complete and readable, and returns
/// `name -> versions`.
async fn check_consistent(d: &Daemon) -> Vec<(String, Vec<u64>)> {
    let c = d.reader();
    let (s, list) = c.get_json("/1.0/applications").await;
    assert_eq!(s, 200, "{list}");
    let mut out = Vec::new();
    for app in list["metadata"].as_array().unwrap() {
        let name = app["name"].as_str().unwrap().to_string();
        let versions = version_numbers(app);
        assert!(
            !versions.is_empty(),
            "application without versions listed: {app}"
        );
        for v in &versions {
            let (s, ver) = c
                .get_json(&format!("/1.0/applications/{name}/versions/{v}"))
                .await;
            assert_eq!(s, 200, "{name} v{v} listed but not readable: {ver}");
            let images = ver["metadata"]["images"].as_object().unwrap().clone();
            assert!(!images.is_empty(), "{name} v{v} has no images");
            for (arch, img) in images {
                let url = format!("/1.0/applications/{name}/versions/{v}/images/{arch}");
                let size = img["size"].as_u64().unwrap();
                let (_conn, resp) = c
                    .send(request(Method::GET, &url).body(empty_body()).unwrap())
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 200, "{url}");
                let (n, digest) = hash_body(resp).await.unwrap();
                assert_eq!(n, size, "{url}: size");
                assert_eq!(Value::from(digest), img["digest"], "{url}: digest");
            }
        }
        out.push((name, versions));
    }
    out.sort();
    out
}

/// Uploads `data` in one PATCH; None on any failure (the daemon may be killed meanwhile).
async fn try_upload(c: &Client, data: Vec<u8>) -> Option<String> {
    let digest = digest_of(&data);
    let req = request(Method::POST, "/1.0/uploads")
        .header("x-aar-digest", &digest)
        .header("x-aar-size", data.len().to_string())
        .body(empty_body())
        .unwrap();
    let r = c.call(req).await.ok()?;
    if r.status == 200 {
        return Some(digest);
    }
    if r.status != 201 {
        return None;
    }
    let id = r.metadata()["id"].as_str()?.to_string();
    let req = request(Method::PATCH, &format!("/1.0/uploads/{id}"))
        .header("upload-offset", "0")
        .body(full_body(data))
        .unwrap();
    let r = c.call(req).await.ok()?;
    (r.status == 200).then_some(digest)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_during_upload_and_publishing_then_restart() {
    let mut d = Daemon::start("");
    let p = d.publisher();

    // Published before the crash: must survive intact.
    let stable_data = pattern(21, 0, (4 * MIB) as usize);
    let stable_digest = p.upload(&stable_data).await;
    p.publish(
        "stable",
        Some(1),
        &manifest("stable", &["keep"]),
        &[("amd64", &stable_digest)],
    )
    .await
    .expect(201);
    p.publish_simple("stable", Some(2), &["keep"], &["amd64", "arm64"])
        .await;

    // A large upload in flight.
    let big = 256 * MIB;
    let big_digest = pattern_digest(22, big);
    let r = p.create_upload(&big_digest, big).await;
    r.expect(201);
    let big_id = upload_id(&r);
    let body = PatternBody::new(22, 0, big);
    let sent = body.sent.clone();
    let p2 = p.clone();
    let id2 = big_id.clone();
    let upload = tokio::spawn(async move {
        p2.call(
            request(Method::PATCH, &format!("/1.0/uploads/{id2}"))
                .header("upload-offset", "0")
                .header("content-length", big.to_string())
                .body(body.boxed())
                .unwrap(),
        )
        .await
    });

    // Publishers in flight: small uploads + publish, as fast as possible.
    let stop = Arc::new(AtomicBool::new(false));
    let published = Arc::new(AtomicU64::new(0));
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut churn = Vec::new();
    for w in 0..3u64 {
        let p = p.clone();
        let stop = stop.clone();
        let published = published.clone();
        let in_flight = in_flight.clone();
        churn.push(tokio::spawn(async move {
            let name = format!("churn-{w}");
            let mut v = 1u64;
            while !stop.load(Ordering::SeqCst) && v <= 150 {
                let data = pattern(1000 * w + v, 0, 64 * 1024 + v as usize);
                let Some(digest) = try_upload(&p, data).await else {
                    break;
                };
                let body = serde_json::json!({
                    "version": v,
                    "manifest": manifest(&name, &["churn"]),
                    "images": {"amd64": digest, "arm64": digest},
                });
                let req = request(Method::POST, &format!("/1.0/applications/{name}/versions"))
                    .header("content-type", "application/json")
                    .body(full_body(serde_json::to_vec(&body).unwrap()))
                    .unwrap();
                in_flight.fetch_add(1, Ordering::SeqCst);
                let res = p.call(req).await;
                in_flight.fetch_sub(1, Ordering::SeqCst);
                match res {
                    Ok(r) if r.status == 201 => {
                        published.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => break,
                }
                v += 1;
            }
        }));
    }

    // Let the big upload get going, then crash.
    let t = Instant::now();
    while (sent.load(Ordering::SeqCst) < 64 * MIB || published.load(Ordering::SeqCst) < 3)
        && t.elapsed() < Duration::from_secs(60)
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        published.load(Ordering::SeqCst) >= 3,
        "publishing never got going: {} versions in 60 s",
        published.load(Ordering::SeqCst)
    );
    // Aim the kill at a moment when a publish request is in flight.
    let t = Instant::now();
    while in_flight.load(Ordering::SeqCst) == 0 && t.elapsed() < Duration::from_secs(5) {
        tokio::task::yield_now().await;
    }
    let publishing = in_flight.load(Ordering::SeqCst);
    d.kill9();
    stop.store(true, Ordering::SeqCst);
    let up = upload.await.unwrap();
    assert!(up.is_err() || up.as_ref().unwrap().status != 200, "{up:?}");
    for h in churn {
        // A worker stuck in a panic (e.g. a helper assertion during the crash) is fine.
        let _ = h.await;
    }
    eprintln!(
        "killed with {} MiB of the big upload sent, {publishing} publish requests in flight, \
         {} versions published",
        sent.load(Ordering::SeqCst) / MIB,
        published.load(Ordering::SeqCst)
    );

    d.restart();
    let tmp = tmp_files_under(&d.root_dir);
    assert!(tmp.is_empty(), ".tmp- files left after restart: {tmp:?}");

    let apps = check_consistent(&d).await;
    eprintln!("after restart: {apps:?}");
    let stable = apps
        .iter()
        .find(|(n, _)| n == "stable")
        .expect("stable listed");
    assert_eq!(stable.1, [1, 2]);
    let r = d
        .reader()
        .get("/1.0/applications/stable/versions/1/images/amd64")
        .await;
    r.expect(200);
    assert_eq!(r.body.as_ref(), &stable_data[..]);
    // Every version acknowledged with 201 before the crash is there.
    let churned: u64 = apps
        .iter()
        .filter(|(n, _)| n.starts_with("churn-"))
        .map(|(_, v)| v.len() as u64)
        .sum();
    assert!(
        churned >= published.load(Ordering::SeqCst),
        "{churned} churn versions listed, {} acknowledged",
        published.load(Ordering::SeqCst)
    );
    for (n, vs) in apps.iter().filter(|(n, _)| n.starts_with("churn-")) {
        let expect: Vec<u64> = (1..=vs.len() as u64).collect();
        assert_eq!(
            vs, &expect,
            "{n}: versions are published in order, none partial"
        );
    }
    // The big blob is not there.
    assert!(!d
        .root_dir
        .join("blobs/sha256")
        .join(&big_digest[7..])
        .exists());

    // The interrupted upload is either gone or resumable to completion.
    let p = d.publisher();
    let h = p.req(Method::HEAD, &format!("/1.0/uploads/{big_id}")).await;
    if h.status == 200 {
        let off: u64 = h.header("upload-offset").unwrap().parse().unwrap();
        eprintln!("interrupted upload survived at offset {off}; resuming");
        assert!(off <= sent.load(Ordering::SeqCst));
        let r = p
            .patch_upload(
                &big_id,
                off,
                big - off,
                PatternBody::new(22, off, big).boxed(),
            )
            .await;
        r.expect(200);
        assert_eq!(r.metadata()["complete"], true);
    } else {
        assert_eq!(h.status, 404, "HEAD of the interrupted upload");
    }

    // A fresh daemon (new state directory) on the same root lists everything.
    d.stop_with("TERM");
    let fresh = Daemon::builder("").root_dir(&d.root_dir.clone()).start();
    let again = check_consistent(&fresh).await;
    assert_eq!(
        again, apps,
        "a fresh daemon on the existing root lists everything"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leftovers_are_cleaned_at_start() {
    let mut d = Daemon::start("");
    let p = d.publisher();
    p.publish_simple("tidy", Some(1), &[], &["amd64"]).await;
    d.kill9();

    // What a crash between write and rename leaves behind.
    let root = d.root_dir.clone();
    let planted = [
        root.join("blobs/sha256/.tmp-123abc"),
        root.join("apps/tidy/versions/.tmp-2.json"),
        root.join("apps/.tmp-newapp"),
    ];
    for f in &planted {
        std::fs::create_dir_all(f.parent().unwrap()).unwrap();
        std::fs::write(f, b"half-written").unwrap();
    }
    d.restart();
    let tmp = tmp_files_under(&root);
    assert!(tmp.is_empty(), "not cleaned at start: {tmp:?}");
    let apps = check_consistent(&d).await;
    assert_eq!(apps, [("tidy".to_string(), vec![1])]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_upload_bytes_survive_kill9_and_restart() {
    let mut d = Daemon::start("");
    let size = 3 * MIB + 7;
    let seed = 23;
    let digest = pattern_digest(seed, size);
    let p = d.publisher();
    let r = p.create_upload(&digest, size).await;
    let id = upload_id(&r);

    // Unaligned offsets on purpose.
    let first = 1_000_003;
    let r = p
        .patch_upload(&id, 0, first, PatternBody::new(seed, 0, first).boxed())
        .await;
    r.expect(200);
    assert_eq!(r.metadata()["offset"], first);

    d.kill9();
    d.restart();
    let p = d.publisher();
    let h = p.req(Method::HEAD, &format!("/1.0/uploads/{id}")).await;
    assert_eq!(h.status, 200, "upload lost by a crash");
    assert_eq!(
        h.header("upload-offset"),
        Some(first.to_string()),
        "acknowledged bytes survive a crash"
    );

    let second = 2_000_001;
    let r = p
        .patch_upload(
            &id,
            first,
            second - first,
            PatternBody::new(seed, first, second).boxed(),
        )
        .await;
    r.expect(200);
    d.stop_with("TERM");
    d.restart();
    let p = d.publisher();
    let h = p.req(Method::HEAD, &format!("/1.0/uploads/{id}")).await;
    assert_eq!(h.header("upload-offset"), Some(second.to_string()));

    let r = p
        .patch_upload(
            &id,
            second,
            size - second,
            PatternBody::new(seed, second, size).boxed(),
        )
        .await;
    r.expect(200);
    assert_eq!(
        r.metadata()["complete"],
        true,
        "digest verified across restarts"
    );
    p.publish(
        "resumed",
        Some(1),
        &manifest("resumed", &[]),
        &[("amd64", &digest)],
    )
    .await
    .expect(201);
    let (_c, resp) = d
        .reader()
        .send(
            request(
                Method::GET,
                "/1.0/applications/resumed/versions/1/images/amd64",
            )
            .body(empty_body())
            .unwrap(),
        )
        .await
        .unwrap();
    let (n, got) = hash_body(resp).await.unwrap();
    assert_eq!((n, got), (size, digest));
}
