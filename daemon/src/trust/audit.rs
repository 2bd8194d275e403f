//! What an operator should hear about trusted certificates before their holders are locked
//! out: expiry within [`EXPIRY_NOTICE`], expiry itself, and certificates (trusted by an
//! earlier version) that can never complete a handshake.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::{time, unusable, TrustFile, TrustedCert};

/// How long before its end a certificate's expiry is announced: long enough to issue a new
/// one and relate it through a change window.
pub const EXPIRY_NOTICE: i64 = 30 * time::DAY;

/// Where a certificate stands against the end of its validity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Expiry {
    Valid,
    /// Within [`EXPIRY_NOTICE`]; whole days left.
    Soon {
        days: i64,
    },
    Expired,
    /// The store's date is not in the form it writes (a hand-written entry).
    Unknown,
}

impl Expiry {
    pub fn of(not_after: &str, now: i64) -> Expiry {
        match time::parse(not_after) {
            None => Expiry::Unknown,
            Some(end) if now > end => Expiry::Expired,
            Some(end) if end - now <= EXPIRY_NOTICE => Expiry::Soon {
                days: (end - now) / time::DAY,
            },
            Some(_) => Expiry::Valid,
        }
    }

    /// The machine-readable name `aar trust list` gives it.
    pub fn as_str(self) -> &'static str {
        match self {
            Expiry::Valid => "valid",
            Expiry::Soon { .. } => "soon",
            Expiry::Expired => "expired",
            Expiry::Unknown => "unknown",
        }
    }

    /// "in 12 days", "expired", …: what a table shows after the date; `None` when there is
    /// nothing to say.
    pub fn note(self) -> Option<String> {
        match self {
            Expiry::Valid | Expiry::Unknown => None,
            Expiry::Soon { days: 0 } => Some("within a day".to_owned()),
            Expiry::Soon { days: 1 } => Some("in 1 day".to_owned()),
            Expiry::Soon { days } => Some(format!("in {days} days")),
            Expiry::Expired => Some("expired".to_owned()),
        }
    }
}

/// One warning per trusted certificate that needs the operator, as a log line. Revoked
/// entries are left out: they are refused whatever their dates.
pub fn audit(file: &TrustFile, now: i64) -> Vec<String> {
    let mut warnings = Vec::new();
    for cert in &file.trusted {
        if file
            .revoked
            .iter()
            .any(|r| r.fingerprint == cert.fingerprint)
        {
            continue;
        }
        let who = format!(
            "trusted certificate {} ({})",
            cert.fingerprint,
            subject(cert)
        );
        if let Some(reason) = CertificateDer::from_pem_slice(cert.certificate.as_bytes())
            .ok()
            .and_then(|der| unusable(&der))
        {
            warnings.push(format!(
                "{who} can never connect: it {reason}; {}, then remove this one \
                 (`aar trust remove {}`)",
                reason.fix(),
                cert.fingerprint
            ));
            continue;
        }
        match Expiry::of(&cert.not_after, now) {
            Expiry::Soon { .. } => warnings.push(format!(
                "{who} expires on {}, {}: issue a new certificate for this AMS and trust it \
                 before then",
                cert.not_after,
                Expiry::of(&cert.not_after, now).note().unwrap_or_default()
            )),
            Expiry::Expired => warnings.push(format!(
                "{who} expired on {}; its requests are refused: issue a new certificate for \
                 this AMS and trust it, then remove this one (`aar trust remove {}`)",
                cert.not_after, cert.fingerprint
            )),
            Expiry::Valid | Expiry::Unknown => {}
        }
    }
    warnings
}

/// Subjects come from certificates: no control character reaches the log.
fn subject(cert: &TrustedCert) -> String {
    if cert.subject.is_empty() {
        return "no subject".to_owned();
    }
    cert.subject
        .chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::{Fingerprint, RevokedCert, Role};

    const NOW: i64 = 1_800_000_000; // 2027-01-15T08:00:00Z

    fn entry(not_after: &str, certificate: String) -> TrustedCert {
        TrustedCert {
            fingerprint: Fingerprint::of(certificate.as_bytes()),
            role: Role::Client,
            subject: "ams\u{1b}[31m".to_owned(),
            not_after: not_after.to_owned(),
            origin: "cli".to_owned(),
            added_at: "2025-01-01T00:00:00Z".to_owned(),
            certificate,
        }
    }

    #[test]
    fn expiry_is_announced_within_30_days() {
        let at = |offset: i64| time::format(NOW + offset);
        assert_eq!(Expiry::of(&at(31 * time::DAY), NOW), Expiry::Valid);
        assert_eq!(
            Expiry::of(&at(30 * time::DAY), NOW),
            Expiry::Soon { days: 30 }
        );
        assert_eq!(
            Expiry::of(&at(10 * time::DAY + 600), NOW),
            Expiry::Soon { days: 10 }
        );
        assert_eq!(Expiry::of(&at(0), NOW), Expiry::Soon { days: 0 });
        assert_eq!(Expiry::of(&at(-1), NOW), Expiry::Expired);
        assert_eq!(Expiry::of("", NOW), Expiry::Unknown);
        assert_eq!(Expiry::Soon { days: 0 }.note().unwrap(), "within a day");
        assert_eq!(Expiry::Soon { days: 1 }.note().unwrap(), "in 1 day");
        assert_eq!(Expiry::Expired.as_str(), "expired");
    }

    #[test]
    fn audit_names_each_certificate_that_needs_the_operator() {
        let pem = rcgen::generate_simple_self_signed(vec!["ams".into()])
            .unwrap()
            .cert
            .pem();
        let soon = entry(&time::format(NOW + 3 * time::DAY + 5), pem.clone());
        let mut gone = entry(&time::format(NOW - time::DAY), String::new());
        gone.fingerprint = "b".repeat(64).parse().unwrap();
        let mut fine = entry("2030-01-01T00:00:00Z", String::new());
        fine.fingerprint = "c".repeat(64).parse().unwrap();
        let mut revoked = entry(&time::format(NOW - time::DAY), String::new());
        revoked.fingerprint = "d".repeat(64).parse().unwrap();
        let file = TrustFile {
            trusted: vec![soon.clone(), gone, fine, revoked],
            revoked: vec![RevokedCert {
                fingerprint: "d".repeat(64).parse().unwrap(),
                subject: String::new(),
                revoked_at: "2025-01-01T00:00:00Z".to_owned(),
            }],
        };
        let warnings = audit(&file, NOW);
        assert_eq!(
            warnings,
            [
                format!(
                    "trusted certificate {} (ams\u{fffd}[31m) expires on 2027-01-18T08:00:05Z, \
                     in 3 days: issue a new certificate for this AMS and trust it before then",
                    soon.fingerprint
                ),
                format!(
                    "trusted certificate {b} (ams\u{fffd}[31m) expired on 2027-01-14T08:00:00Z; \
                     its requests are refused: issue a new certificate for this AMS and trust \
                     it, then remove this one (`aar trust remove {b}`)",
                    b = "b".repeat(64)
                ),
            ]
        );
    }
}
