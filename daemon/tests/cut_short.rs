//! Writes cut short by the client: a publisher that sends a publish or a delete and closes
//! the connection at once must never split the durable write from the index. Whatever the
//! daemon answers before a restart, it answers after one, and garbage collection never
//! removes an image a stored version references.

mod common;

use common::*;
use serde_json::json;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// Sends `method path` with `body` on a fresh connection and closes it `after` without
/// reading the answer, the way a client that gives up does.
async fn send_and_close(c: &Client, method: &str, path: &str, body: &str, after: Duration) {
    let mut tls = c.tls().await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(body.as_bytes()).await.unwrap();
    tls.flush().await.unwrap();
    tokio::time::sleep(after).await;
    // Dropping the stream closes the socket; the daemon sees EOF while it works.
    drop(tls);
}

/// The versions the daemon lists for `app`, once it has stopped changing (the writes the
/// closed connections started may still be landing).
async fn settled_versions(c: &Client, app: &str) -> Vec<u64> {
    let mut last = None;
    for _ in 0..50 {
        let r = c.get(&format!("/1.0/applications/{app}")).await;
        let now = if r.status == 404 {
            Vec::new()
        } else {
            version_numbers(&r.metadata())
        };
        if last.as_ref() == Some(&now) {
            return now;
        }
        last = Some(now);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the versions of {app} kept changing: {last:?}");
}

/// Spreads the hang-ups over the first milliseconds of the work, so that some land while
/// the daemon is between its durable write and its index update.
fn hang_up_after(n: u64) -> Duration {
    Duration::from_micros((n % 20) * 400)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_and_deletes_cut_short_never_split_disk_from_index() {
    // GC every second with a short grace: an image the index forgets is soon collected.
    let mut d = Daemon::start("gc: {interval: 1s, upload-expiry: 2s}\n");
    let p = d.publisher();
    let image = p
        .upload(b"an image published by a client that hangs up")
        .await;
    let publish = |version: u64| {
        json!({
            "version": version,
            "manifest": manifest("hangup", &[]),
            "images": {"amd64": image},
        })
        .to_string()
    };
    // Version 1 exists for real, so the image stays referenced throughout.
    p.publish(
        "hangup",
        Some(1),
        &manifest("hangup", &[]),
        &[("amd64", &image)],
    )
    .await
    .expect(201);
    for version in 2..=40 {
        send_and_close(
            &p,
            "POST",
            "/1.0/applications/hangup/versions",
            &publish(version),
            hang_up_after(version),
        )
        .await;
    }
    let published = settled_versions(&p, "hangup").await;

    // Every version the daemon stored is one it lists: an auto-numbered publish takes the
    // next number instead of colliding with a version the index does not know.
    let next = p
        .publish(
            "hangup",
            None,
            &manifest("hangup", &[]),
            &[("amd64", &image)],
        )
        .await;
    next.expect(201);
    let next = next.metadata()["version"].as_u64().unwrap();
    assert_eq!(next, published.last().unwrap() + 1, "listed {published:?}");

    for version in published.iter().filter(|v| **v > 1) {
        send_and_close(
            &p,
            "DELETE",
            &format!("/1.0/applications/hangup/versions/{version}"),
            "",
            hang_up_after(*version),
        )
        .await;
    }
    let kept = settled_versions(&p, "hangup").await;

    // A restart reads storage, the source of truth: it must agree with what was served.
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.restart();
    let p = d.publisher();
    assert_eq!(
        settled_versions(&p, "hangup").await,
        kept,
        "the index before the restart differed from storage"
    );
    // And every listed version's image is still there, after GC has run on both sides of
    // the restart.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for version in &kept {
        let r = p
            .get(&format!(
                "/1.0/applications/hangup/versions/{version}/images/amd64"
            ))
            .await;
        assert_eq!(r.status, 200, "version {version}: {}", r.text());
    }
}
