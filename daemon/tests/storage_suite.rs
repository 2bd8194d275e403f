//! One behaviour, two backends: every test here runs against the filesystem backend and
//! against the S3 backend on a real S3 server (s3s-fs, SigV4 verified) on loopback, and
//! must pass on both. "Not found", "already exists", offsets, digests, resumption and the
//! bucket/directory being the source of truth look the same from either.
//!
//! Long on purpose: one test per storage rule, each run against both backends.

mod common;

use aar::config::{S3Config, Secret};
use aar::digest::Digest;
use aar::model::{ImageRef, VersionRecord, VersionSettings};
use aar::storage::fs::FsStorage;
use aar::storage::s3::S3Storage;
use aar::storage::{BlobBody, ByteStream, Storage, StorageError};
use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

/// Sizes here index byte slices.
const MIB: usize = common::MIB as usize;

/// A backend under test, with what keeps its data alive, and a way to open a second
/// instance on the same data (a restart, a new unit).
struct Backend {
    storage: Arc<dyn Storage>,
    kind: Kind,
}

enum Kind {
    Fs(tempfile::TempDir),
    S3(S3Server),
}

impl Backend {
    async fn fs() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        let storage = Arc::new(FsStorage::new(dir.path(), 0).unwrap());
        Backend {
            storage,
            kind: Kind::Fs(dir),
        }
    }

    async fn s3() -> Backend {
        let server = S3Server::start();
        let storage = open_s3(&server).await;
        Backend {
            storage,
            kind: Kind::S3(server),
        }
    }

    /// Another instance on the same directory or bucket, as after a restart.
    async fn reopen(&self) -> Arc<dyn Storage> {
        let storage: Arc<dyn Storage> = match &self.kind {
            Kind::Fs(dir) => Arc::new(FsStorage::new(dir.path(), 0).unwrap()),
            Kind::S3(server) => open_s3(server).await,
        };
        storage.recover().await.unwrap();
        storage
    }
}

fn s3_config(server: &S3Server) -> S3Config {
    S3Config {
        access_key: Some(ACCESS_KEY.into()),
        secret_access_key: Some(Secret::new(SECRET_KEY)),
        endpoint: Some(server.endpoint()),
        path_style: true,
        ..S3Config::new(REGION, BUCKET)
    }
}

async fn open_s3(server: &S3Server) -> Arc<dyn Storage> {
    let storage = S3Storage::open(&s3_config(server))
        .await
        .unwrap_or_else(|e| panic!("S3 backend did not open: {e}"));
    Arc::new(storage)
}

fn body(pieces: Vec<Bytes>) -> ByteStream {
    Box::pin(futures_util::stream::iter(pieces.into_iter().map(Ok)))
}

/// A body that delivers `data` in 64 KiB chunks (as a socket would).
fn chunked(data: &[u8]) -> ByteStream {
    body(data.chunks(64 << 10).map(Bytes::copy_from_slice).collect())
}

/// The blob's bytes: streamed (fs) or fetched from the redirect (S3).
async fn fetch(storage: &Arc<dyn Storage>, digest: &Digest) -> Vec<u8> {
    let size = storage.blob_size(digest).await.unwrap().expect("stored");
    let image = ImageRef {
        digest: *digest,
        size,
    };
    match storage.read_blob(&image, None).await.unwrap() {
        BlobBody::Stream { mut body, len } => {
            let mut out = Vec::new();
            while let Some(chunk) = body.next().await {
                out.extend_from_slice(&chunk.unwrap());
            }
            assert_eq!(out.len() as u64, len);
            out
        }
        BlobBody::Redirect(url) => {
            let r = plain_get(&url, &[]).await;
            assert_eq!(r.status, 200, "{url}: {}", r.text());
            r.body.to_vec()
        }
    }
}

fn record(app: &str, version: u32, digest: Digest, size: u64) -> VersionRecord {
    VersionRecord {
        application: app.into(),
        version,
        manifest: format!("name: {app}\n"),
        tags: vec!["suite".into()],
        instance_type: None,
        boot_package: None,
        images: BTreeMap::from([("amd64".to_owned(), ImageRef { digest, size })]),
        created_at: "2026-01-01T00:00:00Z".into(),
        // Both new fields set, so that the round trip through each backend covers them.
        vm: true,
        settings: Some(VersionSettings {
            boot_activity: "com.suite/.Main".into(),
            features: vec!["enable_virtual_keyboard".into()],
            hooks_timeout: "5m".into(),
            bootstrap_keep: vec!["app/lib".into()],
            video_encoder: "gpu-preferred".into(),
        }),
    }
}

