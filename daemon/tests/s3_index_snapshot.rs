//! The index snapshot (`index/versions.json`): a start after the first reads one object
//! instead of one per version, and whatever changed in the bucket since the snapshot was
//! written is seen as it is. Against s3s-fs on loopback, whose listings carry no ETags:
//! the snapshot is checked against the size and last-modified time it lists instead.
//! Each `open` below is what a daemon does at start; GetObject requests are counted by
//! the server.

mod common;

use aar::digest::Digest;
use aar::model::{ImageRef, VersionRecord};
use aar::storage::{LoadedVersions, Storage};
use aws_sdk_s3::primitives::ByteStream as S3Body;
use common::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const SNAPSHOT: &str = "index/versions.json";
const VERSIONS: u32 = 20;

fn record(version: u32, created_at: &str) -> VersionRecord {
    VersionRecord {
        application: "game".into(),
        version,
        manifest: "name: game\n".into(),
        tags: vec![],
        instance_type: None,
        boot_package: None,
        images: BTreeMap::from([(
            "amd64".to_owned(),
            ImageRef {
                digest: Digest::of(b"game"),
                size: 4,
            },
        )]),
        created_at: created_at.into(),
        vm: false,
        settings: None,
    }
}

fn key(version: u32) -> String {
    format!("apps/game/versions/{version}.json")
}

/// A start: opens the bucket and loads the versions; answers what the load found and how
/// many GetObject requests it made.
async fn start(server: &S3Server) -> (Arc<dyn Storage>, LoadedVersions, usize) {
    let storage = server.storage().await;
    let before = server.served("GetObject");
    let loaded = storage.load_versions().await.unwrap();
    (storage, loaded, server.served("GetObject") - before)
}

fn versions(loaded: &LoadedVersions) -> Vec<u32> {
    let mut out: Vec<u32> = loaded.records.iter().map(|r| r.version).collect();
    out.sort_unstable();
    out
}

/// The snapshot's bytes once a start has written one other than `old`.
async fn snapshot_other_than(server: &S3Server, old: &[u8]) -> Vec<u8> {
    let path = server.object_path(SNAPSHOT);
    eventually(Duration::from_secs(20), || {
        let path = path.clone();
        async move {
            let bytes = std::fs::read(&path).ok()?;
            // A whole document, not one being written.
            let parsed = serde_json::from_slice::<serde_json::Value>(&bytes).ok()?;
            (bytes != old && parsed["versions"].is_array()).then_some(bytes)
        }
    })
    .await
    .expect("the snapshot is written")
}

/// A bucket with versions 1..=VERSIONS of `game` and a snapshot of them.
async fn bucket_with_snapshot() -> (S3Server, Vec<u8>) {
    let server = S3Server::start();
    let publisher = server.storage().await;
    for v in 1..=VERSIONS {
        publisher
            .put_version(&record(v, "2026-01-01T00:00:00Z"))
            .await
            .unwrap();
    }
    // The first start reads every record one by one, then writes the snapshot.
    let (_, loaded, gets) = start(&server).await;
    assert_eq!(versions(&loaded), (1..=VERSIONS).collect::<Vec<_>>());
    assert_eq!(
        gets,
        1 + VERSIONS as usize,
        "the missing snapshot, then each record"
    );
    let snapshot = snapshot_other_than(&server, b"").await;
    (server, snapshot)
}

