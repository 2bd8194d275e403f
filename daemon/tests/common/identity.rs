//! Client certificates made with rcgen: the publisher, the client, an untrusted and a
//! revoked identity, each made once per test binary.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rustls::pki_types::CertificateDer;

use super::sha256_hex;

pub struct Identity {
    pub name: String,
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: CertificateDer<'static>,
    pub key_der: Vec<u8>,
    pub fingerprint: String,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({}, {})", self.name, self.fingerprint)
    }
}

impl Identity {
    pub fn generate(name: &str) -> Identity {
        Identity::generate_with(name, |_| {})
    }

    /// A self-signed certificate valid from `not_before` to `not_after`.
    pub fn generate_valid(
        name: &str,
        not_before: std::time::SystemTime,
        not_after: std::time::SystemTime,
    ) -> Identity {
        Identity::generate_with(name, |params| {
            params.not_before = not_before.into();
            params.not_after = not_after.into();
        })
    }

    fn generate_with(name: &str, adjust: impl FnOnce(&mut rcgen::CertificateParams)) -> Identity {
        let key = rcgen::KeyPair::generate().expect("key pair");
        let mut params = rcgen::CertificateParams::new(vec![name.to_string()]).expect("params");
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        adjust(&mut params);
        let cert = params.self_signed(&key).expect("self-signed certificate");
        let der = cert.der().clone();
        Identity {
            name: name.to_string(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            fingerprint: sha256_hex(&der),
            cert_der: der,
            key_der: key.serialize_der(),
        }
    }

    /// Writes the certificate PEM to `<dir>/<name>.crt` and returns the path.
    pub fn write_pem(&self, dir: &Path) -> PathBuf {
        let p = dir.join(format!("{}-{}.crt", self.name, &self.fingerprint[..8]));
        fs::write(&p, &self.cert_pem).unwrap();
        p
    }
}

macro_rules! identity {
    ($fn:ident, $name:expr) => {
        pub fn $fn() -> &'static Identity {
            static ID: OnceLock<Identity> = OnceLock::new();
            ID.get_or_init(|| Identity::generate($name))
        }
    };
}
identity!(publisher, "publisher");
identity!(client_id, "client");
identity!(untrusted, "untrusted");
identity!(revoked, "revoked");
