//! `aar backup` and `aar restore` end to end: a registry backed up, restored into a fresh
//! state directory, answers with the same listing, trust and server fingerprint, and
//! serves the same bytes; a damaged backup restores nothing damaged.

mod common;

use common::*;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

async fn listing(d: &Daemon) -> serde_json::Value {
    let list = d.reader().get("/1.0/applications").await;
    list.expect(200);
    list.metadata()
}

async fn image_digest(d: &Daemon, name: &str, version: u32) -> String {
    let url = format!("/1.0/applications/{name}/versions/{version}/images/amd64");
    let (_conn, resp) = d
        .reader()
        .send(
            request(hyper::Method::GET, &url)
                .body(empty_body())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{url}");
    hash_body(resp).await.unwrap().1
}

/// A registry with two applications, three versions and a revoked certificate.
async fn populated() -> (Daemon, Vec<String>) {
    let d = Daemon::builder("").with_revoked().start();
    let p = d.publisher();
    let mut digests = Vec::new();
    for (name, version, seed) in [("game", 1, 1), ("game", 2, 2), ("other", 1, 3)] {
        let digest = p.upload_pattern(seed, 300_000).await;
        p.publish(
            name,
            Some(version),
            &manifest(name, &["backup"]),
            &[("amd64", &digest)],
        )
        .await
        .expect(201);
        digests.push(digest);
    }
    (d, digests)
}

fn restore(d: &Daemon, file: &Path, force: bool) -> std::process::Output {
    let file = file.to_str().unwrap();
    let mut words = vec!["restore", file];
    if force {
        words.push("--force");
    }
    d.run(&words, &[])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_registry_answers_as_the_original() {
    let (mut original, digests) = populated().await;
    let before = listing(&original).await;
    let trust_before = original.trust_list_json(false);
    let revoked_before = original.trust_list_json(true);
    let backup_dir = tempfile::tempdir().unwrap();
    let file = backup_dir.path().join("aar.backup");

    // Taken beside the serving daemon.
    let out = original.run(&["backup", file.to_str().unwrap()], &[]);
    assert_success(&out, "aar backup");
    let summary = out_text(&out);
    assert!(
        summary.contains("3 version records") && summary.contains("3 images"),
        "{summary}"
    );
    assert_eq!(
        fs::metadata(&file).unwrap().permissions().mode() & 0o777,
        0o600,
        "the backup holds the server key"
    );
    original.stop_with("TERM");

    // A unit that started once has its own identity: restore refuses to replace it.
    let mut fresh = Daemon::builder("").no_trust().start();
    fresh.stop_with("TERM");
    let refused = restore(&fresh, &file, false);
    assert!(!refused.status.success());
    let why = out_text(&refused);
    assert!(
        why.contains("not empty") && why.contains("--force"),
        "{why}"
    );
    assert_ne!(fresh.fingerprint, original.fingerprint);

    // With --force (or into a state directory never used) it takes the backup whole.
    let out = restore(&fresh, &file, true);
    assert_success(&out, "aar restore");
    fresh.fingerprint.clear(); // the restore replaced it on purpose
    fresh.restart();
    assert_eq!(
        fresh.fingerprint, original.fingerprint,
        "same server identity"
    );
    assert_eq!(listing(&fresh).await, before);
    assert_eq!(fresh.trust_list_json(false), trust_before);
    assert_eq!(fresh.trust_list_json(true), revoked_before);
    for ((name, version), digest) in [("game", 1), ("game", 2), ("other", 1)]
        .into_iter()
        .zip(&digests)
    {
        assert_eq!(&image_digest(&fresh, name, version).await, digest);
    }

    // Restoring again changes nothing: every record and image is already there.
    fresh.stop_with("TERM");
    let again = restore(&fresh, &file, true);
    assert_success(&again, "second restore");
    let summary = out_text(&again);
    assert!(
        summary.contains("0 version records (3 already present)")
            && summary.contains("0 images (3 already present)"),
        "{summary}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_backup_restores_no_damaged_image_and_no_version_using_it() {
    let (mut original, _) = populated().await;
    let backup_dir = tempfile::tempdir().unwrap();
    let file = backup_dir.path().join("aar.backup");
    assert_success(
        &original.run(&["backup", file.to_str().unwrap()], &[]),
        "aar backup",
    );
    original.stop_with("TERM");

    // One byte of the first image in the archive flipped.
    let mut bytes = fs::read(&file).unwrap();
    let image = pattern(1, 0, 4096);
    let at = bytes
        .windows(image.len())
        .position(|w| w == image.as_slice())
        .expect("the image is in the archive");
    bytes[at + 100] ^= 0xff;
    fs::write(&file, &bytes).unwrap();

    let fresh = Daemon::builder("").no_trust().start();
    let mut fresh = fresh;
    fresh.stop_with("TERM");
    let out = restore(&fresh, &file, true);
    assert!(!out.status.success());
    assert!(
        out_text(&out).contains("digest mismatch"),
        "{}",
        out_text(&out)
    );
    fresh.fingerprint.clear();
    fresh.restart();
    fresh.inst.trust_add(client_id(), false);
    assert_eq!(listing(&fresh).await, serde_json::json!([]));
    assert!(
        files_under(&fresh.root_dir.join("blobs")).iter().all(|p| !p
            .to_string_lossy()
            .contains(&sha256_hex(&pattern(1, 0, 300_000)))),
        "the damaged image was kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_without_images_restores_only_versions_whose_images_are_stored() {
    let (mut original, _) = populated().await;
    let backup_dir = tempfile::tempdir().unwrap();
    let file = backup_dir.path().join("aar.backup");
    let out = original.run(&["backup", file.to_str().unwrap(), "--no-blobs"], &[]);
    assert_success(&out, "aar backup --no-blobs");
    assert!(out_text(&out).contains("no images"), "{}", out_text(&out));
    original.stop_with("TERM");

    let mut fresh = Daemon::builder("").no_trust().start();
    fresh.stop_with("TERM");
    let out = restore(&fresh, &file, true);
    assert!(
        !out.status.success(),
        "versions without images are reported"
    );
    let report = out_text(&out);
    assert!(
        report.contains("not restored: version 1 of \"game\"")
            && report.contains("upload the image"),
        "{report}"
    );
    fresh.fingerprint.clear();
    fresh.restart();
    assert_eq!(listing(&fresh).await, serde_json::json!([]));
}
