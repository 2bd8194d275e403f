//! Storage damaged behind the registry's back: a version record that no longer parses, and
//! blobs truncated, extended or with flipped bytes. Nothing a record references is ever
//! collected, damaged bytes are never served as a clean 200, and `aar verify` finds
//! every case and says what to do.

mod common;

use common::*;
use hyper::Method;
use std::fs;
use std::path::PathBuf;
use std::time::Duration;

fn blob_path(d: &Daemon, digest: &str) -> PathBuf {
    d.root_dir
        .join("blobs/sha256")
        .join(digest.strip_prefix("sha256:").unwrap())
}

fn record_path(d: &Daemon, app: &str, version: u32) -> PathBuf {
    d.root_dir
        .join("apps")
        .join(app)
        .join("versions")
        .join(format!("{version}.json"))
}

fn verify(d: &Daemon, repair: bool) -> (bool, String) {
    let out = if repair {
        d.run(&["verify", "--repair"], &[])
    } else {
        d.run(&["verify"], &[])
    };
    (out.status.success(), out_text(&out))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_never_collects_what_an_unreadable_record_references() {
    let mut d = Daemon::start("gc: {interval: 1s, upload-expiry: 1s}\n");
    let p = d.publisher();
    let kept = p.upload(b"image of the version whose record breaks").await;
    p.publish(
        "broken",
        Some(1),
        &manifest("broken", &[]),
        &[("amd64", &kept)],
    )
    .await
    .expect(201);
    let other = p.upload(b"image of a sound version").await;
    p.publish(
        "broken",
        Some(2),
        &manifest("broken", &[]),
        &[("amd64", &other)],
    )
    .await
    .expect(201);
    d.stop_with("TERM");

    // Damage from outside: the record of version 1 is cut in half.
    let record = record_path(&d, "broken", 1);
    let text = fs::read(&record).unwrap();
    fs::write(&record, &text[..text.len() / 2]).unwrap();
    d.restart();

    // Several GC runs later (one at start, then every second, grace 1 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert!(
        blob_path(&d, &kept).exists(),
        "GC deleted the image of an unreadable record"
    );
    // Never a partial answer: AMS would delete version 1 if the lists went on without it.
    let p = d.publisher();
    for path in ["/1.0/applications", "/1.0/applications/broken"] {
        let r = p.get(path).await;
        let message = r.expect_error(503);
        assert!(message.contains("aar verify"), "{path}: {message}");
        assert_eq!(r.header("retry-after").as_deref(), Some("5"), "{path}");
    }
    // The readable version stays available by its exact address, at every request (the
    // second is answered from the kept answer).
    for _ in 0..2 {
        p.get("/1.0/applications/broken/versions/2")
            .await
            .expect(200);
    }
    assert!(
        d.stderr().contains("unreadable version record"),
        "{}",
        d.stderr()
    );

    let (clean, report) = verify(&d, false);
    assert!(!clean, "verify passed with an unreadable record: {report}");
    assert!(
        report.contains("unreadable version record") && report.contains("1.json"),
        "{report}"
    );
    assert!(
        report.contains("restore it from a backup or remove it"),
        "{report}"
    );

    // Once the operator removes the record, GC may collect the image again.
    fs::remove_file(&record).unwrap();
    let (clean, report) = verify(&d, false);
    assert!(clean, "{report}");
    // And the next index load answers in full again.
    d.restart();
    let p = d.publisher();
    assert_eq!(
        version_numbers(&p.get("/1.0/applications/broken").await.metadata()),
        [2]
    );
}

/// Publishes one version with `data` as its amd64 image; returns the image path.
async fn published(d: &Daemon, app: &str, data: &[u8]) -> (String, PathBuf) {
    let p = d.publisher();
    let digest = p.upload(data).await;
    p.publish(app, Some(1), &manifest(app, &[]), &[("amd64", &digest)])
        .await
        .expect(201);
    let path = blob_path(d, &digest);
    (digest, path)
}

