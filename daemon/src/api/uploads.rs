//! Resumable, digest-verified image uploads (publisher only).

use super::extract::Path;
use super::identity::Publisher;
use super::response::{self, ApiError};
use super::wire::UploadBody;
use super::AppState;
use crate::digest::Digest;
use crate::registry::{ByteStream, UploadState};
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use futures_util::StreamExt;
use http::header::{self, HeaderName};
use http::{HeaderMap, StatusCode};
use std::io;
use std::time::Duration;

const DIGEST: HeaderName = HeaderName::from_static("x-aar-digest");
const SIZE: HeaderName = HeaderName::from_static("x-aar-size");
const OFFSET: HeaderName = HeaderName::from_static("upload-offset");

pub fn routes() -> Router<AppState> {
    Router::new().route("/1.0/uploads", post(create)).route(
        "/1.0/uploads/{id}",
        // HEAD is GET without the body (axum strips it): the Upload-Offset header is what a
        // resuming publisher needs.
        get(status).patch(append).delete(abort),
    )
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
}

fn with_location(mut response: Response, state: &UploadState) -> Response {
    if !state.id.is_empty() {
        if let Ok(location) = format!("/1.0/uploads/{}", state.id).parse() {
            response.headers_mut().insert(header::LOCATION, location);
        }
    }
    if let Ok(offset) = state.offset.to_string().parse() {
        response.headers_mut().insert(OFFSET, offset);
    }
    response
}

async fn create(
    _: Publisher,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let digest: Digest = header_str(&headers, &DIGEST)
        .ok_or_else(|| {
            ApiError::bad_request(
                "X-AAR-Digest is required: the sha256:<hex> digest of the image you will send",
            )
        })?
        .parse()
        .map_err(|e| ApiError::bad_request(format!("X-AAR-Digest: {e}")))?;
    let size: u64 = header_str(&headers, &SIZE)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::LENGTH_REQUIRED,
                "X-AAR-Size is required: the image size in bytes",
            )
        })?
        .parse()
        .map_err(|_| {
            ApiError::bad_request(
                "X-AAR-Size must be the image size in bytes, a non-negative integer",
            )
        })?;
    let limit = state.limits.max_image_size;
    if size > limit {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the image is {size} bytes but this registry accepts at most {limit} (http.limits.max-image-size)"),
        ));
    }
    let upload = state.registry.create_upload(digest, size).await?;
    let status = if upload.complete {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(with_location(
        response::sync(status, &UploadBody::from(&upload), &headers),
        &upload,
    ))
}

async fn status(
    _: Publisher,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let upload = state.registry.upload_state(&id).await?;
    Ok(with_location(
        response::sync(StatusCode::OK, &UploadBody::from(&upload), &headers),
        &upload,
    ))
}

/// The body as a stream that fails when the client stays silent for `idle`, so a
/// stalled publisher cannot hold an upload (and a connection) forever.
fn body_stream(body: Body, idle: Duration) -> ByteStream {
    let frames = body.into_data_stream();
    Box::pin(futures_util::stream::unfold(
        Some(frames),
        move |frames| async move {
            let mut frames = frames?;
            match tokio::time::timeout(idle, frames.next()).await {
                Ok(Some(Ok(chunk))) => Some((Ok(chunk), Some(frames))),
                Ok(Some(Err(e))) => Some((Err(io::Error::other(e)), None)),
                Ok(None) => None,
                Err(_) => Some((
                    Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no data for {idle:?} (http.limits.body-timeout)"),
                    )),
                    None,
                )),
            }
        },
    ))
}

async fn append(
    _: Publisher,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let offset: u64 = header_str(&headers, &OFFSET)
        .ok_or_else(|| ApiError::bad_request("Upload-Offset is required: the number of bytes the registry already holds (HEAD the upload to learn it)"))?
        .parse()
        .map_err(|_| ApiError::bad_request("Upload-Offset must be a non-negative integer"))?;
    let upload = state
        .registry
        .append_upload(&id, offset, body_stream(body, state.limits.body_timeout))
        .await?;
    Ok(with_location(
        response::sync(StatusCode::OK, &UploadBody::from(&upload), &headers),
        &upload,
    ))
}

async fn abort(
    _: Publisher,
    State(state): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.registry.abort_upload(&id).await?;
    Ok(response::sync(
        StatusCode::OK,
        &serde_json::json!({}),
        &headers,
    ))
}
