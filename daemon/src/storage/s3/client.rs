//! Building the SDK client from `storage.s3`.
//!
//! Choices made here on purpose:
//!
//! * **HTTP and TLS**: the SDK's hyper 1 client with rustls on *ring*, the stack the daemon
//!   already links, instead of the default aws-lc one (a second C crypto library to build).
//!   Roots are the platform's, plus the certificates of `AWS_CA_BUNDLE` when that variable
//!   names a readable PEM file. The SDK would panic on a bundle it cannot parse (it parses
//!   at connection time), so the bundle is read and checked here; a bundle that cannot be
//!   used is logged and skipped, never fatal: it matters only for https endpoints signed by
//!   a private CA, and a plain-http test endpoint must work whatever the variable says.
//! * **Retries**: the SDK's standard mode retries only errors it classifies as transient
//!   (throttling, 5xx, timeouts, connection failures), with exponential backoff and full
//!   jitter. Three attempts, 200 ms initial and 5 s maximum backoff keep a request's worst
//!   case around ten seconds, after which the caller gets 503 and retries on its own.
//! * **Timeouts**: a short connect timeout, so an unreachable S3 becomes a 503 quickly; no
//!   whole-operation timeout, which would cut a large part upload on a slow link; a read
//!   timeout catches a server that stops answering.
//! * **Checksums**: only when an operation requires them. The SDK's default (CRC32 on every
//!   upload, sent as an aws-chunked trailer) is refused by several S3-compatible stores,
//!   and every image is verified against its SHA-256 by the backend anyway.
//! * **Credentials**: the configured key pair, or the default chain (environment, shared
//!   profile, web identity, ECS, EC2 instance profile) when both keys are left out.

use crate::config::S3Config;
use aws_config::BehaviorVersion;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    Credentials, Region, RequestChecksumCalculation, ResponseChecksumValidation,
};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode, TlsContext, TrustStore};
use std::path::Path;
use std::time::Duration;

pub const MAX_ATTEMPTS: u32 = 3;
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
pub const MAX_BACKOFF: Duration = Duration::from_secs(5);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
pub const READ_TIMEOUT: Duration = Duration::from_secs(60);

pub async fn build(config: &S3Config) -> aws_sdk_s3::Client {
    let http_client = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(tls_context(
            std::env::var_os("AWS_CA_BUNDLE").as_deref().map(Path::new),
        ))
        .build_https();
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .http_client(http_client)
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(MAX_ATTEMPTS)
                .with_initial_backoff(INITIAL_BACKOFF)
                .with_max_backoff(MAX_BACKOFF),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(READ_TIMEOUT)
                .build(),
        );
    if let (Some(access_key), Some(secret)) = (&config.access_key, &config.secret_access_key) {
        loader = loader.credentials_provider(Credentials::new(
            access_key,
            secret.expose(),
            None,
            None,
            "storage.s3",
        ));
    }
    if let Some(endpoint) = &config.endpoint {
        loader = loader.endpoint_url(endpoint.trim_end_matches('/'));
    }
    let shared = loader.load().await;
    let s3_config = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(config.path_style)
        .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
        .build();
    aws_sdk_s3::Client::from_conf(s3_config)
}

/// Platform roots plus the usable certificates of `bundle` (see the module docs).
pub fn tls_context(bundle: Option<&Path>) -> TlsContext {
    let mut store = TrustStore::default();
    if let Some(path) = bundle {
        match usable_certificates(path) {
            Ok(pem) => {
                store = store.with_pem_certificate(pem);
            }
            Err(reason) => tracing::warn!(
                path = %path.display(),
                "AWS_CA_BUNDLE not used ({reason}); S3 endpoints are verified with the system roots"
            ),
        }
    }
    TlsContext::builder()
        .with_trust_store(store)
        .build()
        .expect("a TLS context of a trust store always builds")
}

/// The certificates of a PEM file that rustls accepts as roots, re-encoded as PEM.
pub fn usable_certificates(path: &Path) -> Result<Vec<u8>, String> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read it: {e}"))?;
    let mut out = Vec::new();
    let mut skipped = 0;
    for item in CertificateDer::pem_slice_iter(&bytes) {
        let Ok(der) = item else {
            skipped += 1;
            continue;
        };
        // The same check the SDK makes later, where a failure would panic.
        let mut probe = rustls::RootCertStore::empty();
        if probe.add(der.clone()).is_err() {
            skipped += 1;
            continue;
        }
        out.extend_from_slice(crate::trust::to_pem(&der).as_bytes());
    }
    if out.is_empty() {
        return Err(format!(
            "no usable PEM certificate in it{}",
            if skipped > 0 {
                format!(", {skipped} unreadable")
            } else {
                String::new()
            }
        ));
    }
    if skipped > 0 {
        tracing::debug!(path = %path.display(), skipped, "AWS_CA_BUNDLE entries skipped");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusable_bundles_are_skipped_not_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert!(usable_certificates(&missing)
            .unwrap_err()
            .contains("cannot read"));
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate\n").unwrap();
        assert!(usable_certificates(&junk)
            .unwrap_err()
            .contains("no usable"));
        let bad = dir.path().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        assert!(usable_certificates(&bad).is_err());
        // Building the context never panics, whatever the file holds.
        for path in [&missing, &junk, &bad] {
            let _ = tls_context(Some(path));
        }
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
        let good = dir.path().join("good.pem");
        std::fs::write(&good, format!("junk\n{}", cert.cert.pem())).unwrap();
        let pem = usable_certificates(&good).unwrap();
        assert_eq!(
            String::from_utf8(pem).unwrap(),
            cert.cert.pem().replace("\r\n", "\n")
        );
    }
}
