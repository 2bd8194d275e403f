//! Who is calling: the TLS layer attaches the client certificate's fingerprint to every
//! request of a connection ([`Peer`]); the extractors here look it up in the trust store
//! at *every* request, so a handler that takes [`Reader`] or [`Publisher`] cannot run for
//! a caller without that right, and a revocation applies on an open connection.

use super::response::ApiError;
use super::AppState;
use crate::metrics::{self, Refusal};
use crate::trust::{Access, Fingerprint, Role};
use axum::extract::{FromRequestParts, MatchedPath, Request};
use axum::response::Response;
use http::request::Parts;
use http::{Method, StatusCode};
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
/// saying why costs nothing and saves a support round-trip. Every such refusal is a warn
/// line, so that the operator learns which AMS needs a new certificate.
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

/// The shared trust store has not been read recently enough to judge anyone by: a 503
/// the caller retries, as for an index not yet loaded.
fn unavailable() -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "the registry cannot read its trust store in the bucket just now, so it cannot tell \
         whether this certificate is trusted; retry shortly (the registry's operator sees why \
         in its log)",
    )
    .with_header(http::header::RETRY_AFTER, 5)
}

/// A caller allowed to read: any trusted certificate.
pub struct Reader;

/// A caller allowed to write: a certificate trusted in the publisher role.
pub struct Publisher;

/// Why `access` refuses, for `aar_refused_requests_total` and the audit trail; `None` when
/// the caller may go on (`writing`: whether the request needs the publisher role).
fn refusal(access: &Access, writing: bool) -> Option<Refusal> {
    match access {
        Access::Trusted(Role::Publisher) => None,
        Access::Trusted(Role::Client) if !writing => None,
        Access::Trusted(Role::Client) => Some(Refusal::ClientWrite),
        Access::Expired { .. } => Some(Refusal::Expired),
        Access::Revoked => Some(Refusal::Revoked),
        Access::Unknown => Some(Refusal::Untrusted),
        // Nobody is refused: the registry cannot tell, and says so with a 503.
        Access::Unavailable => None,
    }
}

fn role_name(access: &Access) -> &'static str {
    match access {
        Access::Trusted(Role::Publisher) => "publisher",
        Access::Trusted(Role::Client) => "client",
        _ => "none",
    }
}

impl FromRequestParts<AppState> for Reader {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (fp, access) = access(parts, state);
        if let Some(reason) = refusal(&access, false) {
            metrics::global().refused(reason);
        }
        match access {
            Access::Trusted(_) => Ok(Reader),
            Access::Unavailable => Err(unavailable()),
            Access::Expired { not_after } => Err(refuse_expired(fp, not_after)),
            _ => Err(refuse(fp)),
        }
    }
}

impl FromRequestParts<AppState> for Publisher {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let (fp, access) = access(parts, state);
        if let Some(reason) = refusal(&access, true) {
            metrics::global().refused(reason);
        }
        match (fp, access) {
            (_, Access::Trusted(Role::Publisher)) => Ok(Publisher),
            (_, Access::Trusted(Role::Client)) => Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "this certificate is trusted as a client, which is read-only; writes need the publisher's certificate",
            )),
            (_, Access::Unavailable) => Err(unavailable()),
            (fp, Access::Expired { not_after }) => Err(refuse_expired(fp, not_after)),
            (fp, _) => Err(refuse(fp)),
        }
    }
}

/// A write on its way through the API, for the audit trail: one `aar::audit` event per
/// publish, delete, and refused write (uploads included), with the caller's fingerprint and
/// role, the object (the request's path) and the outcome. Bodies, manifests and keys are
/// never part of it.
pub struct Write {
    method: Method,
    route: Option<MatchedPath>,
    object: String,
    fingerprint: Option<Fingerprint>,
}

impl Write {
    /// `None` for reads: they are not audited, and cost nothing here.
    pub fn of(request: &Request) -> Option<Write> {
        let method = request.method();
        if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
            return None;
        }
        Some(Write {
            method: method.clone(),
            route: request.extensions().get::<MatchedPath>().cloned(),
            object: request.uri().path().to_owned(),
            fingerprint: request
                .extensions()
                .get::<Peer>()
                .and_then(|p| p.fingerprint),
        })
    }

    /// Logs the write's event, if it is one the trail keeps.
    pub fn audit(self, state: &AppState, response: &Response) {
        let Write {
            method,
            route,
            object,
            fingerprint,
        } = self;
        let status = response.status();
        let action = match (&method, route.as_ref().map(MatchedPath::as_str)) {
            (&Method::POST, Some("/1.0/applications/{name}/versions")) => "publish",
            (&Method::DELETE, Some("/1.0/applications/{name}/versions/{version}")) => {
                "delete_version"
            }
            (&Method::DELETE, Some("/1.0/applications/{name}")) => "delete_application",
            _ if status == StatusCode::FORBIDDEN => "write",
            // Upload traffic that was let through: its publish is what gets audited.
            _ => return,
        };
        if status == StatusCode::FORBIDDEN {
            // Looked up again only on this rare path, so the hot path stays one look-up.
            let access = match &fingerprint {
                Some(fp) => state.trust.access(fp),
                None => Access::Unknown,
            };
            let fingerprint = fingerprint.map_or_else(|| "none".to_owned(), |fp| fp.to_string());
            let reason = refusal(&access, true).map_or("forbidden", Refusal::as_str);
            tracing::warn!(
                target: "aar::audit",
                action,
                %method,
                object,
                fingerprint,
                role = role_name(&access),
                outcome = "refused",
                reason,
                "write refused"
            );
            return;
        }
        let fingerprint = fingerprint.map_or_else(|| "none".to_owned(), |fp| fp.to_string());
        let outcome = if status.is_success() { "ok" } else { "failed" };
        let location = response
            .headers()
            .get(http::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info!(
            target: "aar::audit",
            action,
            %method,
            object,
            location,
            fingerprint,
            role = "publisher",
            outcome,
            status = status.as_u16(),
            "write"
        );
    }
}