async fn upload_all(storage: &Arc<dyn Storage>, data: &[u8]) -> Digest {
    let digest = Digest::of(data);
    let state = storage
        .create_upload(digest, data.len() as u64)
        .await
        .unwrap();
    if state.complete {
        return digest;
    }
    let done = storage
        .append_upload(&state.id, 0, chunked(data))
        .await
        .unwrap();
    assert!(done.complete);
    digest
}

// ---------------------------------------------------------------------------------------
// The suite
// ---------------------------------------------------------------------------------------

/// Larger than two S3 parts, appended in uneven PATCHes that end mid-part.
async fn upload_in_pieces_then_read(b: Backend) {
    let s = &b.storage;
    let data = pattern(1, 0, 19 * MIB + 12345);
    let digest = Digest::of(&data);
    let state = s.create_upload(digest, data.len() as u64).await.unwrap();
    assert!(!state.complete);
    assert_eq!(state.offset, 0);
    let cuts = [0, 3 * MIB + 7, 11 * MIB, data.len()];
    for w in cuts.windows(2) {
        let got = s
            .append_upload(&state.id, w[0] as u64, chunked(&data[w[0]..w[1]]))
            .await
            .unwrap();
        assert_eq!(got.offset, w[1] as u64);
        assert_eq!(got.complete, w[1] == data.len());
        if w[1] < data.len() {
            assert_eq!(s.upload_state(&state.id).await.unwrap().offset, w[1] as u64);
        }
    }
    assert_eq!(s.blob_size(&digest).await.unwrap(), Some(data.len() as u64));
    assert!(fetch(s, &digest).await == data, "bytes differ");
    // The upload is gone once complete.
    assert!(matches!(
        s.upload_state(&state.id).await,
        Err(StorageError::NotFound(_))
    ));
    // The same bytes again: nothing to send.
    let again = s.create_upload(digest, data.len() as u64).await.unwrap();
    assert!(again.complete);
    assert_eq!(again.offset, data.len() as u64);
}

async fn small_and_empty_images(b: Backend) {
    let s = &b.storage;
    for data in [Vec::new(), b"tiny image".to_vec()] {
        let digest = upload_all(s, &data).await;
        assert_eq!(s.blob_size(&digest).await.unwrap(), Some(data.len() as u64));
        assert_eq!(fetch(s, &digest).await, data);
    }
}

async fn wrong_offset_is_refused_with_the_right_one(b: Backend) {
    let s = &b.storage;
    let data = pattern(2, 0, 100_000);
    let state = s
        .create_upload(Digest::of(&data), data.len() as u64)
        .await
        .unwrap();
    s.append_upload(&state.id, 0, chunked(&data[..1000]))
        .await
        .unwrap();
    match s.append_upload(&state.id, 10, chunked(&data[10..])).await {
        Err(StorageError::OffsetMismatch { expected, got, .. }) => {
            assert_eq!((expected, got), (1000, 10));
        }
        other => panic!("{:?}", other.map(|s| s.offset)),
    }
}

async fn bytes_past_the_size_are_refused(b: Backend) {
    let s = &b.storage;
    let data = pattern(3, 0, 5000);
    let state = s.create_upload(Digest::of(&data), 4000).await.unwrap();
    let err = s
        .append_upload(&state.id, 0, chunked(&data))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::TooLong { declared: 4000 }),
        "{err}"
    );
}

async fn digest_mismatch_keeps_nothing(b: Backend) {
    let s = &b.storage;
    let data = pattern(4, 0, 9 * MIB);
    let claimed = Digest::of(b"something else");
    let state = s.create_upload(claimed, data.len() as u64).await.unwrap();
    let err = s
        .append_upload(&state.id, 0, chunked(&data))
        .await
        .unwrap_err();
    assert!(
        matches!(err, StorageError::DigestMismatch { expected, actual } if expected == claimed && actual == Digest::of(&data)),
        "{err}"
    );
    assert_eq!(s.blob_size(&claimed).await.unwrap(), None);
    assert_eq!(s.blob_size(&Digest::of(&data)).await.unwrap(), None);
    assert!(matches!(
        s.upload_state(&state.id).await,
        Err(StorageError::NotFound(_))
    ));
}

