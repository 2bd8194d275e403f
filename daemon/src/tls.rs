//! TLS: the server certificate (generated at first start when absent) and a rustls
//! configuration that *requests* client certificates without judging them.
//!
//! Client certificates are pinned by fingerprint in the trust store, not chained to a
//! CA, so the handshake accepts any well-formed certificate whose holder proves
//! possession of its key (the CertificateVerify signature is checked as usual). Whether
//! the fingerprint is trusted, and in which role, is decided per request by the HTTP
//! layer, which is what lets a revocation cut off an already-open connection.
//!
//! A handshake that fails for a *trusted* certificate is logged at warn with the reason:
//! that is an AMS the operator meant to let in, locked out. Anyone else's failures stay at
//! debug, since any client on the network can cause them.

use crate::config::{TlsConfig, TlsVersion};
use crate::trust::{Access, TrustCache};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("reading {what} {path}: {source}")]
    Read {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("{path} holds no {what} in PEM form; point http.tls.{key} at a PEM file, or remove both files to have a self-signed certificate generated")]
    NoPem {
        what: &'static str,
        key: &'static str,
        path: PathBuf,
    },
    #[error("{present} exists but {missing} does not; provide both (http.tls.certificate and http.tls.key) or neither to generate a self-signed pair")]
    HalfPair { present: PathBuf, missing: PathBuf },
    #[error("generating the self-signed certificate: {0}")]
    Generate(String),
    #[error("writing {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("the certificate does not match the private key, or neither is usable: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The server's certificate chain, key and the fingerprint clients pin.
pub struct ServerIdentity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
    pub fingerprint: String,
}

pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Loads the configured certificate and key, generating a self-signed pair first when
/// neither exists. Subject alternative names: `localhost`, the host name, loopback
/// addresses, the listen address when specific, and `advertise`.
pub fn load_or_generate(
    tls: &TlsConfig,
    listen: SocketAddr,
    advertise: &[String],
) -> Result<ServerIdentity, TlsError> {
    match (tls.certificate.exists(), tls.key.exists()) {
        (true, true) => {}
        (false, false) => generate(
            &tls.certificate,
            &tls.key,
            &subject_alt_names(listen, advertise),
        )?,
        (true, false) => {
            return Err(TlsError::HalfPair {
                present: tls.certificate.clone(),
                missing: tls.key.clone(),
            })
        }
        (false, true) => {
            return Err(TlsError::HalfPair {
                present: tls.key.clone(),
                missing: tls.certificate.clone(),
            })
        }
    }
    let read = |what, path: &Path| {
        std::fs::read(path).map_err(|source| TlsError::Read {
            what,
            path: path.to_owned(),
            source,
        })
    };
    let cert_pem = read("certificate", &tls.certificate)?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .filter_map(Result::ok)
        .collect();
    if chain.is_empty() {
        return Err(TlsError::NoPem {
            what: "certificate",
            key: "certificate",
            path: tls.certificate.clone(),
        });
    }
    let key_pem = read("private key", &tls.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoPem {
        what: "private key",
        key: "key",
        path: tls.key.clone(),
    })?;
    let fingerprint = crate::trust::fingerprint(&chain[0]);
    Ok(ServerIdentity {
        chain,
        key,
        fingerprint,
    })
}

fn subject_alt_names(listen: SocketAddr, advertise: &[String]) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    if let Ok(host) = rustix::system::uname().nodename().to_str() {
        names.push(host.to_string());
    }
    if !listen.ip().is_unspecified() {
        names.push(listen.ip().to_string());
    }
    names.extend(advertise.iter().cloned());
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| !n.is_empty() && seen.insert(n.clone()));
    names
}

fn generate(cert_path: &Path, key_path: &Path, names: &[String]) -> Result<(), TlsError> {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    for name in names {
        params.subject_alt_names.push(match name.parse::<IpAddr>() {
            Ok(ip) => rcgen::SanType::IpAddress(ip),
            Err(_) => rcgen::SanType::DnsName(
                name.clone()
                    .try_into()
                    .map_err(|e: rcgen::Error| TlsError::Generate(format!("{name:?}: {e}")))?,
            ),
        });
    }
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "aar");
    params.distinguished_name.push(
        rcgen::DnType::OrganizationName,
        "Anbox Application Registry",
    );
    let now = std::time::SystemTime::now();
    params.not_before = (now - std::time::Duration::from_secs(3600)).into();
    params.not_after = (now + std::time::Duration::from_secs(10 * 365 * 24 * 3600)).into();
    // ECDSA P-256: a fraction of RSA's signing cost per full handshake.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let write = |path: &Path, data: &str, mode| {
        crate::fsutil::write_atomic(path, data.as_bytes(), mode, crate::fsutil::Replace::Never)
            .map_err(|source| TlsError::Write {
                path: path.to_owned(),
                source,
            })
    };
    write(key_path, &key.serialize_pem(), 0o600)?;
    write(cert_path, &cert.pem(), 0o644)?;
    tracing::info!(certificate = %cert_path.display(), names = ?names, "generated a self-signed server certificate");
    Ok(())
}

/// `trust` only serves to tell which handshake failures concern a trusted certificate.
pub fn server_config(
    identity: &ServerIdentity,
    min_version: TlsVersion,
    trust: Arc<TrustCache>,
) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let versions: &[&rustls::SupportedProtocolVersion] = match min_version {
        TlsVersion::Tls13 => &[&rustls::version::TLS13],
        TlsVersion::Tls12 => &[&rustls::version::TLS13, &rustls::version::TLS12],
    };
    let verifier = Arc::new(RequestClientCert {
        algorithms: provider.signature_verification_algorithms,
        trust,
    });
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Asks every client for a certificate and checks only that the client holds its key.
struct RequestClientCert {
    algorithms: WebPkiSupportedAlgorithms,
    trust: Arc<TrustCache>,
}

impl std::fmt::Debug for RequestClientCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestClientCert")
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl RequestClientCert {
    /// The signature check is where a certificate the TLS stack cannot use fails (an X.509
    /// v1 certificate, an RSA key under 2048 bits), so it is where the reason is known.
    fn report(&self, cert: &CertificateDer<'_>, error: &rustls::Error) {
        let fingerprint = crate::trust::fingerprint(cert);
        match self.trust.lookup(&fingerprint) {
            Access::Trusted(_) | Access::Expired { .. } => {
                let reason = match crate::trust::unusable(cert) {
                    Some(reason) => format!(
                        "the certificate {reason}; {}, then remove this one \
                         (`aar trust remove {fingerprint}`)",
                        reason.fix()
                    ),
                    None => error.to_string(),
                };
                tracing::warn!(
                    %fingerprint,
                    "TLS handshake failed for a trusted client certificate: {reason}"
                );
            }
            Access::Revoked | Access::Unknown | Access::Unavailable => {
                tracing::debug!(%fingerprint, %error, "client certificate refused in the TLS handshake");
            }
        }
    }
}

impl ClientCertVerifier for RequestClientCert {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        // `GET /1.0` must answer callers without a certificate too.
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // No CA names: clients (Go's crypto/tls included) then offer whatever they have.
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
            .inspect_err(|e| self.report(cert, e))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
            .inspect_err(|e| self.report(cert, e))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
