//! Reading YAML into the schema types, and the translation of serde and YAML errors into a
//! [`ConfigError`] an operator can act on: key path, line, column, and what to do.
//!
//! serde_yaml_ng attaches the position of the YAML node being read to every error, and
//! serde_path_to_error records the key path; the message itself is only available through
//! `Display`, decorated with serde_yaml_ng's own path and position. Messages written by this
//! module's validators are therefore wrapped in a marker character ([`tagged`]) to be cut out
//! exactly; the few messages serde itself writes (unknown key, wrong type, duplicate key)
//! have a fixed shape and are reworded here.

use std::fmt;

use serde::de::{DeserializeOwned, IgnoredAny};

use super::error::ConfigError;
use super::locate::{self, Segment, Target};
use super::redact;

/// Which document is being read; it decides the keys that are valid at the top.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Root {
    Daemon,
    StorageDocument,
}

/// Every key of the daemon's config file, to tell an operator where a key that is valid
/// elsewhere belongs (most often a key indented at the wrong level).
const SCHEMA: &[&str] = &[
    "http",
    "http.addr",
    "http.advertise",
    "http.shutdown-timeout",
    "http.tls",
    "http.tls.certificate",
    "http.tls.key",
    "http.tls.min-version",
    "http.limits",
    "http.limits.header-timeout",
    "http.limits.body-timeout",
    "http.limits.max-metadata-size",
    "http.limits.max-image-size",
    "http.limits.max-connections",
    "http.limits.untrusted-share",
    "http.limits.untrusted-idle-timeout",
    "http.limits.write-timeout",
    "state-directory",
    "storage",
    "storage.fs",
    "storage.fs.root-directory",
    "storage.fs.min-free",
    "storage.s3",
    "storage.s3.region",
    "storage.s3.bucket",
    "storage.s3.access-key",
    "storage.s3.secret-access-key",
    "storage.s3.endpoint",
    "storage.s3.path-style",
    "storage.s3.presign-duration",
    "storage.s3.refresh-interval",
    "storage.s3.trust-refresh-interval",
    "storage.s3.trust-stale-after",
    "storage.s3.cloudfront",
    "storage.s3.cloudfront.base-url",
    "storage.s3.cloudfront.private-key",
    "storage.s3.cloudfront.keypair-id",
    "storage.s3.cloudfront.duration",
    "gc",
    "gc.interval",
    "gc.upload-expiry",
    "gc.scrub-interval",
    "gc.scrub-rate",
    "log",
    "log.level",
];

/// Keys whose values must never be quoted back.
const SECRET_KEYS: &[&str] = &["secret-access-key", "private-key"];

/// The marker around messages written by the validators; a control character that YAML
/// text cannot hold unescaped and that the schema's key names never contain.
const MARK: char = '\u{1}';

/// Wraps a validator's message so that [`deserialize`] can cut it out of serde_yaml_ng's
/// decorated error text.
pub(super) fn tagged(message: impl fmt::Display) -> String {
    format!("{MARK}{message}{MARK}")
}

/// Reads `text` into `T`, turning every failure into a positioned [`ConfigError`].
pub(super) fn deserialize<T: DeserializeOwned>(text: &str, root: Root) -> Result<T, ConfigError> {
    check_syntax(text)?;
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| from_serde(err, text, root))
}

/// YAML errors first, so that the typed pass only ever fails on the schema.
fn check_syntax(text: &str) -> Result<(), ConfigError> {
    let Err(err) = serde_yaml_ng::from_str::<IgnoredAny>(text) else {
        return Ok(());
    };
    let mut position = err.location().map(|l| (l.line(), l.column()));
    let shown = err.to_string();
    let mut message = match position {
        Some((line, column)) => shown.replacen(&format!(" at line {line} column {column}"), "", 1),
        None => shown,
    };
    message = reword_positions(&message);
    if message.contains("more than one document") {
        message = "the text holds more than one YAML document; keep a single one (remove the \
                   extra `---`)"
            .to_owned();
        position = second_document(text).map(|line| (line, 1));
    } else {
        message = format!("invalid YAML: {message}");
    }
    if let Some((line, _)) = position {
        let indentation: String = text
            .lines()
            .nth(line.saturating_sub(1))
            .unwrap_or("")
            .chars()
            .take_while(|c| c.is_whitespace())
            .collect();
        if indentation.contains('\t') {
            message.push_str("; indent with spaces: YAML does not allow tabs");
        }
    }
    Err(ConfigError::invalid(String::new(), position, message))
}