async fn put_raw(server: &S3Server, key: &str, body: Vec<u8>) {
    server
        .client()
        .await
        .put_object()
        .bucket(BUCKET)
        .key(key)
        .body(S3Body::from(body))
        .send()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_later_start_reads_the_snapshot_instead_of_each_record() {
    let (server, written) = bucket_with_snapshot().await;
    let document: serde_json::Value = serde_json::from_slice(&written).unwrap();
    assert_eq!(
        document["versions"].as_array().unwrap().len(),
        VERSIONS as usize
    );

    let (_, loaded, gets) = start(&server).await;
    assert_eq!(versions(&loaded), (1..=VERSIONS).collect::<Vec<_>>());
    assert!(loaded.unreadable.is_empty());
    assert_eq!(gets, 1, "only the snapshot is read");
    assert_eq!(
        loaded.records.iter().find(|r| r.version == 7),
        Some(&record(7, "2026-01-01T00:00:00Z"))
    );
    // Nothing was read one by one, so nothing is written again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        std::fs::read(server.object_path(SNAPSHOT)).unwrap(),
        written
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_rewritten_outside_is_read_again() {
    let (server, written) = bucket_with_snapshot().await;
    // Same size, other bytes: only the write itself tells them apart.
    let changed = record(3, "2026-02-02T00:00:00Z");
    let body = serde_json::to_vec_pretty(&changed).unwrap();
    assert_eq!(
        body.len(),
        serde_json::to_vec_pretty(&record(3, "2026-01-01T00:00:00Z"))
            .unwrap()
            .len()
    );
    put_raw(&server, &key(3), body).await;

    let (_, loaded, gets) = start(&server).await;
    assert_eq!(gets, 2, "the snapshot and the changed record");
    assert_eq!(versions(&loaded), (1..=VERSIONS).collect::<Vec<_>>());
    assert_eq!(
        loaded.records.iter().find(|r| r.version == 3),
        Some(&changed)
    );
    // That start read a record one by one, so it wrote the snapshot again, and the next
    // start takes the changed record from it.
    snapshot_other_than(&server, &written).await;
    let (_, loaded, gets) = start(&server).await;
    assert_eq!(gets, 1);
    assert_eq!(
        loaded.records.iter().find(|r| r.version == 3),
        Some(&changed)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_deleted_or_added_outside_are_seen_as_they_are() {
    let (server, _) = bucket_with_snapshot().await;
    let client = server.client().await;
    client
        .delete_object()
        .bucket(BUCKET)
        .key(key(5))
        .send()
        .await
        .unwrap();
    let added = record(VERSIONS + 1, "2026-01-01T00:00:00Z");
    put_raw(
        &server,
        &key(VERSIONS + 1),
        serde_json::to_vec_pretty(&added).unwrap(),
    )
    .await;

    let (_, loaded, gets) = start(&server).await;
    assert_eq!(gets, 2, "the snapshot and the added record");
    let expected: Vec<u32> = (1..=VERSIONS + 1).filter(|v| *v != 5).collect();
    assert_eq!(versions(&loaded), expected, "5 is not resurrected");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_snapshot_is_ignored() {
    let (server, _) = bucket_with_snapshot().await;
    put_raw(
        &server,
        SNAPSHOT,
        b"{\"format\": 1, \"versions\": [".to_vec(),
    )
    .await;

    let (_, loaded, gets) = start(&server).await;
    assert_eq!(versions(&loaded), (1..=VERSIONS).collect::<Vec<_>>());
    assert!(loaded.unreadable.is_empty());
    assert_eq!(gets, 1 + VERSIONS as usize, "every record read one by one");
    // ...and a good one replaces it.
    let repaired = snapshot_other_than(&server, b"{\"format\": 1, \"versions\": [").await;
    let document: serde_json::Value = serde_json::from_slice(&repaired).unwrap();
    assert_eq!(
        document["versions"].as_array().unwrap().len(),
        VERSIONS as usize
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_entry_holding_another_record_is_not_trusted() {
    let (server, written) = bucket_with_snapshot().await;
    // Version 2's entry keeps its key and stamp but holds version 1's record.
    let mut document: serde_json::Value = serde_json::from_slice(&written).unwrap();
    let entries = document["versions"].as_array_mut().unwrap();
    let find = |entries: &Vec<serde_json::Value>, k: &str| {
        entries.iter().position(|e| e["key"] == k).unwrap()
    };
    let (one, two) = (find(entries, &key(1)), find(entries, &key(2)));
    entries[two]["record"] = entries[one]["record"].clone();
    put_raw(&server, SNAPSHOT, serde_json::to_vec(&document).unwrap()).await;

    let (_, loaded, gets) = start(&server).await;
    assert_eq!(gets, 2, "the snapshot and version 2");
    assert_eq!(versions(&loaded), (1..=VERSIONS).collect::<Vec<_>>());
    assert_eq!(
        loaded.records.iter().find(|r| r.version == 2),
        Some(&record(2, "2026-01-01T00:00:00Z"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_daemon_refreshing_keeps_the_snapshot_fresh_after_enough_publishes() {
    let (server, written) = bucket_with_snapshot().await;
    let (running, _, _) = start(&server).await;
    // Published elsewhere, fewer than the drift that is worth a rewrite...
    let publisher = server.storage().await;
    for v in VERSIONS + 1..=VERSIONS + 10 {
        publisher
            .put_version(&record(v, "2026-01-01T00:00:00Z"))
            .await
            .unwrap();
    }
    let loaded = running.load_versions().await.unwrap();
    assert_eq!(loaded.records.len(), VERSIONS as usize + 10);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        std::fs::read(server.object_path(SNAPSHOT)).unwrap(),
        written
    );
    // ...then enough of them: the refresh that sees them writes it.
    for v in VERSIONS + 11..=VERSIONS + 64 {
        publisher
            .put_version(&record(v, "2026-01-01T00:00:00Z"))
            .await
            .unwrap();
    }
    let loaded = running.load_versions().await.unwrap();
    assert_eq!(loaded.records.len(), VERSIONS as usize + 64);
    let fresh = snapshot_other_than(&server, &written).await;
    let document: serde_json::Value = serde_json::from_slice(&fresh).unwrap();
    assert_eq!(
        document["versions"].as_array().unwrap().len(),
        VERSIONS as usize + 64
    );
    let (_, loaded, gets) = start(&server).await;
    assert_eq!(loaded.records.len(), VERSIONS as usize + 64);
    assert_eq!(gets, 1);
}
