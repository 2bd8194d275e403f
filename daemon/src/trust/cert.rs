use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::CertificateDer;
use x509_parser::certificate::X509Certificate;
use x509_parser::error::X509Error;
use x509_parser::nom::{self, error::ErrorKind};

use super::{Fingerprint, TrustError};

/// What the trust store records about a certificate besides its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    pub fingerprint: Fingerprint,
    /// The subject's common name, or the whole subject when it has none.
    pub subject: String,
    /// End of validity, RFC 3339 in UTC.
    pub not_after: String,
}

/// Parses exactly one certificate, PEM (`-----BEGIN CERTIFICATE-----`) or raw DER, and returns
/// it with its DER encoding. Errors refer to the input as "the input".
pub fn parse_certificate(input: &[u8]) -> Result<(CertificateInfo, Vec<u8>), TrustError> {
    parse_certificate_from(input, "the input")
}

/// Like [`parse_certificate`], with `source` (a path, "standard input") named in errors.
pub fn parse_certificate_from(
    input: &[u8],
    source: &str,
) -> Result<(CertificateInfo, Vec<u8>), TrustError> {
    let source = source.to_owned();
    let der = if contains(input, b"-----BEGIN ") {
        der_from_pem(input, source.clone())?
    } else if input.first() == Some(&0x30) {
        input.to_vec()
    } else {
        let found = input
            .iter()
            .all(u8::is_ascii_whitespace)
            .then(|| "nothing: the input is empty".to_owned());
        return Err(TrustError::NoCertificate {
            input: source,
            found,
        });
    };
    let info = inspect_der(&der, &source)?;
    Ok((info, der))
}

fn der_from_pem(input: &[u8], source: String) -> Result<Vec<u8>, TrustError> {
    // Labels are checked before any block is decoded so that nothing derived from a key's
    // contents can end up in an error message.
    let labels = pem_labels(input);
    let certificates = labels.iter().filter(|l| *l == "CERTIFICATE").count();
    if labels.iter().any(|l| l.contains("PRIVATE KEY")) {
        return Err(if certificates > 0 {
            TrustError::PrivateKeyWithCertificate { input: source }
        } else {
            TrustError::PrivateKey { input: source }
        });
    }
    match certificates {
        0 => Err(TrustError::NoCertificate {
            input: source,
            found: labels.first().map(|l| format!("-----BEGIN {l}-----")),
        }),
        1 => match CertificateDer::from_pem_slice(input) {
            Ok(der) => Ok(der.to_vec()),
            Err(e) => Err(TrustError::MalformedPem {
                input: source,
                detail: describe_pem_error(&e),
            }),
        },
        count => Err(TrustError::MultipleCertificates {
            input: source,
            count,
        }),
    }
}

fn pem_labels(input: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(input)
        .lines()
        .filter_map(|line| {
            line.trim()
                .strip_prefix("-----BEGIN ")?
                .strip_suffix("-----")
                .map(str::to_owned)
        })
        .collect()
}

fn inspect_der(der: &[u8], source: &str) -> Result<CertificateInfo, TrustError> {
    let cert = match x509_parser::parse_x509_certificate(der) {
        Ok((rest, cert)) => {
            if !rest.is_empty() {
                return Err(extra_after_certificate(rest, source));
            }
            cert
        }
        Err(_) if looks_like_private_key(der) => {
            return Err(TrustError::PrivateKey {
                input: source.to_owned(),
            });
        }
        Err(e) => {
            return Err(TrustError::NotX509 {
                input: source.to_owned(),
                detail: describe_x509_error(e),
            })
        }
    };
    Ok(CertificateInfo {
        fingerprint: Fingerprint::of(der),
        subject: subject(&cert),
        not_after: super::time::format_asn1(cert.validity().not_after),
    })
}

fn extra_after_certificate(mut rest: &[u8], source: &str) -> TrustError {
    let extra = rest.len();
    let mut count = 1;
    while let Ok((next, _)) = x509_parser::parse_x509_certificate(rest) {
        count += 1;
        rest = next;
    }
    if count > 1 {
        TrustError::MultipleCertificates {
            input: source.to_owned(),
            count,
        }
    } else {
        TrustError::TrailingData {
            input: source.to_owned(),
            extra,
        }
    }
}

