//! The real `aar` binary on the S3 backend, against a real S3 server (s3s-fs, every
//! signature verified) on loopback: uploads, redirects a client follows, presigned URLs
//! the server refuses once tampered with or expired, bad credentials at start, an S3
//! outage and its recovery, and two daemons sharing one bucket.
//!
//! Long on purpose: one scenario per test function, each against the real S3 server.

mod common;

use bytes::Bytes;
use common::*;
use hyper::StatusCode;
use std::time::{Duration, Instant};

/// Sizes here index byte slices.
const MIB: usize = common::MIB as usize;

/// Publishes version `version` of `name` (tagged `s3`) with `digest` as its amd64 image.
async fn publish_amd64(d: &Daemon, name: &str, version: u64, digest: &str) -> Resp {
    d.publisher()
        .publish(
            name,
            Some(version),
            &manifest(name, &["s3"]),
            &[("amd64", digest)],
        )
        .await
}

fn image_path(name: &str, version: u32) -> String {
    format!("/1.0/applications/{name}/versions/{version}/images/amd64")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_image_is_published_and_downloaded_through_the_redirect() {
    let s3 = S3Server::start();
    let aar = Daemon::s3(&s3_storage(&s3, SECRET_KEY, "")).start();
    let info = aar.reader().get("/1.0").await;
    assert_eq!(info.metadata()["storage"], "s3");

    // Three parts of 8 MiB and a tail, sent in PATCHes that do not line up with them.
    let image = pattern(11, 0, 27 * MIB + 333);
    let digest = aar.publisher().upload_in_pieces(&image, 5 * MIB + 1).await;
    let published = publish_amd64(&aar, "game", 1, &digest).await;
    assert_eq!(
        published.status,
        StatusCode::CREATED,
        "{}",
        published.text()
    );

    let listed = aar.reader().get("/1.0/applications").await;
    assert_eq!(listed.metadata()[0]["name"], "game");
    let r = aar.reader().get(&image_path("game", 1)).await;
    assert_eq!(r.status, StatusCode::TEMPORARY_REDIRECT, "{}", r.text());
    let location = r.header("location").unwrap().to_owned();
    assert!(
        location.starts_with(&format!("{}/{BUCKET}/blobs/sha256/", s3.endpoint())),
        "{location}"
    );
    assert!(location.contains("X-Amz-Signature="), "{location}");
    assert!(
        location.contains("X-Amz-Expires=300"),
        "default 5m: {location}"
    );
    let got = plain_get(&location, &[]).await;
    assert_eq!(got.status, StatusCode::OK, "{}", got.text());
    assert!(got.body == image, "downloaded bytes differ");
    // Range requests go to S3 with the same URL.
    let part = plain_get(&location, &[("range", "bytes=8388600-8388615")]).await;
    assert_eq!(part.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&part.body[..], &image[8388600..8388616]);

    // The bucket holds the blob and the record, and no upload is left open.
    let hex = digest.strip_prefix("sha256:").unwrap();
    assert_eq!(s3.keys("blobs/"), [format!("blobs/sha256/{hex}")]);
    assert_eq!(s3.keys("apps/"), ["apps/game/versions/1.json"]);
    assert!(s3.keys("uploads/").is_empty(), "{:?}", s3.keys("uploads/"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_and_expired_presigned_urls_are_refused() {
    let s3 = S3Server::start();
    let aar = Daemon::s3(&s3_storage(&s3, SECRET_KEY, "    presign-duration: 4s\n")).start();
    let one = aar
        .publisher()
        .upload_in_pieces(b"first image", 1 << 20)
        .await;
    let two = aar
        .publisher()
        .upload_in_pieces(b"second image", 1 << 20)
        .await;
    publish_amd64(&aar, "a", 1, &one).await;
    publish_amd64(&aar, "b", 1, &two).await;
    let url = aar
        .reader()
        .get(&image_path("a", 1))
        .await
        .header("location")
        .unwrap()
        .to_owned();
    assert!(url.contains("X-Amz-Expires=4"), "{url}");
    assert_eq!(plain_get(&url, &[]).await.status, StatusCode::OK);

    // Another object under the same signature.
    let other = url.replace(
        one.strip_prefix("sha256:").unwrap(),
        two.strip_prefix("sha256:").unwrap(),
    );
    assert_eq!(plain_get(&other, &[]).await.status, StatusCode::FORBIDDEN);
    // One character of the signature changed.
    let at = url.find("X-Amz-Signature=").unwrap() + "X-Amz-Signature=".len();
    let mut tampered = url.clone().into_bytes();
    tampered[at] = if tampered[at] == b'0' { b'1' } else { b'0' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(
        plain_get(&tampered, &[]).await.status,
        StatusCode::FORBIDDEN
    );
    // A longer validity than signed.
    let longer = url.replace("X-Amz-Expires=4", "X-Amz-Expires=3600");
    assert_eq!(plain_get(&longer, &[]).await.status, StatusCode::FORBIDDEN);

    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(
        plain_get(&url, &[]).await.status,
        StatusCode::FORBIDDEN,
        "expired"
    );
    // A new request gets a new URL that works.
    let fresh = aar
        .reader()
        .get(&image_path("a", 1))
        .await
        .header("location")
        .unwrap()
        .to_owned();
    assert_ne!(fresh, url);
    assert_eq!(
        plain_get(&fresh, &[]).await.body,
        Bytes::from_static(b"first image")
    );
}

#[test]
fn a_wrong_secret_is_refused_at_start_in_one_clear_line() {
    let s3 = S3Server::start();
    let secret = "ThisIsNotTheRightSecretKeyForTheServer00";
    let mut aar = Daemon::s3(&s3_storage(&s3, secret, ""))
        .no_trust()
        .prepare();
    let err = aar.try_start().expect_err("started with a wrong secret");
    let line = err
        .lines()
        .find(|l| l.starts_with("aar: "))
        .unwrap_or_else(|| panic!("no error line in: {err}"));
    eprintln!("{line}");
    for needle in [
        "bucket aar0",
        "region us-east-1",
        "GetBucketLocation",
        "403 SignatureDoesNotMatch",
        "check storage.s3.secret-access-key",
    ] {
        assert!(line.contains(needle), "{needle:?} missing from {line:?}");
    }
    assert!(!err.contains(secret), "the secret leaked: {err}");
}

#[test]
fn a_missing_bucket_and_a_wrong_region_are_refused_at_start() {
    let s3 = S3Server::start();
    let storage = s3_storage(&s3, SECRET_KEY, "").replace("bucket: aar0", "bucket: nosuch");
    // Nothing trusted first: `aar trust add` would reach the bucket before the daemon.
    let err = Daemon::s3(&storage)
        .no_trust()
        .prepare()
        .try_start()
        .expect_err("started without a bucket");
    assert!(
        err.contains("storage.s3 bucket nosuch (region us-east-1)"),
        "{err}"
    );
    assert!(err.contains("NoSuchBucket"), "{err}");
    eprintln!("{}", err.lines().find(|l| l.starts_with("aar: ")).unwrap());
    assert!(err.contains("create it or fix storage.s3.bucket"), "{err}");

    let err = Daemon::s3(&s3_storage(&s3, SECRET_KEY, "").replace(
        "access-key: AKIAAARTESTKEY000001",
        "access-key: AKIAUNKNOWNKEY000000",
    ))
    .no_trust()
    .prepare()
    .try_start()
    .expect_err("started with an unknown key");
    assert!(
        err.contains("check storage.s3.access-key")
            || err.contains("InvalidAccessKeyId")
            || err.contains("403"),
        "{err}"
    );
}

/// Each permission of the documented policy that the start-up check can exercise is
/// named when it is missing.
#[test]
fn a_missing_permission_is_named_at_start() {
    for (op, permission, resource) in [
        (
            "GetBucketLocation",
            "s3:GetBucketLocation",
            "arn:aws:s3:::aar0 ",
        ),
        ("ListObjectsV2", "s3:ListBucket", "arn:aws:s3:::aar0 "),
        ("PutObject", "s3:PutObject", "arn:aws:s3:::aar0/*"),
        ("GetObject", "s3:GetObject", "arn:aws:s3:::aar0/*"),
        (
            "ListParts",
            "s3:ListMultipartUploadParts",
            "arn:aws:s3:::aar0/*",
        ),
        (
            "AbortMultipartUpload",
            "s3:AbortMultipartUpload",
            "arn:aws:s3:::aar0/*",
        ),
        ("DeleteObject", "s3:DeleteObject", "arn:aws:s3:::aar0/*"),
    ] {
        let s3 = S3Server::start_denying(&[op]);
        let err = Daemon::s3(&s3_storage(&s3, SECRET_KEY, ""))
            .no_trust()
            .prepare()
            .try_start()
            .expect_err(op);
        let line = err
            .lines()
            .find(|l| l.starts_with("aar: "))
            .unwrap_or(&err)
            .to_owned();
        if op == "PutObject" {
            eprintln!("{line}");
        }
        assert!(
            line.contains("storage.s3 bucket aar0 (region us-east-1)"),
            "{line}"
        );
        assert!(line.contains(&format!("{op} ")), "{op}: {line}");
        assert!(line.contains("403 AccessDenied"), "{line}");
        assert!(
            line.contains(&format!("the credentials lack {permission} on {resource}")),
            "{op}: {line}"
        );
    }
    // Nothing is left behind by the checks that failed half-way.
    let s3 = S3Server::start_denying(&["ListParts"]);
    let _ = Daemon::s3(&s3_storage(&s3, SECRET_KEY, ""))
        .no_trust()
        .prepare()
        .try_start();
    assert!(s3.keys("").is_empty(), "{:?}", s3.keys(""));
}

/// Storage unreachable at start is not an empty registry: the daemon serves, says why in
/// its log, answers 503 with Retry-After to every read and write that needs the index,
/// and once the bucket answers it serves everything that was published before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_bucket_at_start_answers_503_never_an_empty_list() {
    let mut s3 = S3Server::start();
    let storage = s3_storage(&s3, SECRET_KEY, "");
    let mut aar = Daemon::s3(&storage).start();
    let digest = aar
        .publisher()
        .upload_in_pieces(b"published before", 1 << 20)
        .await;
    publish_amd64(&aar, "kept", 1, &digest).await.expect(201);
    aar.stop_with("TERM");

    s3.stop();
    let started = Instant::now();
    aar.restart();
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    let said = aar.stderr();
    assert!(
        said.contains("storage.s3 bucket aar0 (region us-east-1): GetBucketLocation")
            && said.to_lowercase().contains("connect")
            && said.contains("serving 503"),
        "{said}"
    );
    for path in [
        "/1.0/applications",
        "/1.0/applications/kept",
        "/1.0/applications/kept/versions/1",
        "/1.0/applications/kept/versions/1/images/amd64",
    ] {
        let r = aar.reader().get(path).await;
        assert_eq!(
            r.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {}",
            r.text()
        );
        assert!(r.header("retry-after").is_some(), "{path}");
    }
    let publish = publish_amd64(&aar, "kept", 2, &digest).await;
    assert_eq!(
        publish.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        publish.text()
    );

    s3.resume();
    let listed = eventually(Duration::from_secs(30), || async {
        let r = aar.reader().get("/1.0/applications").await;
        (r.status == StatusCode::OK).then(|| r.metadata())
    })
    .await
    .expect("the registry answers once the bucket does");
    assert_eq!(listed[0]["name"], "kept", "{listed}");
    assert_eq!(listed[0]["latest_version"], 1, "{listed}");
    assert!(
        aar.stderr().contains("the registry answers again"),
        "{}",
        aar.stderr()
    );
}

/// `AWS_CA_BUNDLE` is set on this machine: the daemon must behave the same with it unset,
/// pointing at an unrelated file, or at nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_ca_bundle_set_or_not_changes_nothing() {
    let s3 = S3Server::start();
    let unrelated = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(unrelated.path(), "this is not a certificate bundle\n").unwrap();
    let bundles = [
        None,
        Some(unrelated.path().to_str().unwrap().to_owned()),
        Some("/nonexistent/ca-bundle.pem".to_owned()),
        std::env::var("AWS_CA_BUNDLE").ok(),
    ];
    for (n, bundle) in bundles.iter().enumerate() {
        let aar = Daemon::s3(&s3_storage(&s3, SECRET_KEY, ""))
            .env("AWS_CA_BUNDLE", bundle.as_deref())
            .start();
        let data = format!("image {n}").into_bytes();
        let digest = aar.publisher().upload_in_pieces(&data, 1 << 20).await;
        let r = publish_amd64(&aar, &format!("app{n}"), 1, &digest).await;
        assert_eq!(r.status, StatusCode::CREATED, "{bundle:?}: {}", r.text());
        let url = aar.reader().get(&image_path(&format!("app{n}"), 1)).await;
        let got = plain_get(&url.header("location").unwrap(), &[]).await;
        assert_eq!(got.body, data, "{bundle:?}");
    }
}

/// An https endpoint signed by a private CA works when `AWS_CA_BUNDLE` names the CA (the
/// certificates are added to the system roots), and is refused without it. Over TLS the
/// parts are sent with an unsigned payload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_endpoint_is_trusted_through_aws_ca_bundle() {
    let s3 = S3Server::start_tls();
    let bundle = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bundle.path(), s3.certificate.as_ref().unwrap()).unwrap();

    let err = Daemon::s3(&s3_storage(&s3, SECRET_KEY, ""))
        .env("AWS_CA_BUNDLE", None)
        .no_trust()
        .prepare()
        .try_start()
        .expect_err("trusted a self-signed S3 endpoint");
    assert!(err.contains("GetBucketLocation"), "{err}");
    assert!(err.to_lowercase().contains("certificate"), "{err}");

    let aar = Daemon::s3(&s3_storage(&s3, SECRET_KEY, ""))
        .env("AWS_CA_BUNDLE", bundle.path().to_str())
        .start();
    let image = pattern(21, 0, 17 * MIB + 9);
    let digest = aar.publisher().upload_in_pieces(&image, 6 * MIB).await;
    let r = publish_amd64(&aar, "tls", 1, &digest).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let stored = s3.object_path(&format!(
        "blobs/sha256/{}",
        digest.strip_prefix("sha256:").unwrap()
    ));
    assert!(
        std::fs::read(stored).unwrap() == image,
        "stored bytes differ"
    );
    let location = aar.reader().get(&image_path("tls", 1)).await;
    assert!(location
        .header("location")
        .unwrap()
        .starts_with(&format!("{}/aar0/", s3.endpoint())));
}

/// While S3 is down, metadata is served from the index and writes fail with 503 and
/// Retry-After; service resumes by itself when S3 is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_outage_keeps_metadata_and_recovers() {
    let mut s3 = S3Server::start();
    let aar = Daemon::s3(&s3_storage(&s3, SECRET_KEY, "    refresh-interval: 1s\n")).start();
    let digest = aar
        .publisher()
        .upload_in_pieces(b"before the outage", 1 << 20)
        .await;
    publish_amd64(&aar, "steady", 1, &digest).await;

    s3.stop();
    tokio::time::sleep(Duration::from_secs(2)).await; // a refresh fails meanwhile
    let listed = aar.reader().get("/1.0/applications/steady").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    assert_eq!(listed.metadata()["latest_version"], 1);
    let version = aar
        .reader()
        .get("/1.0/applications/steady/versions/1")
        .await;
    assert_eq!(version.status, StatusCode::OK);
    let redirect = aar.reader().get(&image_path("steady", 1)).await;
    assert_eq!(redirect.status, StatusCode::TEMPORARY_REDIRECT);

    let data = b"during the outage".to_vec();
    let refused = aar
        .publisher()
        .create_upload(&digest_of(&data), data.len() as u64)
        .await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        refused.text()
    );
    assert!(
        refused.header("retry-after").is_some(),
        "{:?}",
        refused.headers
    );
    let publish = publish_amd64(&aar, "steady", 2, &digest).await;
    assert_eq!(
        publish.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        publish.text()
    );

    s3.resume();
    let publisher = aar.publisher();
    assert!(
        eventually(Duration::from_secs(30), || async {
            (publisher
                .create_upload(&digest_of(&data), data.len() as u64)
                .await
                .status
                == StatusCode::CREATED)
                .then_some(())
        })
        .await
        .is_some(),
        "uploads did not resume"
    );
    let digest2 = aar.publisher().upload_in_pieces(&data, 1 << 20).await;
    let r = publish_amd64(&aar, "steady", 2, &digest2).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert!(
        aar.stderr()
            .contains("refreshing the index from storage failed"),
        "{}",
        aar.stderr()
    );
}

