//! Leaf values of the schema. Each one is checked in its `Deserialize` impl, while the YAML
//! parser still knows where the value is, so that the error names its line and column.
//! Messages never quote a value whole ([`redact::value`]): a secret pasted into the wrong
//! field would otherwise be echoed. Secrets' own fields say nothing of the value at all.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::error::tagged;
use super::redact;
use super::{format_duration, format_size, parse_duration, parse_size, Secret, TlsVersion};

/// Reads any YAML scalar as its text and hands it to `parse`. serde_yaml_ng gives the
/// scalar's text as written (`1.2`, `true` and `30` included), which is what these values
/// are read from.
struct FromText<T> {
    expecting: &'static str,
    parse: fn(&str) -> Result<T, String>,
}

impl<T> Visitor<'_> for FromText<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.expecting)
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<T, E> {
        (self.parse)(value).map_err(|message| E::custom(tagged(message)))
    }
}

/// A newtype read through [`FromText`] and written back through `$render`.
macro_rules! scalar {
    ($(#[$meta:meta])* $name:ident($inner:ty), $expecting:literal, $parse:expr, $render:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub(super) struct $name(pub(super) $inner);

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer
                    .deserialize_str(FromText {
                        expecting: $expecting,
                        parse: $parse,
                    })
                    .map($name)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let render: fn(&$inner, S) -> Result<S::Ok, S::Error> = $render;
                render(&self.0, serializer)
            }
        }
    };
}

fn render_str<S: Serializer, T: AsRef<str>>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(value.as_ref())
}

fn render_duration<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&format_duration(*value))
}

fn render_size<S: Serializer>(value: &u64, serializer: S) -> Result<S::Ok, S::Error> {
    let text = format_size(*value);
    if text.bytes().all(|b| b.is_ascii_digit()) {
        serializer.serialize_u64(*value)
    } else {
        serializer.serialize_str(&text)
    }
}

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

/// S3 refuses presigned URLs valid longer than a week (SigV4).
const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);