/// The library's own texts are about its internals ("missing section end marker: [67, 69,
/// ...]"); operators need to know what is wrong with their file.
fn describe_pem_error(e: &pem::Error) -> String {
    match e {
        pem::Error::MissingSectionEnd { .. } => {
            "the -----END CERTIFICATE----- line is missing (is the file truncated?)".to_owned()
        }
        pem::Error::IllegalSectionStart { .. } => "a -----BEGIN line is malformed".to_owned(),
        pem::Error::Base64Decode(_) => {
            "the text between the BEGIN and END lines is not valid base64".to_owned()
        }
        pem::Error::NoItemsFound => {
            "the -----BEGIN CERTIFICATE----- line must start at the beginning of a line".to_owned()
        }
        other => other.to_string(),
    }
}

fn describe_x509_error(e: nom::Err<X509Error>) -> String {
    match e {
        nom::Err::Incomplete(_)
        | nom::Err::Error(X509Error::NomError(ErrorKind::Eof))
        | nom::Err::Failure(X509Error::NomError(ErrorKind::Eof)) => {
            "the data ends too early (is the file truncated?)".to_owned()
        }
        nom::Err::Error(e) | nom::Err::Failure(e) => e.to_string(),
    }
}

/// PKCS#1, PKCS#8 and SEC1 private keys are all a SEQUENCE whose first element is an INTEGER
/// (a version), whereas a certificate's first element is the to-be-signed SEQUENCE.
fn looks_like_private_key(der: &[u8]) -> bool {
    let Some((&0x30, rest)) = der.split_first() else {
        return false;
    };
    let Some((&len, rest)) = rest.split_first() else {
        return false;
    };
    let skip = if len & 0x80 == 0 {
        0
    } else {
        usize::from(len & 0x7f)
    };
    rest.get(skip) == Some(&0x02)
}

fn subject(cert: &X509Certificate<'_>) -> String {
    let subject = cert.subject();
    if let Some(cn) = subject
        .iter_common_name()
        .find_map(|cn| cn.as_str().ok())
        .filter(|cn| !cn.is_empty())
    {
        return cn.to_owned();
    }
    let full = subject.to_string();
    if full.is_empty() {
        "(empty subject)".to_owned()
    } else {
        full
    }
}

