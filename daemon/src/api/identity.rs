//! Who is calling: the TLS layer attaches the client certificate's fingerprint to every
//! request of a connection ([`Peer`]); the extractors here look it up in the trust store
//! at *every* request, so a handler that takes [`Reader`] or [`Publisher`] cannot run for
//! a caller without that right, and a revocation applies on an open connection.

use super::response::ApiError;
use super::AppState;
use crate::trust::{Access, Fingerprint, Role};
use axum::extract::FromRequestParts;
use http::request::Parts;
use http::StatusCode;
use std::sync::Arc;

/// The connection's client certificate fingerprint, if it presented one.
#[derive(Clone, Debug, Default)]
pub struct Peer {
    pub fingerprint: Option<Fingerprint>,
    /// Told the outcome of every trust check made here for the connection's requests.
    pub verdicts: Option<Verdicts>,
}

/// Receives `true` when the trust store trusted the connection's certificate at a
/// request, `false` otherwise. The server uses it to decide which connections give way
/// when connections run short, without a second look-up per request.
#[derive(Clone)]
pub struct Verdicts(pub Arc<dyn Fn(bool) + Send + Sync>);

impl std::fmt::Debug for Verdicts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verdicts")
    }
}

pub fn access(parts: &Parts, state: &AppState) -> (Option<Fingerprint>, Access) {
    let peer = parts.extensions.get::<Peer>();
    let fingerprint = peer.and_then(|p| p.fingerprint);
    let access = match &fingerprint {
        Some(fp) => state.trust.access(fp),
        None => Access::Unknown,
    };
    if let Some(Verdicts(tell)) = peer.and_then(|p| p.verdicts.as_ref()) {
        tell(matches!(access, Access::Trusted(_)));
    }
    (fingerprint, access)
}

fn refuse(fingerprint: Option<Fingerprint>) -> ApiError {
    // Revoked and unknown callers get the same answer: neither learns anything more.
    let message = match fingerprint {
        Some(fp) => format!(
            "this client certificate (fingerprint {fp}) is not trusted by the registry; the registry's operator can trust it with `aar trust add` or by relating the AMS unit"
        ),
        None => "a trusted client certificate is required; connect with the certificate the registry trusts".to_string(),
    };
    ApiError::new(StatusCode::FORBIDDEN, message)
}

/// A trusted certificate past its validity. Its holder proved possession of the key, so
/// saying why costs nothing and saves a support round-trip. Every refusal is a warn line:
/// with no metrics in the daemon, the log is where they are counted.
fn refuse_expired(fingerprint: Option<Fingerprint>, not_after: i64) -> ApiError {
    let fingerprint = fingerprint.map(|fp| fp.to_string()).unwrap_or_default();
    let not_after = crate::trust::format_unix_time(not_after);
    tracing::warn!(
        %fingerprint,
        %not_after,
        "refused a request: the client certificate expired"
    );
    ApiError::new(
        StatusCode::FORBIDDEN,
        format!(
            "this client certificate (fingerprint {fingerprint}) expired on {not_after} and is no longer accepted; issue a new certificate for this AMS and have the registry's operator trust it (`aar trust add`, or relate the AMS unit again)"
        ),
    )
}

/// A caller allowed to read: any trusted certificate.
pub struct Reader;

/// A caller allowed to write: a certificate trusted in the publisher role.
pub struct Publisher;

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match access(parts, state) {
            (_, Access::Trusted(_)) => Ok(Reader),
            (fp, Access::Expired { not_after }) => Err(refuse_expired(fp, not_after)),
            (fp, _) => Err(refuse(fp)),
        }
    }
}

impl FromRequestParts<AppState> for Publisher {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match access(parts, state) {
            (_, Access::Trusted(Role::Publisher)) => Ok(Publisher),
            (_, Access::Trusted(Role::Client)) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this certificate is trusted as a client, which is read-only; writes need the publisher's certificate",
            )),
            (fp, Access::Expired { not_after }) => Err(refuse_expired(fp, not_after)),
            (fp, _) => Err(refuse(fp)),
        }
    }
}
