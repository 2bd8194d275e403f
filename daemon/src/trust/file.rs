//! The format of `trust.json`: which certificates are trusted or revoked, how a fingerprint
//! or a prefix of one is resolved against them, and what makes a file unusable.

use std::collections::HashSet;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{Fingerprint, Role, TrustError};

const MIN_PREFIX: usize = 4;

/// The contents of `trust.json`. `F` is [`Fingerprint`] but while the file is read: the
/// fingerprints are read as text first, so that a bad one is reported by its place in the
/// file rather than by serde's position.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustFile<F = Fingerprint> {
    #[serde(default)]
    pub trusted: Vec<TrustedCert<F>>,
    #[serde(default)]
    pub revoked: Vec<RevokedCert<F>>,
}

impl<F> Default for TrustFile<F> {
    fn default() -> Self {
        TrustFile {
            trusted: Vec::new(),
            revoked: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedCert<F = Fingerprint> {
    pub fingerprint: F,
    pub role: Role,
    pub subject: String,
    /// RFC 3339.
    pub not_after: String,
    /// Who added it: "cli", a relation name, ...
    pub origin: String,
    /// RFC 3339.
    pub added_at: String,
    /// PEM.
    pub certificate: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedCert<F = Fingerprint> {
    pub fingerprint: F,
    /// Empty when the certificate was revoked without ever being trusted.
    #[serde(default)]
    pub subject: String,
    /// RFC 3339.
    pub revoked_at: String,
}

/// Where a fingerprint or prefix points, as answered by [`TrustFile::find`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found<'a> {
    Trusted(&'a TrustedCert),
    Revoked(&'a RevokedCert),
    Nothing,
}

impl TrustFile {
    /// Resolves a full fingerprint or an unambiguous prefix (case-insensitive, colons allowed
    /// as in `openssl x509 -fingerprint`), trusted certificates first.
    pub fn find(&self, prefix: &str) -> Result<Found<'_>, TrustError> {
        let needle = normalize(prefix)?;
        let trusted = matching(&self.trusted, &needle, |c| (&c.fingerprint, &c.subject))?;
        if let Some(cert) = trusted {
            return Ok(Found::Trusted(cert));
        }
        let revoked = matching(&self.revoked, &needle, |c| (&c.fingerprint, &c.subject))?;
        Ok(revoked.map_or(Found::Nothing, Found::Revoked))
    }

    pub(super) fn revoked_entry(&self, fingerprint: &Fingerprint) -> Option<&RevokedCert> {
        self.revoked.iter().find(|r| r.fingerprint == *fingerprint)
    }
}

impl TrustFile<String> {
    /// Rejects what the daemon could misread. A fingerprint both trusted and revoked is let
    /// through (revocation wins at lookup): refusing the file would make the daemon keep its
    /// previous view, in which that certificate is still trusted.
    fn validate(self, path: &Path) -> Result<TrustFile, TrustError> {
        let corrupt = |detail: String| TrustError::Corrupt {
            path: path.to_owned(),
            detail,
        };
        let mut seen = HashSet::new();
        let mut trusted = Vec::with_capacity(self.trusted.len());
        for (i, cert) in self.trusted.into_iter().enumerate() {
            let fingerprint: Fingerprint = cert.fingerprint.parse().map_err(|_| {
                corrupt(format!("trusted[{i}].fingerprint is not 64 hex characters"))
            })?;
            if !seen.insert(fingerprint) {
                return Err(corrupt(format!(
                    "{fingerprint} is listed twice under \"trusted\""
                )));
            }
            trusted.push(TrustedCert {
                fingerprint,
                role: cert.role,
                subject: cert.subject,
                not_after: cert.not_after,
                origin: cert.origin,
                added_at: cert.added_at,
                certificate: cert.certificate,
            });
        }
        let mut revoked = Vec::with_capacity(self.revoked.len());
        for (i, cert) in self.revoked.into_iter().enumerate() {
            let fingerprint = cert.fingerprint.parse().map_err(|_| {
                corrupt(format!("revoked[{i}].fingerprint is not 64 hex characters"))
            })?;
            revoked.push(RevokedCert {
                fingerprint,
                subject: cert.subject,
                revoked_at: cert.revoked_at,
            });
        }
        Ok(TrustFile { trusted, revoked })
    }
}

/// The fingerprint to revoke when `prefix` matches nothing in the store: only a full one,
/// since a prefix of a certificate that is not there identifies nothing.
pub(crate) fn preemptive_target(prefix: &str) -> Result<Fingerprint, TrustError> {
    let needle = normalize(prefix)?;
    // `normalize` lets only hex through: this fails exactly when the prefix is not whole.
    needle.parse().map_err(|_| TrustError::UnknownFingerprint {
        prefix: needle,
        hint: "to revoke a certificate that is not trusted, \
                   pass its full 64-character fingerprint",
    })
}

fn matching<'a, T>(
    items: &'a [T],
    needle: &str,
    key: impl Fn(&T) -> (&Fingerprint, &String),
) -> Result<Option<&'a T>, TrustError> {
    let hits: Vec<&T> = items
        .iter()
        .filter(|item| key(item).0.starts_with(needle))
        .collect();
    match hits.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(TrustError::Ambiguous {
            prefix: needle.to_owned(),
            candidates: many
                .iter()
                .map(|item| {
                    let (fp, subject) = key(item);
                    format!("  {fp} ({subject})")
                })
                .collect(),
        }),
    }
}

pub(super) fn normalize(input: &str) -> Result<String, TrustError> {
    let invalid = |reason| TrustError::InvalidFingerprint {
        input: input.to_owned(),
        reason,
    };
    let hex: String = input
        .trim()
        .chars()
        .filter(|&c| c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(invalid("it may only contain hex digits (0-9, a-f)"));
    }
    if hex.len() > Fingerprint::HEX_LEN {
        return Err(invalid("it is longer than 64 hex characters"));
    }
    if hex.len() < MIN_PREFIX {
        return Err(invalid("it is too short"));
    }
    Ok(hex)
}

/// Reads `trust.json`. A missing file is an empty store; anything unreadable is an error,
/// never an empty store, so a damaged file cannot silently drop revocations.
pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<TrustFile, TrustError> {
    let corrupt = |detail: String| TrustError::Corrupt {
        path: path.to_owned(),
        detail,
    };
    // serde would also accept an array for the struct, reading `[]` as an empty store.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(corrupt(
            "expected a JSON object with \"trusted\" and \"revoked\" lists".to_owned(),
        ));
    }
    serde_json::from_slice::<TrustFile<String>>(bytes)
        .map_err(|e| corrupt(e.to_string()))?
        .validate(path)
}
