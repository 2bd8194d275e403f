use super::*;
use crate::model::ImageRef;
use bytes::Bytes;
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs::File;
use std::time::Duration;

fn body(data: &'static [u8]) -> ByteStream {
    Box::pin(futures_util::stream::iter([Ok(Bytes::from_static(data))]))
}

/// `data` in chunks of `chunk` bytes, as a request body arrives.
fn chunked(data: &[u8], chunk: usize) -> ByteStream {
    let chunks: Vec<io::Result<Bytes>> = data
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(chunks))
}

/// Bytes that differ at every offset a block boundary could hide a misplaced write in.
fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

fn digest_of(data: &[u8]) -> Digest {
    Digest::from_bytes(Sha256::digest(data).into())
}

fn sessions(storage: &FsStorage) -> usize {
    storage.sessions.len()
}

async fn collect(mut body: ByteStream) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        out.extend_from_slice(&chunk.unwrap());
    }
    out
}

fn record(app: &str, version: u32) -> VersionRecord {
    VersionRecord {
        application: app.into(),
        version,
        manifest: format!("name: {app}\n"),
        tags: Vec::new(),
        instance_type: None,
        boot_package: None,
        images: BTreeMap::from([(
            "amd64".to_owned(),
            ImageRef {
                digest: digest_of(b"image"),
                size: 5,
            },
        )]),
        created_at: "2026-01-01T00:00:00Z".into(),
        vm: false,
        settings: None,
    }
}

#[tokio::test]
async fn session_entries_live_only_as_long_as_their_upload() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsStorage::new(dir.path(), 0).unwrap();

    // Ids that name no upload, well-formed or not, leave nothing behind.
    for i in 0..1000 {
        let id = uuid::Uuid::new_v4().to_string();
        let err = storage.append_upload(&id, 0, body(b"x")).await.unwrap_err();
        assert!(matches!(err, StorageError::NotFound(_)), "{err}");
        let err = storage.abort_upload(&id).await.unwrap_err();
        assert!(matches!(err, StorageError::NotFound(_)), "{err}");
        let err = storage
            .append_upload(&format!("../not-an-id-{i}"), 0, body(b"x"))
            .await
            .unwrap_err();
        assert!(matches!(err, StorageError::NotFound(_)), "{err}");
    }
    assert_eq!(sessions(&storage), 0);

    let data = b"0123456789";
    let digest = Digest::from_bytes(Sha256::digest(data).into());
    // In progress: the hash state is kept for the next PATCH; gone once complete.
    let upload = storage.create_upload(digest, 10).await.unwrap();
    storage
        .append_upload(&upload.id, 0, body(&data[..5]))
        .await
        .unwrap();
    assert_eq!(sessions(&storage), 1);
    let done = storage
        .append_upload(&upload.id, 5, body(&data[5..]))
        .await
        .unwrap();
    assert!(done.complete);
    assert_eq!(sessions(&storage), 0);

    // Aborted.
    let other = Digest::from_bytes(Sha256::digest(b"another").into());
    let upload = storage.create_upload(other, 7).await.unwrap();
    storage
        .append_upload(&upload.id, 0, body(b"ano"))
        .await
        .unwrap();
    assert_eq!(sessions(&storage), 1);
    storage.abort_upload(&upload.id).await.unwrap();
    assert_eq!(sessions(&storage), 0);

    // A wrong offset on a real upload keeps nothing new.
    let upload = storage.create_upload(other, 7).await.unwrap();
    let err = storage
        .append_upload(&upload.id, 3, body(b"x"))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::OffsetMismatch { .. }), "{err}");
    assert_eq!(sessions(&storage), 0);

    // Expired, with its hash state kept before.
    storage
        .append_upload(&upload.id, 0, body(b"ano"))
        .await
        .unwrap();
    assert_eq!(sessions(&storage), 1);
    let expired = storage
        .expire_uploads(SystemTime::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(expired, 1);
    assert_eq!(sessions(&storage), 0);

    // Refused for its digest.
    let upload = storage.create_upload(other, 7).await.unwrap();
    let err = storage
        .append_upload(&upload.id, 0, body(b"notthis"))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::DigestMismatch { .. }), "{err}");
    assert_eq!(sessions(&storage), 0);
}

