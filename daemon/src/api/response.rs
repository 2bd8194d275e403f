//! The wire format: AMS/LXD-style JSON envelopes, strong ETags, and the one place where
//! every error becomes a status code and a message.

use crate::registry::{ErrorKind, RegistryError};
use axum::body::Body;
use axum::response::{IntoResponse, Response};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::StatusCode;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

#[derive(Serialize)]
struct Sync<'a, T> {
    r#type: &'static str,
    status: &'static str,
    status_code: u16,
    metadata: &'a T,
}

#[derive(Serialize)]
struct Failure<'a> {
    r#type: &'static str,
    error: &'a str,
    error_code: u16,
    metadata: Option<()>,
}

fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// A successful JSON answer with a strong ETag over its bytes; `304` when the caller
/// already holds that representation.
pub fn sync<T: Serialize>(status: StatusCode, metadata: &T, request: &HeaderMap) -> Response {
    render(status, metadata).answer(status, request)
}

/// A JSON answer's bytes and strong ETag, as built once and possibly served many times.
#[derive(Clone)]
pub struct Rendered {
    pub body: bytes::Bytes,
    pub etag: HeaderValue,
}

pub fn render<T: Serialize>(status: StatusCode, metadata: &T) -> Rendered {
    let body = serde_json::to_vec(&Sync {
        r#type: "sync",
        status: "Success",
        status_code: status.as_u16(),
        metadata,
    })
    .expect("metadata serialises");
    let hash = Sha256::digest(&body);
    let etag = format!("\"{}\"", hex::encode(&hash[..16]));
    Rendered {
        body: body.into(),
        etag: HeaderValue::from_str(&etag).expect("hex is a valid header"),
    }
}

impl Rendered {
    /// The answer to `request`: `304` when it already holds these bytes.
    pub fn answer(self, status: StatusCode, request: &HeaderMap) -> Response {
        let etag = self.etag.to_str().expect("built from hex");
        if status == StatusCode::OK && if_none_match(request, etag) {
            return not_modified(etag);
        }
        let mut response = Response::new(Body::from(self.body));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        headers.insert(header::ETAG, self.etag);
        response
    }
}

pub fn not_modified(etag: &str) -> Response {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::NOT_MODIFIED;
    response.headers_mut().insert(
        header::ETAG,
        HeaderValue::from_str(etag).expect("valid etag"),
    );
    response
}

/// `If-None-Match` per RFC 9110: a list of tags or `*`; weak tags compare weakly.
pub fn if_none_match(request: &HeaderMap, etag: &str) -> bool {
    request
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|value| {
            value
                .split(',')
                .map(str::trim)
                .any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
        })
}

/// An error as the caller sees it: a status and a message that says what to do.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
            headers: Vec::new(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub fn with_header(mut self, name: HeaderName, value: impl ToString) -> Self {
        if let Ok(value) = HeaderValue::from_str(&value.to_string()) {
            self.headers.push((name, value));
        }
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), error = %self.message, "request failed");
        } else {
            tracing::debug!(status = self.status.as_u16(), error = %self.message, "request refused");
        }
        let body = serde_json::to_vec(&Failure {
            r#type: "error",
            error: &self.message,
            error_code: self.status.as_u16(),
            metadata: None,
        })
        .expect("error serialises");
        let mut response = json_response(self.status, body);
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response
    }
}

impl From<RegistryError> for ApiError {
    fn from(err: RegistryError) -> Self {
        let kind = err.kind();
        let status = match kind {
            ErrorKind::Invalid => StatusCode::BAD_REQUEST,
            ErrorKind::TimedOut => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::Full => StatusCode::INSUFFICIENT_STORAGE,
            ErrorKind::Damaged | ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        };
        let message = match kind {
            // The details (paths, OS errors) go to the log, not to the caller.
            ErrorKind::Internal => {
                tracing::error!(error = %err, "storage failure");
                "internal storage error; the registry log has the details".to_string()
            }
            _ => err.to_string(),
        };
        let mut api = ApiError::new(status, message);
        if let Some(offset) = err.upload_offset() {
            api = api.with_header(HeaderName::from_static("upload-offset"), offset);
        }
        if kind == ErrorKind::Unavailable {
            api = api.with_header(header::RETRY_AFTER, 5);
        }
        api
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_handles_lists_weak_tags_and_star() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::IF_NONE_MATCH,
            HeaderValue::from_static("\"a\", W/\"b\""),
        );
        assert!(if_none_match(&headers, "\"b\""));
        assert!(!if_none_match(&headers, "\"c\""));
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert!(if_none_match(&headers, "\"c\""));
    }
}
