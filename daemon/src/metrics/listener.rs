//! The plain-HTTP listener of `/metrics` and `/status` on `metrics.addr`. Unauthenticated by
//! design (a Prometheus scraper has no client certificate), which is why it listens on
//! loopback by default and is never the mTLS API port. It shows counts only: no name,
//! fingerprint or key.

use super::{global, Status};
use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

/// The numbers of `/status`, gathered when asked.
pub type StatusSource = Arc<dyn Fn() -> Status + Send + Sync>;

/// Run before each scrape, for gauges read from the system (free space, say).
pub type BeforeScrape = Arc<dyn Fn() + Send + Sync>;

/// Scrapers are few; a bound keeps a misbehaving one from holding many sockets.
const MAX_CONNECTIONS: usize = 32;

/// The OpenMetrics text format, which Prometheus reads.
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `addr`; the caller spawns [`serve`] with the listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Answers `/metrics` and `/status` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, status: StatusSource, before_scrape: BeforeScrape) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = Arc::clone(&permits).acquire_owned().await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let status = Arc::clone(&status);
        let before_scrape = Arc::clone(&before_scrape);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request| {
                let answer = answer(&request, &status, &before_scrape);
                async move { Ok::<_, Infallible>(answer) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            // A scrape is one small exchange: a connection that lingers is cut.
            let _ = tokio::time::timeout(Duration::from_secs(60), connection).await;
            drop(permit);
        });
    }
}

fn answer(
    request: &Request<Incoming>,
    status: &StatusSource,
    before_scrape: &BeforeScrape,
) -> Response<Full<Bytes>> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "use GET\n");
    }
    match request.uri().path() {
        "/metrics" => {
            before_scrape();
            reply(StatusCode::OK, CONTENT_TYPE, global().encode().into())
        }
        "/status" => {
            let body = serde_json::to_vec(&status()).expect("status serializes");
            reply(StatusCode::OK, "application/json", body.into())
        }
        _ => plain(
            StatusCode::NOT_FOUND,
            "not found: this listener serves /metrics and /status\n",
        ),
    }
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    reply(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(text.as_bytes()),
    )
}

fn reply(status: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Full::new(body))
        .expect("valid response")
}
