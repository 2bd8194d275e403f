//! The one middleware every API request passes: its metrics and, for a write, its audit
//! event. One layer rather than two: each axum `from_fn` layer boxes and clones per
//! request, and the metadata reads it sits on are the hot path (bench/results).

use super::identity::Write;
use super::AppState;
use crate::metrics::http::Tracked;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

pub async fn observe(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let tracked = Tracked::begin(&request);
    let write = Write::of(&request);
    let response = next.run(tracked.count_request(request)).await;
    if let Some(write) = write {
        write.audit(&state, &response);
    }
    tracked.finish(response)
}
