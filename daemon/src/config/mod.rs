//! TEMPORARY STUB: replaced by the real config module.
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub http: HttpConfig,
    pub state_directory: PathBuf,
    pub storage: StorageConfig,
    pub gc: GcConfig,
    pub log: LogConfig,
}
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    pub addr: SocketAddr,
    pub advertise: Vec<String>,
    pub shutdown_timeout: Duration,
    pub tls: TlsConfig,
    pub limits: Limits,
}
#[derive(Debug, Clone, PartialEq)]
pub struct TlsConfig {
    pub certificate: PathBuf,
    pub key: PathBuf,
    pub min_version: TlsVersion,
}
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum TlsVersion {
    Tls12,
    Tls13,
}
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_metadata_size: u64,
    pub max_image_size: u64,
    pub max_connections: usize,
}
#[derive(Debug, Clone, PartialEq)]
pub enum StorageConfig {
    Fs(FsConfig),
    S3(S3Config),
}
#[derive(Debug, Clone, PartialEq)]
pub struct FsConfig {
    pub root_directory: PathBuf,
    pub min_free: u64,
}
#[derive(Debug, Clone, PartialEq)]
pub struct S3Config {
    pub region: String,
    pub bucket: String,
}
#[derive(Debug, Clone, PartialEq)]
pub struct GcConfig {
    pub interval: Duration,
    pub upload_expiry: Duration,
}
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    pub level: String,
}
impl StorageConfig {
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Fs(_) => "fs",
            Self::S3(_) => "s3",
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(String);

#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct Raw {
    #[serde(default)]
    http: RawHttp,
    state_directory: Option<PathBuf>,
    storage: Option<RawStorage>,
    gc: Option<RawGc>,
}
#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RawHttp {
    addr: Option<SocketAddr>,
    shutdown_timeout: Option<String>,
    tls: Option<RawTls>,
    limits: Option<RawLimits>,
    #[serde(default)]
    advertise: Vec<String>,
}
#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RawTls {
    min_version: Option<String>,
    certificate: Option<PathBuf>,
    key: Option<PathBuf>,
}
#[derive(Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
struct RawLimits {
    header_timeout: Option<String>,
    body_timeout: Option<String>,
    max_metadata_size: Option<u64>,
    max_image_size: Option<u64>,
}
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawStorage {
    fs: Option<RawFs>,
}
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawFs {
    root_directory: Option<PathBuf>,
    #[serde(default)]
    min_free: u64,
}
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawGc {
    interval: Option<String>,
    upload_expiry: Option<String>,
}

fn dur(s: &Option<String>, d: u64) -> Duration {
    s.as_deref()
        .map(|s| humantime::parse_duration(s).unwrap())
        .unwrap_or(Duration::from_secs(d))
}

impl Default for Config {
    fn default() -> Self {
        parse("").unwrap()
    }
}

pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let raw: Raw = if text.trim().is_empty() {
        Raw::default()
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| ConfigError(e.to_string()))?
    };
    let state = raw.state_directory.unwrap_or_else(|| "/var/lib/aar".into());
    let tls = raw.http.tls.unwrap_or_default();
    let lim = raw.http.limits.unwrap_or_default();
    let fs = raw.storage.and_then(|s| s.fs);
    let gc = raw.gc.unwrap_or(RawGc {
        interval: None,
        upload_expiry: None,
    });
    Ok(Config {
        http: HttpConfig {
            addr: raw.http.addr.unwrap_or("0.0.0.0:3000".parse().unwrap()),
            advertise: raw.http.advertise,
            shutdown_timeout: dur(&raw.http.shutdown_timeout, 30),
            tls: TlsConfig {
                certificate: tls.certificate.unwrap_or(state.join("certs/server.crt")),
                key: tls.key.unwrap_or(state.join("certs/server.key")),
                min_version: if tls.min_version.as_deref() == Some("1.2") {
                    TlsVersion::Tls12
                } else {
                    TlsVersion::Tls13
                },
            },
            limits: Limits {
                header_timeout: dur(&lim.header_timeout, 30),
                body_timeout: dur(&lim.body_timeout, 60),
                max_metadata_size: lim.max_metadata_size.unwrap_or(1 << 20),
                max_image_size: lim.max_image_size.unwrap_or(64 << 30),
                max_connections: 4096,
            },
        },
        storage: StorageConfig::Fs(FsConfig {
            root_directory: fs
                .as_ref()
                .and_then(|f| f.root_directory.clone())
                .unwrap_or(state.join("data")),
            min_free: fs.map(|f| f.min_free).unwrap_or(0),
        }),
        gc: GcConfig {
            interval: dur(&gc.interval, 3600),
            upload_expiry: dur(&gc.upload_expiry, 86400),
        },
        log: LogConfig {
            level: "info".into(),
        },
        state_directory: state,
    })
}

pub fn load(path: &Path) -> Result<Config, ConfigError> {
    parse(
        &std::fs::read_to_string(path)
            .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?,
    )
}