/// Two daemons on one bucket: each sees what the other publishes within the refresh
/// interval, and neither can overwrite the other's version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_share_a_bucket() {
    let s3 = S3Server::start();
    let storage = s3_storage(&s3, SECRET_KEY, "    refresh-interval: 1s\n");
    let a = Daemon::s3(&storage).start();
    let b = Daemon::s3(&storage).start();
    let digest = a.publisher().upload_in_pieces(b"shared", 1 << 20).await;
    let r = publish_amd64(&a, "shared", 1, &digest).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let reader = b.reader();
    assert!(
        eventually(Duration::from_secs(10), || async {
            (reader.get("/1.0/applications/shared").await.status == StatusCode::OK).then_some(())
        })
        .await
        .is_some(),
        "b never saw a's version"
    );
    // b's upload of the same bytes finds the blob; its publish of the same number fails.
    let again = b.publisher().create_upload(&digest_of(b"shared"), 6).await;
    assert_eq!(again.metadata()["complete"], true);
    let r = publish_amd64(&b, "shared", 1, &digest).await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.text());
    let r = publish_amd64(&b, "shared", 2, &digest).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    // A delete on b disappears from a.
    let deleted = b.publisher().delete("/1.0/applications/shared").await;
    assert_eq!(deleted.status, StatusCode::OK, "{}", deleted.text());
    let reader = a.reader();
    assert!(
        eventually(Duration::from_secs(10), || async {
            (reader.get("/1.0/applications/shared").await.status == StatusCode::NOT_FOUND)
                .then_some(())
        })
        .await
        .is_some(),
        "a still lists the deleted application"
    );
}
