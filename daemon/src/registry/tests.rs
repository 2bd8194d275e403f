//! The registry's rules over a real filesystem backend in a temporary directory: no
//! socket, no binary, so each rule is checked where it is written.

use super::{ErrorKind, PublishRequest, Registry, RegistryError};
use crate::digest::Digest;
use crate::storage::fs::FsStorage;
use crate::storage::{ByteStream, Storage};
use bytes::Bytes;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

fn storage(root: &Path) -> Arc<dyn Storage> {
    Arc::new(FsStorage::new(root, 0).expect("temp dir opens as storage"))
}

async fn open(root: &Path) -> Registry {
    Registry::open(storage(root)).await.expect("registry opens")
}

fn body(data: &'static [u8]) -> ByteStream {
    Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(data))]))
}

async fn upload(registry: &Registry, data: &'static [u8]) -> Digest {
    let digest = Digest::of(data);
    let upload = registry
        .create_upload(digest, data.len() as u64)
        .await
        .unwrap();
    if !upload.complete {
        let done = registry
            .append_upload(&upload.id, 0, body(data))
            .await
            .unwrap();
        assert!(done.complete);
    }
    digest
}

fn request(name: &str, version: Option<u32>, image: Digest) -> PublishRequest {
    PublishRequest {
        version,
        manifest: format!("name: {name}\ninstance-type: a2.3\n"),
        images: BTreeMap::from([("amd64".to_owned(), image)]),
        vm: false,
    }
}

fn versions(registry: &Registry, name: &str) -> Vec<u32> {
    registry
        .application(name)
        .unwrap()
        .versions
        .iter()
        .map(|v| v.version)
        .collect()
}

fn files_named(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_named(&path, name));
        } else if path.file_name().is_some_and(|n| n == name) {
            found.push(path);
        }
    }
    found
}

#[tokio::test]
async fn a_publish_is_in_storage_before_the_index_and_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open(dir.path()).await;
    let image = upload(&registry, b"first image").await;
    let record = registry
        .publish("game", request("game", None, image))
        .await
        .unwrap();
    assert_eq!(record.version, 1);
    let second = registry
        .publish("game", request("game", None, image))
        .await
        .unwrap();
    assert_eq!(second.version, 2, "versions number on from the last one");
    assert_eq!(versions(&registry, "game"), [1, 2]);

    // A second registry over the same directory answers the same: storage is the truth.
    let reopened = open(dir.path()).await;
    assert_eq!(versions(&reopened, "game"), [1, 2]);
    assert_eq!(reopened.list(&[]).unwrap().len(), 1);
}

#[tokio::test]
async fn versions_are_immutable_and_need_uploaded_images() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open(dir.path()).await;
    let image = upload(&registry, b"an image").await;
    registry
        .publish("game", request("game", Some(3), image))
        .await
        .unwrap();

    let again = registry
        .publish("game", request("game", Some(3), image))
        .await
        .unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Conflict, "{again}");

    let missing = Digest::of(b"never uploaded");
    let err = registry
        .publish("game", request("game", Some(4), missing))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Invalid);
    assert!(err.to_string().contains("has not been uploaded"), "{err}");

    let zero = registry
        .publish("game", request("game", Some(0), image))
        .await
        .unwrap_err();
    assert_eq!(zero.kind(), ErrorKind::Invalid);

    let renamed = registry
        .publish("other", request("game", None, image))
        .await
        .unwrap_err();
    assert!(matches!(renamed, RegistryError::Manifest(_)), "{renamed}");
    assert_eq!(
        versions(&registry, "game"),
        [3],
        "refused publishes left nothing"
    );
}

#[tokio::test]
async fn garbage_collection_keeps_every_referenced_image() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open(dir.path()).await;
    let kept = upload(&registry, b"published image").await;
    let orphan = upload(&registry, b"uploaded, never published").await;
    registry
        .publish("game", request("game", None, kept))
        .await
        .unwrap();

    let cleanup = registry.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(cleanup.blobs, 1);
    let stored = registry.0.storage.as_ref();
    assert!(stored.blob_size(&kept).await.unwrap().is_some());
    assert!(stored.blob_size(&orphan).await.unwrap().is_none());

    // Deleting the only version makes its image collectable.
    registry.delete_application("game").await.unwrap();
    assert!(matches!(
        registry.application("game"),
        Err(RegistryError::NotFound(_))
    ));
    registry.collect_garbage(Duration::ZERO).await.unwrap();
    assert!(stored.blob_size(&kept).await.unwrap().is_none());
    assert!(open(dir.path()).await.list(&[]).unwrap().is_empty());
}