/// The body breaks after 9 MiB (one S3 part and a tail): what arrived is kept, and the
/// upload resumes from the offset the backend reports.
async fn interrupted_body_keeps_what_arrived(b: Backend) {
    let s = &b.storage;
    let data = pattern(5, 0, 13 * MIB);
    let digest = Digest::of(&data);
    let state = s.create_upload(digest, data.len() as u64).await.unwrap();
    let cut = 9 * MIB;
    let mut pieces: Vec<std::io::Result<Bytes>> = data[..cut]
        .chunks(64 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    pieces.push(Err(std::io::Error::new(
        std::io::ErrorKind::ConnectionReset,
        "client went away",
    )));
    let broken: ByteStream = Box::pin(futures_util::stream::iter(pieces));
    let err = s.append_upload(&state.id, 0, broken).await.unwrap_err();
    assert!(matches!(err, StorageError::BodyInterrupted(_)), "{err}");
    let held = s.upload_state(&state.id).await.unwrap().offset;
    assert_eq!(held, cut as u64);
    let done = s
        .append_upload(&state.id, held, chunked(&data[cut..]))
        .await
        .unwrap();
    assert!(done.complete);
    assert!(fetch(s, &digest).await == data);
}

/// After a restart the upload is still there; the offset may have gone back to what was
/// made durable (never forward), and resuming from it completes with the right digest.
async fn upload_resumes_after_restart(b: Backend) {
    let data = pattern(6, 0, 21 * MIB);
    let digest = Digest::of(&data);
    let state = b
        .storage
        .create_upload(digest, data.len() as u64)
        .await
        .unwrap();
    let sent = 18 * MIB;
    b.storage
        .append_upload(&state.id, 0, chunked(&data[..sent]))
        .await
        .unwrap();
    let s = b.reopen().await;
    let held = s.upload_state(&state.id).await.unwrap();
    assert!(held.offset <= sent as u64 && held.offset > 0, "{held:?}");
    assert_eq!(held.size, data.len() as u64);
    assert_eq!(held.digest, digest);
    let done = s
        .append_upload(
            &state.id,
            held.offset,
            chunked(&data[held.offset as usize..]),
        )
        .await
        .unwrap();
    assert!(done.complete);
    assert!(fetch(&s, &digest).await == data);
}

async fn aborted_and_unknown_uploads_are_not_found(b: Backend) {
    let s = &b.storage;
    let data = pattern(7, 0, 10 * MIB);
    let state = s
        .create_upload(Digest::of(&data), data.len() as u64)
        .await
        .unwrap();
    s.append_upload(&state.id, 0, chunked(&data[..9 * MIB]))
        .await
        .unwrap();
    s.abort_upload(&state.id).await.unwrap();
    for id in [
        state.id.as_str(),
        "not-an-id",
        "8d3f7a52-9d51-4d7b-a8a6-5b7f0e1c2d3e",
    ] {
        assert!(
            matches!(s.upload_state(id).await, Err(StorageError::NotFound(_))),
            "{id}"
        );
        assert!(
            matches!(s.abort_upload(id).await, Err(StorageError::NotFound(_))),
            "{id}"
        );
        assert!(
            matches!(
                s.append_upload(id, 0, chunked(b"x")).await,
                Err(StorageError::NotFound(_))
            ),
            "{id}"
        );
    }
    assert_eq!(s.blob_size(&Digest::of(&data)).await.unwrap(), None);
}

async fn idle_uploads_expire(b: Backend) {
    let s = &b.storage;
    let data = pattern(8, 0, 1000);
    let state = s
        .create_upload(Digest::of(&data), data.len() as u64)
        .await
        .unwrap();
    s.append_upload(&state.id, 0, chunked(&data[..10]))
        .await
        .unwrap();
    let past = SystemTime::now() - Duration::from_secs(3600);
    assert_eq!(s.expire_uploads(past).await.unwrap(), 0);
    assert_eq!(s.upload_state(&state.id).await.unwrap().offset, 10);
    let future = SystemTime::now() + Duration::from_secs(3600);
    assert_eq!(s.expire_uploads(future).await.unwrap(), 1);
    assert!(matches!(
        s.upload_state(&state.id).await,
        Err(StorageError::NotFound(_))
    ));
}

async fn versions_are_create_only(b: Backend) {
    let s = &b.storage;
    let data = b"image".to_vec();
    let digest = upload_all(s, &data).await;
    let v1 = record("app", 1, digest, 5);
    s.put_version(&v1).await.unwrap();
    let err = s
        .put_version(&record("app", 1, digest, 6))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists(_)), "{err}");
    s.put_version(&record("app", 2, digest, 5)).await.unwrap();
    s.put_version(&record("other", 7, digest, 5)).await.unwrap();
    let mut loaded: Vec<(String, u32)> = s
        .load_versions()
        .await
        .unwrap()
        .records
        .into_iter()
        .map(|r| (r.application, r.version))
        .collect();
    loaded.sort();
    assert_eq!(
        loaded,
        [("app".into(), 1), ("app".into(), 2), ("other".into(), 7)]
    );
    // Unchanged by the refused overwrite.
    let stored = s.load_versions().await.unwrap().records;
    let first = stored
        .iter()
        .find(|r| r.application == "app" && r.version == 1)
        .unwrap();
    assert_eq!(first.images["amd64"].size, 5);

    s.delete_version("app", 2).await.unwrap();
    assert!(matches!(
        s.delete_version("app", 2).await,
        Err(StorageError::NotFound(_))
    ));
    s.delete_application("app").await.unwrap();
    assert!(matches!(
        s.delete_application("app").await,
        Err(StorageError::NotFound(_))
    ));
    let left: Vec<String> = s
        .load_versions()
        .await
        .unwrap()
        .records
        .into_iter()
        .map(|r| r.application)
        .collect();
    assert_eq!(left, ["other"]);
    // A deleted version number can be published again.
    s.put_version(&v1).await.unwrap();
}