async fn download(c: &Client, app: &str, headers: &[(&str, &str)]) -> Resp {
    c.req_with(
        Method::GET,
        &format!("/1.0/applications/{app}/versions/1/images/amd64"),
        headers,
        empty_body(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn damaged_images_are_refused_never_served_as_200() {
    let d = Daemon::start("");
    let data = pattern(7, 0, 256 << 10);
    let c = d.reader();

    // Truncated: the whole image, a range past the new end, and HEAD are all refused.
    let (_, path) = published(&d, "short", &data).await;
    fs::write(&path, &data[..1000]).unwrap();
    for headers in [&[][..], &[("range", "bytes=2000-2999")][..]] {
        let r = download(&c, "short", headers).await;
        let e = r.expect_error(500);
        assert!(e.contains("damaged") || e.contains("bytes on disk"), "{e}");
        assert!(e.contains("aar verify --repair"), "{e}");
    }
    let h = c
        .req(
            Method::HEAD,
            "/1.0/applications/short/versions/1/images/amd64",
        )
        .await;
    assert_eq!(h.status, 500, "HEAD of a truncated image");

    // Extended: same refusal.
    let (_, path) = published(&d, "long", &data).await;
    let mut longer = data.clone();
    longer.extend_from_slice(b"trailing bytes");
    fs::write(&path, &longer).unwrap();
    download(&c, "long", &[]).await.expect_error(500);
    assert!(
        d.stderr().contains("damaged image refused"),
        "the refusal is logged"
    );

    // Missing altogether.
    let (_, path) = published(&d, "gone", &data).await;
    fs::remove_file(&path).unwrap();
    let e = download(&c, "gone", &[]).await.expect_error(500);
    assert!(e.contains("missing from storage"), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verify_finds_flipped_bytes_and_repair_lets_an_upload_restore_them() {
    let d = Daemon::start("");
    let data = pattern(9, 0, 300 << 10);
    let (digest, path) = published(&d, "flipped", &data).await;
    let (clean, report) = verify(&d, false);
    assert!(clean, "{report}");
    assert!(report.contains("1 images"), "{report}");

    let mut bad = data.clone();
    bad[1234] ^= 0xff;
    fs::write(&path, &bad).unwrap();
    let (clean, report) = verify(&d, false);
    assert!(!clean, "{report}");
    assert!(
        report.contains(&format!("damaged image {digest}")) && report.contains("hash to"),
        "{report}"
    );
    assert!(
        report.contains("flipped/1/amd64"),
        "names the version: {report}"
    );
    assert!(report.contains("aar verify --repair"), "{report}");

    let (clean, report) = verify(&d, true);
    assert!(!clean, "{report}");
    assert!(report.contains("removed 1 damaged image"), "{report}");
    assert!(!path.exists());
    let c = d.reader();
    download(&c, "flipped", &[]).await.expect_error(500);

    // The publisher uploads the same image again: the version is whole once more.
    let p = d.publisher();
    assert_eq!(p.upload(&data).await, digest);
    let r = download(&c, "flipped", &[]).await;
    r.expect(200);
    assert_eq!(&r.body[..], &data[..]);
    let (clean, report) = verify(&d, false);
    assert!(clean, "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scrub_finds_flipped_bytes_on_its_own() {
    let d = Daemon::start("gc: {scrub-interval: 1s, scrub-rate: 64MiB}\n");
    let data = pattern(11, 0, 128 << 10);
    let (_, path) = published(&d, "scrubbed", &data).await;
    let found = eventually(Duration::from_secs(10), || async {
        d.stderr()
            .contains("scrub found every image intact")
            .then_some(())
    })
    .await;
    assert!(found.is_some(), "no clean scrub: {}", d.stderr());
    let mut bad = data.clone();
    bad[99] ^= 1;
    fs::write(&path, &bad).unwrap();
    let found = eventually(Duration::from_secs(10), || async {
        d.stderr().contains("scrub found damage").then_some(())
    })
    .await;
    assert!(
        found.is_some(),
        "the scrub missed the damage: {}",
        d.stderr()
    );
    assert!(
        path.exists(),
        "the scrub only reports; repair is the operator's call"
    );
}