/// The line of the `---` that starts a second document: the first one that follows
/// content (a `---` before any content only opens the first document).
fn second_document(text: &str) -> Option<usize> {
    let mut content = false;
    for (index, line) in text.lines().enumerate() {
        if line.starts_with("---") && content {
            return Some(index + 1);
        }
        let trimmed = line.trim();
        if !trimmed.is_empty() && !trimmed.starts_with('#') && !line.starts_with("---") {
            content = true;
        }
    }
    None
}

/// libyaml's context positions read "at line 1 column 1"; match the "line 1, column 1" of
/// the rest of the message.
fn reword_positions(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(" at line ") {
        out.push_str(&rest[..at]);
        let after = &rest[at + " at line ".len()..];
        let line_len = after.bytes().take_while(u8::is_ascii_digit).count();
        match after[line_len..].strip_prefix(" column ") {
            Some(column_part) if line_len > 0 => {
                let column_len = column_part.bytes().take_while(u8::is_ascii_digit).count();
                out.push_str(&format!(
                    " (line {}, column {})",
                    &after[..line_len],
                    &column_part[..column_len]
                ));
                rest = &column_part[column_len..];
            }
            _ => {
                out.push_str(" at line ");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn from_serde(
    err: serde_path_to_error::Error<serde_yaml_ng::Error>,
    text: &str,
    root: Root,
) -> ConfigError {
    let mut segments: Vec<Segment> = err
        .path()
        .iter()
        .map(|segment| match segment {
            serde_path_to_error::Segment::Map { key } => Segment::Key(key.clone()),
            serde_path_to_error::Segment::Seq { index } => Segment::Index(*index),
            serde_path_to_error::Segment::Enum { variant } => Segment::Key(variant.clone()),
            serde_path_to_error::Segment::Unknown => Segment::Unknown,
        })
        .collect();
    let inner = err.into_inner();
    let mut position = inner.location().map(|l| (l.line(), l.column()));
    let shown = inner.to_string();

    let mut hidden_key = false;
    let message = match cut_tagged(&shown) {
        Some(message) => message.to_owned(),
        None => {
            let bare = match position {
                Some((line, column)) => shown
                    .strip_suffix(&format!(" at line {line} column {column}"))
                    .unwrap_or(&shown),
                None => &shown,
            };
            reword(
                bare,
                &mut segments,
                &mut position,
                text,
                root,
                &mut hidden_key,
            )
        }
    };
    if position.is_none() {
        position = locate::locate(text, &segments, Target::Value);
    }
    // Located above with the key as written; named in the path only if it may be shown.
    if hidden_key {
        if let Some(last) = segments.last_mut() {
            *last = Segment::Unknown;
        }
    }
    ConfigError::invalid(path_string(&segments), position, message)
}

/// Rewords the messages serde and serde_yaml_ng write themselves. A duplicate key moves
/// the error to the key (serde reports it against the enclosing mapping). An unknown key
/// that may be a pasted secret is not named; `hidden_key` then says the path must not name
/// it either.
fn reword(
    bare: &str,
    segments: &mut Vec<Segment>,
    position: &mut Option<(usize, usize)>,
    text: &str,
    root: Root,
    hidden_key: &mut bool,
) -> String {
    if let Some(found) = bare.find("unknown field `") {
        // serde_path_to_error has already appended the unknown key to the path.
        let key = match segments.last() {
            Some(Segment::Key(key)) => key.clone(),
            _ => String::new(),
        };
        let expected = bare[found + "unknown field `".len()..]
            .strip_prefix(key.as_str())
            .and_then(|rest| rest.strip_prefix("`, expected "))
            .map(expected_names)
            .unwrap_or_default();
        let parent: Vec<&str> = segments[..segments.len().saturating_sub(1)]
            .iter()
            .map(Segment::as_key)
            .collect();
        *hidden_key = redact::key_name(&key).is_none();
        unknown_key(&key, &expected, &parent, root)
    } else if let Some(found) = bare.find("duplicate field `") {
        let key = bare[found + "duplicate field `".len()..]
            .trim_end_matches('`')
            .to_owned();
        segments.push(Segment::Key(key.clone()));
        let first = locate::locate(text, segments, Target::Key { occurrence: 1 });
        *position = locate::locate(text, segments, Target::Key { occurrence: 2 });
        match first {
            Some((line, _)) => format!(
                "duplicate key {}; it is already set on line {line}",
                redact::key(&key)
            ),
            None => format!("duplicate key {}", redact::key(&key)),
        }
    } else if let Some(found) = bare.find("missing field `") {
        let key = bare[found + "missing field `".len()..].trim_end_matches('`');
        format!("missing required key {key:?}")
    } else if let Some(found) = bare.find("invalid type: ") {
        reword_invalid_type(&bare[found + "invalid type: ".len()..])
    } else if let Some(found) = bare.find("invalid value: ") {
        reword_invalid_type(&bare[found + "invalid value: ".len()..])
    } else if is_secret(segments) {
        // Not a shape this module knows, about a secret: it might quote the value.
        "invalid value (not shown: it is a secret)".to_owned()
    } else {
        strip_yaml_path(bare, segments).to_owned()
    }
}

fn is_secret(segments: &[Segment]) -> bool {
    matches!(segments.last(), Some(Segment::Key(key)) if SECRET_KEYS.contains(&key.as_str()))
}

fn cut_tagged(shown: &str) -> Option<&str> {
    let start = shown.find(MARK)?;
    let end = shown.rfind(MARK)?;
    (end > start).then(|| &shown[start + MARK.len_utf8()..end])
}

/// serde_yaml_ng prefixes its own path (same notation) to messages it did not write.
fn strip_yaml_path<'a>(message: &'a str, segments: &[Segment]) -> &'a str {
    for len in (1..=segments.len()).rev() {
        let prefix = format!("{}: ", path_string(&segments[..len]));
        if let Some(rest) = message.strip_prefix(&prefix) {
            return rest;
        }
    }
    message
}

fn path_string(segments: &[Segment]) -> String {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Index(index) => out.push_str(&format!("[{index}]")),
            Segment::Unknown => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push('?');
            }
        }
    }
    out
}

