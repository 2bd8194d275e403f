//! The changes `aar trust …` makes, as pure edits of a [`TrustFile`]: the same rules
//! whether the store is a local file ([`super::TrustStore`]) or an object in the bucket
//! ([`super::SharedStore`]). Each answers what it did and whether the file changed, so the
//! caller writes only what changed.

use super::cert::{now_rfc3339, to_pem, CertificateInfo};
use super::file::{normalize, preemptive_target};
use super::{AddOutcome, Found, RevokedCert, Role, TrustError, TrustFile, TrustedCert};

/// Trusts the certificate `info` describes (DER `der`) in `role`.
pub(super) fn add(
    file: &mut TrustFile,
    info: &CertificateInfo,
    der: &[u8],
    role: Role,
    origin: &str,
) -> Result<(AddOutcome, bool), TrustError> {
    if let Some(revoked) = file.revoked_entry(&info.fingerprint) {
        return Err(TrustError::Revoked {
            fingerprint: info.fingerprint,
            revoked_at: revoked.revoked_at.clone(),
        });
    }
    if let Some(existing) = file
        .trusted
        .iter_mut()
        .find(|c| c.fingerprint == info.fingerprint)
    {
        if existing.role == role {
            return Ok((AddOutcome::Unchanged, false));
        }
        let from = existing.role;
        existing.role = role;
        existing.origin = origin.to_owned();
        return Ok((AddOutcome::RoleChanged { from, to: role }, true));
    }
    file.trusted.push(TrustedCert {
        fingerprint: info.fingerprint,
        role,
        subject: info.subject.clone(),
        not_after: info.not_after.clone(),
        origin: origin.to_owned(),
        added_at: now_rfc3339(),
        certificate: to_pem(der),
    });
    Ok((AddOutcome::Added, true))
}

/// Stops trusting the certificate `prefix` names; it can be added again.
pub(super) fn remove(
    file: &mut TrustFile,
    prefix: &str,
) -> Result<(TrustedCert, bool), TrustError> {
    let fingerprint = match file.find(prefix)? {
        Found::Trusted(cert) => cert.fingerprint,
        Found::Revoked(revoked) => {
            return Err(TrustError::AlreadyRevoked {
                fingerprint: revoked.fingerprint,
                revoked_at: revoked.revoked_at.clone(),
            })
        }
        Found::Nothing => {
            return Err(TrustError::UnknownFingerprint {
                prefix: normalize(prefix)?,
                hint: "see `aar trust list`",
            })
        }
    };
    let index = file
        .trusted
        .iter()
        .position(|c| c.fingerprint == fingerprint)
        .expect("found above");
    Ok((file.trusted.remove(index), true))
}

/// Revokes the certificate `prefix` names, or the full fingerprint of one that is not
/// trusted; an already revoked one keeps its record and date.
pub(super) fn revoke(
    file: &mut TrustFile,
    prefix: &str,
) -> Result<(RevokedCert, bool), TrustError> {
    let (fingerprint, subject) = match file.find(prefix)? {
        Found::Trusted(cert) => (cert.fingerprint, cert.subject.clone()),
        Found::Revoked(revoked) => return Ok((revoked.clone(), false)),
        Found::Nothing => (preemptive_target(prefix)?, String::new()),
    };
    file.trusted.retain(|c| c.fingerprint != fingerprint);
    // A hand-edited file may list it under both; keep the original revocation date.
    if let Some(existing) = file.revoked_entry(&fingerprint) {
        return Ok((existing.clone(), true));
    }
    let record = RevokedCert {
        fingerprint,
        subject,
        revoked_at: now_rfc3339(),
    };
    file.revoked.push(record.clone());
    Ok((record, true))
}

/// What [`merge`] brought in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Merged {
    pub trusted: usize,
    pub revoked: usize,
}

/// Brings `from` into `into`: every revocation (which also ends any trust `into` gave
/// the certificate), and every trusted certificate `into` neither trusts nor revokes.
/// Where both trust a certificate, `into` keeps its entry and role: it is the store in
/// use. Revocations win, so merging the stores of several units never lets a
/// certificate back in that one of them revoked.
pub(super) fn merge(into: &mut TrustFile, from: TrustFile) -> Merged {
    let mut merged = Merged::default();
    for revoked in from.revoked {
        if into.revoked_entry(&revoked.fingerprint).is_some() {
            continue;
        }
        into.trusted
            .retain(|c| c.fingerprint != revoked.fingerprint);
        into.revoked.push(revoked);
        merged.revoked += 1;
    }
    for cert in from.trusted {
        let known = into.revoked_entry(&cert.fingerprint).is_some()
            || into
                .trusted
                .iter()
                .any(|c| c.fingerprint == cert.fingerprint);
        if !known {
            into.trusted.push(cert);
            merged.trusted += 1;
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::Fingerprint;

    fn trusted(fp: char, role: Role) -> TrustedCert {
        TrustedCert {
            fingerprint: fp.to_string().repeat(64).parse().unwrap(),
            role,
            subject: format!("{fp}"),
            not_after: String::new(),
            origin: "test".into(),
            added_at: String::new(),
            certificate: String::new(),
        }
    }

    fn revoked(fp: char) -> RevokedCert {
        RevokedCert {
            fingerprint: fp.to_string().repeat(64).parse().unwrap(),
            subject: String::new(),
            revoked_at: "2026-01-01T00:00:00Z".into(),
        }
    }

    fn fp(c: char) -> Fingerprint {
        c.to_string().repeat(64).parse().unwrap()
    }

    #[test]
    fn merging_keeps_every_revocation_and_the_store_in_use_wins_on_roles() {
        let mut into = TrustFile {
            trusted: vec![trusted('a', Role::Publisher), trusted('b', Role::Client)],
            revoked: vec![revoked('c')],
        };
        let from = TrustFile {
            // `a` in another role, `c` revoked here, `d` new; `b` revoked there.
            trusted: vec![
                trusted('a', Role::Client),
                trusted('c', Role::Client),
                trusted('d', Role::Client),
            ],
            revoked: vec![revoked('b'), revoked('c')],
        };
        let merged = merge(&mut into, from);
        assert_eq!(
            merged,
            Merged {
                trusted: 1,
                revoked: 1
            }
        );
        let roles: Vec<_> = into
            .trusted
            .iter()
            .map(|c| (c.fingerprint, c.role))
            .collect();
        assert_eq!(
            roles,
            vec![(fp('a'), Role::Publisher), (fp('d'), Role::Client)]
        );
        let gone: Vec<_> = into.revoked.iter().map(|r| r.fingerprint).collect();
        assert_eq!(gone, vec![fp('c'), fp('b')]);
    }

    #[test]
    fn merging_twice_changes_nothing_the_second_time() {
        let mut into = TrustFile::default();
        let from = TrustFile {
            trusted: vec![trusted('a', Role::Client)],
            revoked: vec![revoked('b')],
        };
        merge(&mut into, from.clone());
        assert_eq!(merge(&mut into, from), Merged::default());
    }
}