#[tokio::test]
async fn appends_resume_and_commit_the_exact_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsStorage::new(dir.path(), 0).unwrap();
    // Several write batches, with a cut that falls inside a block.
    let data = pattern(3 * upload::WRITE_BATCH + 777);
    let digest = digest_of(&data);
    let upload = storage
        .create_upload(digest, data.len() as u64)
        .await
        .unwrap();
    assert_eq!((upload.offset, upload.complete), (0, false));

    let cut = upload::WRITE_BATCH + 4097;
    let first = storage
        .append_upload(&upload.id, 0, chunked(&data[..cut], 64 * 1024))
        .await
        .unwrap();
    assert_eq!((first.offset, first.complete), (cut as u64, false));
    let state = storage.upload_state(&upload.id).await.unwrap();
    assert_eq!((state.offset, state.size), (cut as u64, data.len() as u64));
    assert_eq!(state.digest, digest);

    let done = storage
        .append_upload(&upload.id, cut as u64, chunked(&data[cut..], 100_000))
        .await
        .unwrap();
    assert!(done.complete);
    assert_eq!(done.offset, data.len() as u64);

    // Committed: the blob holds the bytes under its digest, the upload is gone.
    let blob = dir.path().join("blobs/sha256").join(digest.hex());
    assert_eq!(fs::read(&blob).unwrap(), data);
    assert!(!dir.path().join("uploads").join(&upload.id).exists());
    let err = storage.upload_state(&upload.id).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");
    assert_eq!(
        storage.blob_size(&digest).await.unwrap(),
        Some(data.len() as u64)
    );
    let listed = storage.list_blobs().await.unwrap();
    assert_eq!(
        listed.iter().map(|(d, _)| *d).collect::<Vec<_>>(),
        vec![digest]
    );

    // A second upload of the same blob needs no bytes.
    let again = storage
        .create_upload(digest, data.len() as u64)
        .await
        .unwrap();
    assert!(again.complete);
    assert_eq!((again.id.as_str(), again.offset), ("", data.len() as u64));
}

#[tokio::test]
async fn a_resume_after_a_restart_rehashes_what_was_kept() {
    let dir = tempfile::tempdir().unwrap();
    let data = pattern(upload::WRITE_BATCH + 12_345);
    let digest = digest_of(&data);
    let cut = 5_000;
    let id = {
        let storage = FsStorage::new(dir.path(), 0).unwrap();
        let upload = storage
            .create_upload(digest, data.len() as u64)
            .await
            .unwrap();
        storage
            .append_upload(&upload.id, 0, chunked(&data[..cut], 1000))
            .await
            .unwrap();
        upload.id
    };
    // A new instance has no hash state: the bytes on disk are hashed again.
    let storage = FsStorage::new(dir.path(), 0).unwrap();
    assert_eq!(storage.recover().await.unwrap(), Cleanup::default());
    let state = storage.upload_state(&id).await.unwrap();
    assert_eq!(state.offset, cut as u64);
    let done = storage
        .append_upload(&id, cut as u64, chunked(&data[cut..], 70_000))
        .await
        .unwrap();
    assert!(done.complete);
    let blob = storage
        .read_blob(
            &ImageRef {
                digest,
                size: data.len() as u64,
            },
            None,
        )
        .await
        .unwrap();
    let BlobBody::Stream { body, len } = blob else {
        panic!("the filesystem backend streams");
    };
    assert_eq!(len, data.len() as u64);
    assert_eq!(collect(body).await, data);
}

