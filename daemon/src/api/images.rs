//! Image downloads: streamed with `Range` support, or a redirect when the backend
//! delivers elsewhere (S3 presigned or CloudFront signed URLs).

use super::extract::Path;
use super::identity::Reader;
use super::response::{self, ApiError};
use super::{parse_version, AppState};
use crate::registry::BlobBody;
use axum::body::Body;
use axum::extract::State;
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::header::{self, HeaderName, HeaderValue};
use http::{HeaderMap, Method, StatusCode};

pub fn routes() -> Router<AppState> {
    Router::new().route(
        "/1.0/applications/{name}/versions/{version}/images/{arch}",
        get(download),
    )
}

/// What a `Range` header asks for, resolved against the size.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    Full,
    /// Inclusive start, exclusive end.
    Part(u64, u64),
    Unsatisfiable,
}

/// Single byte ranges only; anything else (several ranges, other units, garbage) is
/// answered with the whole image, which RFC 9110 allows.
fn parse_range(value: Option<&HeaderValue>, size: u64) -> RangeRequest {
    let Some(spec) = value
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("bytes="))
    else {
        return RangeRequest::Full;
    };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((start, end)) = spec.split_once('-') else {
        return RangeRequest::Full;
    };
    let (start, end) = (start.trim(), end.trim());
    let parsed = match (start.is_empty(), end.is_empty()) {
        (true, false) => end
            .parse::<u64>()
            .ok()
            .map(|n| (size.saturating_sub(n), size, n == 0)),
        (false, true) => start.parse::<u64>().ok().map(|s| (s, size, false)),
        (false, false) => match (start.parse::<u64>(), end.parse::<u64>()) {
            (Ok(s), Ok(e)) if e >= s => Some((s, e.saturating_add(1).min(size), false)),
            _ => None,
        },
        (true, true) => None,
    };
    match parsed {
        None => RangeRequest::Full,
        Some((_, _, true)) => RangeRequest::Unsatisfiable,
        Some((s, _, _)) if s >= size => RangeRequest::Unsatisfiable,
        Some((s, e, _)) => RangeRequest::Part(s, e),
    }
}

async fn download(
    _: Reader,
    State(state): State<AppState>,
    Path((name, version, arch)): Path<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let image = state
        .registry
        .image(&name, parse_version(&version)?, &arch)?;
    let etag = format!("\"{}\"", image.digest);
    if response::if_none_match(&headers, &etag) {
        return Ok(response::not_modified(&etag));
    }
    let size = image.size;
    let range = match parse_range(headers.get(header::RANGE), size) {
        RangeRequest::Full => None,
        RangeRequest::Part(start, end) => Some((start, end)),
        RangeRequest::Unsatisfiable => {
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                format!("the requested range is outside the image, which has {size} bytes"),
            )
            .with_header(header::CONTENT_RANGE, format!("bytes */{size}")))
        }
    };
    let mut builder = Response::builder()
        .header(header::ETAG, &etag)
        .header(
            HeaderName::from_static("x-aar-digest"),
            image.digest.to_string(),
        )
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::CONTENT_TYPE, "application/octet-stream");
    let len = match range {
        Some((start, end)) => {
            builder = builder.status(StatusCode::PARTIAL_CONTENT).header(
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{size}", end - 1),
            );
            end - start
        }
        None => size,
    };
    if method == Method::HEAD {
        state.registry.check_image(&image).await?;
        return Ok(builder
            .header(header::CONTENT_LENGTH, len)
            .body(Body::empty())
            .expect("valid response"));
    }
    match state.registry.open_image(&image, range).await? {
        BlobBody::Stream { body, len } => Ok(builder
            .header(header::CONTENT_LENGTH, len)
            .body(Body::from_stream(body))
            .expect("valid response")),
        BlobBody::Redirect(url) => Ok(Response::builder()
            .status(StatusCode::TEMPORARY_REDIRECT)
            .header(header::LOCATION, url)
            .header(header::CACHE_CONTROL, "no-store")
            .body(Body::empty())
            .expect("valid response")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(v: &str, size: u64) -> RangeRequest {
        parse_range(Some(&HeaderValue::from_str(v).unwrap()), size)
    }

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(parse_range(None, 10), RangeRequest::Full);
        assert_eq!(range("bytes=0-4", 10), RangeRequest::Part(0, 5));
        assert_eq!(range("bytes=5-", 10), RangeRequest::Part(5, 10));
        assert_eq!(range("bytes=-3", 10), RangeRequest::Part(7, 10));
        assert_eq!(range("bytes=-30", 10), RangeRequest::Part(0, 10));
        assert_eq!(range("bytes=8-100", 10), RangeRequest::Part(8, 10));
        assert_eq!(range("bytes=10-", 10), RangeRequest::Unsatisfiable);
        assert_eq!(range("bytes=-0", 10), RangeRequest::Unsatisfiable);
        assert_eq!(range("bytes=0-1,3-4", 10), RangeRequest::Full);
        assert_eq!(range("items=0-1", 10), RangeRequest::Full);
        assert_eq!(range("bytes=4-2", 10), RangeRequest::Full);
    }

    proptest::proptest! {
        /// Whatever a client sends, the answer is a range inside the image or none.
        #[test]
        fn any_range_header_resolves_inside_the_image(
            value in "(bytes=)?[0-9 ,=-]{0,30}|\\PC{0,30}",
            size in proptest::prelude::any::<u64>(),
        ) {
            let Ok(header) = HeaderValue::from_str(&value) else { return Ok(()) };
            if let RangeRequest::Part(start, end) = parse_range(Some(&header), size) {
                proptest::prop_assert!(start < end && end <= size, "{value:?} {size}: {start}..{end}");
            }
        }
    }
}
