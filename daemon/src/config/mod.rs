//! The daemon's configuration file and the charm's `storage_config` document.
//!
//! Both are YAML with kebab-case keys. Every key of the daemon's file has a default, so an
//! empty file is a valid configuration. Errors name the key path, the line and column, and
//! for a misspelt key the closest valid one, because the person reading them is an operator
//! looking at a YAML file, often one the charm rendered from `juju config`.
//!
//! Parsing happens in two steps: serde reads the text into the mirror structs of `file.rs`,
//! whose leaf types validate each value while the YAML parser still knows its position; then
//! `resolve` fills the defaults (some of which follow `state-directory`) and checks the rules
//! that span several keys, finding their position with `locate.rs`.

mod duration;
mod error;
mod file;
mod locate;
mod number;
mod observability;
mod read;
mod redact;
mod size;
mod values;

#[cfg(test)]
mod tests;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use duration::{format_duration, parse_duration};
pub use error::ConfigError;
pub use observability::{LogFormat, MetricsConfig};
pub use size::{format_size, parse_size};

/// Where the daemon keeps its trust store, certificates and (by default) its data.
pub const DEFAULT_STATE_DIRECTORY: &str = "/var/lib/aar";

/// The daemon's whole configuration, as read from its config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub http: HttpConfig,
    pub state_directory: PathBuf,
    pub storage: StorageConfig,
    pub gc: GcConfig,
    pub log: LogConfig,
    pub metrics: MetricsConfig,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    /// Extra host names and IP addresses added as SANs to the generated certificate.
    pub advertise: Vec<String>,
    /// Grace given to transfers in flight on SIGTERM.
    pub shutdown_timeout: Duration,
    pub tls: TlsConfig,
    pub limits: Limits,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsConfig {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub min_version: TlsVersion,
}

/// The oldest TLS version the server accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum TlsVersion {
    Tls12,
    #[default]
    Tls13,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    pub header_timeout: Duration,
    /// Longest silence allowed while reading a request body.
    pub body_timeout: Duration,
    /// Largest JSON or manifest request body, in bytes.
    pub max_metadata_size: u64,
    pub max_image_size: u64,
    pub max_connections: usize,
    /// Percentage of `max_connections` that connections without a trusted certificate may
    /// hold once their TLS handshake is done; see [`Limits::max_untrusted`].
    pub untrusted_share: u8,
    /// A connection without a trusted certificate is closed after this long without a
    /// request; also the longest a TLS handshake may take.
    pub untrusted_idle_timeout: Duration,
    /// Longest time a response may go without any of it being sent: a client that stops
    /// reading is cut off after it.
    pub write_timeout: Duration,
}

// Boxing S3Config would save a few hundred bytes in a value built once at start, at the
// price of a clumsier type for every module that matches on it.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    Fs(FsConfig),
    S3(S3Config),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsConfig {
    pub root_directory: PathBuf,
    /// Writes are refused (507) when free space would fall below this many bytes.
    pub min_free: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Config {
    pub region: String,
    pub bucket: String,
    /// `None` (together with `secret_access_key`) means the AWS default credential chain.
    pub access_key: Option<String>,
    pub secret_access_key: Option<Secret>,
    /// An S3-compatible endpoint (MinIO, Ceph RGW, a test server), as an http(s) URL.
    pub endpoint: Option<String>,
    pub path_style: bool,
    /// Expiry of presigned download URLs.
    pub presign_duration: Duration,
    /// How often metadata written by other daemons is listed again.
    pub refresh_interval: Duration,
    /// How often the trust store in the bucket is checked for changes other units made:
    /// the bound on how late a revocation made elsewhere applies here.
    pub trust_refresh_interval: Duration,
    /// How long the trust store last read stays in use while the bucket cannot be
    /// reached; past it every request is answered 503 rather than judged by a list that
    /// may lack a revocation.
    pub trust_stale_after: Duration,
    pub cloudfront: Option<CloudFrontConfig>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudFrontConfig {
    /// As the operator wrote it: with or without `https://`; see [`CloudFrontConfig::url_prefix`].
    pub base_url: String,
    /// A PEM private key; only its markers are checked here.
    pub private_key: Secret,
    pub keypair_id: String,
    /// Validity of signed URLs.
    pub duration: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GcConfig {
    pub interval: Duration,
    /// Uploads idle longer than this are collected; also the grace before an unreferenced
    /// blob is collected.
    pub upload_expiry: Duration,
    /// How often every stored image is hashed against its digest; zero: never.
    pub scrub_interval: Duration,
    /// Bytes per second the scrub reads at most, so that it never competes with clients.
    pub scrub_rate: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A `tracing_subscriber::EnvFilter` directive, e.g. `info` or `info,aar=debug`.
    pub level: String,
    pub format: LogFormat,
}

/// A credential. It prints as `[redacted]` so that it cannot leak into logs, status
/// messages or errors by accident; [`Secret::expose`] is the one way to read it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Secret(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Secret(value.to_owned())
    }
}

/// Writes the real value: rendering the config file (mode 0600) needs it.
impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret)
    }
}

