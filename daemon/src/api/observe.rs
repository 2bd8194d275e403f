//! The one layer every API request passes: its metrics and, for a write, its audit event.
//!
//! A tower layer written out rather than `axum::middleware::from_fn`: `from_fn` clones and
//! boxes its inner service and boxes its future on every request, seven allocations per
//! metadata read that cost it 6 % of its instructions (bench/results/metrics-cost.md). Here
//! the future is a plain struct around the route's own, and a read clones nothing but what
//! axum clones for any route.

use super::identity::Write;
use super::AppState;
use crate::metrics::http::Tracked;
use axum::extract::Request;
use axum::response::Response;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tower::{Layer, Service};

#[derive(Clone)]
pub struct ObserveLayer {
    state: AppState,
}

impl ObserveLayer {
    pub fn new(state: AppState) -> ObserveLayer {
        ObserveLayer { state }
    }
}

impl<S> Layer<S> for ObserveLayer {
    type Service = Observe<S>;

    fn layer(&self, inner: S) -> Observe<S> {
        Observe {
            inner,
            state: self.state.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Observe<S> {
    inner: S,
    state: AppState,
}

impl<S> Service<Request> for Observe<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Unpin,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Observed<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let tracked = Tracked::begin(&request);
        // Reads are not audited: they take no copy of the state.
        let write = Write::of(&request).map(|write| (write, self.state.clone()));
        let inner = self.inner.call(tracked.count_request(request));
        Observed {
            inner,
            tracked: Some(tracked),
            write,
        }
    }
}

pub struct Observed<F> {
    inner: F,
    /// Taken when the response is ready; a request dropped before then (its client gone)
    /// is not counted, as it has no status.
    tracked: Option<Tracked>,
    write: Option<(Write, AppState)>,
}

impl<F> Future for Observed<F>
where
    F: Future<Output = Result<Response, Infallible>> + Unpin,
{
    type Output = Result<Response, Infallible>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Ok(response) = std::task::ready!(Pin::new(&mut self.inner).poll(cx));
        if let Some((write, state)) = self.write.take() {
            write.audit(&state, &response);
        }
        let response = match self.tracked.take() {
            Some(tracked) => tracked.finish(response),
            None => response,
        };
        Poll::Ready(Ok(response))
    }
}
