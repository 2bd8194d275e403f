//! The documents as written: every key optional, unknown keys refused. `resolve` turns them
//! into the public types, filling defaults and checking the rules that span several keys;
//! `from_config` is the way back, for `render`.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize};

use super::observability::{render_log_format, MetricsFile};
use super::values::{
    AccessKey, AnyDuration, BaseUrl, Bucket, Count, Endpoint, Flag, HostList, HostName, KeypairId,
    ListenAddr, LogLevel, NonZeroDuration, NonZeroSize, PathText, Percent, PresignDuration,
    PrivateKey, Region, SecretText, Size,
};
use super::{
    CloudFrontConfig, Config, ConfigError, FsConfig, GcConfig, HttpConfig, Limits, LogConfig,
    LogFormat, S3Config, StorageConfig, TlsConfig, TlsVersion, DEFAULT_STATE_DIRECTORY,
};

/// For a section whose presence is a choice (`fs:`, `s3:`, `cloudfront:`): written with
/// nothing under it, it is still chosen, with its defaults.
fn present<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Option::<T>::deserialize(deserializer).map(|section| Some(section.unwrap_or_default()))
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct FileConfig {
    http: Option<HttpFile>,
    state_directory: Option<PathText>,
    storage: Option<StorageFile>,
    gc: Option<GcFile>,
    log: Option<LogFile>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metrics: Option<MetricsFile>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct HttpFile {
    addr: Option<ListenAddr>,
    advertise: Option<HostList>,
    shutdown_timeout: Option<AnyDuration>,
    tls: Option<TlsFile>,
    limits: Option<LimitsFile>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct TlsFile {
    certificate: Option<PathText>,
    key: Option<PathText>,
    min_version: Option<TlsVersion>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct LimitsFile {
    header_timeout: Option<NonZeroDuration>,
    body_timeout: Option<NonZeroDuration>,
    max_metadata_size: Option<NonZeroSize>,
    max_image_size: Option<NonZeroSize>,
    max_connections: Option<Count>,
    untrusted_share: Option<Percent>,
    untrusted_idle_timeout: Option<NonZeroDuration>,
    write_timeout: Option<NonZeroDuration>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct StorageFile {
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    fs: Option<FsFile>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    s3: Option<S3File>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct FsFile {
    root_directory: Option<PathText>,
    min_free: Option<Size>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct S3File {
    region: Option<Region>,
    bucket: Option<Bucket>,
    #[serde(skip_serializing_if = "Option::is_none")]
    access_key: Option<AccessKey>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_access_key: Option<SecretText>,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<Endpoint>,
    path_style: Option<Flag>,
    presign_duration: Option<PresignDuration>,
    refresh_interval: Option<NonZeroDuration>,
    trust_refresh_interval: Option<NonZeroDuration>,
    trust_stale_after: Option<NonZeroDuration>,
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    cloudfront: Option<CloudFrontFile>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct CloudFrontFile {
    base_url: Option<BaseUrl>,
    private_key: Option<PrivateKey>,
    keypair_id: Option<KeypairId>,
    duration: Option<NonZeroDuration>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct GcFile {
    interval: Option<NonZeroDuration>,
    upload_expiry: Option<NonZeroDuration>,
    scrub_interval: Option<AnyDuration>,
    scrub_rate: Option<NonZeroSize>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct LogFile {
    level: Option<LogLevel>,
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<LogFormat>,
}

/// The charm's `storage_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StorageDocument {
    storage: Option<StorageFile>,
}

impl FileConfig {
    pub(super) fn resolve(self, text: &str) -> Result<Config, ConfigError> {
        let state_directory = self
            .state_directory
            .map_or_else(|| PathBuf::from(DEFAULT_STATE_DIRECTORY), |p| p.0);
        let defaults = Config::with_state_directory(&state_directory);

        let http = self.http.unwrap_or_default();
        let tls = http.tls.unwrap_or_default();
        let limits = http.limits.unwrap_or_default();
        let default_limits = defaults.http.limits;
        let http = HttpConfig {
            addr: http.addr.map_or(defaults.http.addr, |a| a.0),
            advertise: http
                .advertise
                .map(|list| list.0.into_iter().map(|host| host.0).collect())
                .unwrap_or_default(),
            shutdown_timeout: http
                .shutdown_timeout
                .map_or(defaults.http.shutdown_timeout, |d| d.0),
            tls: TlsConfig {
                certificate: tls
                    .certificate
                    .map_or(defaults.http.tls.certificate, |p| p.0),
                key: tls.key.map_or(defaults.http.tls.key, |p| p.0),
                min_version: tls.min_version.unwrap_or(defaults.http.tls.min_version),
            },
            limits: Limits {
                header_timeout: limits
                    .header_timeout
                    .map_or(default_limits.header_timeout, |d| d.0),
                body_timeout: limits
                    .body_timeout
                    .map_or(default_limits.body_timeout, |d| d.0),
                max_metadata_size: limits
                    .max_metadata_size
                    .map_or(default_limits.max_metadata_size, |s| s.0),
                max_image_size: limits
                    .max_image_size
                    .map_or(default_limits.max_image_size, |s| s.0),
                max_connections: limits
                    .max_connections
                    .map_or(default_limits.max_connections, |c| c.0),
                untrusted_share: limits
                    .untrusted_share
                    .map_or(default_limits.untrusted_share, |p| p.0),
                untrusted_idle_timeout: limits
                    .untrusted_idle_timeout
                    .map_or(default_limits.untrusted_idle_timeout, |d| d.0),
                write_timeout: limits
                    .write_timeout
                    .map_or(default_limits.write_timeout, |d| d.0),
            },
        };

        let storage = match self.storage {
            Some(storage) => storage.resolve(&state_directory, text)?,
            None => defaults.storage,
        };

        let gc = self.gc.unwrap_or_default();
        let gc = GcConfig {
            interval: gc.interval.map_or(defaults.gc.interval, |d| d.0),
            upload_expiry: gc.upload_expiry.map_or(defaults.gc.upload_expiry, |d| d.0),
            scrub_interval: gc
                .scrub_interval
                .map_or(defaults.gc.scrub_interval, |d| d.0),
            scrub_rate: gc.scrub_rate.map_or(defaults.gc.scrub_rate, |s| s.0),
        };
        let log = self.log.unwrap_or_default();
        let log = LogConfig {
            level: log.level.map_or(defaults.log.level, |l| l.0),
            format: log.format.unwrap_or(defaults.log.format),
        };
        let metrics = MetricsFile::resolve(self.metrics);

        Ok(Config {
            http,
            state_directory,
            storage,
            gc,
            log,
            metrics,
        })
    }

    pub(super) fn from_config(config: &Config) -> FileConfig {
        let http = &config.http;
        let limits = &http.limits;
        FileConfig {
            http: Some(HttpFile {
                addr: Some(ListenAddr(http.addr)),
                advertise: Some(HostList(
                    http.advertise.iter().cloned().map(HostName).collect(),
                )),
                shutdown_timeout: Some(AnyDuration(http.shutdown_timeout)),
                tls: Some(TlsFile {
                    certificate: Some(PathText(http.tls.certificate.clone())),
                    key: Some(PathText(http.tls.key.clone())),
                    min_version: Some(http.tls.min_version),
                }),
                limits: Some(LimitsFile {
                    header_timeout: Some(NonZeroDuration(limits.header_timeout)),
                    body_timeout: Some(NonZeroDuration(limits.body_timeout)),
                    max_metadata_size: Some(NonZeroSize(limits.max_metadata_size)),
                    max_image_size: Some(NonZeroSize(limits.max_image_size)),
                    max_connections: Some(Count(limits.max_connections)),
                    untrusted_share: Some(Percent(limits.untrusted_share)),
                    untrusted_idle_timeout: Some(NonZeroDuration(limits.untrusted_idle_timeout)),
                    write_timeout: Some(NonZeroDuration(limits.write_timeout)),
                }),
            }),
            state_directory: Some(PathText(config.state_directory.clone())),
            storage: Some(StorageFile::from_config(&config.storage)),
            gc: Some(GcFile {
                interval: Some(NonZeroDuration(config.gc.interval)),
                upload_expiry: Some(NonZeroDuration(config.gc.upload_expiry)),
                scrub_interval: Some(AnyDuration(config.gc.scrub_interval)),
                scrub_rate: Some(NonZeroSize(config.gc.scrub_rate)),
            }),
            log: Some(LogFile {
                level: Some(LogLevel(config.log.level.clone())),
                format: render_log_format(config.log.format),
            }),
            metrics: MetricsFile::from_config(&config.metrics),
        }
    }
}

impl StorageDocument {
    pub(super) fn resolve(self, text: &str) -> Result<Option<StorageConfig>, ConfigError> {
        self.storage
            .map(|storage| storage.resolve(Path::new(DEFAULT_STATE_DIRECTORY), text))
            .transpose()
    }
}

const PAIRED_KEYS: &str = "set access-key and secret-access-key together, or neither to use \
                           the AWS default credential chain";

impl StorageFile {
    fn resolve(self, state_directory: &Path, text: &str) -> Result<StorageConfig, ConfigError> {
        match (self.fs, self.s3) {
            (Some(fs), None) => {
                let defaults = FsConfig::in_state_directory(state_directory);
                Ok(StorageConfig::Fs(FsConfig {
                    root_directory: fs.root_directory.map_or(defaults.root_directory, |p| p.0),
                    min_free: fs.min_free.map_or(defaults.min_free, |s| s.0),
                }))
            }
            (None, Some(s3)) => s3.resolve(text).map(StorageConfig::S3),
            _ => Err(ConfigError::at_value(
                text,
                &["storage"],
                "choose exactly one storage backend, `fs` or `s3`",
            )),
        }
    }

    fn from_config(storage: &StorageConfig) -> StorageFile {
        match storage {
            StorageConfig::Fs(fs) => StorageFile {
                fs: Some(FsFile {
                    root_directory: Some(PathText(fs.root_directory.clone())),
                    min_free: Some(Size(fs.min_free)),
                }),
                s3: None,
            },
            StorageConfig::S3(s3) => StorageFile {
                fs: None,
                s3: Some(S3File {
                    region: Some(Region(s3.region.clone())),
                    bucket: Some(Bucket(s3.bucket.clone())),
                    access_key: s3.access_key.clone().map(AccessKey),
                    secret_access_key: s3.secret_access_key.clone().map(SecretText),
                    endpoint: s3.endpoint.clone().map(Endpoint),
                    path_style: Some(Flag(s3.path_style)),
                    presign_duration: Some(PresignDuration(s3.presign_duration)),
                    refresh_interval: Some(NonZeroDuration(s3.refresh_interval)),
                    trust_refresh_interval: Some(NonZeroDuration(s3.trust_refresh_interval)),
                    trust_stale_after: Some(NonZeroDuration(s3.trust_stale_after)),
                    cloudfront: s3.cloudfront.as_ref().map(|cf| CloudFrontFile {
                        base_url: Some(BaseUrl(cf.base_url.clone())),
                        private_key: Some(PrivateKey(cf.private_key.clone())),
                        keypair_id: Some(KeypairId(cf.keypair_id.clone())),
                        duration: Some(NonZeroDuration(cf.duration)),
                    }),
                }),
            },
        }
    }
}

/// "missing required key "a"" or "missing required keys "a" and "b"".
fn missing_keys(keys: &[&str]) -> Option<String> {
    let quoted: Vec<String> = keys.iter().map(|key| format!("{key:?}")).collect();
    match quoted.as_slice() {
        [] => None,
        [one] => Some(format!("missing required key {one}")),
        [init @ .., last] => Some(format!(
            "missing required keys {} and {last}",
            init.join(", ")
        )),
    }
}

impl S3File {
    fn resolve(self, text: &str) -> Result<S3Config, ConfigError> {
        const HERE: [&str; 2] = ["storage", "s3"];
        let mut missing = Vec::new();
        if self.region.is_none() {
            missing.push("region");
        }
        if self.bucket.is_none() {
            missing.push("bucket");
        }
        if let Some(message) = missing_keys(&missing) {
            return Err(ConfigError::at_value(text, &HERE, message));
        }
        match (&self.access_key, &self.secret_access_key) {
            (Some(_), None) => {
                return Err(ConfigError::at_value(
                    text,
                    &["storage", "s3", "access-key"],
                    PAIRED_KEYS,
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::at_value(
                    text,
                    &["storage", "s3", "secret-access-key"],
                    PAIRED_KEYS,
                ))
            }
            _ => {}
        }
        let defaults = S3Config::new("", "");
        let trust_refresh_interval = self
            .trust_refresh_interval
            .map_or(defaults.trust_refresh_interval, |d| d.0);
        let trust_stale_after = self
            .trust_stale_after
            .map_or(defaults.trust_stale_after, |d| d.0);
        if trust_stale_after <= trust_refresh_interval {
            return Err(ConfigError::at_value(
                text,
                &["storage", "s3", "trust-stale-after"],
                format!(
                    "must be longer than trust-refresh-interval ({}): it is how long the last \
                     trust store read stays in use while the bucket cannot be reached, so it \
                     must outlast at least one refresh",
                    crate::config::format_duration(trust_refresh_interval)
                ),
            ));
        }
        let cloudfront = self
            .cloudfront
            .map(|cloudfront| cloudfront.resolve(text))
            .transpose()?;
        Ok(S3Config {
            region: self.region.map(|r| r.0).unwrap_or_default(),
            bucket: self.bucket.map(|b| b.0).unwrap_or_default(),
            access_key: self.access_key.map(|k| k.0),
            secret_access_key: self.secret_access_key.map(|s| s.0),
            endpoint: self.endpoint.map(|e| e.0),
            path_style: self.path_style.map_or(defaults.path_style, |f| f.0),
            presign_duration: self
                .presign_duration
                .map_or(defaults.presign_duration, |d| d.0),
            refresh_interval: self
                .refresh_interval
                .map_or(defaults.refresh_interval, |d| d.0),
            trust_refresh_interval,
            trust_stale_after,
            cloudfront,
        })
    }
}

impl CloudFrontFile {
    fn resolve(self, text: &str) -> Result<CloudFrontConfig, ConfigError> {
        let mut missing = Vec::new();
        if self.base_url.is_none() {
            missing.push("base-url");
        }
        if self.private_key.is_none() {
            missing.push("private-key");
        }
        if self.keypair_id.is_none() {
            missing.push("keypair-id");
        }
        if let Some(message) = missing_keys(&missing) {
            return Err(ConfigError::at_value(
                text,
                &["storage", "s3", "cloudfront"],
                message,
            ));
        }
        match (self.base_url, self.private_key, self.keypair_id) {
            (Some(base_url), Some(private_key), Some(keypair_id)) => Ok(CloudFrontConfig {
                base_url: base_url.0,
                private_key: private_key.0,
                keypair_id: keypair_id.0,
                duration: self
                    .duration
                    .map_or(CloudFrontConfig::DEFAULT_DURATION, |d| d.0),
            }),
            _ => unreachable!("missing keys are reported above"),
        }
    }
}