async fn blobs_are_listed_and_deleted(b: Backend) {
    let s = &b.storage;
    let digest = upload_all(s, b"a blob to collect").await;
    let before = SystemTime::now() - Duration::from_secs(600);
    let listed = s.list_blobs().await.unwrap();
    let (_, stored) = listed.iter().find(|(d, _)| *d == digest).expect("listed");
    assert!(*stored > before);
    s.delete_blob(&digest).await.unwrap();
    assert!(matches!(
        s.delete_blob(&digest).await,
        Err(StorageError::NotFound(_))
    ));
    assert_eq!(s.blob_size(&digest).await.unwrap(), None);
    assert!(!s
        .list_blobs()
        .await
        .unwrap()
        .iter()
        .any(|(d, _)| *d == digest));
}

/// The storage is the source of truth: a fresh instance lists everything.
async fn a_fresh_instance_sees_everything(b: Backend) {
    let digest = upload_all(&b.storage, b"shared image").await;
    b.storage
        .put_version(&record("shared", 3, digest, 12))
        .await
        .unwrap();
    let other = b.reopen().await;
    let loaded = other.load_versions().await.unwrap().records;
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0], record("shared", 3, digest, 12));
    assert_eq!(other.blob_size(&digest).await.unwrap(), Some(12));
    // What the other instance publishes, the first sees when it loads again.
    other
        .put_version(&record("shared", 4, digest, 12))
        .await
        .unwrap();
    let err = b
        .storage
        .put_version(&record("shared", 4, digest, 12))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::AlreadyExists(_)), "{err}");
    assert_eq!(b.storage.load_versions().await.unwrap().records.len(), 2);
}

async fn recovery_of_a_clean_store_removes_nothing(b: Backend) {
    let digest = upload_all(&b.storage, b"kept").await;
    b.storage
        .put_version(&record("kept", 1, digest, 4))
        .await
        .unwrap();
    let cleanup = b.storage.recover().await.unwrap();
    assert_eq!(cleanup, Default::default());
    assert_eq!(b.storage.load_versions().await.unwrap().records.len(), 1);
}

macro_rules! suite {
    ($($test:ident),* $(,)?) => {
        mod fs {
            $(
                #[tokio::test]
                async fn $test() {
                    super::$test(super::Backend::fs().await).await
                }
            )*
        }
        mod s3 {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test(super::Backend::s3().await).await
                }
            )*
        }
    };
}

suite!(
    upload_in_pieces_then_read,
    small_and_empty_images,
    wrong_offset_is_refused_with_the_right_one,
    bytes_past_the_size_are_refused,
    digest_mismatch_keeps_nothing,
    interrupted_body_keeps_what_arrived,
    upload_resumes_after_restart,
    aborted_and_unknown_uploads_are_not_found,
    idle_uploads_expire,
    versions_are_create_only,
    blobs_are_listed_and_deleted,
    a_fresh_instance_sees_everything,
    recovery_of_a_clean_store_removes_nothing,
);
