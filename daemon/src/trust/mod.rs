//! Trust store: which client certificates may talk to the registry, and in which role.
//!
//! Callers are identified by the SHA-256 fingerprint of their certificate's DER encoding
//! (what AMS shows as `registry.fingerprint`). The store is `<state-directory>/trust.json`
//! ([`TrustStore`]) with fs storage, and one document in the bucket ([`SharedStore`]) with
//! S3, where every unit must apply the same trust; [`TrustLocation`] is whichever applies,
//! and every change (`aar trust …`, restore) goes through it, as pure edits ([`edit`]).
//! The daemon answers "who is this?" on every request through [`TrustCache`], which
//! notices changes without a restart.

mod audit;
mod cache;
mod cert;
mod edit;
mod error;
mod file;
mod fingerprint;
mod location;
mod shared;
mod store;
mod time;
mod usable;

use std::fmt;

use serde::{Deserialize, Serialize};

pub use audit::{audit, Expiry, EXPIRY_NOTICE};
pub use cache::{Access, TrustCache};
pub(crate) use cert::to_pem;
pub use cert::{parse_certificate, parse_certificate_from, CertificateInfo};
pub use edit::Merged;
pub use error::TrustError;
pub(crate) use file::preemptive_target;
pub use file::{Found, RevokedCert, TrustFile, TrustedCert};
pub use fingerprint::{Fingerprint, InvalidFingerprint};
pub use location::TrustLocation;
pub use shared::{Fetched, SharedDocument, SharedError, SharedStore, Written, IMPORTED_SUFFIX};
pub use store::{AddOutcome, TrustStore};
pub(crate) use time::{format as format_unix_time, now as unix_now};
pub use usable::{check_trustable, unusable, Unusable};

/// [`Fingerprint::of`] as text, for what passes it on as text (the server's own identity,
/// the Python extension).
pub fn fingerprint(der: &[u8]) -> String {
    Fingerprint::of(der).to_string()
}

/// What a trusted certificate may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read and write: uploads, publishes and deletes applications.
    Publisher,
    /// Read only: lists applications and downloads images.
    Client,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Publisher => "publisher",
            Role::Client => "client",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_lowercase_sha256_hex() {
        assert_eq!(
            fingerprint(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let der = rcgen::generate_simple_self_signed(vec!["ams".into()])
            .unwrap()
            .cert
            .der()
            .to_vec();
        let fp = fingerprint(&der);
        assert_eq!(fp.len(), 64);
        assert!(fp.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
    }

    #[test]
    fn role_serializes_and_displays_lowercase() {
        assert_eq!(
            serde_json::to_string(&Role::Publisher).unwrap(),
            "\"publisher\""
        );
        assert_eq!(serde_json::to_string(&Role::Client).unwrap(), "\"client\"");
        assert_eq!(
            serde_json::from_str::<Role>("\"client\"").unwrap(),
            Role::Client
        );
        assert!(serde_json::from_str::<Role>("\"admin\"").is_err());
        assert_eq!(Role::Publisher.to_string(), "publisher");
        assert_eq!(Role::Client.to_string(), "client");
    }
}
