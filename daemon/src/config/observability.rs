//! The `metrics` and `log` families: where `/metrics` and `/status` are served, and how log
//! lines are written. Kept apart from the other leaf values because they are read before
//! the daemon starts (logging is set up from them) and by `aar status`.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::read::tagged;
use super::redact;

/// The plain-HTTP listener of `/metrics` and `/status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsConfig {
    /// `None`: not served (`metrics.addr: ""`).
    pub addr: Option<SocketAddr>,
}

impl MetricsConfig {
    /// Loopback only by default: what the listener serves is unauthenticated.
    pub const DEFAULT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 3001);
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            addr: Some(Self::DEFAULT_ADDR),
        }
    }
}

/// How each log line is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for a log shipper.
    Json,
}

impl LogFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }
}

impl fmt::Display for LogFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Reads a scalar as text, so that the error is reported while the YAML parser still knows
/// the value's line and column.
struct Text<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T> Visitor<'_> for Text<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        (self.parse)(value).map_err(|message| E::custom(tagged(message)))
    }
}

/// `metrics.addr` as written: an address, or the empty string for no listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct MetricsAddr(pub(super) Option<SocketAddr>);

fn parse_metrics_addr(text: &str) -> Result<Option<SocketAddr>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.parse::<SocketAddr>().map(Some).map_err(|_| {
        format!(
            "invalid address {}: use an IP address and a port, e.g. 127.0.0.1:3001, or \"\" to \
             serve no metrics",
            redact::value(text)
        )
    })
}

impl<'de> Deserialize<'de> for MetricsAddr {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_str(Text {
                expecting: "an address, e.g. 127.0.0.1:3001, or \"\"",
                parse: parse_metrics_addr,
            })
            .map(MetricsAddr)
    }
}

impl Serialize for MetricsAddr {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Some(addr) => serializer.serialize_str(&addr.to_string()),
            None => serializer.serialize_str(""),
        }
    }
}

fn parse_log_format(text: &str) -> Result<LogFormat, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        _ => Err(format!(
            "unknown log format {}: use text (the default) or json",
            redact::value(text)
        )),
    }
}

impl<'de> Deserialize<'de> for LogFormat {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(Text {
            expecting: "a log format, text or json",
            parse: parse_log_format,
        })
    }
}

impl Serialize for LogFormat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// The `metrics:` section as written.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(super) struct MetricsFile {
    #[serde(skip_serializing_if = "Option::is_none")]
    addr: Option<MetricsAddr>,
}

impl MetricsFile {
    pub(super) fn resolve(section: Option<MetricsFile>) -> MetricsConfig {
        match section.and_then(|s| s.addr) {
            Some(MetricsAddr(addr)) => MetricsConfig { addr },
            None => MetricsConfig::default(),
        }
    }

    /// The section for `render`; left out at its default, so that files rendered before
    /// it existed and files rendered now read the same.
    pub(super) fn from_config(config: &MetricsConfig) -> Option<MetricsFile> {
        (*config != MetricsConfig::default()).then_some(MetricsFile {
            addr: Some(MetricsAddr(config.addr)),
        })
    }
}

/// `log.format` for `render`: left out at its default, like the `metrics:` section.
pub(super) fn render_log_format(format: LogFormat) -> Option<LogFormat> {
    (format != LogFormat::default()).then_some(format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{parse, render, Config};

    #[test]
    fn metrics_addr_defaults_to_loopback_and_empty_disables() {
        assert_eq!(
            parse("").unwrap().metrics.addr,
            Some("127.0.0.1:3001".parse().unwrap())
        );
        assert_eq!(parse("metrics: {addr: \"\"}").unwrap().metrics.addr, None);
        assert_eq!(
            parse("metrics: {addr: \"[::]:9100\"}")
                .unwrap()
                .metrics
                .addr,
            Some("[::]:9100".parse().unwrap())
        );
        let err = parse("metrics:\n  addr: nowhere\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("metrics.addr"), "{err}");
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("127.0.0.1:3001"), "{err}");
    }

    #[test]
    fn log_format_is_text_or_json() {
        assert_eq!(parse("").unwrap().log.format, LogFormat::Text);
        assert_eq!(
            parse("log: {format: json}").unwrap().log.format,
            LogFormat::Json
        );
        let err = parse("log: {format: xml}").unwrap_err().to_string();
        assert!(err.contains("log.format"), "{err}");
        assert!(err.contains("text (the default) or json"), "{err}");
    }

    #[test]
    fn non_defaults_render_and_read_back() {
        let mut config = Config::default();
        config.metrics.addr = None;
        config.log.format = LogFormat::Json;
        let text = render(&config);
        assert!(text.contains("addr: ''"), "{text}");
        assert!(text.contains("format: json"), "{text}");
        assert_eq!(parse(&text).unwrap(), config);
        config.metrics.addr = Some("10.0.0.1:9100".parse().unwrap());
        assert_eq!(parse(&render(&config)).unwrap(), config);
    }
}
