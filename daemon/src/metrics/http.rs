//! Counting API requests: a middleware on the API router that records each request's route
//! template, method, status, duration and body bytes.
//!
//! The metadata reads are the hot path, so a request takes no lock and allocates nothing
//! here: the label handles of a route are built at its first request and kept in a fixed
//! table of write-once slots (an atomic load to read), per method and per common status,
//! and what a request adds lands in its thread's shard of each counter (`sharded.rs`).
//! A body is wrapped for counting only when its length is not known up front (uploads and
//! image downloads); that wrapper is the one allocation this adds, and only to those.

use super::{
    global, DurationHistogram, RequestLabels, RouteLabel, RouteMethodLabels, ShardedCounter,
};
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use bytes::Bytes;
use http::{Method, StatusCode};
use hyper::body::{Body as _, Frame, SizeHint};
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Instant;

/// The route label of a request no route matched.
pub const UNMATCHED: &str = "unmatched";

/// The method labels; anything else is `other`, so a client cannot grow the label set.
const METHODS: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "other",
];

/// Statuses the API answers with, each with a kept handle; others are looked up.
const STATUSES: [u16; 22] = [
    200, 201, 202, 204, 206, 304, 307, 400, 403, 404, 405, 408, 409, 410, 411, 412, 413, 416, 422,
    500, 503, 507,
];

/// Route templates are a fixed set (the router's), far fewer than this.
const SLOTS: usize = 64;

struct RouteHandles {
    route: Box<str>,
    request_bytes: ShardedCounter,
    response_bytes: ShardedCounter,
    methods: [OnceLock<MethodHandles>; METHODS.len()],
}

struct MethodHandles {
    duration: DurationHistogram,
    statuses: [OnceLock<ShardedCounter>; STATUSES.len()],
}

fn method_slot(method: &Method) -> usize {
    match *method {
        Method::GET => 0,
        Method::HEAD => 1,
        Method::POST => 2,
        Method::PUT => 3,
        Method::PATCH => 4,
        Method::DELETE => 5,
        Method::OPTIONS => 6,
        _ => 7,
    }
}

impl RouteHandles {
    fn new(route: &str) -> RouteHandles {
        let m = global();
        let label = RouteLabel {
            route: route.to_owned(),
        };
        RouteHandles {
            route: route.into(),
            request_bytes: m.http_request_bytes.get_or_create_owned(&label),
            response_bytes: m.http_response_bytes.get_or_create_owned(&label),
            methods: Default::default(),
        }
    }

    fn method(&self, slot: usize) -> &MethodHandles {
        self.methods[slot].get_or_init(|| MethodHandles {
            duration: global()
                .http_duration
                .get_or_create_owned(&RouteMethodLabels {
                    route: self.route.to_string(),
                    method: METHODS[slot],
                }),
            statuses: Default::default(),
        })
    }

    fn count(&self, slot: usize, status: StatusCode) {
        let status = status.as_u16();
        let labels = || RequestLabels {
            route: self.route.to_string(),
            method: METHODS[slot],
            status,
        };
        match STATUSES.iter().position(|s| *s == status) {
            Some(i) => self.method(slot).statuses[i]
                .get_or_init(|| global().http_requests.get_or_create_owned(&labels()))
                .inc(),
            None => global().http_requests.get_or_create(&labels()).inc(),
        };
    }
}

/// Eight bytes per multiply rather than one: the templates share long prefixes and this
/// runs on every request. A collision only costs a probe, the key being compared in full.
fn route_hash(route: &str) -> u64 {
    let mut words = route.as_bytes().chunks(8);
    let mut hash = route.len() as u64;
    for word in &mut words {
        let mut bytes = [0u8; 8];
        bytes[..word.len()].copy_from_slice(word);
        hash = (hash ^ u64::from_le_bytes(bytes)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
    hash ^ (hash >> 29)
}

fn table() -> &'static [OnceLock<RouteHandles>; SLOTS] {
    static TABLE: OnceLock<[OnceLock<RouteHandles>; SLOTS]> = OnceLock::new();
    TABLE.get_or_init(|| std::array::from_fn(|_| OnceLock::new()))
}

/// The handles of `route`, found by open addressing in the table.
fn handles(route: &str) -> &'static RouteHandles {
    let hash = route_hash(route);
    let table = table();
    for probe in 0..SLOTS {
        let slot = &table[(hash as usize).wrapping_add(probe) % SLOTS];
        let found = slot.get_or_init(|| RouteHandles::new(route));
        if *found.route == *route {
            return found;
        }
    }
    // Only reachable with more templates than slots: they share the last resort label.
    static OVERFLOW: OnceLock<RouteHandles> = OnceLock::new();
    OVERFLOW.get_or_init(|| RouteHandles::new(UNMATCHED))
}

/// One request being counted: begun when it arrives, finished with its response. The API
/// runs it from its one middleware (`api/observe.rs`).
pub struct Tracked {
    start: Instant,
    route: &'static RouteHandles,
    method: usize,
}

impl Tracked {
    pub fn begin(request: &Request) -> Tracked {
        Tracked {
            start: Instant::now(),
            route: handles(
                request
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or(UNMATCHED, MatchedPath::as_str),
            ),
            method: method_slot(request.method()),
        }
    }

    /// The request with its body counted as it is read.
    pub fn count_request(&self, request: Request) -> Request {
        if request.body().is_end_stream() {
            return request;
        }
        let (parts, body) = request.into_parts();
        Request::from_parts(parts, counted(body, &self.route.request_bytes))
    }

    /// Records the duration and status; the response with its body counted as it is sent.
    pub fn finish(self, response: Response) -> Response {
        let route = self.route;
        route
            .method(self.method)
            .duration
            .observe(self.start.elapsed());
        route.count(self.method, response.status());
        // A body whose size is known (every metadata answer) is counted at once, and the
        // response is handed on as it is.
        if let Some(len) = response.body().size_hint().exact() {
            route.response_bytes.inc_by(len);
            return response;
        }
        let (parts, body) = response.into_parts();
        Response::from_parts(parts, counted(body, &route.response_bytes))
    }
}

/// A body whose size is known is counted at once; another is counted as its frames pass.
fn counted(body: Body, counter: &ShardedCounter) -> Body {
    match body.size_hint().exact() {
        Some(len) => {
            counter.inc_by(len);
            body
        }
        None => Body::new(Counting {
            inner: body,
            counter: counter.clone(),
        }),
    }
}

struct Counting {
    inner: Body,
    counter: ShardedCounter,
}

impl hyper::body::Body for Counting {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled {
            if let Some(data) = frame.data_ref() {
                self.counter.inc_by(data.len() as u64);
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_keeps_one_slot() {
        let a = handles("/test/route/{a}") as *const RouteHandles;
        let b = handles("/test/route/{b}") as *const RouteHandles;
        assert_ne!(a, b);
        assert_eq!(a, handles("/test/route/{a}") as *const RouteHandles);
        assert_eq!(b, handles("/test/route/{b}") as *const RouteHandles);
    }
}
