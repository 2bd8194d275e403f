//! CloudFront signed URLs with a canned policy.
//!
//! A canned-policy URL is `<url>?Expires=<epoch>&Signature=<sig>&Key-Pair-Id=<id>`, where
//! `<sig>` is the RSA-SHA1 PKCS#1 v1.5 signature of the exact policy text
//! `{"Statement":[{"Resource":"<url>","Condition":{"DateLessThan":{"AWS:EpochTime":<epoch>}}}]}`
//! in CloudFront's URL-safe base64 (`+`→`-`, `=`→`_`, `/`→`~`). CloudFront recomputes the
//! policy from the URL, so the text must match byte for byte: no spaces, this key order.
//!
//! The key is parsed once, at `aar config check` and at start, so a bad key is reported
//! before the first download rather than on it.

use crate::config::{CloudFrontConfig, Secret};
use base64::Engine as _;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::DecodePrivateKey;
use rsa::signature::{SignatureEncoding, Signer};
use rsa::traits::PublicKeyParts;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Why a CloudFront configuration cannot sign. Messages never quote the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CloudFrontError {
    #[error(
        "storage.s3.cloudfront.private-key is not a readable RSA private key (value not shown): \
         {0}; give the unencrypted PEM private key of the CloudFront key pair, in PKCS#1 or \
         PKCS#8 form"
    )]
    BadKey(String),
    #[error(
        "storage.s3.cloudfront.private-key is an EC key; CloudFront signed URLs with a canned \
         policy are signed with an RSA key pair (value not shown)"
    )]
    NotRsa,
    #[error(
        "storage.s3.cloudfront.private-key is a {0}-bit RSA key; CloudFront key pairs are \
         2048-bit RSA keys (value not shown)"
    )]
    KeySize(usize),
    #[error("storage.s3.cloudfront.keypair-id must not be empty: give the ID of the CloudFront public key, e.g. K2JCJMDEHXQW5F")]
    MissingKeypairId,
    #[error("storage.s3.cloudfront.duration must be longer than zero, e.g. 1m")]
    ZeroDuration,
}

/// Signs CloudFront URLs for one distribution with one key pair.
pub struct CloudFrontSigner {
    prefix: String,
    keypair_id: String,
    duration: Duration,
    key: rsa::pkcs1v15::SigningKey<sha1::Sha1>,
}

impl std::fmt::Debug for CloudFrontSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudFrontSigner")
            .field("prefix", &self.prefix)
            .field("keypair_id", &self.keypair_id)
            .field("duration", &self.duration)
            .finish_non_exhaustive()
    }
}

/// Reads a PEM RSA private key, PKCS#1 or PKCS#8.
pub fn parse_private_key(pem: &Secret) -> Result<rsa::PrivateKey, CloudFrontError> {
    let text = pem.expose().trim();
    if text.contains("BEGIN EC PRIVATE KEY") {
        return Err(CloudFrontError::NotRsa);
    }
    let key = if text.contains("BEGIN RSA PRIVATE KEY") {
        rsa::PrivateKey::from_pkcs1_pem(text).map_err(|e| CloudFrontError::BadKey(e.to_string()))
    } else {
        rsa::PrivateKey::from_pkcs8_pem(text).map_err(|e| CloudFrontError::BadKey(e.to_string()))
    }?;
    let bits = key.n().bit_width() as usize;
    if !(2048..=4096).contains(&bits) {
        return Err(CloudFrontError::KeySize(bits));
    }
    Ok(key)
}

/// Everything about a CloudFront section that can be known without the network: used by
/// `aar config check` and at start.
pub fn check(config: &CloudFrontConfig) -> Result<(), CloudFrontError> {
    CloudFrontSigner::new(config).map(|_| ())
}

/// CloudFront's URL-safe variant of standard base64.
pub fn url_safe_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD
        .encode(bytes)
        .chars()
        .map(|c| match c {
            '+' => '-',
            '=' => '_',
            '/' => '~',
            c => c,
        })
        .collect()
}

/// The canned policy CloudFront rebuilds from a signed URL, byte for byte.
pub fn canned_policy(resource: &str, expires: u64) -> String {
    format!(
        r#"{{"Statement":[{{"Resource":"{resource}","Condition":{{"DateLessThan":{{"AWS:EpochTime":{expires}}}}}}}]}}"#
    )
}