#[tokio::test]
async fn a_wrong_offset_names_the_right_one_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsStorage::new(dir.path(), 0).unwrap();
    let data = b"abcdefghij";
    let upload = storage.create_upload(digest_of(data), 10).await.unwrap();
    storage
        .append_upload(&upload.id, 0, body(&data[..4]))
        .await
        .unwrap();
    for wrong in [0, 3, 5, 10] {
        let err = storage
            .append_upload(&upload.id, wrong, body(&data[4..]))
            .await
            .unwrap_err();
        match err {
            StorageError::OffsetMismatch { id, expected, got } => {
                assert_eq!((id.as_str(), expected, got), (upload.id.as_str(), 4, wrong));
            }
            other => panic!("expected an offset mismatch, got {other}"),
        }
    }
    let data_file = dir.path().join("uploads").join(&upload.id).join("data");
    assert_eq!(fs::read(&data_file).unwrap(), &data[..4]);
    let done = storage
        .append_upload(&upload.id, 4, body(&data[4..]))
        .await
        .unwrap();
    assert!(done.complete);
}

#[tokio::test]
async fn bodies_cut_short_or_too_long_keep_what_fits() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsStorage::new(dir.path(), 0).unwrap();
    let data = b"0123456789";
    let upload = storage.create_upload(digest_of(data), 10).await.unwrap();

    let cut: ByteStream = Box::pin(futures_util::stream::iter([
        Ok(Bytes::from_static(&data[..3])),
        Err(io::Error::new(io::ErrorKind::ConnectionReset, "gone")),
    ]));
    let err = storage.append_upload(&upload.id, 0, cut).await.unwrap_err();
    assert!(matches!(err, StorageError::BodyInterrupted(_)), "{err}");
    assert_eq!(storage.upload_state(&upload.id).await.unwrap().offset, 3);

    let err = storage
        .append_upload(&upload.id, 3, body(b"3456789and more"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::TooLong { declared: 10 }),
        "{err}"
    );
    assert_eq!(storage.upload_state(&upload.id).await.unwrap().offset, 3);

    let done = storage
        .append_upload(&upload.id, 3, body(&data[3..]))
        .await
        .unwrap();
    assert!(done.complete);
    assert_eq!(
        fs::read(dir.path().join("blobs/sha256").join(digest_of(data).hex())).unwrap(),
        data
    );
}

#[tokio::test]
async fn a_digest_mismatch_keeps_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsStorage::new(dir.path(), 0).unwrap();
    let declared = digest_of(b"the declared bytes");
    let sent = b"other bytes, same size";
    let upload = storage
        .create_upload(declared, sent.len() as u64)
        .await
        .unwrap();
    let err = storage
        .append_upload(&upload.id, 0, body(sent))
        .await
        .unwrap_err();
    match err {
        StorageError::DigestMismatch { expected, actual } => {
            assert_eq!((expected, actual), (declared, digest_of(sent)));
        }
        other => panic!("expected a digest mismatch, got {other}"),
    }
    assert!(!dir.path().join("uploads").join(&upload.id).exists());
    assert_eq!(storage.blob_size(&declared).await.unwrap(), None);
    assert_eq!(storage.blob_size(&digest_of(sent)).await.unwrap(), None);
    let err = storage.upload_state(&upload.id).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn a_blob_whose_size_changed_is_refused_as_damaged() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsStorage::new(dir.path(), 0).unwrap();
    let data = pattern(10_000);
    let digest = digest_of(&data);
    let upload = storage.create_upload(digest, 10_000).await.unwrap();
    storage
        .append_upload(&upload.id, 0, chunked(&data, 3000))
        .await
        .unwrap();
    let image = ImageRef {
        digest,
        size: 10_000,
    };

    let Ok(BlobBody::Stream { body, len }) = storage.read_blob(&image, Some((100, 2100))).await
    else {
        panic!("an intact blob is served");
    };
    assert_eq!(len, 2000);
    assert_eq!(collect(body).await, &data[100..2100]);

    // Cut short outside the registry.
    let blob = dir.path().join("blobs/sha256").join(digest.hex());
    File::options()
        .write(true)
        .open(&blob)
        .unwrap()
        .set_len(9_000)
        .unwrap();
    match storage.read_blob(&image, None).await {
        Err(StorageError::Damaged(message)) => assert_eq!(
            message,
            format!("image {digest} has 9000 bytes on disk but 10000 recorded")
        ),
        Err(other) => panic!("expected Damaged, got {other}"),
        Ok(_) => panic!("a damaged blob was served"),
    }
    // Scanning reads what is stored, whatever the record says.
    assert_eq!(
        collect(storage.scan_blob(&digest).await.unwrap()).await,
        &data[..9_000]
    );

    storage.delete_blob(&digest).await.unwrap();
    let err = storage.read_blob(&image, None).await.err().unwrap();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");
    let err = storage.delete_blob(&digest).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");
}