scalar!(
    PresignDuration(Duration),
    "a duration, e.g. 5m",
    |text| {
        let duration = parse_duration(text)?;
        if duration.is_zero() {
            return Err("invalid duration 0s: must be longer than 0s".to_owned());
        }
        if duration > MAX_PRESIGN {
            return Err(format!(
                "invalid duration {}: S3 presigned URLs last at most 168h (7 days)",
                format_duration(duration)
            ));
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
pub(super) struct HostList(pub(super) Vec<HostName>);

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
    Region(String),
    "a region name, e.g. eu-west-3",
    |text| {
        if text.is_empty() {
            return Err("must not be empty: set the bucket's region, e.g. eu-west-3".to_owned());
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(format!(
                "invalid region {}: use a region name such as eu-west-3",
                redact::value(text)
            ));
        }
        Ok(text.to_owned())
    },
    render_str
);

scalar!(
    /// S3's bucket naming rules, so that a bad name is refused here rather than by the
    /// first request the daemon makes.
    Bucket(String),
    "a bucket name",
    |text| check_bucket(text).map(|()| text.to_owned()),
    render_str
);

fn check_bucket(name: &str) -> Result<(), String> {
    let fail = |why: &str| {
        Err(format!(
            "invalid bucket name {}: {why}",
            redact::value(name)
        ))
    };
    if !(3..=63).contains(&name.len()) {
        return fail("must be 3 to 63 characters long");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
    {
        return fail("use only lowercase letters, digits, '.' and '-'");
    }
    let edge = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !edge(name.as_bytes()[0]) || !edge(name.as_bytes()[name.len() - 1]) {
        return fail("must start and end with a lowercase letter or a digit");
    }
    if name.contains("..") {
        return fail("must not contain two dots in a row");
    }
    if name.parse::<Ipv4Addr>().is_ok() {
        return fail("must not be an IP address");
    }
    for prefix in ["xn--", "sthree-"] {
        if name.starts_with(prefix) {
            return fail(&format!("must not start with {prefix:?} (reserved by S3)"));
        }
    }
    for suffix in ["-s3alias", "--ol-s3"] {
        if name.ends_with(suffix) {
            return fail(&format!("must not end with {suffix:?} (reserved by S3)"));
        }
    }
    Ok(())
}

scalar!(
    /// An http(s) URL, for MinIO, Ceph RGW or a test server.
    Endpoint(String),
    "a URL, e.g. http://127.0.0.1:9000",
    |text| check_endpoint(text).map(|()| text.to_owned()),
    render_str
);

fn check_endpoint(url: &str) -> Result<(), String> {
    let fail = |why: &str| Err(format!("invalid endpoint {}: {why}", redact::value(url)));
    let lower = url.to_ascii_lowercase();
    let rest = if lower.starts_with("https://") {
        &url["https://".len()..]
    } else if lower.starts_with("http://") {
        &url["http://".len()..]
    } else if url.contains("://") {
        return fail("use an http:// or https:// URL");
    } else {
        // The value may hold credentials (user:password@host); do not quote it.
        if url.contains('@') {
            return Err(
                "invalid endpoint: credentials do not belong in the URL; use access-key and \
                 secret-access-key"
                    .to_owned(),
            );
        }
        return fail("add the scheme, http:// or https://, before the host");
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if authority.contains('@') {
        return Err(
            "invalid endpoint: credentials do not belong in the URL; use access-key and \
             secret-access-key"
                .to_owned(),
        );
    }
    if url.chars().any(char::is_whitespace) {
        return fail("must not contain spaces");
    }
    if rest[authority_end..].contains(['?', '#']) {
        return fail("must not have a query or a fragment");
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let Some((ip, after)) = bracketed.split_once(']') else {
            return fail("unclosed '[' in the host");
        };
        if ip.parse::<std::net::Ipv6Addr>().is_err() {
            return fail("invalid IPv6 address in the host");
        }
        (ip, after.strip_prefix(':'))
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return fail("missing host");
    }
    if !authority.starts_with('[')
        && !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.' || b == b'_')
    {
        return fail("invalid host");
    }
    if let Some(port) = port {
        if port.parse::<u16>().map_or(true, |p| p == 0) {
            return fail("invalid port");
        }
    }
    Ok(())
}

scalar!(
    AccessKey(String),
    "an access key ID",
    |text| {
        if text.is_empty() {
            return Err(
                "must not be empty; leave out access-key and secret-access-key to use the AWS \
                 default credential chain"
                    .to_owned(),
            );
        }
        if text.chars().any(char::is_whitespace) {
            return Err("must not contain spaces or line breaks".to_owned());
        }
        Ok(text.to_owned())
    },
    render_str
);

scalar!(
    /// Never quoted back, whatever is wrong with it.
    SecretText(Secret),
    "a secret access key",
    |text| {
        if text.is_empty() {
            return Err(
                "must not be empty; leave out access-key and secret-access-key to use the AWS \
                 default credential chain"
                    .to_owned(),
            );
        }
        if text.chars().any(char::is_whitespace) {
            return Err("must not contain spaces or line breaks (value not shown)".to_owned());
        }
        Ok(Secret::new(text))
    },
    |secret, serializer| secret.serialize(serializer)
);

scalar!(
    /// A PEM private key. Only its markers and layout are checked here (no RSA parsing), so
    /// that the common mistakes are caught where the operator can see them. Never quoted.
    PrivateKey(Secret),
    "a PEM private key",
    |text| check_private_key(text).map(|()| Secret::new(text)),
    |secret, serializer| secret.serialize(serializer)
);

fn check_private_key(pem: &str) -> Result<(), String> {
    const EXAMPLE: &str = "\"-----BEGIN RSA PRIVATE KEY-----\" or \"-----BEGIN PRIVATE KEY-----\"";
    let Some(begin) = pem.find("-----BEGIN ") else {
        return Err(format!(
            "not a PEM private key (value not shown): it must start with {EXAMPLE}"
        ));
    };
    let after_begin = &pem[begin + "-----BEGIN ".len()..];
    let Some(label_end) = after_begin.find("-----") else {
        return Err(format!(
            "not a PEM private key (value not shown): it must start with {EXAMPLE}"
        ));
    };
    let label = &after_begin[..label_end];
    if label.contains('\n') {
        return Err(format!(
            "not a PEM private key (value not shown): it must start with {EXAMPLE}"
        ));
    }
    // The label is only quoted back when it is a known one: whatever else sits between the
    // dashes may be part of the secret.
    match label {
        "RSA PRIVATE KEY" | "PRIVATE KEY" | "EC PRIVATE KEY" => {}
        "ENCRYPTED PRIVATE KEY" => {
            return Err(
                "the private key is encrypted; give the decrypted key (value not shown)".to_owned(),
            )
        }
        "OPENSSH PRIVATE KEY" => {
            return Err(
                "this is an OpenSSH private key; convert it to PEM, e.g. `ssh-keygen -p -m PEM \
                 -f KEYFILE` (value not shown)"
                    .to_owned(),
            )
        }
        "PUBLIC KEY" | "RSA PUBLIC KEY" | "CERTIFICATE" | "CERTIFICATE REQUEST" => {
            return Err(format!(
                "this is a PEM {label}, not a private key: CloudFront signs with the private key \
                 of the key pair (value not shown)"
            ))
        }
        _ => {
            return Err(format!(
                "not a PEM private key (value not shown): it must start with {EXAMPLE}"
            ))
        }
    }
    let body_and_end = &after_begin[label_end + "-----".len()..];
    if !body_and_end.starts_with('\n') && !body_and_end.starts_with("\r\n") {
        return Err(
            "the private key has lost its line breaks: write it as a block, `private-key: |` \
             followed by the PEM lines indented below it"
                .to_owned(),
        );
    }
    let end_marker = format!("-----END {label}-----");
    let Some(end) = body_and_end.find(&end_marker) else {
        return Err(format!(
            "the private key is cut short: \"{end_marker}\" is missing (value not shown)"
        ));
    };
    let body = &body_and_end[..end];
    if body.contains("ENCRYPTED") {
        return Err(
            "the private key is encrypted; give the decrypted key (value not shown)".to_owned(),
        );
    }
    let base64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    let content: Vec<u8> = body.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if content.is_empty() || !content.iter().all(|&b| base64(b)) {
        return Err(
            "the private key's body is not base64 between its BEGIN and END lines (value not \
             shown)"
                .to_owned(),
        );
    }
    Ok(())
}

scalar!(
    KeypairId(String),
    "a key pair ID, e.g. ADF443JOEF3423JF",
    |text| {
        if text.is_empty() {
            return Err("must not be empty: set the CloudFront key pair ID".to_owned());
        }
        if !text.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "invalid key pair ID {}: use only letters and digits, e.g. ADF443JOEF3423JF",
                redact::value(text)
            ));
        }
        Ok(text.to_owned())
    },
    render_str
);

scalar!(
    /// The distribution's domain, with or without `https://`.
    BaseUrl(String),
    "a CloudFront domain, e.g. d111111abcdef8.cloudfront.net",
    |text| {
        let fail = |why: &str| {
            Err(format!(
                "invalid CloudFront base URL {}: {why}",
                redact::value(text)
            ))
        };
        let lower = text.to_ascii_lowercase();
        let rest = if lower.starts_with("https://") {
            &text["https://".len()..]
        } else if lower.starts_with("http://") {
            &text["http://".len()..]
        } else if text.contains("://") {
            return fail("use the distribution's domain, with or without https://");
        } else {
            text
        };
        if text.chars().any(char::is_whitespace) {
            return fail("must not contain spaces");
        }
        if rest.contains(['?', '#', '@']) {
            return fail("use the distribution's domain, with or without https://");
        }
        let host = rest.split(['/', ':']).next().unwrap_or("");
        if host.is_empty() {
            return fail("missing domain, e.g. d111111abcdef8.cloudfront.net");
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            return fail("invalid domain");
        }
        Ok(text.to_owned())
    },
    render_str
);

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
    fn bucket_rules() {
        for good in ["aar0", "my-bucket.example", "a1b", &"a".repeat(63)] {
            assert_eq!(check_bucket(good), Ok(()), "{good}");
        }
        let cases = [
            ("ab", "must be 3 to 63 characters long"),
            ("Aar0", "use only lowercase letters, digits, '.' and '-'"),
            ("aar_0", "use only lowercase letters, digits, '.' and '-'"),
            (
                "-aar",
                "must start and end with a lowercase letter or a digit",
            ),
            (
                "aar.",
                "must start and end with a lowercase letter or a digit",
            ),
            ("a..b", "must not contain two dots in a row"),
            ("192.168.1.1", "must not be an IP address"),
            ("xn--aar", "must not start with \"xn--\" (reserved by S3)"),
            (
                "aar-s3alias",
                "must not end with \"-s3alias\" (reserved by S3)",
            ),
        ];
        for (name, why) in cases {
            assert_eq!(
                check_bucket(name),
                Err(format!(
                    "invalid bucket name {}: {why}",
                    redact::value(name)
                ))
            );
        }
        let long = "a".repeat(64);
        assert!(check_bucket(&long).is_err());
    }

    #[test]
    fn endpoint_rules() {
        for good in [
            "http://127.0.0.1:9000",
            "https://s3.example.com",
            "https://s3.example.com/",
            "HTTP://minio:9000/rgw",
            "http://[::1]:9000",
            "http://minio_1:9000",
        ] {
            assert_eq!(check_endpoint(good), Ok(()), "{good}");
        }
        let cases = [
            (
                "127.0.0.1:9000",
                "add the scheme, http:// or https://, before the host",
            ),
            ("ftp://x", "use an http:// or https:// URL"),
            ("http://", "missing host"),
            ("http://:9000", "missing host"),
            ("http://host:99999", "invalid port"),
            ("http://host:abc", "invalid port"),
            ("http://host/?x=1", "must not have a query or a fragment"),
            ("http://ho st", "must not contain spaces"),
            ("http://[::1", "unclosed '[' in the host"),
        ];
        for (url, why) in cases {
            assert_eq!(
                check_endpoint(url),
                Err(format!("invalid endpoint {}: {why}", redact::value(url))),
                "{url}"
            );
        }
        let leaky = check_endpoint("http://user:hunter2@host").unwrap_err();
        assert!(!leaky.contains("hunter2"), "{leaky}");
        let leaky = check_endpoint("user:hunter2@host").unwrap_err();
        assert!(!leaky.contains("hunter2"), "{leaky}");
    }

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
    fn private_key_rules() {
        let good = "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\nq1w==\n-----END RSA PRIVATE KEY-----\n";
        assert_eq!(check_private_key(good), Ok(()));
        let pkcs8 = "-----BEGIN PRIVATE KEY-----\r\nMIIBOgIBAAJBAK\r\n-----END PRIVATE KEY-----";
        assert_eq!(check_private_key(pkcs8), Ok(()));
        let bad = [
            "MIIBOgIBAAJBAK",
            "-----BEGIN PUBLIC KEY-----\nMIIB\n-----END PUBLIC KEY-----\n",
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMIIB\n-----END ENCRYPTED PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY----- MIIBOgIBAAJBAK -----END RSA PRIVATE KEY-----",
            "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n",
            "-----BEGIN RSA PRIVATE KEY-----\nMII BOg!\n-----END RSA PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY-----\n\n-----END RSA PRIVATE KEY-----\n",
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nMIIB\n-----END RSA PRIVATE KEY-----\n",
        ];
        for pem in bad {
            let err = check_private_key(pem).unwrap_err();
            assert!(!err.contains("MII"), "{err}");
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
