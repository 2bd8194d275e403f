//! Application and version metadata: listing, showing, publishing, deleting.

use super::extract::{Path, Query};
use super::identity::{Publisher, Reader};
use super::response::{self, ApiError};
use super::wire::{self, ApplicationBody, VersionBody};
use super::{parse_version, AppState};
use crate::registry::{parse_tag_filter, PublishRequest, RegistryError};
use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use http::{header, HeaderMap, StatusCode, Uri};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/1.0/applications", get(list))
        .route(
            "/1.0/applications/{name}",
            get(show).delete(delete_application),
        )
        .route(
            "/1.0/applications/{name}/versions",
            axum::routing::post(publish),
        )
        .route(
            "/1.0/applications/{name}/versions/{version}",
            get(show_version).delete(delete_version),
        )
}

#[derive(serde::Deserialize)]
struct ListQuery {
    tags: Option<String>,
}

async fn list(
    _: Reader,
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tags = q.tags.as_deref().map(parse_tag_filter).unwrap_or_default();
    let ready = || state.registry.ready_for_lists();
    cached(&state, &uri, &headers, ready, || {
        let apps = state.registry.list(&tags)?;
        Ok(response::render(StatusCode::OK, &wire::applications(&apps)))
    })
}

async fn show(
    _: Reader,
    State(state): State<AppState>,
    Path(name): Path<String>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ready = || state.registry.ready_for_lists();
    cached(&state, &uri, &headers, ready, || {
        let app = state.registry.application(&name)?;
        Ok(response::render(
            StatusCode::OK,
            &ApplicationBody::from(&app),
        ))
    })
}

async fn show_version(
    _: Reader,
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let ready = || state.registry.ready_for_versions();
    cached(&state, &uri, &headers, ready, || {
        let record = state.registry.version(&name, parse_version(&version)?)?;
        Ok(response::render(
            StatusCode::OK,
            &VersionBody::from(&*record),
        ))
    })
}

/// The `200` answer for `uri`: kept from an earlier request while the index has not
/// changed, else built by `build` (see [`super::cache`]). A kept answer is served only
/// when `ready` passes, the check `build` makes before answering.
fn cached(
    state: &AppState,
    uri: &Uri,
    headers: &HeaderMap,
    ready: impl FnOnce() -> Result<(), RegistryError>,
    build: impl FnOnce() -> Result<response::Rendered, ApiError>,
) -> Result<Response, ApiError> {
    // Read before building: an answer is kept under a generation no newer than its index.
    let generation = state.registry.generation();
    let key = uri.path_and_query().map_or(uri.path(), |pq| pq.as_str());
    if let Some(answer) = state.answers().get(key, generation) {
        ready()?;
        return Ok(answer.answer(StatusCode::OK, headers));
    }
    let answer = build()?;
    state.answers().put(key, generation, &answer);
    Ok(answer.answer(StatusCode::OK, headers))
}

async fn publish(
    _: Publisher,
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let limit = state.limits.max_metadata_size;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the publish request exceeds {limit} bytes (http.limits.max-metadata-size); images go through POST /1.0/uploads"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit) {
        return Err(too_large());
    }
    let read = axum::body::to_bytes(body, usize::try_from(limit).unwrap_or(usize::MAX));
    let bytes = match tokio::time::timeout(state.limits.body_timeout, read).await {
        Err(_) => {
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "the request body did not arrive in time",
            ))
        }
        Ok(Err(e))
            if std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>()) =>
        {
            return Err(too_large())
        }
        Ok(Err(e)) => {
            return Err(ApiError::bad_request(format!(
                "reading the request body: {e}"
            )))
        }
        Ok(Ok(bytes)) => bytes,
    };
    let request: PublishRequest = serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::bad_request(format!(
            "invalid publish request: {e}; expected JSON {{\"version\": N (optional), \"manifest\": \"<manifest YAML>\", \"images\": {{\"<arch>\": \"sha256:<hex>\"}}, \"vm\": false (optional)}}"
        ))
    })?;
    let record = state.registry.publish(&name, request).await?;
    let mut response = response::sync(StatusCode::CREATED, &VersionBody::from(&*record), &headers);
    if let Ok(location) = format!("/1.0/applications/{name}/versions/{}", record.version).parse() {
        response.headers_mut().insert(header::LOCATION, location);
    }
    Ok(response)
}

async fn delete_version(
    _: Publisher,
    State(state): State<AppState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state
        .registry
        .delete_version(&name, parse_version(&version)?)
        .await?;
    Ok(response::sync(StatusCode::OK, &serde_json::json!({}), &headers).into_response())
}

async fn delete_application(
    _: Publisher,
    State(state): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.registry.delete_application(&name).await?;
    Ok(response::sync(
        StatusCode::OK,
        &serde_json::json!({}),
        &headers,
    ))
}