#[tokio::test]
async fn unreadable_records_are_reported_and_left_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let storage = FsStorage::new(dir.path(), 0).unwrap();
    storage.put_version(&record("good", 1)).await.unwrap();
    let err = storage.put_version(&record("good", 1)).await.unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists(_)), "{err}");

    let versions = dir.path().join("apps/good/versions");
    let garbled = versions.join("2.json");
    fs::write(&garbled, b"{ not json").unwrap();
    // Parses, but says it is another version than its file name.
    let misplaced = versions.join("3.json");
    fs::write(&misplaced, serde_json::to_vec(&record("good", 4)).unwrap()).unwrap();
    // Not a record's name: neither loaded nor reported.
    fs::write(versions.join("notes.txt"), b"hello").unwrap();

    let loaded = storage.load_versions().await.unwrap();
    assert_eq!(loaded.records.len(), 1);
    assert_eq!(
        (
            loaded.records[0].application.as_str(),
            loaded.records[0].version
        ),
        ("good", 1)
    );
    let mut unreadable = loaded.unreadable.clone();
    unreadable.sort();
    assert_eq!(
        unreadable,
        vec![
            garbled.display().to_string(),
            misplaced.display().to_string()
        ]
    );
    // Kept for inspection.
    assert!(garbled.exists() && misplaced.exists());

    storage.delete_version("good", 1).await.unwrap();
    let err = storage.delete_version("good", 1).await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");
    storage.delete_application("good").await.unwrap();
    let loaded = storage.load_versions().await.unwrap();
    assert!(loaded.records.is_empty() && loaded.unreadable.is_empty());
    let err = storage.delete_application("good").await.unwrap_err();
    assert!(matches!(err, StorageError::NotFound(_)), "{err}");
}

/// Every byte of a range that spans several read chunks arrives in order, whether the page
/// cache holds the file or not; a file cut short while it streams ends the stream with an
/// error, not with fewer bytes.
#[tokio::test]
async fn blob_streams_from_the_page_cache_or_the_disk_alike() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("blob");
    let data = pattern(2 * blobs::READ_CHUNK + 12_345);
    fs::write(&path, &data).unwrap();
    let stream = |start: u64, len: u64| blobs::stream_file(File::open(&path).unwrap(), start, len);

    assert_eq!(collect(stream(0, data.len() as u64).unwrap()).await, data);
    assert_eq!(
        collect(stream(7, 1_000_000).unwrap()).await,
        &data[7..1_000_007]
    );

    // Out of the page cache where the filesystem allows it (not on tmpfs).
    File::open(&path).unwrap().sync_all().unwrap();
    let file = File::open(&path).unwrap();
    let _ = rustix::fs::fadvise(&file, 0, None, rustix::fs::Advice::DontNeed);
    assert_eq!(collect(stream(0, data.len() as u64).unwrap()).await, data);

    // Cut short outside the registry: the bytes that are there, then an error.
    File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(blobs::READ_CHUNK as u64 + 10)
        .unwrap();
    let mut cut = stream(0, data.len() as u64).unwrap();
    let mut got = 0;
    let err = loop {
        match cut.next().await.expect("an error before the end") {
            Ok(chunk) => {
                assert!(chunk[..] == data[got..got + chunk.len()], "bytes at {got}");
                got += chunk.len();
            }
            Err(e) => break e,
        }
    };
    assert_eq!(got, blobs::READ_CHUNK + 10);
    assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    assert!(cut.next().await.is_none(), "nothing follows the error");
}
