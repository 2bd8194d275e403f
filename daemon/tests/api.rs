//! The registry API: listing with tag filters, applications, versions, downloads with
//! ranges and ETags, publishing and deleting.
//!
//! Long on purpose: one endpoint behaviour per test function, each with its own daemon.

mod common;

use common::*;
use hyper::Method;
use serde_json::{json, Value};
use std::time::Duration;

fn names(list: &Value) -> Vec<String> {
    let mut v: Vec<String> = list["metadata"]
        .as_array()
        .unwrap_or_else(|| panic!("metadata is a list: {list}"))
        .iter()
        .map(|a| a["name"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_by_every_listed_tag() {
    let d = Daemon::start("");
    let p = d.publisher();
    p.publish_simple("alpha", Some(1), &["a", "b"], &["amd64"])
        .await;
    p.publish_simple("bravo", Some(1), &["b", "c"], &["amd64", "arm64"])
        .await;
    p.publish_simple("charlie", Some(1), &[], &["arm64"]).await;
    let c = d.reader();

    for (query, expected) in [
        ("", vec!["alpha", "bravo", "charlie"]),
        ("?tags=", vec!["alpha", "bravo", "charlie"]),
        ("?tags=b", vec!["alpha", "bravo"]),
        ("?tags=a,b", vec!["alpha"]),
        ("?tags=b,a", vec!["alpha"]),
        ("?tags=a,c", vec![]),
        ("?tags=c", vec!["bravo"]),
        ("?tags=b,,", vec!["alpha", "bravo"]),
        ("?tags=,c,", vec!["bravo"]),
        ("?tags=zzz", vec![]),
    ] {
        let (s, v) = c.get_json(&format!("/1.0/applications{query}")).await;
        assert_eq!(s, 200, "{query}: {v}");
        assert_eq!(v["type"], "sync");
        assert_eq!(v["status"], "Success");
        assert_eq!(v["status_code"], 200);
        assert_eq!(names(&v), expected, "filter {query:?}");
    }

    let (_, v) = c.get_json("/1.0/applications").await;
    let bravo = v["metadata"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "bravo")
        .unwrap()
        .clone();
    assert_eq!(bravo["tags"], json!(["b", "c"]), "{bravo}");
    assert_eq!(bravo["instance_type"], "a2.3", "{bravo}");
    assert_eq!(bravo["boot_package"], "com.example.bravo", "{bravo}");
    let mut arches: Vec<String> = serde_json::from_value(bravo["architectures"].clone()).unwrap();
    arches.sort();
    assert_eq!(arches, ["amd64", "arm64"], "{bravo}");
    assert_eq!(bravo["latest_version"], 1, "{bravo}");
    assert_eq!(version_numbers(&bravo), [1], "{bravo}");
    assert!(
        bravo["updated_at"]
            .as_str()
            .is_some_and(|s| s.contains('T')),
        "RFC 3339 updated_at: {bravo}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_show_application_and_version() {
    let d = Daemon::start("");
    let p = d.publisher();
    let amd = pattern(1, 0, 300 * 1024);
    let arm = pattern(2, 0, 200 * 1024);
    let damd = p.upload(&amd).await;
    let darm = p.upload(&arm).await;
    let man = manifest("game-app", &["games", "demo"]);
    let r = p
        .publish(
            "game-app",
            Some(1),
            &man,
            &[("amd64", &damd), ("arm64", &darm)],
        )
        .await;
    r.expect(201);
    let v = r.metadata();
    assert_eq!(v["application"], "game-app", "{v}");
    assert_eq!(v["version"], 1, "{v}");
    assert_eq!(v["manifest"], man.as_str(), "manifest kept verbatim: {v}");
    assert_eq!(v["tags"], json!(["games", "demo"]), "{v}");
    assert_eq!(v["instance_type"], "a2.3", "{v}");
    assert_eq!(v["boot_package"], "com.example.game.app", "{v}");
    assert_eq!(v["images"]["amd64"]["digest"], damd.as_str(), "{v}");
    assert_eq!(v["images"]["amd64"]["size"], amd.len(), "{v}");
    assert_eq!(v["images"]["arm64"]["digest"], darm.as_str(), "{v}");
    assert_eq!(v["images"]["arm64"]["size"], arm.len(), "{v}");
    assert!(
        v["created_at"].as_str().is_some_and(|s| s.contains('T')),
        "{v}"
    );

    // Reading it back (as a client) gives the same object.
    let c = d.reader();
    let (s, got) = c.get_json("/1.0/applications/game-app/versions/1").await;
    assert_eq!(s, 200);
    assert_eq!(got["metadata"], v);

    // Next version number when omitted.
    let man2 = manifest("game-app", &["games"]);
    let r = p
        .publish("game-app", None, &man2, &[("amd64", &damd)])
        .await;
    r.expect(201);
    assert_eq!(r.metadata()["version"], 2);

    let (s, a) = c.get_json("/1.0/applications/game-app").await;
    assert_eq!(s, 200);
    let a = &a["metadata"];
    assert_eq!(a["name"], "game-app");
    assert_eq!(version_numbers(a), [1, 2], "{a}");
    assert_eq!(a["latest_version"], 2, "{a}");
    // The application shows its latest version's manifest data.
    assert_eq!(a["tags"], json!(["games"]), "{a}");
    assert_eq!(a["instance_type"], "a2.3");
    assert_eq!(a["boot_package"], "com.example.game.app");

    // Unknown things: 404 naming what is missing.
    let e = c.get("/1.0/applications/nope").await.expect_error(404);
    assert!(e.contains("nope"), "{e}");
    let e = c
        .get("/1.0/applications/game-app/versions/9")
        .await
        .expect_error(404);
    assert!(e.contains('9'), "{e}");
    c.get("/1.0/applications/game-app/versions/1/images/s390x")
        .await
        .expect_error(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_refuses_conflicts_and_bad_manifests() {
    let d = Daemon::start("");
    let p = d.publisher();
    let (v1, _) = p
        .publish_simple("immutable", Some(1), &["t"], &["amd64"])
        .await;
    let other = p.upload(b"other bytes entirely").await;

    // Republishing a version: 409, and the version is unchanged.
    let r = p
        .publish(
            "immutable",
            Some(1),
            &manifest("immutable", &["changed"]),
            &[("amd64", &other)],
        )
        .await;
    let e = r.expect_error(409);
    assert!(e.contains('1') && e.contains("version"), "{e}");
    let (_, now) = p.get_json("/1.0/applications/immutable/versions/1").await;
    assert_eq!(now["metadata"], v1);

    // The manifest's name must be the application's.
    let r = p
        .publish(
            "immutable",
            Some(2),
            &manifest("someone-else", &[]),
            &[("amd64", &other)],
        )
        .await;
    let e = r.expect_error(400);
    assert!(e.contains("name"), "{e}");
    assert!(e.contains("someone-else") || e.contains("immutable"), "{e}");

    // An image that was never uploaded.
    let missing = digest_of(b"never uploaded");
    let r = p
        .publish(
            "immutable",
            Some(2),
            &manifest("immutable", &[]),
            &[("amd64", &missing)],
        )
        .await;
    assert!(r.status.is_client_error(), "{} {}", r.status, r.text());
    let e = r.error();
    assert!(e.contains(&missing[7..19]) || e.contains("upload"), "{e}");

    // No images at all.
    let r = p
        .publish("immutable", Some(2), &manifest("immutable", &[]), &[])
        .await;
    assert_eq!(r.status, 400, "{}", r.text());

    // Nothing of the above became visible.
    let (_, a) = p.get_json("/1.0/applications/immutable").await;
    assert_eq!(version_numbers(&a["metadata"]), [1]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn download_with_headers_ranges_and_etags() {
    let d = Daemon::start("");
    let p = d.publisher();
    let size = 3 * MIB + 123;
    let digest = p.upload_pattern(3, size).await;
    p.publish("dl", Some(1), &manifest("dl", &[]), &[("amd64", &digest)])
        .await
        .expect(201);
    let c = d.reader();
    let url = "/1.0/applications/dl/versions/1/images/amd64";
    let hex = &digest["sha256:".len()..];

    // Full download, streamed and hashed.
    let (_conn, resp) = c
        .send(request(Method::GET, url).body(empty_body()).unwrap())
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let h = resp.headers().clone();
    assert_eq!(h["content-length"], size.to_string().as_str());
    assert_eq!(h["accept-ranges"], "bytes");
    assert_eq!(h["x-aar-digest"], digest.as_str());
    let etag = h["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"sha256:{hex}\""), "strong ETag");
    let (n, got) = hash_body(resp).await.unwrap();
    assert_eq!(n, size);
    assert_eq!(got, digest);

    // HEAD: same headers, no body.
    let r = c.req(Method::HEAD, url).await;
    r.expect(200);
    assert_eq!(r.header("content-length"), Some(size.to_string()));
    assert_eq!(r.header("x-aar-digest").as_deref(), Some(digest.as_str()));
    assert_eq!(r.header("etag").as_deref(), Some(etag.as_str()));
    assert!(r.body.is_empty());

    // Ranges.
    for (range, start, end) in [
        ("bytes=0-0", 0, 0),
        ("bytes=10-19", 10, 19),
        ("bytes=1048570-1048600", 1_048_570, 1_048_600),
        (
            &format!("bytes={}-", size - 100) as &str,
            size - 100,
            size - 1,
        ),
        ("bytes=-50", size - 50, size - 1),
        (&format!("bytes=5-{}", size + 1000) as &str, 5, size - 1),
    ] {
        let r = c
            .req_with(Method::GET, url, &[("range", range)], empty_body())
            .await;
        assert_eq!(r.status, 206, "{range}: {}", r.status);
        assert_eq!(
            r.header("content-range"),
            Some(format!("bytes {start}-{end}/{size}")),
            "{range}"
        );
        assert_eq!(
            r.header("content-length"),
            Some((end - start + 1).to_string())
        );
        assert_eq!(
            r.body.as_ref(),
            &pattern(3, start, (end - start + 1) as usize)[..],
            "{range} body"
        );
    }
    for range in [
        format!("bytes={size}-"),
        format!("bytes={}-{}", size + 10, size + 20),
    ] {
        let r = c
            .req_with(Method::GET, url, &[("range", &range)], empty_body())
            .await;
        assert_eq!(r.status, 416, "{range}: {}", r.text());
        assert_eq!(r.header("content-range"), Some(format!("bytes */{size}")));
    }

    // If-None-Match with the image's ETag: 304.
    let r = c
        .req_with(Method::GET, url, &[("if-none-match", &etag)], empty_body())
        .await;
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = c
        .req_with(
            Method::GET,
            url,
            &[("if-none-match", "\"sha256:0000\"")],
            empty_body(),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len() as u64, size);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_etags_and_if_none_match() {
    let d = Daemon::start("");
    let p = d.publisher();
    p.publish_simple("polled", Some(1), &["x"], &["amd64"])
        .await;
    let c = d.reader();

    let mut tags = Vec::new();
    for path in [
        "/1.0/applications",
        "/1.0/applications?tags=x",
        "/1.0/applications/polled",
        "/1.0/applications/polled/versions/1",
    ] {
        let r = c.get(path).await;
        r.expect(200);
        let etag = r
            .header("etag")
            .unwrap_or_else(|| panic!("{path}: no ETag"));
        assert!(
            etag.starts_with('"') && etag.ends_with('"'),
            "strong ETag: {etag}"
        );
        // Stable across requests.
        assert_eq!(
            c.get(path).await.header("etag"),
            Some(etag.clone()),
            "{path}"
        );
        let r = c
            .req_with(Method::GET, path, &[("if-none-match", &etag)], empty_body())
            .await;
        assert_eq!(r.status, 304, "{path}");
        assert!(r.body.is_empty());
        assert_eq!(r.header("etag"), Some(etag.clone()));
        tags.push((path, etag));
    }

    // A new version changes the list's and the application's ETag, not version 1's.
    p.publish_simple("polled", Some(2), &["x"], &["amd64"])
        .await;
    for (path, old) in &tags {
        let r = c
            .req_with(Method::GET, path, &[("if-none-match", old)], empty_body())
            .await;
        if path.ends_with("/versions/1") {
            assert_eq!(r.status, 304, "{path} did not change");
        } else {
            assert_eq!(r.status, 200, "{path} changed");
            assert_ne!(r.header("etag").as_ref(), Some(old), "{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_a_version_then_the_application() {
    let d = Daemon::start("");
    let p = d.publisher();
    p.publish_simple("short-lived", Some(1), &["t"], &["amd64"])
        .await;
    p.publish_simple("short-lived", Some(2), &["t"], &["amd64"])
        .await;
    p.publish_simple("survivor", Some(1), &["t"], &["amd64"])
        .await;
    // Answered before the deletes (and so kept as built): none may outlive them.
    let (_, l) = p.get_json("/1.0/applications").await;
    assert_eq!(names(&l), ["short-lived", "survivor"]);
    let (_, a) = p.get_json("/1.0/applications/short-lived").await;
    assert_eq!(version_numbers(&a["metadata"]), [1, 2]);
    p.get("/1.0/applications/short-lived/versions/1")
        .await
        .expect(200);

    p.delete("/1.0/applications/short-lived/versions/1")
        .await
        .expect(200);
    p.get("/1.0/applications/short-lived/versions/1")
        .await
        .expect_error(404);
    p.get("/1.0/applications/short-lived/versions/1/images/amd64")
        .await
        .expect(404);
    let (_, a) = p.get_json("/1.0/applications/short-lived").await;
    assert_eq!(version_numbers(&a["metadata"]), [2]);
    assert_eq!(a["metadata"]["latest_version"], 2);
    p.delete("/1.0/applications/short-lived/versions/1")
        .await
        .expect_error(404);

    p.delete("/1.0/applications/short-lived").await.expect(200);
    p.get("/1.0/applications/short-lived")
        .await
        .expect_error(404);
    p.get("/1.0/applications/short-lived/versions/2")
        .await
        .expect_error(404);
    let (_, l) = p.get_json("/1.0/applications").await;
    assert_eq!(names(&l), ["survivor"]);
    p.delete("/1.0/applications/short-lived")
        .await
        .expect_error(404);

    // Nothing of it is left on disk.
    assert!(
        !d.root_dir.join("apps/short-lived/versions/2.json").exists(),
        "deleted version still on disk"
    );
    assert!(d.root_dir.join("apps/survivor/versions/1.json").exists());

    // The name can be used again, from version 1.
    p.publish_simple("short-lived", Some(1), &[], &["amd64"])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishes_of_one_version_and_version_numbers() {
    let d = Daemon::start("");
    let p = d.publisher();
    let a = p.upload(b"image a").await;
    let b = p.upload(b"image b").await;

    // Eight publishers race for version 1: exactly one wins.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let p = p.clone();
        let digest = if i % 2 == 0 { a.clone() } else { b.clone() };
        tasks.push(tokio::spawn(async move {
            let r = p
                .publish(
                    "race",
                    Some(1),
                    &manifest("race", &[]),
                    &[("amd64", &digest)],
                )
                .await;
            (r.status.as_u16(), digest)
        }));
    }
    let mut won = Vec::new();
    for t in tasks {
        let (status, digest) = t.await.unwrap();
        assert!(status == 201 || status == 409, "status {status}");
        if status == 201 {
            won.push(digest);
        }
    }
    assert_eq!(won.len(), 1, "exactly one publish of version 1 succeeds");
    let (_, v) = p.get_json("/1.0/applications/race/versions/1").await;
    assert_eq!(v["metadata"]["images"]["amd64"]["digest"], won[0].as_str());

    // Omitted versions take the next number after the highest, concurrently too.
    p.publish("race", Some(5), &manifest("race", &[]), &[("amd64", &a)])
        .await
        .expect(201);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let p = p.clone();
        let a = a.clone();
        tasks.push(tokio::spawn(async move {
            let r = p
                .publish("race", None, &manifest("race", &[]), &[("amd64", &a)])
                .await;
            r.expect(201);
            r.metadata()["version"].as_u64().unwrap()
        }));
    }
    let mut got = Vec::new();
    for t in tasks {
        got.push(t.await.unwrap());
    }
    got.sort();
    assert_eq!(got, [6, 7, 8, 9], "next free numbers, no duplicates");
    let (_, app) = p.get_json("/1.0/applications/race").await;
    assert_eq!(version_numbers(&app["metadata"]), [1, 5, 6, 7, 8, 9]);
    assert_eq!(app["metadata"]["latest_version"], 9);

    // The largest version number.
    p.publish(
        "race",
        Some(4294967295),
        &manifest("race", &[]),
        &[("amd64", &a)],
    )
    .await
    .expect(201);
    let r = p
        .publish("race", None, &manifest("race", &[]), &[("amd64", &a)])
        .await;
    assert!(
        r.status.is_client_error(),
        "no version after 4294967295: {}",
        r.text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_keeps_everything_and_etags_are_stable() {
    let mut d = Daemon::start("");
    let p = d.publisher();
    for name in ["zulu", "alpha", "mike", "bravo", "yankee"] {
        p.publish_simple(name, Some(1), &["t"], &["amd64", "arm64"])
            .await;
        p.publish_simple(name, Some(2), &["t", name], &["amd64"])
            .await;
    }
    p.delete("/1.0/applications/mike/versions/1")
        .await
        .expect(200);
    let c = d.reader();
    let paths = [
        "/1.0/applications",
        "/1.0/applications?tags=t",
        "/1.0/applications/alpha",
        "/1.0/applications/mike",
        "/1.0/applications/zulu/versions/1",
    ];
    let mut before = Vec::new();
    for path in paths {
        let r = c.get(path).await;
        r.expect(200);
        // Stable representation across requests (no map-order randomness).
        for _ in 0..3 {
            assert_eq!(
                c.get(path).await.body,
                r.body,
                "{path} differs between requests"
            );
        }
        before.push((r.header("etag"), r.json()));
    }
    let (_, l) = c.get_json("/1.0/applications").await;
    assert_eq!(
        names(&l),
        ["alpha", "bravo", "mike", "yankee", "zulu"],
        "all applications listed"
    );

    d.restart();
    let c = d.reader();
    for (path, (etag, body)) in paths.iter().zip(before) {
        let r = c.get(path).await;
        r.expect(200);
        assert_eq!(r.json(), body, "{path} after restart");
        assert_eq!(
            r.header("etag"),
            etag,
            "{path}: ETag changed across a restart"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_requests_get_enveloped_client_errors() {
    let d = Daemon::start("");
    let p = d.publisher();
    p.publish_simple("odd", Some(1), &[], &["amd64"]).await;
    let url = "/1.0/applications/odd/versions/1/images/amd64";

    // Methods an endpoint does not have: 405.
    for (m, path) in [
        (Method::PUT, "/1.0/applications"),
        (Method::POST, "/1.0/applications/odd"),
        (Method::PUT, url),
        (Method::PATCH, "/1.0"),
    ] {
        let r = p.req(m.clone(), path).await;
        assert_eq!(r.status, 405, "{m} {path}: {}", r.text());
        assert_eq!(r.json()["error_code"], 405);
    }

    // Malformed or multiple ranges: never a server error; a single-range 206 or the whole.
    for range in [
        "bytes=abc",
        "bytes=5-2",
        "lines=1-2",
        "bytes=0-1,4-5",
        "bytes=",
    ] {
        let r = p
            .req_with(Method::GET, url, &[("range", range)], empty_body())
            .await;
        assert!(
            [200, 206, 416].contains(&r.status.as_u16()),
            "{range}: {}",
            r.status
        );
        if r.status == 200 {
            assert_eq!(
                r.header("content-length").unwrap(),
                r.body.len().to_string()
            );
        }
    }

    // Undecodable paths and repeated query keys: enveloped 400s, not axum's plain text.
    for path in [
        "/1.0/applications/%ff",
        "/1.0/applications/odd/versions/%ff",
        "/1.0/applications?tags=a&tags=b",
    ] {
        let r = p.get(path).await;
        assert_eq!(r.status, 400, "{path}: {}", r.text());
        assert_eq!(r.json()["error_code"], 400, "{path}");
    }

    // One spelling per version: 01 and +1 are not version 1.
    for path in [
        "/1.0/applications/odd/versions/01",
        "/1.0/applications/odd/versions/+1",
        "/1.0/applications/odd/versions/01/images/amd64",
    ] {
        let r = p.get(path).await;
        assert_eq!(r.status, 404, "{path}: {}", r.text());
        assert!(
            r.error().contains("without signs or leading zeros"),
            "{path}"
        );
    }

    // JSON everywhere, with its content type.
    for path in ["/1.0", "/1.0/applications", "/1.0/applications/nope"] {
        let r = p.get(path).await;
        assert_eq!(
            r.header("content-type").as_deref(),
            Some("application/json"),
            "{path}"
        );
    }
}

/// A manifest with every per-version key AMS imports.
const FULL_MANIFEST: &str = "\
name: full
version: \"1.2.3\"
instance-type: g4.3
boot-package: com.example.full
boot-activity: com.example.full/.Main
video-encoder: gpu-preferred
features: [enable_virtual_keyboard, disable_watchdog]
hooks:
  timeout: 10m
bootstrap:
  keep: [app/lib, data]
tags: [games]
watchdog:
  disabled: false
  allowed-packages: [com.android.settings]
services:
  - name: adb
    port: 5555
    protocols: [tcp]
    expose: false
resources:
  cpus: 4
  memory: 4GB
future-key: {kept: verbatim}
";

fn assert_json_type(object: &Value, key: &str, want: &str) {
    let value = &object[key];
    let got = match value {
        Value::String(_) => "string",
        Value::Array(items) => {
            assert!(items.iter().all(Value::is_string), "{key}: {object}");
            "[string]"
        }
        Value::Bool(_) => "bool",
        Value::Object(_) => "object",
        Value::Number(_) => "number",
        Value::Null => "null",
    };
    assert_eq!(got, want, "field {key} of {object}");
}

/// The fields and JSON types of AMS's `RegistryApplication` and `RegistryApplicationVersion`
/// (ams-sdk api/ams/registry.go); the Go test in tests/ams-contract decodes them for real.
fn assert_ams_shape(app: &Value) {
    for (key, want) in [
        ("name", "string"),
        ("architectures", "[string]"),
        ("boot_package", "string"),
        ("instance_type", "string"),
        ("tags", "[string]"),
        ("versions", "object"),
        ("vm", "bool"),
    ] {
        assert_json_type(app, key, want);
    }
    for (number, version) in app["versions"].as_object().unwrap() {
        assert!(number.parse::<u32>().is_ok(), "version key {number:?}");
        for (key, want) in [
            ("boot_activity", "string"),
            ("features", "[string]"),
            ("hooks", "object"),
            ("bootstrap", "object"),
            ("video_encoder", "string"),
        ] {
            assert_json_type(version, key, want);
        }
        assert_json_type(&version["hooks"], "timeout", "string");
        assert_json_type(&version["bootstrap"], "keep", "[string]");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_follows_the_ams_registry_contract() {
    let d = Daemon::start("");
    let p = d.publisher();
    let image = p.upload(b"full image").await;
    let body = json!({"manifest": FULL_MANIFEST, "images": {"amd64": image}, "vm": true});
    p.req_with(
        Method::POST,
        "/1.0/applications/full/versions",
        &[("content-type", "application/json")],
        full_body(body.to_string()),
    )
    .await
    .expect(201);
    // An application whose manifest has none of the optional keys: zeros, never null.
    p.publish_simple("bare", Some(3), &[], &["arm64"]).await;

    let c = d.reader();
    let (_, list) = c.get_json("/1.0/applications").await;
    let apps = list["metadata"].as_array().unwrap();
    assert_eq!(apps.len(), 2, "{list}");
    for app in apps {
        assert_ams_shape(app);
    }
    let (_, full) = c.get_json("/1.0/applications/full").await;
    let full = &full["metadata"];
    assert_ams_shape(full);
    assert_eq!(full["vm"], true, "{full}");
    assert_eq!(full["instance_type"], "g4.3");
    assert_eq!(full["boot_package"], "com.example.full");
    assert_eq!(full["architectures"], json!(["amd64"]));
    let v1 = &full["versions"]["1"];
    assert_eq!(v1["boot_activity"], "com.example.full/.Main", "{v1}");
    assert_eq!(v1["video_encoder"], "gpu-preferred");
    assert_eq!(
        v1["features"],
        json!(["enable_virtual_keyboard", "disable_watchdog"])
    );
    assert_eq!(v1["hooks"], json!({"timeout": "10m"}));
    assert_eq!(v1["bootstrap"], json!({"keep": ["app/lib", "data"]}));
    assert_eq!(v1["images"]["amd64"]["digest"], image.as_str(), "{v1}");

    let (_, bare) = c.get_json("/1.0/applications/bare").await;
    let bare = &bare["metadata"];
    assert_eq!(bare["vm"], false, "{bare}");
    assert_eq!(
        bare["versions"],
        json!({"3": {
            "boot_activity": "", "features": [], "hooks": {"timeout": ""},
            "bootstrap": {"keep": []}, "video_encoder": "",
            "images": bare["versions"]["3"]["images"].clone(),
            "published_at": bare["versions"]["3"]["published_at"].clone(),
        }}),
        "{bare}"
    );

    // The version object carries the same per-version fields at its top level.
    let (_, v) = c.get_json("/1.0/applications/full/versions/1").await;
    let v = &v["metadata"];
    assert_eq!(v["boot_activity"], "com.example.full/.Main", "{v}");
    assert_eq!(v["hooks"]["timeout"], "10m");
    assert_eq!(v["bootstrap"]["keep"], json!(["app/lib", "data"]));
    assert_eq!(v["vm"], true);
    assert_eq!(
        v["manifest"], FULL_MANIFEST,
        "kept verbatim, unknown keys too"
    );
    let (_, v) = c.get_json("/1.0/applications/bare/versions/3").await;
    assert_eq!(v["metadata"]["features"], json!([]), "{v}");
    assert_eq!(v["metadata"]["video_encoder"], "", "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manifest_type_errors_name_the_key_and_line() {
    let d = Daemon::start("");
    let p = d.publisher();
    let image = p.upload(b"typed image").await;
    for (manifest, needles) in [
        (
            "name: typed\nhooks:\n  timeout: [1, 2]\n",
            &["`hooks.timeout`", "line 3", "expected a string"][..],
        ),
        (
            "name: typed\nfeatures: on\n",
            &["`features`", "line 2", "expected a list"][..],
        ),
        (
            "name: typed\nversion: \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"\n",
            &["`version`", "50"][..],
        ),
        (
            "name: typed\nservices:\n  - name: web\n    port: http\n",
            &["`services[0].port`", "line 4", "number"][..],
        ),
    ] {
        let e = p
            .publish("typed", Some(1), manifest, &[("amd64", &image)])
            .await
            .expect_error(400);
        for needle in needles {
            assert!(e.contains(needle), "{manifest:?}: {e:?} lacks {needle:?}");
        }
    }
    // Nothing was published by the refused attempts.
    p.get("/1.0/applications/typed").await.expect_error(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deeply_nested_manifests_are_refused_at_once_while_others_are_served() {
    let d = Daemon::start("http: {limits: {max-metadata-size: 1MiB}}\n");
    let p = d.publisher();
    let image = p.upload(b"nested image").await;
    // Just under max-metadata-size (1 MiB) once wrapped in the JSON publish body.
    let manifest = format!("name: nested\nextra: {}", "[".repeat(1_000_000));
    let images = [("amd64", image.as_str())];
    let reader = d.reader();
    let started = std::time::Instant::now();
    let (refused, listed) = tokio::join!(
        p.publish("nested", Some(1), &manifest, &images),
        reader.get("/1.0/applications"),
    );
    let took = started.elapsed();
    let e = refused.expect_error(400);
    assert!(e.contains("nests more than 32 levels"), "{e}");
    listed.expect(200);
    assert!(took < Duration::from_secs(3), "refusing took {took:?}");
    println!("a 1 MB nested manifest refused over HTTPS in {took:?}");
}