pub(crate) fn now_rfc3339() -> String {
    super::time::format(super::time::now())
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// PEM encoding of a DER certificate, 64 characters a line as RFC 7468 asks.
pub(crate) fn to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::fingerprint;

    fn self_signed() -> rcgen::CertifiedKey {
        rcgen::generate_simple_self_signed(vec!["ams".into()]).unwrap()
    }

    #[test]
    fn pem_and_der_give_the_same_certificate() {
        let ck = self_signed();
        let (from_pem, der_a) = parse_certificate(ck.cert.pem().as_bytes()).unwrap();
        let (from_der, der_b) = parse_certificate(ck.cert.der()).unwrap();
        assert_eq!(from_pem, from_der);
        assert_eq!(der_a, ck.cert.der().to_vec());
        assert_eq!(der_b, der_a);
        assert_eq!(from_pem.fingerprint, fingerprint(ck.cert.der()));
        assert_eq!(from_pem.subject, "rcgen self signed cert");
        // rcgen's default validity ends on 4096-01-01.
        assert_eq!(from_pem.not_after, "4096-01-01T00:00:00Z");
    }

    #[test]
    fn text_around_the_pem_block_is_ignored() {
        let ck = self_signed();
        let input = format!(
            "Certificate:\n  subject: ams\n{}\ntrailing notes\n",
            ck.cert.pem()
        );
        let (info, _) = parse_certificate(input.as_bytes()).unwrap();
        assert_eq!(info.fingerprint, fingerprint(ck.cert.der()));
    }

    #[test]
    fn subject_without_common_name_is_shown_whole() {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["ams".to_owned()]).unwrap();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, "Anbox");
        let cert = params.self_signed(&key).unwrap();
        let (info, _) = parse_certificate(cert.der()).unwrap();
        assert_eq!(info.subject, "O=Anbox");
    }

    #[test]
    fn round_trips_through_our_pem_encoder() {
        for _ in 0..3 {
            let ck = self_signed();
            let pem = to_pem(ck.cert.der());
            assert_eq!(pem, ck.cert.pem().replace("\r\n", "\n"));
            let (_, der) = parse_certificate(pem.as_bytes()).unwrap();
            assert_eq!(der, ck.cert.der().to_vec());
        }
        assert!(to_pem(b"a").contains("\nYQ==\n"));
        assert!(to_pem(b"ab").contains("\nYWI=\n"));
        assert!(to_pem(b"abc").contains("\nYWJj\n"));
    }

    #[test]
    fn two_certificates_are_refused() {
        let pem = format!("{}{}", self_signed().cert.pem(), self_signed().cert.pem());
        let err = parse_certificate_from(pem.as_bytes(), "certs.pem").unwrap_err();
        assert_eq!(
            err.to_string(),
            "certs.pem contains 2 certificates; trust them one at a time \
             (one file or one standard-input stream per certificate)"
        );

        let mut der = self_signed().cert.der().to_vec();
        der.extend_from_slice(self_signed().cert.der());
        let err = parse_certificate(&der).unwrap_err();
        assert!(err.to_string().contains("contains 2 certificates"), "{err}");
    }

    #[test]
    fn private_keys_are_refused_without_being_echoed() {
        let ck = self_signed();
        let key_pem = ck.key_pair.serialize_pem();
        let body: String = key_pem.lines().nth(1).unwrap().chars().take(20).collect();

        let err = parse_certificate_from(key_pem.as_bytes(), "ams.key").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("ams.key is a private key; pass the certificate"),
            "{msg}"
        );
        assert!(!msg.contains(&body));
        assert!(!format!("{err:?}").contains(&body));

        let err = parse_certificate(&ck.key_pair.serialize_der()).unwrap_err();
        assert!(
            err.to_string()
                .contains("is a private key; pass the certificate"),
            "{err}"
        );

        let both = format!("{}{}", ck.cert.pem(), key_pem);
        let err = parse_certificate(both.as_bytes()).unwrap_err();
        assert!(err
            .to_string()
            .contains("contains a private key next to the certificate"));
        assert!(!err.to_string().contains(&body));

        let rsa = "-----BEGIN RSA PRIVATE KEY-----\nMIIsecret\n-----END RSA PRIVATE KEY-----\n";
        let err = parse_certificate(rsa.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("is a private key"));
        assert!(!err.to_string().contains("MIIsecret"));
    }

    #[test]
    fn input_without_a_certificate_is_explained() {
        let err = parse_certificate_from(b"hello\n", "notes.txt").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no PEM certificate found in notes.txt: expected -----BEGIN CERTIFICATE-----"
        );

        let err = parse_certificate_from(b"  \n", "standard input").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no PEM certificate found in standard input: expected -----BEGIN CERTIFICATE----- \
             (found nothing: the input is empty)"
        );

        let crl = b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n";
        let err = parse_certificate(crl).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no PEM certificate found in the input: expected -----BEGIN CERTIFICATE----- \
             (found -----BEGIN X509 CRL-----)"
        );
    }

    #[test]
    fn broken_pem_and_der_are_explained() {
        let broken = b"-----BEGIN CERTIFICATE-----\n!!!not base64!!!\n-----END CERTIFICATE-----\n";
        let err = parse_certificate(broken).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the input has a malformed PEM block: "),
            "{err}"
        );

        let unterminated = b"-----BEGIN CERTIFICATE-----\nMIIB\n";
        let err = parse_certificate(unterminated).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the input has a malformed PEM block: the -----END CERTIFICATE----- line is missing \
             (is the file truncated?); export the certificate again in PEM or DER form"
        );

        let der = self_signed().cert.der().to_vec();
        let err = parse_certificate(&der[..der.len() / 2]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the input is not an X.509 certificate: the data ends too early (is the file truncated?)"
        );

        let not_x509 = b"-----BEGIN CERTIFICATE-----\nMAMwAQA=\n-----END CERTIFICATE-----\n";
        let err = parse_certificate(not_x509).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the input is not an X.509 certificate: "),
            "{err}"
        );

        let err = parse_certificate(&[0x30, 0x03, 0x30, 0x01, 0x00]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("the input is not an X.509 certificate: "),
            "{err}"
        );

        let mut der = self_signed().cert.der().to_vec();
        der.extend_from_slice(b"junk");
        let err = parse_certificate(&der).unwrap_err();
        assert_eq!(
            err.to_string(),
            "the input has 4 bytes of trailing data after the certificate; \
             pass exactly one DER certificate"
        );
    }
}
