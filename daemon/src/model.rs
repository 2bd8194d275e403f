//! The registry model: applications, versions and the names that identify them.
//!
//! Names end up in file paths and object keys, so they are validated here, once, before
//! they reach any storage backend.

use crate::digest::Digest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MAX_NAME_LEN: usize = 64;

/// One published version of an application, exactly as stored by the backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub application: String,
    pub version: u32,
    /// The manifest YAML as the publisher sent it, kept verbatim.
    pub manifest: String,
    pub tags: Vec<String>,
    pub instance_type: Option<String>,
    pub boot_package: Option<String>,
    pub images: BTreeMap<String, ImageRef>,
    pub created_at: String,
    /// Whether the image is a virtual-machine image; the publisher says so in the publish
    /// request, as the manifest does not. Records written before it existed are containers.
    #[serde(default)]
    pub vm: bool,
    /// What AMS reads of each version, taken from the manifest at publish. `None` in
    /// records written before it existed; the registry fills it from the manifest at load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<VersionSettings>,
}

/// The per-version facts of the manifest that AMS imports with a version (its
/// `RegistryApplicationVersion`), kept apart so that reads never parse YAML.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionSettings {
    pub boot_activity: String,
    pub features: Vec<String>,
    pub hooks_timeout: String,
    pub bootstrap_keep: Vec<String>,
    pub video_encoder: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ImageRef {
    pub digest: Digest,
    pub size: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NameError {
    #[error("{what} must not be empty")]
    Empty { what: &'static str },
    #[error("{what} {shown:?} is {len} characters long; the limit is {MAX_NAME_LEN}")]
    TooLong {
        what: &'static str,
        shown: String,
        len: usize,
    },
    #[error("{what} {shown:?} contains {bad}; use letters, digits, '.', '_' and '-', starting with a letter or digit")]
    BadCharacter {
        what: &'static str,
        shown: String,
        bad: String,
    },
    #[error("{what} {shown:?} must start with a letter or a digit")]
    BadStart { what: &'static str, shown: String },
    #[error("{what} {shown:?} must not contain \"..\"")]
    DotDot { what: &'static str, shown: String },
}

/// Checks an application name or architecture. The rules keep every name a single,
/// harmless path component and object-key segment on every backend.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), NameError> {
    // Show names escaped and shortened: they may hold control characters or be huge.
    let shown: String = name.chars().take(MAX_NAME_LEN + 8).collect();
    if name.is_empty() {
        return Err(NameError::Empty { what });
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        let bad = match c {
            '/' | '\\' => "a path separator".to_string(),
            ' ' => "a space".to_string(),
            c if c.is_control() => format!("the control character {:?}", c),
            c => format!("the character {c:?}"),
        };
        return Err(NameError::BadCharacter { what, shown, bad });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            what,
            shown,
            len: name.len(),
        });
    }
    if name.contains("..") {
        return Err(NameError::DotDot { what, shown });
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return Err(NameError::BadStart { what, shown });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_single_harmless_components() {
        for ok in ["app", "my-app_2.1", "A", "x".repeat(64).as_str()] {
            assert_eq!(validate_name("application name", ok), Ok(()), "{ok}");
        }
        let err = |n: &str| {
            validate_name("application name", n)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err(""), "application name must not be empty");
        assert!(err("a/b").contains("a path separator"));
        assert!(err("a b").contains("a space"));
        assert!(err("a\u{7}b").contains("control character"));
        assert!(err("..").contains("must not contain \"..\""));
        assert!(err(".hidden").contains("must start with a letter or a digit"));
        assert!(err(&"x".repeat(65)).contains("65 characters long; the limit is 64"));
    }
}
