//! Values of the daemon's own sections (`http`, `gc`, `log`, `state-directory`):
//! durations, sizes, counts, addresses, paths, host names, the TLS version, the log level.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::{render_duration, render_size, render_str, scalar, FromText};
use crate::config::redact;
use crate::config::{parse_duration, parse_size, TlsVersion};

scalar!(
    /// Any duration, zero included.
    AnyDuration(Duration),
    "a duration, e.g. 30s",
    parse_duration,
    render_duration
);

scalar!(
    NonZeroDuration(Duration),
    "a duration, e.g. 30s",
    |text| {
        let duration = parse_duration(text)?;
        if duration.is_zero() {
            return Err("invalid duration 0s: must be longer than 0s".to_owned());
        }
        Ok(duration)
    },
    render_duration
);

scalar!(Size(u64), "a size, e.g. 512MiB", parse_size, render_size);

scalar!(
    NonZeroSize(u64),
    "a size, e.g. 512MiB",
    |text| {
        let size = parse_size(text)?;
        if size == 0 {
            return Err("invalid size 0: must be more than 0 bytes".to_owned());
        }
        Ok(size)
    },
    render_size
);

scalar!(
    Count(usize),
    "a whole number, e.g. 4096",
    |text| match text.parse::<usize>() {
        Ok(0) => Err("invalid number \"0\": must be at least 1".to_owned()),
        Ok(count) => Ok(count),
        Err(_) => Err(format!(
            "expected a whole number, e.g. 4096, found {}",
            redact::value(text)
        )),
    },
    |count, serializer| serializer.serialize_u64(*count as u64)
);

scalar!(
    /// `10%`: the sign is required, so that `10` and `0.1` cannot be mistaken for each other.
    Percent(u8),
    "a percentage, e.g. 10%",
    |text| {
        let Some(number) = text.trim().strip_suffix('%') else {
            return Err(format!(
                "expected a percentage, e.g. 10%, found {}",
                redact::value(text)
            ));
        };
        match number.trim().parse::<u8>() {
            Ok(percent @ 1..=100) => Ok(percent),
            _ => Err(format!(
                "invalid percentage {}: use a whole number from 1% to 100%",
                redact::value(text)
            )),
        }
    },
    |percent, serializer| serializer.serialize_str(&format!("{percent}%"))
);

scalar!(
    Flag(bool),
    "true or false",
    |text| match text {
        "true" | "True" | "TRUE" => Ok(true),
        "false" | "False" | "FALSE" => Ok(false),
        _ => Err(format!(
            "expected true or false, found {}",
            redact::value(text)
        )),
    },
    |flag, serializer| serializer.serialize_bool(*flag)
);

scalar!(
    /// `IP:PORT`; `:PORT` (as Go writes it) means every IPv4 address.
    ListenAddr(SocketAddr),
    "an address, e.g. 0.0.0.0:3000",
    |text| {
        if let Some(port) = text.strip_prefix(':') {
            if let Ok(port) = port.parse::<u16>() {
                return Ok(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)));
            }
        }
        text.parse::<SocketAddr>().map_err(|_| {
            format!(
                "invalid address {}: use an IP address and a port, e.g. 0.0.0.0:3000 or [::]:3000",
                redact::value(text)
            )
        })
    },
    |addr, serializer| serializer.serialize_str(&addr.to_string())
);

scalar!(
    PathText(PathBuf),
    "a path",
    |text| {
        if text.is_empty() {
            return Err("must not be empty".to_owned());
        }
        if text.contains('\0') {
            return Err(format!(
                "invalid path {}: it contains a NUL character",
                redact::value(text)
            ));
        }
        Ok(PathBuf::from(text))
    },
    |path, serializer| serializer.serialize_str(&path.to_string_lossy())
);

scalar!(
    /// A name for the server certificate: a DNS name (a leading `*.` allowed) or an IP.
    HostName(String),
    "a host name or an IP address",
    |text| check_host(text).map(|()| text.to_owned()),
    render_str
);

