//! The trust store as a document in the bucket, re-read by the daemon's refresh task.
//!
//! A lookup costs a read lock and a clock read: the view and the time of the last check
//! that reached the store. A view older than `stale_after` is not used: a unit cut off
//! from the bucket cannot learn of a revocation made elsewhere, so rather than keep
//! admitting a certificate that may be revoked (or start refusing everyone without a
//! word) it answers 503 and says why in its log, until the bucket answers again.

use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use super::View;
use crate::trust::shared::Fetched;
use crate::trust::{SharedStore, TrustError};

pub(super) struct SharedSource {
    store: SharedStore,
    stale_after: Duration,
    state: RwLock<State>,
}

#[derive(Default)]
struct State {
    view: Arc<View>,
    /// The version the view was read from; `None` also when there is no document.
    tag: Option<String>,
    /// When the store last answered (unchanged, missing or read); `None` before the
    /// first answer.
    checked: Option<Instant>,
    /// A version that could not be parsed, so it is not read again every refresh.
    failed_tag: Option<String>,
    /// Whether the current run of failed checks has been reported, and whether its
    /// passing the stale bound has.
    failing: bool,
    stale_reported: bool,
}

impl SharedSource {
    pub(super) fn new(store: SharedStore, stale_after: Duration) -> SharedSource {
        SharedSource {
            store,
            stale_after,
            state: RwLock::default(),
        }
    }

    /// The view, when it is recent enough to judge a caller by.
    pub(super) fn view(&self) -> Option<Arc<View>> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        match state.checked {
            Some(at) if at.elapsed() <= self.stale_after => Some(Arc::clone(&state.view)),
            _ => None,
        }
    }

    /// The view last read, however old: for counts, never for a decision.
    pub(super) fn last_view(&self) -> Arc<View> {
        let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
        Arc::clone(&state.view)
    }

    pub(super) async fn refresh(&self) -> Result<(), TrustError> {
        let result = self.check().await;
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        match result {
            Ok(()) => {
                if state.failing {
                    tracing::info!(
                        "the trust store {} answers again; requests are judged by it",
                        self.store.location()
                    );
                }
                state.failing = false;
                state.stale_reported = false;
                Ok(())
            }
            Err(err) => {
                if !state.failing {
                    state.failing = true;
                    tracing::warn!(
                        "{err}; keeping the trust list read before for up to {}",
                        humantime::format_duration(self.stale_after)
                    );
                }
                let stale = state
                    .checked
                    .is_none_or(|at| at.elapsed() > self.stale_after);
                if stale && !state.stale_reported {
                    state.stale_reported = true;
                    tracing::error!(
                        "the trust store {} has not been read for longer than \
                         storage.s3.trust-stale-after ({}): every request is answered 503 \
                         until it can be, rather than judged by a list that may lack a \
                         revocation",
                        self.store.location(),
                        humantime::format_duration(self.stale_after)
                    );
                }
                Err(err)
            }
        }
    }

    /// One check: brings in a local store left from before, then reads the document if
    /// its version changed.
    async fn check(&self) -> Result<(), TrustError> {
        self.store.import_local().await?;
        let known = {
            let state = self.state.read().unwrap_or_else(PoisonError::into_inner);
            // A damaged version counts as known: it is not read again until it changes.
            state.failed_tag.clone().or_else(|| state.tag.clone())
        };
        let fetched = self.store.fetch_if_changed(known.as_deref()).await;
        let now = Instant::now();
        let mut state = self.state.write().unwrap_or_else(PoisonError::into_inner);
        match fetched? {
            Fetched::Unchanged => {}
            Fetched::Missing => {
                if state.tag.is_some() {
                    tracing::warn!(
                        "trust store {} was removed; no certificate is trusted any more",
                        self.store.location()
                    );
                }
                state.view = Arc::default();
                state.tag = None;
            }
            Fetched::Current { file, tag } => {
                state.view = View::of(file).loaded(self.store.location());
                state.tag = Some(tag);
                state.failed_tag = None;
            }
            Fetched::Corrupt { tag, error } => {
                // Like a damaged trust.json: the last good list stays in use, since a
                // writer that damaged it did not mean to let anyone in, and the store
                // answered, so the list is not stale.
                if state.failed_tag.as_deref() != Some(tag.as_str()) {
                    tracing::error!("{error}; keeping the trust list loaded before");
                    state.failed_tag = Some(tag);
                }
            }
        }
        state.checked = Some(now);
        crate::metrics::global().trust_checked(crate::trust::time::now());
        Ok(())
    }
}