#[tokio::test]
async fn an_unreadable_record_stops_garbage_collection() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open(dir.path()).await;
    let image = upload(&registry, b"image of the broken version").await;
    registry
        .publish("game", request("game", Some(1), image))
        .await
        .unwrap();
    let records = files_named(dir.path(), "1.json");
    assert_eq!(records.len(), 1, "{records:?}");
    std::fs::write(&records[0], b"{ cut in half").unwrap();

    let cleanup = registry.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(cleanup.blobs, 0);
    assert!(registry
        .0
        .storage
        .blob_size(&image)
        .await
        .unwrap()
        .is_some());
}

#[tokio::test]
async fn an_image_whose_size_changed_is_damaged_never_served() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open(dir.path()).await;
    let image = upload(&registry, b"twenty-two bytes long.").await;
    registry
        .publish("game", request("game", Some(1), image))
        .await
        .unwrap();
    let blobs = files_named(dir.path(), &image.hex());
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    std::fs::write(&blobs[0], b"short").unwrap();

    let found = registry.image("game", 1, "amd64").unwrap();
    let Err(err) = registry.open_image(&found, None).await else {
        panic!("a truncated image was opened");
    };
    assert_eq!(err.kind(), ErrorKind::Damaged, "{err}");
    let head = registry.check_image(&found).await.unwrap_err();
    assert_eq!(head.kind(), ErrorKind::Damaged, "{head}");
}

#[tokio::test]
async fn no_list_is_answered_while_a_record_cannot_be_read() {
    let dir = tempfile::tempdir().unwrap();
    let registry = open(dir.path()).await;
    let image = upload(&registry, b"image").await;
    for version in [1, 2] {
        registry
            .publish("game", request("game", Some(version), image))
            .await
            .unwrap();
    }
    registry
        .publish("other", request("other", Some(1), image))
        .await
        .unwrap();
    let records = files_named(dir.path(), "2.json");
    assert_eq!(records.len(), 1, "{records:?}");
    let sound = std::fs::read(&records[0]).unwrap();
    std::fs::write(&records[0], b"{ cut in half").unwrap();

    // A restart finds the damage: the lists that would lack version 2 are refused, not
    // shortened (AMS would delete what is missing).
    let damaged = open(dir.path()).await;
    let err = damaged.list(&[]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("aar verify"), "{err}");
    for name in ["game", "other"] {
        let err = damaged.application(name).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{name}: {err}");
    }
    // What is readable is still served by its exact address.
    assert_eq!(damaged.version("game", 1).unwrap().version, 1);
    assert!(damaged.image("other", 1, "amd64").is_ok());

    // Once the record is restored, the next load answers in full again.
    std::fs::write(&records[0], sound).unwrap();
    damaged.reload().await.unwrap();
    assert_eq!(damaged.list(&[]).unwrap().len(), 2);
    assert_eq!(versions(&damaged, "game"), [1, 2]);
}

#[tokio::test]
async fn nothing_is_answered_from_an_index_not_yet_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let image = {
        let registry = open(dir.path()).await;
        let image = upload(&registry, b"stored before the start").await;
        registry
            .publish("game", request("game", Some(1), image))
            .await
            .unwrap();
        image
    };

    let registry = Registry::unloaded(storage(dir.path()));
    let unavailable = |err: RegistryError| assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    unavailable(registry.list(&[]).unwrap_err());
    unavailable(registry.application("game").unwrap_err());
    unavailable(registry.version("game", 1).unwrap_err());
    unavailable(registry.image("game", 1, "amd64").unwrap_err());
    unavailable(
        registry
            .publish("game", request("game", None, image))
            .await
            .unwrap_err(),
    );
    unavailable(registry.delete_version("game", 1).await.unwrap_err());
    unavailable(registry.delete_application("game").await.unwrap_err());
    // A periodic refresh does not stand in for the start (recovery comes first).
    registry.refresh().await.unwrap();
    unavailable(registry.list(&[]).unwrap_err());

    registry.start().await.unwrap();
    assert_eq!(versions(&registry, "game"), [1]);
}