fn check_host(text: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("invalid host name {}: {why}", redact::value(text)));
    if text.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    if text.contains("://") || text.contains('/') {
        return fail("give the bare host name or IP address, without scheme or path");
    }
    if text.starts_with('[') || text.parse::<SocketAddr>().is_ok() {
        return fail("give the bare host name or IP address, without port or brackets");
    }
    let name = text.strip_prefix("*.").unwrap_or(text);
    if name.is_empty() || text.len() > 253 {
        return fail("must be 1 to 253 characters long");
    }
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return fail("each dot-separated part must be 1 to 63 characters long");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        {
            return fail("use only letters, digits, '-' and '.'");
        }
        if label.starts_with('-') || label.ends_with('-') {
            return fail("a part must not start or end with '-'");
        }
    }
    Ok(())
}

/// The SANs list; a bare string is refused rather than taken as a one-element list, so
/// that `advertise: a, b` is not silently read as a single name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(in crate::config) struct HostList(pub(in crate::config) Vec<HostName>);

impl<'de> Deserialize<'de> for HostList {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ListVisitor;

        impl<'de> Visitor<'de> for ListVisitor {
            type Value = HostList;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list of strings")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<HostList, A::Error> {
                let mut hosts = Vec::new();
                while let Some(host) = seq.next_element()? {
                    hosts.push(host);
                }
                Ok(HostList(hosts))
            }
        }

        deserializer.deserialize_seq(ListVisitor)
    }
}

impl<'de> Deserialize<'de> for TlsVersion {
    /// `"1.3"` and `"1.2"`, and the same unquoted (a YAML float), or with a `TLS`/`TLSv`
    /// prefix as other servers spell it.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(FromText {
            expecting: "a TLS version, \"1.3\" or \"1.2\"",
            parse: |text| {
                let lower = text.trim().to_ascii_lowercase();
                let number = lower
                    .strip_prefix("tlsv")
                    .or_else(|| lower.strip_prefix("tls"))
                    .unwrap_or(&lower)
                    .trim_start();
                match number {
                    "1.3" => Ok(TlsVersion::Tls13),
                    "1.2" => Ok(TlsVersion::Tls12),
                    _ => Err(format!(
                        "unsupported TLS version {}: use \"1.3\" (the default) or \"1.2\"",
                        redact::value(text)
                    )),
                }
            },
        })
    }
}

impl Serialize for TlsVersion {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

scalar!(
    /// A `tracing_subscriber::EnvFilter` directive. A bare word must be a level: a typo such
    /// as `inf` would otherwise be taken as a target name and silently log nothing.
    LogLevel(String),
    "a log level, e.g. info",
    |text| check_log_level(text).map(|()| text.to_owned()),
    render_str
);

const LEVELS: &[&str] = &["off", "error", "warn", "info", "debug", "trace"];

fn check_log_level(text: &str) -> Result<(), String> {
    let how = "use off, error, warn, info, debug or trace, or a directive such as \
               info,aar=debug";
    if text.trim().is_empty() {
        return Err(format!("must not be empty: {how}"));
    }
    let is_level = |word: &str| LEVELS.contains(&word.trim().to_ascii_lowercase().as_str());
    for directive in text.split(',') {
        let directive = directive.trim();
        // Span and field filters are EnvFilter's business.
        if directive.contains(['[', '{']) {
            continue;
        }
        let level = match directive.rsplit_once('=') {
            Some((_, level)) => level,
            None => directive,
        };
        if !is_level(level) {
            return Err(format!("invalid log level {}: {how}", redact::value(text)));
        }
    }
    tracing_subscriber::EnvFilter::builder()
        .parse(text)
        .map_err(|err| format!("invalid log level {}: {err}", redact::value(text)))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_rules() {
        for good in [
            "aar.example.com",
            "*.example.com",
            "10.0.0.1",
            "::1",
            "localhost",
        ] {
            assert_eq!(check_host(good), Ok(()), "{good}");
        }
        for bad in ["https://x", "x:3000", "[::1]", "a..b", "-a", "a_b", ""] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn log_level_rules() {
        for good in [
            "info",
            "DEBUG",
            "warn,aar=debug",
            "aar=trace",
            "off",
            "info,h2[conn]=off",
        ] {
            assert_eq!(check_log_level(good), Ok(()), "{good}");
        }
        for bad in ["inf", "", "verbose", "aar=loud"] {
            assert!(check_log_level(bad).is_err(), "{bad}");
        }
    }
}
