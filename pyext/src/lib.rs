//! `aar_ext`: the daemon's own config and certificate code, for the charm.
//!
//! The charm must never disagree with the daemon about what a valid `storage_config` is,
//! what the rendered config file looks like, or what a certificate's fingerprint is. So it
//! does not re-implement any of it in Python: it calls the `aar` crate through this module.
//! Everything here is a thin conversion between the crate's types and plain Python values
//! (str, int, dict, None); the rules and the error texts are the crate's.
//!
//! Errors are `ConfigError` and `CertificateError`, both `ValueError`s whose `str()` is the
//! crate's one-line message (key path, line, column, what to do). `ConfigError` also carries
//! `path`, `line`, `column` and `detail` attributes. No message ever contains a secret: the
//! crate's errors never quote secret values.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use aar::config::{
    self, Config, ConfigError as DaemonConfigError, FsConfig, StorageConfig,
    DEFAULT_STATE_DIRECTORY,
};
use aar::trust::{self, CertificateInfo};
use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

create_exception!(
    aar_ext,
    ConfigError,
    PyValueError,
    "A storage_config document, charm setting or config file the daemon would refuse."
);
create_exception!(
    aar_ext,
    CertificateError,
    PyValueError,
    "Text that is not exactly one X.509 certificate."
);

/// The `ConfigError` for `err`, with its parts as attributes so that callers can tell which
/// key was refused without parsing the message.
fn config_error(py: Python<'_>, err: &DaemonConfigError) -> PyErr {
    annotated_config_error(
        py,
        err.to_string(),
        err.path(),
        err.line(),
        err.column(),
        &err.message(),
    )
}

fn annotated_config_error(
    py: Python<'_>,
    text: String,
    path: &str,
    line: Option<usize>,
    column: Option<usize>,
    detail: &str,
) -> PyErr {
    let exc = ConfigError::new_err(text);
    let annotate = || -> PyResult<()> {
        let value = exc.value(py);
        value.setattr("path", path)?;
        value.setattr("line", line)?;
        value.setattr("column", column)?;
        value.setattr("detail", detail)?;
        Ok(())
    };
    match annotate() {
        Ok(()) => exc,
        Err(failed) => failed,
    }
}

/// The storage the daemon will use for `text` when its state directory is `state_directory`.
///
/// `parse_storage_document` places defaults under the daemon's default state directory
/// (`/var/lib/aar`), which is where the charm keeps it in production. When the charm runs
/// with another state directory (the end-to-end tests do), an `fs` backend whose
/// `root-directory` is that default follows the state directory instead, as the daemon's
/// own defaults do in its config file.
fn storage_for(text: &str, state_directory: &Path) -> Result<StorageConfig, DaemonConfigError> {
    let defaults = FsConfig::in_state_directory(Path::new(DEFAULT_STATE_DIRECTORY));
    Ok(match config::parse_storage_document(text)? {
        None => StorageConfig::Fs(FsConfig::in_state_directory(state_directory)),
        Some(StorageConfig::Fs(fs)) if fs.root_directory == defaults.root_directory => {
            StorageConfig::Fs(FsConfig {
                root_directory: FsConfig::in_state_directory(state_directory).root_directory,
                ..fs
            })
        }
        Some(other) => other,
    })
}

/// What the charm shows and decides on about a storage backend; never a credential.
fn storage_summary<'py>(py: Python<'py>, storage: &StorageConfig) -> PyResult<Bound<'py, PyDict>> {
    let summary = PyDict::new(py);
    summary.set_item("kind", storage.kind())?;
    match storage {
        StorageConfig::Fs(fs) => {
            summary.set_item("root_directory", fs.root_directory.display().to_string())?;
        }
        StorageConfig::S3(s3) => {
            summary.set_item("bucket", &s3.bucket)?;
            summary.set_item("region", &s3.region)?;
            summary.set_item("endpoint", s3.endpoint.as_deref())?;
            summary.set_item(
                "cloudfront",
                s3.cloudfront.as_ref().map(|cf| cf.url_prefix()),
            )?;
        }
    }
    Ok(summary)
}

/// Validates a `storage_config` document exactly as the daemon does and summarises it:
/// `{"kind": "fs", "root_directory": …}` or
/// `{"kind": "s3", "bucket", "region", "endpoint", "cloudfront"}`. An empty document is the
/// filesystem default under `state_directory`.
#[pyfunction]
#[pyo3(signature = (text, state_directory = DEFAULT_STATE_DIRECTORY))]
fn check_storage_config<'py>(
    py: Python<'py>,
    text: &str,
    state_directory: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let storage =
        storage_for(text, Path::new(state_directory)).map_err(|e| config_error(py, &e))?;
    storage_summary(py, &storage)
}

