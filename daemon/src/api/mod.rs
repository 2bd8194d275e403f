//! HTTP API v1 (see docs/API.md). Each resource module registers its own routes;
//! handlers take an identity extractor first, so authorisation happens before any
//! input is even looked at.

mod applications;
mod cache;
mod extract;
pub mod identity;
mod images;
mod observe;
pub mod response;
#[cfg(test)]
mod tests;
mod uploads;
mod wire;

use crate::config::Limits;
use crate::registry::Registry;
use crate::trust::{Access, Role, TrustCache};
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::StatusCode;
use response::ApiError;
use std::sync::Arc;

pub use identity::Peer;

#[derive(Clone)]
pub struct AppState(Arc<(Shared, cache::AnswerCache)>);

pub struct Shared {
    pub registry: Registry,
    /// Shared with the TLS layer, which logs handshake failures of trusted certificates.
    pub trust: Arc<TrustCache>,
    pub limits: Limits,
    pub server_fingerprint: String,
}

impl std::ops::Deref for AppState {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0 .0
    }
}

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new((shared, cache::AnswerCache::default())))
    }

    fn answers(&self) -> &cache::AnswerCache {
        &self.0 .1
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/1.0", get(server_info))
        .merge(applications::routes())
        .merge(images::routes())
        .merge(uploads::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(observe::ObserveLayer::new(state.clone()))
        .with_state(state)
}

#[derive(serde::Serialize)]
struct ServerInfo<'a> {
    api_version: &'static str,
    version: &'static str,
    auth: &'static str,
    role: Option<Role>,
    storage: &'static str,
    server_fingerprint: &'a str,
}

async fn server_info(State(state): State<AppState>, request: Request) -> Response {
    let (parts, _) = request.into_parts();
    let (_, access) = identity::access(&parts, &state);
    let (auth, role) = match access {
        Access::Trusted(role) => ("trusted", Some(role)),
        Access::Expired { .. } | Access::Revoked | Access::Unknown | Access::Unavailable => {
            ("untrusted", None)
        }
    };
    let info = ServerInfo {
        api_version: "1.0",
        version: env!("CARGO_PKG_VERSION"),
        auth,
        role,
        storage: state.registry.storage_kind().as_str(),
        server_fingerprint: &state.server_fingerprint,
    };
    response::sync(StatusCode::OK, &info, &parts.headers)
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "no such endpoint; the API is described in docs/API.md (GET /1.0 to start)",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this endpoint",
    )
}

/// Parses a version number from the path with a message that says what is valid. One
/// spelling per version: `01` and `+1` are not version 1 (a cache or a client comparing
/// URLs would otherwise see two resources), they are not found.
fn parse_version(raw: &str) -> Result<u32, ApiError> {
    let shown = || raw.chars().take(40).collect::<String>();
    match raw.parse::<u32>() {
        Ok(v) if v >= 1 && v.to_string() == raw => Ok(v),
        Ok(v) if v >= 1 => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "version {:?} not found: version numbers are written without signs or leading zeros ({v})",
                shown()
            ),
        )),
        _ => Err(ApiError::bad_request(format!(
            "version {:?} is not a number from 1 to 4294967295",
            shown()
        ))),
    }
}
