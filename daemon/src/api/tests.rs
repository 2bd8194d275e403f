//! The router in-process (tower `oneshot`): what needs no socket, only a request with
//! the caller's certificate fingerprint attached as the TLS layer attaches it.

use super::{parse_version, router, AppState, Peer, Shared};
use crate::config::Limits;
use crate::registry::Registry;
use crate::storage::fs::FsStorage;
use crate::trust::{parse_certificate, Role, TrustCache, TrustStore};
use axum::body::Body;
use axum::Router;
use http::{header, Method, Request, StatusCode};
use std::sync::Arc;
use tower::ServiceExt;

struct Api {
    router: Router,
    publisher: String,
    client: String,
    _dir: tempfile::TempDir,
}

fn certificate(name: &str) -> Vec<u8> {
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![name.to_owned()]).unwrap();
    params.self_signed(&key).unwrap().pem().into_bytes()
}

fn trust(store: &TrustStore, name: &str, role: Role) -> String {
    let pem = certificate(name);
    store.add(&pem, role, "test").unwrap();
    parse_certificate(&pem).unwrap().0.fingerprint.to_string()
}

async fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let state_dir = dir.path().join("state");
    std::fs::create_dir(&state_dir).unwrap();
    let storage = FsStorage::new(dir.path().join("data"), 0).unwrap();
    let registry = Registry::open(Arc::new(storage)).await.unwrap();
    let store = TrustStore::open(&state_dir);
    let publisher = trust(&store, "publisher", Role::Publisher);
    let client = trust(&store, "client", Role::Client);
    let state = AppState::new(Shared {
        registry,
        trust: Arc::new(TrustCache::new(&state_dir)),
        limits: Limits::default(),
        server_fingerprint: "00".repeat(32),
    });
    Api {
        router: router(state),
        publisher,
        client,
        _dir: dir,
    }
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    json: serde_json::Value,
}

impl Api {
    async fn call(&self, method: Method, uri: &str, caller: Option<&str>) -> Answer {
        self.send(Request::builder().method(method).uri(uri), caller)
            .await
    }

    async fn send(&self, request: http::request::Builder, caller: Option<&str>) -> Answer {
        let mut request = request.body(Body::empty()).unwrap();
        request.extensions_mut().insert(Peer {
            fingerprint: caller.map(|fp| fp.parse().expect("a fingerprint")),
            verdicts: None,
        });
        let response = self.router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        let json = if bytes.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Answer {
            status,
            headers,
            json,
        }
    }
}

fn assert_error(answer: &Answer, status: StatusCode, mentions: &str) {
    assert_eq!(answer.status, status, "{}", answer.json);
    assert_eq!(answer.json["type"], "error");
    assert_eq!(answer.json["error_code"], status.as_u16());
    let message = answer.json["error"].as_str().unwrap();
    assert!(message.contains(mentions), "{message}");
}

#[tokio::test]
async fn callers_without_a_trusted_certificate_learn_how_to_get_one() {
    let api = api().await;
    let anonymous = api.call(Method::GET, "/1.0/applications", None).await;
    assert_error(
        &anonymous,
        StatusCode::FORBIDDEN,
        "trusted client certificate is required",
    );
    let stranger = "ab".repeat(32);
    let unknown = api
        .call(Method::GET, "/1.0/applications", Some(&stranger))
        .await;
    assert_error(&unknown, StatusCode::FORBIDDEN, "aar trust add");
    assert!(unknown.json["error"].as_str().unwrap().contains(&stranger));

    // GET /1.0 answers everyone, saying whether they are trusted.
    let info = api.call(Method::GET, "/1.0", None).await;
    assert_eq!(info.status, StatusCode::OK);
    assert_eq!(info.json["metadata"]["auth"], "untrusted");
    assert_eq!(info.json["metadata"]["storage"], "fs");
}

#[tokio::test]
async fn clients_read_and_only_publishers_write() {
    let api = api().await;
    let info = api.call(Method::GET, "/1.0", Some(&api.client)).await;
    assert_eq!(info.json["metadata"]["auth"], "trusted");
    assert_eq!(info.json["metadata"]["role"], "client");

    let list = api
        .call(Method::GET, "/1.0/applications", Some(&api.client))
        .await;
    assert_eq!(list.status, StatusCode::OK);
    assert_eq!(list.json["metadata"], serde_json::json!([]));

    let write = api
        .call(Method::POST, "/1.0/uploads", Some(&api.client))
        .await;
    assert_error(&write, StatusCode::FORBIDDEN, "publisher");
    let delete = api
        .call(Method::DELETE, "/1.0/applications/game", Some(&api.client))
        .await;
    assert_error(&delete, StatusCode::FORBIDDEN, "publisher");

    // The publisher gets past the role check to the input checks.
    let upload = api
        .call(Method::POST, "/1.0/uploads", Some(&api.publisher))
        .await;
    assert_error(&upload, StatusCode::BAD_REQUEST, "X-AAR-Digest");
}

#[tokio::test]
async fn unknown_paths_methods_and_versions_are_enveloped_errors() {
    let api = api().await;
    let caller = Some(api.client.as_str());
    let nowhere = api.call(Method::GET, "/2.0/anything", caller).await;
    assert_error(&nowhere, StatusCode::NOT_FOUND, "docs/API.md");
    let method = api.call(Method::PUT, "/1.0", caller).await;
    assert_error(&method, StatusCode::METHOD_NOT_ALLOWED, "not allowed");
    let word = api
        .call(Method::GET, "/1.0/applications/game/versions/one", caller)
        .await;
    assert_eq!(word.status, StatusCode::BAD_REQUEST, "{}", word.json);
    // One spelling per version: 01 is not version 1.
    let padded = api
        .call(Method::GET, "/1.0/applications/game/versions/01", caller)
        .await;
    assert_eq!(padded.status, StatusCode::NOT_FOUND, "{}", padded.json);
    let bad_name = api
        .call(Method::GET, "/1.0/applications/No%20Such", caller)
        .await;
    assert_eq!(
        bad_name.status,
        StatusCode::BAD_REQUEST,
        "{}",
        bad_name.json
    );
}

#[tokio::test]
async fn a_caller_holding_the_current_list_gets_304() {
    let api = api().await;
    let caller = Some(api.client.as_str());
    let first = api.call(Method::GET, "/1.0/applications", caller).await;
    let etag = first.headers[header::ETAG].to_str().unwrap().to_owned();
    let again = api
        .send(
            Request::builder()
                .uri("/1.0/applications")
                .header(header::IF_NONE_MATCH, &etag),
            caller,
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert_eq!(again.headers[header::ETAG], etag.as_str());
    let other = api
        .send(
            Request::builder()
                .uri("/1.0/applications")
                .header(header::IF_NONE_MATCH, "\"something else\""),
            caller,
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
}

#[test]
fn versions_have_one_spelling() {
    assert_eq!(parse_version("1").unwrap(), 1);
    assert_eq!(parse_version("4294967295").unwrap(), u32::MAX);
    for other in ["01", "+1", "001"] {
        let e = parse_version(other).unwrap_err();
        assert_eq!(e.status.as_u16(), 404, "{other}");
    }
    for bad in ["0", "-1", "x", "", "4294967296", "1.0"] {
        let e = parse_version(bad).unwrap_err();
        assert_eq!(e.status.as_u16(), 400, "{bad}");
    }
}