/// Renders the daemon's config file: listen on every address at `port`, keep state under
/// `state_directory`, store images as `storage_config` says, and put `advertise` (host names
/// or IP addresses) in the generated server certificate. The result is parsed again with
/// the daemon's parser before it is returned, so what the charm writes is what the daemon
/// accepts.
#[pyfunction]
fn render_config(
    py: Python<'_>,
    state_directory: &str,
    port: i64,
    storage_config: &str,
    advertise: Vec<String>,
) -> PyResult<String> {
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| {
            let detail = format!("{port} is not a TCP port; use a number from 1 to 65535");
            annotated_config_error(py, format!("port: {detail}"), "port", None, None, &detail)
        })?;
    let mut config = Config::with_state_directory(state_directory);
    config.http.addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    config.http.advertise = advertise;
    config.storage = storage_for(storage_config, Path::new(state_directory))
        .map_err(|e| config_error(py, &e))?;
    let text = config::render(&config);
    config::parse(&text).map_err(|e| config_error(py, &e))?;
    Ok(text)
}

/// Parses the daemon's config file text (the one the daemon runs with) and returns what the
/// charm needs from it: `addr`, `port`, `state_directory`, `certificate`, `key` and
/// `storage` (as [`check_storage_config`] summarises it).
#[pyfunction]
fn describe_config<'py>(py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyDict>> {
    let config = config::parse(text).map_err(|e| config_error(py, &e))?;
    let description = PyDict::new(py);
    description.set_item("addr", config.http.addr.to_string())?;
    description.set_item("port", config.http.addr.port())?;
    description.set_item(
        "state_directory",
        config.state_directory.display().to_string(),
    )?;
    description.set_item(
        "certificate",
        config.http.tls.certificate.display().to_string(),
    )?;
    description.set_item("key", config.http.tls.key.display().to_string())?;
    description.set_item("storage", storage_summary(py, &config.storage)?)?;
    Ok(description)
}

fn certificate_dict<'py>(
    py: Python<'py>,
    info: &CertificateInfo,
    pem: Option<&str>,
) -> PyResult<Bound<'py, PyDict>> {
    let cert = PyDict::new(py);
    cert.set_item("fingerprint", info.fingerprint.to_string())?;
    cert.set_item("subject", &info.subject)?;
    cert.set_item("not_after", &info.not_after)?;
    if let Some(pem) = pem {
        cert.set_item("pem", pem)?;
    }
    Ok(cert)
}

/// Parses one certificate (PEM) as the trust store does: `{"fingerprint", "subject",
/// "not_after"}`. `source` names the input in errors, e.g. "the certificate of ams/0".
#[pyfunction]
#[pyo3(signature = (pem, source = "the input"))]
fn parse_certificate<'py>(
    py: Python<'py>,
    pem: &str,
    source: &str,
) -> PyResult<Bound<'py, PyDict>> {
    let (info, _der) = trust::parse_certificate_from(pem.as_bytes(), source)
        .map_err(|e| CertificateError::new_err(e.to_string()))?;
    certificate_dict(py, &info, None)
}

/// The certificate the daemon configured by the file at `config_path` serves:
/// `{"pem", "fingerprint", "subject", "not_after"}`, or `None` while it does not exist yet
/// (the daemon generates it at its first start).
#[pyfunction]
fn server_certificate<'py>(
    py: Python<'py>,
    config_path: PathBuf,
) -> PyResult<Option<Bound<'py, PyDict>>> {
    let config = config::load(&config_path).map_err(|e| config_error(py, &e))?;
    let path = config.http.tls.certificate;
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CertificateError::new_err(format!(
                "cannot read the server certificate {}: {e}",
                path.display()
            )))
        }
    };
    let source = path.display().to_string();
    let (info, _der) = trust::parse_certificate_from(&bytes, &source)
        .map_err(|e| CertificateError::new_err(e.to_string()))?;
    let pem = String::from_utf8_lossy(&bytes);
    certificate_dict(py, &info, Some(pem.trim_end())).map(Some)
}

/// SHA-256 of a DER encoding, as the trust store and AMS write it.
#[pyfunction]
fn fingerprint(der: &[u8]) -> String {
    trust::fingerprint(der)
}

/// The version of the daemon crate this module was built from.
#[pyfunction]
fn version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// The aar daemon's config validation and rendering, certificate parsing and fingerprints.
#[pymodule]
fn aar_ext(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("CertificateError", py.get_type::<CertificateError>())?;
    m.add("DEFAULT_STATE_DIRECTORY", DEFAULT_STATE_DIRECTORY)?;
    m.add_function(wrap_pyfunction!(check_storage_config, m)?)?;
    m.add_function(wrap_pyfunction!(render_config, m)?)?;
    m.add_function(wrap_pyfunction!(describe_config, m)?)?;
    m.add_function(wrap_pyfunction!(parse_certificate, m)?)?;
    m.add_function(wrap_pyfunction!(server_certificate, m)?)?;
    m.add_function(wrap_pyfunction!(fingerprint, m)?)?;
    m.add_function(wrap_pyfunction!(version, m)?)?;
    Ok(())
}
