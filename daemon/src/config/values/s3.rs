//! Values of `storage.s3`: the bucket, its region and endpoint, the credentials and how
//! long a presigned URL lasts.

use std::net::Ipv4Addr;
use std::time::Duration;

use super::{render_duration, render_str, scalar};
use crate::config::redact;
use crate::config::{format_duration, parse_duration, Secret};

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

const CREDENTIALS_IN_URL: &str =
    "invalid endpoint: credentials do not belong in the URL; use access-key and \
     secret-access-key";

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
            return Err(CREDENTIALS_IN_URL.to_owned());
        }
        return fail("add the scheme, http:// or https://, before the host");
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    if authority.contains('@') {
        return Err(CREDENTIALS_IN_URL.to_owned());
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
        check_credential(text, "must not contain spaces or line breaks").map(|()| text.to_owned())
    },
    render_str
);

scalar!(
    /// Never quoted back, whatever is wrong with it.
    SecretText(Secret),
    "a secret access key",
    |text| {
        check_credential(
            text,
            "must not contain spaces or line breaks (value not shown)",
        )
        .map(|()| Secret::new(text))
    },
    |secret, serializer| secret.serialize(serializer)
);

/// Either half of the key pair. An empty one is most likely a template's blank, where the
/// default credential chain was meant.
fn check_credential(text: &str, on_spaces: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err(
            "must not be empty; leave out access-key and secret-access-key to use the AWS \
             default credential chain"
                .to_owned(),
        );
    }
    if text.chars().any(char::is_whitespace) {
        return Err(on_spaces.to_owned());
    }
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
}
