//! Whether a certificate can work at all: one the TLS stack cannot verify fails every
//! handshake, and one outside its validity is refused at every request, so trusting either
//! only hides the problem until AMS reports it from the other end.

use std::fmt;

use rustls::pki_types::{alg_id, CertificateDer};
use x509_parser::certificate::X509Certificate;
use x509_parser::public_key::PublicKey;

use super::{time, TrustError};

/// RSA sizes ring verifies (`RSA_*_2048_8192_*`).
const RSA_BITS: std::ops::RangeInclusive<usize> = 2048..=8192;

/// How far in the future a certificate's validity may start and still be trusted: clocks of
/// the machine that issued it and of this one may differ a little, and AMS makes its
/// certificate right before it relates.
const CLOCK_SKEW: i64 = 5 * 60;

/// Why every handshake with a certificate would fail.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Unusable {
    /// X.509 version (1 or 2): webpki, and so rustls, parses version 3 only.
    Version(u32),
    /// An RSA key outside the sizes the TLS stack verifies.
    RsaKeySize(usize),
    /// A key type or curve the TLS stack has no verifier for, described.
    KeyType(String),
    /// Anything else webpki refuses, in its words.
    Refused(String),
}

impl Unusable {
    /// What to do instead.
    pub fn fix(&self) -> &'static str {
        match self {
            Unusable::Version(_) => {
                "issue a version 3 certificate (`openssl req -x509` makes one) and trust that one"
            }
            Unusable::RsaKeySize(_) => {
                "issue a certificate with an RSA key of 2048 bits or more, or an ECDSA P-256 \
                 key, and trust that one"
            }
            Unusable::KeyType(_) => {
                "issue a certificate with an ECDSA P-256 or P-384, Ed25519 or RSA (2048 bits or \
                 more) key and trust that one"
            }
            Unusable::Refused(_) => "issue a new certificate and trust that one",
        }
    }
}

/// Reads after "the certificate …".
impl fmt::Display for Unusable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unusable::Version(version) => write!(
                f,
                "is X.509 version {version}, and TLS clients can only authenticate with \
                 version 3 certificates"
            ),
            Unusable::RsaKeySize(bits) => write!(
                f,
                "has a {bits}-bit RSA key, and the registry verifies RSA keys of 2048 to 8192 \
                 bits only"
            ),
            Unusable::KeyType(key) => write!(f, "has {key}, which the registry cannot verify"),
            Unusable::Refused(detail) => {
                write!(f, "is refused by the registry's TLS library ({detail})")
            }
        }
    }
}

/// Why a client presenting this certificate (DER) could never complete a handshake, or
/// `None` when it can. Uses the parser and the signature algorithms the handshake uses.
pub fn unusable(der: &[u8]) -> Option<Unusable> {
    let parsed = x509_parser::parse_x509_certificate(der)
        .ok()
        .map(|(_, c)| c);
    let cert = CertificateDer::from(der);
    let end_entity = match webpki::EndEntityCert::try_from(&cert) {
        Ok(end_entity) => end_entity,
        Err(webpki::Error::UnsupportedCertVersion) => {
            let version = parsed.as_ref().map_or(1, |c| c.version().0 + 1);
            return Some(Unusable::Version(version));
        }
        Err(e) => return Some(Unusable::Refused(format!("{e:?}"))),
    };
    let spki = end_entity.subject_public_key_info();
    let Some(algorithm) = algorithm_identifier(spki.as_ref()) else {
        return Some(Unusable::Refused("malformed public key".to_owned()));
    };
    let verifiable = crate::tls::provider()
        .signature_verification_algorithms
        .all
        .iter()
        .any(|alg| alg.public_key_alg_id().as_ref() == algorithm);
    if !verifiable {
        return Some(Unusable::KeyType(
            parsed
                .as_ref()
                .map_or_else(|| "an unknown key type".to_owned(), describe_key),
        ));
    }
    if algorithm == alg_id::RSA_ENCRYPTION.as_ref() {
        if let Some(bits) = parsed.as_ref().and_then(rsa_bits) {
            if !RSA_BITS.contains(&bits) {
                return Some(Unusable::RsaKeySize(bits));
            }
        }
    }
    None
}

/// Refuses what would never work or is outside its validity at `now` (Unix time); `source`
/// names the input in the error.
pub fn check_trustable(der: &[u8], source: &str, now: i64) -> Result<(), TrustError> {
    if let Some(reason) = unusable(der) {
        return Err(TrustError::Unusable {
            input: source.to_owned(),
            reason,
        });
    }
    // The caller parsed it already; a failure here cannot happen, and is not ours to report.
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return Ok(());
    };
    let validity = cert.validity();
    let not_after = validity.not_after.timestamp();
    if now > not_after {
        return Err(TrustError::Expired {
            input: source.to_owned(),
            not_after: time::format(not_after),
        });
    }
    let not_before = validity.not_before.timestamp();
    if not_before > now.saturating_add(CLOCK_SKEW) {
        return Err(TrustError::NotYetValid {
            input: source.to_owned(),
            not_before: time::format(not_before),
        });
    }
    Ok(())
}

