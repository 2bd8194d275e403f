//! Accepting connections: TLS handshake, HTTP/1.1 with keep-alive, timeouts, the
//! connection limit (which connections give way is `admission`'s business) and graceful
//! shutdown.

use crate::admission::{Admission, Busy, Ticket};
use crate::api::identity::Verdicts;
use crate::api::Peer;
use crate::config::Limits;
use crate::write_timeout::WriteTimeout;
use axum::Router;
use bytes::Bytes;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Whether the trust store trusts a certificate fingerprint now.
pub type TrustCheck = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and
/// gives requests in flight up to `grace` to finish.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    router: Router,
    trusted: TrustCheck,
    limits: Limits,
    grace: Duration,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = TlsAcceptor::from(tls);
    // Bounds memory and file descriptors under a connection flood; waiting for room
    // before accepting leaves the excess in the kernel's backlog.
    let admission = Admission::new(&limits);
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = admission.wait_for_room() => {}
            () = &mut shutdown => break,
        }
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually EMFILE: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            admission.admit(),
            stream,
            remote,
            ConnectionSetup {
                acceptor: acceptor.clone(),
                router: router.clone(),
                trusted: Arc::clone(&trusted),
                limits: limits.clone(),
            },
            graceful.watcher(),
        ));
    }
    drop(listener);
    tracing::info!(grace = ?grace, "shutting down: no new connections; waiting for requests in flight");
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections closed"),
        () = tokio::time::sleep(grace) => tracing::warn!("shutdown grace period over; closing the remaining connections"),
    }
}

/// What every connection's task shares.
struct ConnectionSetup {
    acceptor: TlsAcceptor,
    router: Router,
    trusted: TrustCheck,
    limits: Limits,
}

/// One connection, from its TLS handshake until it closes, is closed to make room, or
/// idles out while untrusted.
async fn connection(
    ticket: Ticket,
    stream: TcpStream,
    remote: SocketAddr,
    setup: ConnectionSetup,
    watcher: Watcher,
) {
    // Until the client speaks, this future is all a connection costs: the TLS state and
    // the HTTP connection (tens of KiB together) are allocated apart, once needed, so that
    // thousands of sockets that never speak take little memory.
    let handshake = tokio::time::timeout(setup.limits.handshake_timeout(), async {
        // `readable` may wake for nothing on a fresh socket; a peek waits for a byte.
        stream.peek(&mut [0u8; 1]).await?;
        let stream = WriteTimeout::new(stream, setup.limits.write_timeout);
        Box::pin(setup.acceptor.accept(stream)).await
    });
    let tls = tokio::select! {
        result = handshake => match result {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%remote, error = %e, "TLS handshake failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%remote, "TLS handshake timed out");
                return;
            }
        },
        () = ticket.evicted() => {
            tracing::debug!(%remote, "closed during its TLS handshake to make room");
            return;
        }
    };
    Box::pin(serve_http(ticket, tls, remote, setup, watcher)).await;
}

async fn serve_http(
    ticket: Ticket,
    tls: TlsStream<WriteTimeout<TcpStream>>,
    remote: SocketAddr,
    setup: ConnectionSetup,
    watcher: Watcher,
) {
    let ConnectionSetup {
        router,
        trusted,
        limits,
        ..
    } = setup;
    let fingerprint = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|cert| crate::trust::Fingerprint::of(cert));
    let conn = ticket.conn();
    if !conn.classify(fingerprint.is_some_and(|fp| trusted(&fp.to_string()))) {
        tracing::debug!(%remote, "closed after its TLS handshake to make room");
        return;
    }
    let peer = Peer {
        fingerprint,
        verdicts: Some(Verdicts({
            let conn = conn.clone();
            Arc::new(move |trusted| {
                // An evicted connection learns it from its ticket.
                let _ = conn.classify(trusted);
            })
        })),
    };
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(peer.clone());
        let busy = conn.request();
        let response = router.clone().oneshot(request.map(axum::body::Body::new));
        async move {
            let response = response.await?;
            Ok::<_, std::convert::Infallible>(response.map(|body| Answer { body, _busy: busy }))
        }
    });
    let connection = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .serve_connection(TokioIo::new(tls), service);
    let connection = watcher.watch(connection);
    tokio::pin!(connection);
    let idle_timeout = limits.untrusted_idle_timeout;
    loop {
        let idle_at = ticket.idle_deadline(idle_timeout);
        tokio::select! {
            result = &mut connection => {
                if let Err(e) = result {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
                return;
            }
            () = ticket.evicted() => {
                tracing::debug!(%remote, "closed to make room");
                return;
            }
            () = tokio::time::sleep_until(idle_at) => {
                if ticket.idle_expired(idle_timeout) {
                    tracing::debug!(%remote, "closed: untrusted and idle for http.limits.untrusted-idle-timeout");
                    return;
                }
            }
        }
    }
}

/// A response body that keeps its connection marked busy until it is sent or dropped.
struct Answer {
    body: axum::body::Body,
    _busy: Busy,
}

impl hyper::body::Body for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