/// The names in serde's "one of `a`, `b`", "`a` or `b`", "`a`" or "there are no fields".
fn expected_names(listed: &str) -> Vec<String> {
    listed
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

/// Names the key only as [`redact::key`] allows; the closest valid key is always named,
/// since it comes from the schema.
fn unknown_key(key: &str, expected: &[String], parent: &[&str], root: Root) -> String {
    let shown = redact::key(key);
    if let Some(similar) = suggest(key, expected) {
        return format!("unknown key {shown}; did you mean {similar:?}?");
    }
    if parent.is_empty() && (key == "fs" || key == "s3") {
        return format!(
            "unknown key {shown}; a storage backend goes under the top-level \"storage:\" key"
        );
    }
    let here = parent.join(".");
    let elsewhere: Vec<&str> = SCHEMA
        .iter()
        .filter_map(|path| {
            let (section, last) = path.rsplit_once('.')?;
            (last == key && section != here).then_some(section)
        })
        .filter(|section| root == Root::Daemon || section.starts_with("storage"))
        .collect();
    if !elsewhere.is_empty() {
        return format!(
            "unknown key {shown} here; it belongs under {} (check the indentation)",
            elsewhere.join(" or ")
        );
    }
    match expected {
        [] => format!("unknown key {shown}; no keys are allowed here"),
        _ => format!("unknown key {shown}; valid keys: {}", expected.join(", ")),
    }
}

/// The valid key an operator most likely meant, if one is close enough to be worth saying.
fn suggest<'a>(key: &str, expected: &'a [String]) -> Option<&'a str> {
    let normalize = |s: &str| s.to_lowercase().replace(['_', ' '], "-");
    let wanted = normalize(key);
    if let Some(same) = expected.iter().find(|name| normalize(name) == wanted) {
        return Some(same);
    }
    let best = expected
        .iter()
        .map(|name| (strsim::jaro_winkler(&wanted, name), name))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((score, name)) = best {
        if score >= 0.8 {
            return Some(name);
        }
    }
    // A shortened key, e.g. "url" for "base-url", when it can only mean one key.
    if wanted.len() >= 3 {
        let containing: Vec<&String> = expected
            .iter()
            .filter(|name| name.contains(wanted.as_str()))
            .collect();
        if let [only] = containing[..] {
            return Some(only);
        }
    }
    None
}