/// The contents of the AlgorithmIdentifier of a DER SubjectPublicKeyInfo, the form webpki's
/// `public_key_alg_id` uses.
fn algorithm_identifier(spki: &[u8]) -> Option<&[u8]> {
    let (tag, outer, _) = tlv(spki)?;
    if tag != 0x30 {
        return None;
    }
    let (tag, algorithm, _) = tlv(outer)?;
    (tag == 0x30).then_some(algorithm)
}

/// One DER tag-length-value: (tag, value, rest).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first & 0x80 == 0 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > std::mem::size_of::<usize>() || rest.len() < count {
            return None;
        }
        let len = rest[..count]
            .iter()
            .fold(0usize, |len, &b| (len << 8) | usize::from(b));
        (len, &rest[count..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// Exact modulus size; x509-parser's `key_size` rounds to whole bytes.
fn rsa_bits(cert: &X509Certificate<'_>) -> Option<usize> {
    let Ok(PublicKey::RSA(rsa)) = cert.public_key().parsed() else {
        return None;
    };
    let modulus = rsa.modulus;
    let start = modulus.iter().position(|&b| b != 0)?;
    let significant = &modulus[start..];
    Some(significant.len() * 8 - significant[0].leading_zeros() as usize)
}

fn describe_key(cert: &X509Certificate<'_>) -> String {
    let algorithm = &cert.public_key().algorithm;
    let oid = algorithm.algorithm.to_id_string();
    let curve = algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string());
    match (oid.as_str(), curve.as_deref()) {
        ("1.2.840.10045.2.1", Some(curve)) => {
            let name = match curve {
                "1.3.132.0.35" => "P-521",
                "1.3.132.0.10" => "secp256k1",
                "1.3.132.0.33" => "P-224",
                "1.2.840.10045.3.1.1" => "P-192",
                other => other,
            };
            format!("an ECDSA key on curve {name}")
        }
        ("1.2.840.10040.4.1", _) => "a DSA key".to_owned(),
        ("1.3.101.113", _) => "an Ed448 key".to_owned(),
        ("1.2.840.113549.1.1.10", _) => "an RSASSA-PSS-only key".to_owned(),
        (other, _) => format!("a key of type {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_with(alg: &'static rcgen::SignatureAlgorithm) -> Vec<u8> {
        let key = rcgen::KeyPair::generate_for(alg).unwrap();
        let params = rcgen::CertificateParams::new(vec!["ams".to_owned()]).unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    fn valid_between(not_before: i64, not_after: i64) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["ams".to_owned()]).unwrap();
        let at = |unix: i64| {
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(u64::try_from(unix).unwrap())
        };
        params.not_before = at(not_before).into();
        params.not_after = at(not_after).into();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn what_rcgen_makes_is_usable() {
        for alg in [
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
            &rcgen::PKCS_ED25519,
        ] {
            assert_eq!(unusable(&cert_with(alg)), None, "{alg:?}");
        }
    }

    #[test]
    fn garbage_is_refused_with_webpki_words() {
        assert!(matches!(
            unusable(b"\x30\x03\x02\x01\x00"),
            Some(Unusable::Refused(_))
        ));
    }

    #[test]
    fn reads_algorithm_identifiers() {
        // SEQUENCE { SEQUENCE { OID 1.2.3 }, BIT STRING }
        let spki = [
            0x30, 0x09, 0x30, 0x04, 0x06, 0x02, 0x2a, 0x03, 0x03, 0x01, 0x00,
        ];
        assert_eq!(
            algorithm_identifier(&spki),
            Some(&[0x06, 0x02, 0x2a, 0x03][..])
        );
        assert_eq!(algorithm_identifier(&spki[..5]), None);
        assert_eq!(tlv(&[0x30, 0x81]), None);
        assert_eq!(
            tlv(&[0x04, 0x81, 0x01, 0xff, 0x00]),
            Some((0x04, &[0xff][..], &[0x00][..]))
        );
    }

    #[test]
    fn validity_is_checked_with_some_slack_for_clocks() {
        let now = 1_800_000_000;
        let ok = valid_between(now - 100, now + 100);
        check_trustable(&ok, "ams.crt", now).unwrap();
        // Valid through its last second.
        check_trustable(&ok, "ams.crt", now + 100).unwrap();

        let err = check_trustable(&ok, "ams.crt", now + 101).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the certificate from ams.crt expired on 2027-01-15T08:01:40Z; an expired \
             certificate is refused at every request: issue a new certificate and trust that one"
        );

        let early = valid_between(now + 3600, now + 7200);
        let err = check_trustable(&early, "standard input", now).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the certificate from standard input is not valid before 2027-01-15T09:00:00Z; \
             trust it once it is, or check the clocks of this machine and of the one that \
             issued it"
        );
        let skewed = valid_between(now + 60, now + 7200);
        check_trustable(&skewed, "ams.crt", now).unwrap();
    }
}