impl CloudFrontSigner {
    pub fn new(config: &CloudFrontConfig) -> Result<Self, CloudFrontError> {
        if config.keypair_id.trim().is_empty() {
            return Err(CloudFrontError::MissingKeypairId);
        }
        if config.duration.is_zero() {
            return Err(CloudFrontError::ZeroDuration);
        }
        let key = parse_private_key(&config.private_key)?;
        Ok(CloudFrontSigner {
            prefix: config.url_prefix(),
            keypair_id: config.keypair_id.trim().to_owned(),
            duration: config.duration,
            key: rsa::pkcs1v15::SigningKey::new(key),
        })
    }

    /// How long a signed URL stays valid.
    pub fn duration(&self) -> Duration {
        self.duration
    }

    /// The URL of an object of the distribution's origin (the bucket), unsigned. Object
    /// keys are made of `[a-z0-9/]` only (see the S3 key layout), so they need no escaping.
    pub fn resource(&self, key: &str) -> String {
        format!("{}/{}", self.prefix, key)
    }

    /// `Expires` for a URL signed at `now`: `now + duration`, rounded up to the second.
    pub fn expires_at(&self, now: SystemTime) -> u64 {
        let end = now.duration_since(UNIX_EPOCH).unwrap_or_default() + self.duration;
        end.as_secs() + u64::from(end.subsec_nanos() > 0)
    }

    /// The signed URL of `key`, valid until `expires` (seconds since the epoch).
    pub fn sign(&self, key: &str, expires: u64) -> String {
        let resource = self.resource(key);
        let policy = canned_policy(&resource, expires);
        let signature = self.key.sign(policy.as_bytes()).to_vec();
        format!(
            "{resource}?Expires={expires}&Signature={}&Key-Pair-Id={}",
            url_safe_base64(&signature),
            self.keypair_id
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_is_exact() {
        assert_eq!(
            canned_policy(
                "https://d111111abcdef8.cloudfront.net/blobs/sha256/ab",
                1357034400
            ),
            r#"{"Statement":[{"Resource":"https://d111111abcdef8.cloudfront.net/blobs/sha256/ab","Condition":{"DateLessThan":{"AWS:EpochTime":1357034400}}}]}"#
        );
    }

    #[test]
    fn base64_is_cloudfront_url_safe() {
        // 0xfb 0xff 0xbf encodes to "+/+/" in standard base64; one byte needs "==".
        assert_eq!(url_safe_base64(&[0xfb, 0xff, 0xbf]), "-~-~");
        assert_eq!(url_safe_base64(&[0xff]), "~w__");
    }

    #[test]
    fn expires_rounds_up_to_the_second() {
        let config = CloudFrontConfig {
            base_url: "d111111abcdef8.cloudfront.net".into(),
            private_key: Secret::new(""),
            keypair_id: "K1".into(),
            duration: Duration::from_secs(60),
        };
        let err = CloudFrontSigner::new(&config).unwrap_err();
        assert!(matches!(err, CloudFrontError::BadKey(_)), "{err}");
        let zero = CloudFrontConfig {
            duration: Duration::ZERO,
            ..config.clone()
        };
        assert_eq!(
            CloudFrontSigner::new(&zero).unwrap_err(),
            CloudFrontError::ZeroDuration
        );
        let no_id = CloudFrontConfig {
            keypair_id: " ".into(),
            ..config
        };
        assert_eq!(
            CloudFrontSigner::new(&no_id).unwrap_err(),
            CloudFrontError::MissingKeypairId
        );
    }

    #[test]
    fn bad_keys_are_named_without_their_value() {
        let garbage = Secret::new(
            "-----BEGIN RSA PRIVATE KEY-----\nc2VjcmV0c2VjcmV0\n-----END RSA PRIVATE KEY-----\n",
        );
        let err = parse_private_key(&garbage).unwrap_err().to_string();
        assert!(err.contains("not a readable RSA private key"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
        let ec =
            Secret::new("-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n");
        assert_eq!(parse_private_key(&ec).unwrap_err(), CloudFrontError::NotRsa);
    }
}
