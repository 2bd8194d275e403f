//! File modes: what the daemon creates is readable by its own user only (the server
//! certificate, which is public, excepted), and a state directory others can read is
//! warned about at start.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::*;

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Every directory under `dir`, `dir` included.
fn dirs_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        for entry in fs::read_dir(&out[i]).unwrap().flatten() {
            if entry.file_type().unwrap().is_dir() {
                out.push(entry.path());
            }
        }
        i += 1;
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_daemon_creates_is_private() {
    let fresh = tempfile::tempdir().unwrap();
    let state = fresh.path().join("srv/aar");
    let d = Daemon::builder(&format!(
        "state-directory: {state}\nstorage: {{fs: {{root-directory: {state}/data}}}}\n",
        state = state.display()
    ))
    .no_trust()
    .start();
    d.trust_add(publisher(), true);
    let client = d.publisher();
    client
        .publish_simple("private-app", Some(1), &[], &["amd64"])
        .await;
    // An upload in progress, with some of its bytes.
    let data = b"half of an image".repeat(100);
    let r = client
        .create_upload(&digest_of(&data), data.len() as u64)
        .await;
    let id = upload_id(&r);
    client
        .patch_upload(&id, 0, 800, full_body(data[..800].to_vec()))
        .await
        .expect(200);

    let mut wrong = Vec::new();
    for dir in dirs_under(&state) {
        if mode(&dir) != 0o700 {
            wrong.push(format!("{:o} {}", mode(&dir), dir.display()));
        }
    }
    let files = files_under(&state);
    let expected_files = [
        "trust.json",
        "certs/server.key",
        "data/apps/private-app/versions/1.json",
        &format!("data/uploads/{id}/info.json"),
        &format!("data/uploads/{id}/data"),
    ];
    for name in expected_files {
        assert!(files.contains(&state.join(name)), "{name} in {files:#?}");
    }
    assert!(
        files
            .iter()
            .any(|f| f.starts_with(state.join("data/blobs/sha256"))),
        "a blob in {files:#?}"
    );
    for file in &files {
        let want = if file.ends_with("certs/server.crt") {
            0o644
        } else {
            0o600
        };
        if mode(file) != want {
            wrong.push(format!("{:o} {}", mode(file), file.display()));
        }
    }
    assert!(wrong.is_empty(), "not private:\n{}", wrong.join("\n"));
    assert!(
        !d.stderr().contains("chmod"),
        "nothing to warn about:\n{}",
        d.stderr()
    );
}

#[test]
fn a_state_directory_open_to_others_is_warned_about_at_start() {
    let mut d = Daemon::start("");
    fs::set_permissions(&d.state_dir, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&d.root_dir, fs::Permissions::from_mode(0o701)).unwrap();
    d.restart();
    let log = d.stderr();
    let state = d.state_dir.display().to_string();
    let line = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains(&format!("chmod o-rwx {state}")))
        .unwrap_or_else(|| panic!("no warning naming {state} and its chmod:\n{log}"));
    assert!(line.contains("other users"), "{line}");
    let root = d.root_dir.display().to_string();
    assert!(
        log.lines()
            .any(|l| l.contains("WARN") && l.contains(&format!("chmod o-rwx {root}"))),
        "the storage root too:\n{log}"
    );

    // Group access is the operator's choice; only others are warned about.
    fs::set_permissions(&d.state_dir, fs::Permissions::from_mode(0o750)).unwrap();
    fs::set_permissions(&d.root_dir, fs::Permissions::from_mode(0o700)).unwrap();
    let before = d.stderr().len();
    d.restart();
    let after = &d.stderr()[before..];
    assert!(!after.contains("chmod"), "{after}");
}
