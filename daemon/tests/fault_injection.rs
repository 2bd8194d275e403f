//! Connections cut at random points of uploads, publishes and deletes (a seeded generator,
//! so a failure replays). Afterwards storage, the index and the API agree: what is listed
//! before a restart is listed after it, every listed version downloads with its digest,
//! every record on disk is listed, and `aar verify` finds nothing damaged.

mod common;

use common::*;
use serde_json::json;
use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// xorshift64*: enough randomness to place the cuts, and replayable from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Writes `head` and the first `cut` bytes of `body`, waits `pause`, then drops the
/// connection without reading the answer.
async fn cut(c: &Client, head: String, body: &[u8], cut: usize, pause: Duration) {
    let mut tls = c.tls().await.unwrap();
    tls.write_all(head.as_bytes()).await.unwrap();
    // A write can fail once the daemon has answered and closed; that is a cut too.
    let _ = tls.write_all(&body[..cut.min(body.len())]).await;
    let _ = tls.flush().await;
    tokio::time::sleep(pause).await;
}

fn raw_request(method: &str, path: &str, len: usize) -> String {
    format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// The path and JSON body of a publish of `app` `version` with `digest` as its image.
fn publish_request(app: &str, version: u64, digest: &str) -> (String, String) {
    let body = json!({
        "version": version,
        "manifest": manifest(app, &[]),
        "images": {"amd64": digest},
    });
    (
        format!("/1.0/applications/{app}/versions"),
        body.to_string(),
    )
}

/// Every application and version the API lists.
async fn listed(c: &Client) -> BTreeSet<(String, u64)> {
    let (_, list) = c.get_json("/1.0/applications").await;
    let mut out = BTreeSet::new();
    for app in list["metadata"].as_array().unwrap() {
        let name = app["name"].as_str().unwrap().to_string();
        for v in version_numbers(app) {
            out.insert((name.clone(), v));
        }
    }
    out
}

/// Every version record on disk.
fn on_disk(d: &Daemon) -> BTreeSet<(String, u64)> {
    let mut out = BTreeSet::new();
    let Ok(apps) = fs::read_dir(d.root_dir.join("apps")) else {
        return out;
    };
    for app in apps.flatten() {
        let name = app.file_name().to_string_lossy().into_owned();
        let Ok(versions) = fs::read_dir(app.path().join("versions")) else {
            continue;
        };
        for v in versions.flatten() {
            let file = v.file_name().to_string_lossy().into_owned();
            if let Some(n) = file.strip_suffix(".json").and_then(|n| n.parse().ok()) {
                out.insert((name.clone(), n));
            }
        }
    }
    out
}

async fn settled(c: &Client) -> BTreeSet<(String, u64)> {
    let mut last = listed(c).await;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = listed(c).await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the listing kept changing: {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_cuts_leave_storage_index_and_api_in_agreement() {
    let seed = std::env::var("AAR_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_f00d_u64);
    println!("seed {seed} (AAR_FAULT_SEED replays it)");
    let mut rng = Rng(seed);
    let mut d = Daemon::start("gc: {interval: 1s, upload-expiry: 2s}\n");
    let p = d.publisher();
    let apps = ["alpha", "bravo", "charlie"];

    for round in 0..45u64 {
        let app = apps[rng.below(apps.len() as u64) as usize];
        let version = 1 + rng.below(8);
        let pause = Duration::from_micros(rng.below(4000));
        match rng.below(3) {
            // An upload cut mid-body, resumed from what the daemon kept, then published
            // by a request that may itself be cut.
            0 => {
                let size = (16 << 10) + rng.below(256 << 10);
                let data = pattern(round, 0, size as usize);
                let digest = digest_of(&data);
                let created = p.create_upload(&digest, size).await;
                if created.metadata()["complete"] == true {
                    continue;
                }
                let id = upload_id(&created);
                let head = format!(
                    "PATCH /1.0/uploads/{id} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpload-Offset: 0\r\nContent-Length: {size}\r\n\r\n"
                );
                cut(&p, head, &data, rng.below(size) as usize, pause).await;
                // The daemon may still be writing what arrived (409 until it is done):
                // resume from the offset it reports, as a publisher would.
                let resumed = eventually(Duration::from_secs(20), || async {
                    let r = p
                        .req(hyper::Method::HEAD, &format!("/1.0/uploads/{id}"))
                        .await;
                    let offset: u64 = r.header("upload-offset")?.parse().ok()?;
                    let rest = data[offset as usize..].to_vec();
                    let patch = request(hyper::Method::PATCH, &format!("/1.0/uploads/{id}"))
                        .header("upload-offset", offset)
                        .header("content-length", rest.len())
                        .body(full_body(rest))
                        .unwrap();
                    // A 409 may close the connection before the body is sent: try again.
                    let r = p.call(patch).await.ok()?;
                    match r.status.as_u16() {
                        200 => Some(r),
                        409 => None,
                        other => panic!("round {round}: resume answered {other}: {}", r.text()),
                    }
                })
                .await
                .expect("the upload resumes");
                assert_eq!(resumed.metadata()["complete"], true, "round {round}");
                let (path, body) = publish_request(app, version, &digest);
                if rng.below(2) == 0 {
                    cut(
                        &p,
                        raw_request("POST", &path, body.len()),
                        body.as_bytes(),
                        body.len(),
                        pause,
                    )
                    .await;
                } else {
                    let r = p
                        .req_with(
                            hyper::Method::POST,
                            &path,
                            &[("content-type", "application/json")],
                            full_body(body),
                        )
                        .await;
                    assert!(
                        [201, 409].contains(&r.status.as_u16()),
                        "round {round}: {}",
                        r.text()
                    );
                }
            }
            // A publish of an existing image, cut.
            1 => {
                let data = format!("shared image {}", rng.below(4)).repeat(100);
                let digest = p.upload(data.as_bytes()).await;
                let (path, body) = publish_request(app, version, &digest);
                cut(
                    &p,
                    raw_request("POST", &path, body.len()),
                    body.as_bytes(),
                    body.len(),
                    pause,
                )
                .await;
            }
            // A delete, cut.
            _ => {
                let path = format!("/1.0/applications/{app}/versions/{version}");
                cut(&p, raw_request("DELETE", &path, 0), b"", 0, pause).await;
            }
        }
    }

    let before = settled(&p).await;
    assert_eq!(
        on_disk(&d),
        before,
        "records on disk and the listing differ"
    );
    // Let GC run a few times with everything settled, then restart from storage.
    tokio::time::sleep(Duration::from_secs(3)).await;
    d.restart();
    let p = d.publisher();
    let after = settled(&p).await;
    assert_eq!(after, before, "the restart lists something else");
    tokio::time::sleep(Duration::from_secs(3)).await;
    for (app, version) in &after {
        let v = p
            .get(&format!("/1.0/applications/{app}/versions/{version}"))
            .await
            .metadata();
        let want = v["images"]["amd64"]["digest"].as_str().unwrap().to_string();
        let image = p
            .get(&format!(
                "/1.0/applications/{app}/versions/{version}/images/amd64"
            ))
            .await;
        assert_eq!(image.status, 200, "{app}/{version}: {}", image.text());
        assert_eq!(digest_of(&image.body), want, "{app}/{version}");
    }
    let out = d.run(&["verify"], &[]);
    assert!(out.status.success(), "{}", out_text(&out));
    println!("{} versions survived {} cuts intact", after.len(), 45);
}
