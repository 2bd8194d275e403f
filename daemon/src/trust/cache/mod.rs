//! The daemon's request-time view of the trust store: "who is this?" answered on every
//! request from memory, kept current from wherever the store is ([`super::TrustLocation`]).
//!
//! * From `trust.json` in the state directory ([`file`]): every lookup stats the file and
//!   re-reads it only when it changed, so a CLI change applies at the very next request.
//! * From the shared document in the bucket ([`shared`]): a task of the daemon checks it
//!   every `storage.s3.trust-refresh-interval`, so a change made on any unit applies here
//!   within that interval. When the bucket cannot be reached the last list read stays in
//!   use for `trust-stale-after`; past that every lookup answers [`Access::Unavailable`]
//!   (503), never a guess in either direction.

mod file;
mod shared;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use super::{Fingerprint, Role, SharedStore, TrustError, TrustFile};

/// What the trust store says about a certificate fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Trusted(Role),
    /// Trusted, but past the end of its validity (Unix time): refused like an untrusted one.
    Expired {
        not_after: i64,
    },
    Revoked,
    Unknown,
    /// The shared trust store has not been read, or not for longer than it may be relied
    /// on: nobody can be judged, so the request is answered 503 and retried.
    Unavailable,
}

/// The store as lookups need it.
#[derive(Default)]
struct View {
    trusted: HashMap<Fingerprint, Grant>,
    revoked: HashSet<Fingerprint>,
    publishers: usize,
    clients: usize,
}

#[derive(Clone, Copy)]
struct Grant {
    role: Role,
    /// Unix time; `None` when the store does not say in a form we read (a hand-written
    /// entry), in which case validity is not checked.
    not_after: Option<i64>,
}

impl View {
    fn of(file: TrustFile) -> View {
        let revoked: HashSet<Fingerprint> =
            file.revoked.into_iter().map(|r| r.fingerprint).collect();
        let mut view = View::default();
        for cert in file.trusted {
            if revoked.contains(&cert.fingerprint) {
                continue;
            }
            match cert.role {
                Role::Publisher => view.publishers += 1,
                Role::Client => view.clients += 1,
            }
            let not_after = super::time::parse(&cert.not_after);
            view.trusted.insert(
                cert.fingerprint,
                Grant {
                    role: cert.role,
                    not_after,
                },
            );
        }
        view.revoked = revoked;
        view
    }

    /// A view just read from `from`, logged and counted as the store's new contents.
    fn loaded(self, from: impl std::fmt::Display) -> std::sync::Arc<View> {
        tracing::info!(
            publishers = self.publishers,
            clients = self.clients,
            revoked = self.revoked.len(),
            "loaded trust store {from}"
        );
        crate::metrics::global().trust_refreshed();
        std::sync::Arc::new(self)
    }

    fn access(&self, fingerprint: &Fingerprint, now: i64) -> Access {
        if self.revoked.contains(fingerprint) {
            Access::Revoked
        } else if let Some(grant) = self.trusted.get(fingerprint) {
            match grant.not_after {
                // A certificate is valid through the second its validity ends in.
                Some(not_after) if now > not_after => Access::Expired { not_after },
                _ => Access::Trusted(grant.role),
            }
        } else {
            Access::Unknown
        }
    }
}

pub struct TrustCache {
    source: Source,
}

enum Source {
    File(file::FileSource),
    Shared(shared::SharedSource),
}

impl TrustCache {
    /// The state directory's `trust.json`. Reads nothing yet: the first lookup loads it.
    pub fn new(state_dir: &Path) -> TrustCache {
        TrustCache {
            source: Source::File(file::FileSource::new(state_dir)),
        }
    }

    /// The shared store, read by [`refresh_shared`](Self::refresh_shared); until the
    /// first read succeeds every lookup is [`Access::Unavailable`].
    pub fn shared(store: SharedStore, stale_after: Duration) -> TrustCache {
        TrustCache {
            source: Source::Shared(shared::SharedSource::new(store, stale_after)),
        }
    }

    /// Looks `fingerprint` up at the current time.
    pub fn access(&self, fingerprint: &Fingerprint) -> Access {
        self.access_at(fingerprint, super::time::now())
    }

    fn access_at(&self, fingerprint: &Fingerprint, now: i64) -> Access {
        match &self.source {
            Source::File(file) => file.view().access(fingerprint, now),
            Source::Shared(shared) => match shared.view() {
                Some(view) => view.access(fingerprint, now),
                None => Access::Unavailable,
            },
        }
    }

    /// Looks up a fingerprint given as text, at the current time.
    pub fn lookup(&self, fingerprint: &str) -> Access {
        self.lookup_at(fingerprint, super::time::now())
    }

    /// Looks up a fingerprint given as text, in either case, as of `now` (Unix time). Text
    /// that is not a fingerprint names no certificate: [`Access::Unknown`].
    pub fn lookup_at(&self, fingerprint: &str, now: i64) -> Access {
        match fingerprint.parse() {
            Ok(fingerprint) => self.access_at(&fingerprint, now),
            Err(_) => Access::Unknown,
        }
    }

    /// Number of trusted (publishers, clients) in the list last read.
    pub fn counts(&self) -> (usize, usize) {
        let view = match &self.source {
            Source::File(file) => file.view(),
            Source::Shared(shared) => shared.last_view(),
        };
        (view.publishers, view.clients)
    }

    /// Re-reads a file store now and reports why it cannot be used, for a daemon that
    /// refuses to start on a damaged store (the previous view stays in place on error).
    /// A shared store is read by [`refresh_shared`](Self::refresh_shared) instead.
    pub fn refresh(&self) -> Result<(), TrustError> {
        match &self.source {
            Source::File(file) => file.refresh(),
            Source::Shared(_) => Ok(()),
        }
    }

    /// Checks the shared store for a new version and reads it; `None` for a file store.
    /// The error says why the store could not be checked; the view in use is kept.
    pub async fn refresh_shared(&self) -> Option<Result<(), TrustError>> {
        match &self.source {
            Source::File(_) => None,
            Source::Shared(shared) => Some(shared.refresh().await),
        }
    }
}

#[cfg(test)]
mod tests;
