//! Roles: untrusted / revoked / client / publisher, checked at every request, even on a
//! kept-alive connection.

mod common;

use common::*;
use hyper::Method;

const SECRET_APP: &str = "confidential-app-7c1e";

type Call = (Method, String, Vec<(&'static str, String)>);

/// Every non-`/1.0` request, as (method, path, headers), against `SECRET_APP` version 1.
fn everything_else(upload_id: &str) -> Vec<Call> {
    let digest = digest_of(b"some bytes");
    let app = format!("/1.0/applications/{SECRET_APP}");
    vec![
        (Method::GET, "/1.0/applications".into(), vec![]),
        (
            Method::GET,
            "/1.0/applications?tags=internal".into(),
            vec![],
        ),
        (Method::GET, app.clone(), vec![]),
        (Method::GET, format!("{app}/versions/1"), vec![]),
        (
            Method::GET,
            format!("{app}/versions/1/images/amd64"),
            vec![],
        ),
        (
            Method::HEAD,
            format!("{app}/versions/1/images/amd64"),
            vec![],
        ),
        (
            Method::GET,
            "/1.0/applications/does-not-exist".into(),
            vec![],
        ),
        (
            Method::POST,
            "/1.0/uploads".into(),
            vec![("x-aar-digest", digest), ("x-aar-size", "10".into())],
        ),
        (Method::HEAD, format!("/1.0/uploads/{upload_id}"), vec![]),
        (Method::GET, format!("/1.0/uploads/{upload_id}"), vec![]),
        (
            Method::PATCH,
            format!("/1.0/uploads/{upload_id}"),
            vec![("upload-offset", "0".into())],
        ),
        (Method::DELETE, format!("/1.0/uploads/{upload_id}"), vec![]),
        (
            Method::POST,
            format!("{app}/versions"),
            vec![("content-type", "application/json".into())],
        ),
        (Method::DELETE, format!("{app}/versions/1"), vec![]),
        (Method::DELETE, app.clone(), vec![]),
    ]
}

fn writes(upload_id: &str) -> Vec<Call> {
    everything_else(upload_id)
        .into_iter()
        .filter(|(m, p, _)| !(m == Method::GET || m == Method::HEAD) || p.contains("/uploads"))
        .collect()
}

fn body_for(method: &Method, path: &str) -> Body {
    if *method == Method::POST && path.ends_with("/versions") {
        full_body(
            serde_json::to_vec(&serde_json::json!({
                "version": 2,
                "manifest": manifest(SECRET_APP, &[]),
                "images": {"amd64": digest_of(b"whatever")},
            }))
            .unwrap(),
        )
    } else if *method == Method::PATCH {
        full_body(&b"0123456789"[..])
    } else {
        empty_body()
    }
}

async fn setup(d: &Daemon) -> String {
    let p = d.publisher();
    p.publish_simple(SECRET_APP, Some(1), &["internal"], &["amd64"])
        .await;
    // An upload in progress, owned by the publisher.
    let r = p.create_upload(&digest_of(b"0123456789"), 10).await;
    r.expect(201);
    upload_id(&r)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untrusted_and_revoked_callers_only_see_server_info() {
    let d = Daemon::builder("").with_revoked().start();
    let upload = setup(&d).await;

    for (who, c) in [
        ("no certificate", d.anonymous()),
        ("untrusted", d.client(Some(untrusted()))),
        ("revoked", d.client(Some(revoked()))),
    ] {
        let r = c.get("/1.0").await;
        r.expect(200);
        let m = r.metadata();
        assert_eq!(m["auth"], "untrusted", "{who}: {m}");
        assert!(m["role"].is_null(), "{who}: {m}");
        assert_eq!(m["api_version"], "1.0", "{who}: {m}");
        assert_eq!(m["version"], VERSION, "{who}: {m}");
        assert_eq!(m["storage"], "fs", "{who}: {m}");
        assert_eq!(
            m["server_fingerprint"],
            d.fingerprint.as_str(),
            "{who}: {m}"
        );
        assert!(!r.text().contains(SECRET_APP));

        for (method, path, headers) in everything_else(&upload) {
            let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            let r = c
                .req_with(method.clone(), &path, &h, body_for(&method, &path))
                .await;
            assert_eq!(r.status, 403, "{who}: {method} {path}: {}", r.text());
            assert!(
                !r.text().contains(SECRET_APP),
                "{who}: {method} {path} leaks an application name: {}",
                r.text()
            );
            if method != Method::HEAD {
                let e = r.expect_error(403);
                assert!(!e.contains(SECRET_APP));
            }
        }
    }

    // Nothing was changed by all that.
    let p = d.publisher();
    p.get(&format!("/1.0/applications/{SECRET_APP}/versions/1"))
        .await
        .expect(200);
    let h = p.req(Method::HEAD, &format!("/1.0/uploads/{upload}")).await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("upload-offset").as_deref(), Some("0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_reads_but_every_write_is_forbidden() {
    let d = Daemon::start("");
    let upload = setup(&d).await;
    let c = d.reader();

    let r = c.get("/1.0").await;
    r.expect(200);
    assert_eq!(r.metadata()["auth"], "trusted");
    assert_eq!(r.metadata()["role"], "client");

    let app = format!("/1.0/applications/{SECRET_APP}");
    let r = c.get("/1.0/applications").await;
    r.expect(200);
    assert!(r.text().contains(SECRET_APP));
    c.get("/1.0/applications?tags=internal").await.expect(200);
    c.get(&app).await.expect(200);
    c.get(&format!("{app}/versions/1")).await.expect(200);
    let img = c.get(&format!("{app}/versions/1/images/amd64")).await;
    img.expect(200);
    assert!(!img.body.is_empty());
    c.req(Method::HEAD, &format!("{app}/versions/1/images/amd64"))
        .await
        .expect(200);

    for (method, path, headers) in writes(&upload) {
        let h: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let r = c
            .req_with(method.clone(), &path, &h, body_for(&method, &path))
            .await;
        assert_eq!(r.status, 403, "client: {method} {path}: {}", r.text());
        if method != Method::HEAD {
            let e = r.expect_error(403);
            assert!(!e.is_empty());
        }
    }

    // Nothing changed.
    let (s, v) = c.get_json(&app).await;
    assert_eq!(s, 200);
    assert_eq!(version_numbers(&v["metadata"]), [1]);
    let h = d
        .publisher()
        .req(Method::HEAD, &format!("/1.0/uploads/{upload}"))
        .await;
    assert_eq!(h.status, 200);
    assert_eq!(h.header("upload-offset").as_deref(), Some("0"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publisher_can_do_everything() {
    let d = Daemon::start("");
    let upload = setup(&d).await;
    let p = d.publisher();
    let r = p.get("/1.0").await;
    assert_eq!(r.metadata()["auth"], "trusted");
    assert_eq!(r.metadata()["role"], "publisher");

    let r = p
        .patch_upload(&upload, 0, 10, full_body(&b"0123456789"[..]))
        .await;
    r.expect(200);
    assert_eq!(r.metadata()["complete"], true);
    let r = p
        .publish(
            SECRET_APP,
            Some(2),
            &manifest(SECRET_APP, &["internal"]),
            &[("amd64", &digest_of(b"0123456789"))],
        )
        .await;
    r.expect(201);
    let app = format!("/1.0/applications/{SECRET_APP}");
    p.get(&format!("{app}/versions/2/images/amd64"))
        .await
        .expect(200);
    p.delete(&format!("{app}/versions/1")).await.expect(200);
    p.delete(&app).await.expect(200);
    p.get(&app).await.expect(404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revocation_cuts_off_an_open_keepalive_connection() {
    let d = Daemon::start("");
    setup(&d).await;
    let mut conn = d.publisher().connect().await.unwrap();
    conn.get("/1.0/applications").await.expect(200);
    let r = conn.get(&format!("/1.0/applications/{SECRET_APP}")).await;
    r.expect(200);

    d.trust_revoke(&publisher().fingerprint[..16]);

    assert!(!conn.is_closed(), "the connection itself stays open");
    let r = conn.get("/1.0/applications").await;
    assert_eq!(
        r.status,
        403,
        "next request on the same connection: {}",
        r.text()
    );
    assert!(!r.text().contains(SECRET_APP));
    let r = conn.get("/1.0").await;
    r.expect(200);
    assert_eq!(r.metadata()["auth"], "untrusted");
    // And new connections too.
    d.publisher().get("/1.0/applications").await.expect(403);
    d.reader().get("/1.0/applications").await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removal_cuts_off_and_adding_lets_in_without_restart() {
    let d = Daemon::start("");
    setup(&d).await;

    // Removal, on a kept-alive client connection.
    let mut conn = d.reader().connect().await.unwrap();
    conn.get("/1.0/applications").await.expect(200);
    d.trust_remove(&client_id().fingerprint[..12]);
    let r = conn.get("/1.0/applications").await;
    assert_eq!(r.status, 403, "after removal: {}", r.text());
    assert!(!r.text().contains(SECRET_APP));

    // Adding, on a kept-alive untrusted connection.
    let mut conn = d.client(Some(untrusted())).connect().await.unwrap();
    conn.get("/1.0/applications").await.expect(403);
    d.trust_add(untrusted(), false);
    let r = conn.get("/1.0/applications").await;
    assert_eq!(r.status, 200, "after trust add: {}", r.text());
    assert!(r.text().contains(SECRET_APP));
    let r = conn.get("/1.0").await;
    assert_eq!(r.metadata()["role"], "client");
}