impl Config {
    /// Every default, with the paths that follow the state directory placed under `dir`.
    pub fn with_state_directory(dir: impl Into<PathBuf>) -> Config {
        let dir = dir.into();
        Config {
            http: HttpConfig {
                addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, 3000)),
                advertise: Vec::new(),
                shutdown_timeout: Duration::from_secs(30),
                tls: TlsConfig::in_state_directory(&dir),
                limits: Limits::default(),
            },
            storage: StorageConfig::Fs(FsConfig::in_state_directory(&dir)),
            state_directory: dir,
            gc: GcConfig::default(),
            log: LogConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config::with_state_directory(DEFAULT_STATE_DIRECTORY)
    }
}

impl TlsConfig {
    pub fn in_state_directory(dir: &Path) -> TlsConfig {
        TlsConfig {
            certificate: dir.join("certs").join("server.crt"),
            key: dir.join("certs").join("server.key"),
            min_version: TlsVersion::Tls13,
        }
    }
}

impl TlsVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            TlsVersion::Tls12 => "1.2",
            TlsVersion::Tls13 => "1.3",
        }
    }
}

impl fmt::Display for TlsVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(60),
            max_metadata_size: 1 << 20,
            max_image_size: 64 << 30,
            max_connections: 4096,
            untrusted_share: 10,
            untrusted_idle_timeout: Duration::from_secs(5),
            write_timeout: Duration::from_secs(60),
        }
    }
}

impl Limits {
    /// How many connections without a trusted certificate may be open at once: the
    /// `untrusted_share` of `max_connections`, at least one.
    pub fn max_untrusted(&self) -> usize {
        (self
            .max_connections
            .saturating_mul(usize::from(self.untrusted_share))
            / 100)
            .max(1)
    }

    /// How long a TLS handshake may take: no longer than an untrusted connection may idle,
    /// since until it ends the connection has not presented a trusted certificate.
    pub fn handshake_timeout(&self) -> Duration {
        self.header_timeout.min(self.untrusted_idle_timeout)
    }
}

impl StorageConfig {
    /// `"fs"` or `"s3"`, as in the config file and the server info.
    pub fn kind(&self) -> &'static str {
        match self {
            StorageConfig::Fs(_) => "fs",
            StorageConfig::S3(_) => "s3",
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig::Fs(FsConfig::in_state_directory(Path::new(
            DEFAULT_STATE_DIRECTORY,
        )))
    }
}

impl FsConfig {
    pub fn in_state_directory(dir: &Path) -> FsConfig {
        FsConfig {
            root_directory: dir.join("data"),
            min_free: 0,
        }
    }
}

impl S3Config {
    /// A bucket with every optional key at its default (AWS default credential chain).
    pub fn new(region: impl Into<String>, bucket: impl Into<String>) -> S3Config {
        S3Config {
            region: region.into(),
            bucket: bucket.into(),
            access_key: None,
            secret_access_key: None,
            endpoint: None,
            path_style: false,
            presign_duration: Duration::from_secs(5 * 60),
            refresh_interval: Duration::from_secs(30),
            trust_refresh_interval: Duration::from_secs(2),
            trust_stale_after: Duration::from_secs(30),
            cloudfront: None,
        }
    }
}

impl CloudFrontConfig {
    /// Default validity of signed URLs.
    pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);

    /// `base_url` with a scheme (`https://` unless one was given) and no trailing slash,
    /// ready to have an object path appended.
    pub fn url_prefix(&self) -> String {
        let url = self.base_url.trim_end_matches('/');
        if url.starts_with("https://") || url.starts_with("http://") {
            url.to_owned()
        } else {
            format!("https://{url}")
        }
    }
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval: Duration::from_secs(60 * 60),
            upload_expiry: Duration::from_secs(24 * 60 * 60),
            scrub_interval: Duration::ZERO,
            scrub_rate: 32 << 20,
        }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_owned(),
            format: LogFormat::Text,
        }
    }
}

/// Parses the daemon's config file; an empty text gives every default.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let document: file::FileConfig = read::deserialize(text, read::Root::Daemon)?;
    document.resolve(text)
}

/// Reads and parses the daemon's config file. Every error names the file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        file: path.to_owned(),
        source,
    })?;
    parse(&text).map_err(|err| err.in_file(path))
}

/// Parses the charm's `storage_config`: a document whose only top-level key is `storage:`.
/// An empty document (or one with only whitespace or comments) is `Ok(None)`: the daemon's
/// default storage. An `fs` backend without `root-directory` gets the default state
/// directory's `data`.
pub fn parse_storage_document(text: &str) -> Result<Option<StorageConfig>, ConfigError> {
    let document: file::StorageDocument = read::deserialize(text, read::Root::StorageDocument)?;
    document.resolve(text)
}

/// Renders `config` as a config file in the same schema, every key written out.
/// Secrets are written in clear: the file must be kept private (mode 0600).
pub fn render(config: &Config) -> String {
    let document = file::FileConfig::from_config(config);
    // Plain structs of strings, numbers and booleans cannot fail to serialize.
    serde_yaml_ng::to_string(&document).expect("config serializes to YAML")
}
