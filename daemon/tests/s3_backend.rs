//! What only the S3 backend has: its records in the bucket, their conditional updates,
//! abandoned multipart uploads, and interrupted deletes. Against s3s-fs on loopback,
//! which lacks ListMultipartUploads (501): the backend must manage with its own records.

mod common;

use aar::digest::Digest;
use aar::model::{ImageRef, VersionRecord};
use aar::storage::{ByteStream, StorageError};
use bytes::Bytes;
use common::*;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// Sizes here index byte slices.
const MIB: usize = common::MIB as usize;

fn chunked(data: &[u8]) -> ByteStream {
    let pieces: Vec<std::io::Result<Bytes>> = data
        .chunks(64 << 10)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    Box::pin(futures_util::stream::iter(pieces))
}

/// Part files s3s-fs keeps for unfinished multipart uploads (in its root directory).
fn open_parts(server: &S3Server) -> Vec<String> {
    std::fs::read_dir(&server.root)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".upload_id-"))
        .collect()
}

fn read_record(server: &S3Server, id: &str) -> serde_json::Value {
    let path = server.object_path(&format!("uploads/{id}.json"));
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_uploads_are_recorded_in_the_bucket_and_expiry_aborts_them() {
    let server = S3Server::start();
    let s = server.storage().await;
    let data = pattern(1, 0, 17 * MIB);
    let state = s
        .create_upload(Digest::of(&data), data.len() as u64)
        .await
        .unwrap();
    let record = read_record(&server, &state.id);
    assert_eq!(record["size"], data.len() as u64);
    assert_eq!(record["parts"], serde_json::json!([]));
    assert!(record["multipart"].is_null(), "{record}");

    s.append_upload(&state.id, 0, chunked(&data[..9 * MIB]))
        .await
        .unwrap();
    let record = read_record(&server, &state.id);
    assert_eq!(record["part_size"], 8 * MIB as u64);
    assert_eq!(record["parts"].as_array().unwrap().len(), 1);
    assert!(record["multipart"].is_string(), "{record}");
    assert_eq!(open_parts(&server).len(), 1, "{:?}", open_parts(&server));
    // Nothing is visible under the blob's key before the upload completes.
    assert!(server.keys("blobs/").is_empty());

    // A restarted daemon keeps a resumable upload...
    let again = server.storage().await;
    let cleanup = again.recover().await.unwrap();
    assert_eq!(cleanup.uploads, 0);
    assert_eq!(
        again.upload_state(&state.id).await.unwrap().offset,
        8 * MIB as u64
    );
    // ...until it has been idle too long: then record and parts go.
    let expired = again
        .expire_uploads(SystemTime::now() + Duration::from_secs(60))
        .await
        .unwrap();
    assert_eq!(expired, 1);
    assert!(server.keys("uploads/").is_empty());
    assert!(open_parts(&server).is_empty(), "{:?}", open_parts(&server));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_record_changed_elsewhere_is_never_overwritten() {
    let server = S3Server::start();
    let a = server.storage().await;
    let b = server.storage().await;
    let data = pattern(2, 0, 30 * MIB);
    let digest = Digest::of(&data);
    let state = a.create_upload(digest, data.len() as u64).await.unwrap();
    // a: one part recorded, 1 MiB held in memory.
    a.append_upload(&state.id, 0, chunked(&data[..9 * MIB]))
        .await
        .unwrap();
    // b resumes from the record (8 MiB) and records a second part.
    let durable = b.upload_state(&state.id).await.unwrap().offset;
    assert_eq!(durable, 8 * MIB as u64);
    b.append_upload(&state.id, durable, chunked(&data[8 * MIB..17 * MIB]))
        .await
        .unwrap();
    // a's copy is stale: its next part must not replace b's record.
    let err = a
        .append_upload(&state.id, 9 * MIB as u64, chunked(&data[9 * MIB..18 * MIB]))
        .await
        .unwrap_err();
    assert!(matches!(err, StorageError::Busy { .. }), "{err}");
    let record = read_record(&server, &state.id);
    assert_eq!(record["parts"].as_array().unwrap().len(), 2);
    // a reloads from the record and finishes the upload.
    let offset = a.upload_state(&state.id).await.unwrap().offset;
    assert_eq!(offset, 16 * MIB as u64);
    let done = a
        .append_upload(&state.id, offset, chunked(&data[16 * MIB..]))
        .await
        .unwrap();
    assert!(done.complete);
    assert_eq!(a.blob_size(&digest).await.unwrap(), Some(data.len() as u64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_up_finishes_interrupted_deletes_and_drops_unreadable_records() {
    let server = S3Server::start();
    let s = server.storage().await;
    let digest = Digest::of(b"x");
    for version in 1..=3 {
        s.put_version(&VersionRecord {
            application: "doomed".into(),
            version,
            manifest: "name: doomed\n".into(),
            tags: vec![],
            instance_type: None,
            boot_package: None,
            images: BTreeMap::from([("amd64".to_owned(), ImageRef { digest, size: 1 })]),
            created_at: "2026-01-01T00:00:00Z".into(),
            vm: false,
            settings: None,
        })
        .await
        .unwrap();
    }
    // A delete that stopped after writing its marker and removing one record.
    let client = server.client().await;
    let marker = serde_json::json!({
        "application": "doomed",
        "keys": ["apps/doomed/versions/1.json", "apps/doomed/versions/2.json", "apps/doomed/versions/3.json"],
    });
    client
        .put_object()
        .bucket(BUCKET)
        .key("deletions/d1.json")
        .body(serde_json::to_vec(&marker).unwrap().into())
        .send()
        .await
        .unwrap();
    client
        .delete_object()
        .bucket(BUCKET)
        .key("apps/doomed/versions/1.json")
        .send()
        .await
        .unwrap();
    client
        .put_object()
        .bucket(BUCKET)
        .key("uploads/0b4c6f1e-2f43-4d49-9d7e-6a4e51b0d3a1.json")
        .body(b"{not json".to_vec().into())
        .send()
        .await
        .unwrap();
    // Hidden at once, even before recovery.
    assert!(s.load_versions().await.unwrap().records.is_empty());
    let fresh = server.storage().await;
    let cleanup = fresh.recover().await.unwrap();
    assert_eq!(cleanup.temp_files, 1);
    assert_eq!(cleanup.uploads, 1);
    assert!(
        server.keys("apps/").is_empty(),
        "{:?}",
        server.keys("apps/")
    );
    assert!(server.keys("deletions/").is_empty());
    assert!(server.keys("uploads/").is_empty());
    assert!(fresh.load_versions().await.unwrap().records.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirects_reuse_the_url_of_the_same_second() {
    let server = S3Server::start();
    let s = server.storage().await;
    let state = s.create_upload(Digest::of(b"abc"), 3).await.unwrap();
    s.append_upload(&state.id, 0, chunked(b"abc"))
        .await
        .unwrap();
    let url = |_: ()| {
        let s = s.clone();
        async move {
            match s
                .read_blob(
                    &ImageRef {
                        digest: Digest::of(b"abc"),
                        size: 3,
                    },
                    None,
                )
                .await
                .unwrap()
            {
                aar::storage::BlobBody::Redirect(url) => url,
                _ => panic!("the S3 backend redirects"),
            }
        }
    };
    let (first, second) = (url(()).await, url(()).await);
    let date = |u: &str| u.split("X-Amz-Date=").nth(1).unwrap()[..16].to_owned();
    if date(&first) == date(&second) {
        assert_eq!(first, second);
    }
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_ne!(url(()).await, first);
}