/// serde writes "invalid type: map, expected struct S3File"; say it the other way round, in
/// YAML's words, and never quote a string value: it could be a misplaced secret.
fn reword_invalid_type(detail: &str) -> String {
    let Some(split) = detail.rfind(", expected ") else {
        return detail.to_owned();
    };
    let (found, expected) = (&detail[..split], &detail[split + ", expected ".len()..]);
    let expected = if expected.starts_with("struct ") || expected == "a map" {
        "a mapping"
    } else if expected == "a sequence" {
        "a list"
    } else if expected == "field identifier" {
        "a key name"
    } else {
        expected
    };
    let found = if found.starts_with("string ") {
        "a string".to_owned()
    } else if found == "map" {
        "a mapping".to_owned()
    } else if found == "sequence" {
        "a list".to_owned()
    } else if found == "unit value" || found == "Option value" {
        "null".to_owned()
    } else if let Some(value) = found.strip_prefix("boolean ") {
        value.trim_matches('`').to_owned()
    } else if let Some(value) = found
        .strip_prefix("integer ")
        .or_else(|| found.strip_prefix("floating point "))
    {
        format!("the number {}", value.trim_matches('`'))
    } else {
        found.to_owned()
    };
    format!("expected {expected}, found {found}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn suggests_close_keys_only() {
        let s3 = names(&[
            "region",
            "bucket",
            "access-key",
            "secret-access-key",
            "endpoint",
            "path-style",
            "presign-duration",
            "refresh-interval",
            "cloudfront",
        ]);
        assert_eq!(suggest("bucke", &s3), Some("bucket"));
        assert_eq!(suggest("regoin", &s3), Some("region"));
        assert_eq!(suggest("access_key", &s3), Some("access-key"));
        assert_eq!(suggest("Secret-Access-Key", &s3), Some("secret-access-key"));
        assert_eq!(suggest("secret-key", &s3), Some("secret-access-key"));
        assert_eq!(suggest("cloud-front", &s3), Some("cloudfront"));
        assert_eq!(suggest("zone", &s3), None);
        assert_eq!(suggest("acl", &s3), None);
        let cloudfront = names(&["base-url", "private-key", "keypair-id", "duration"]);
        assert_eq!(suggest("url", &cloudfront), Some("base-url"));
        assert_eq!(suggest("key-pair-id", &cloudfront), Some("keypair-id"));
        let top = names(&["http", "state-directory", "storage", "gc", "log"]);
        assert_eq!(suggest("state_dir", &top), Some("state-directory"));
        assert_eq!(suggest("storge", &top), Some("storage"));
        assert_eq!(suggest("tls", &top), None);
    }

    #[test]
    fn rewords_libyaml_positions() {
        assert_eq!(
            reword_positions(
                "did not find expected key, while parsing a block mapping at line 1 column 1"
            ),
            "did not find expected key, while parsing a block mapping (line 1, column 1)"
        );
        assert_eq!(reword_positions("at line x"), "at line x");
    }

    #[test]
    fn reads_serde_expected_lists() {
        assert_eq!(
            expected_names("one of `a`, `b`, `c`"),
            names(&["a", "b", "c"])
        );
        assert_eq!(expected_names("`a` or `b`"), names(&["a", "b"]));
        assert_eq!(expected_names("`a`"), names(&["a"]));
        assert!(expected_names("there are no fields").is_empty());
    }
}
