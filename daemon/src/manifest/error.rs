//! Manifest errors that name the key, its line and column, and what was expected.

use serde::de::DeserializeOwned;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest line {line}: the document nests more than {limit} levels deep; no manifest key needs that many", limit = super::MAX_DEPTH)]
    TooDeep { line: usize },
    #[error("manifest{}: {message}", at(*.position))]
    Syntax {
        position: Option<(usize, usize)>,
        message: String,
    },
    #[error("manifest key `{key}`{}: {message}", at(*.position))]
    Invalid {
        key: String,
        position: Option<(usize, usize)>,
        message: String,
    },
    #[error("manifest names the application {found:?} but it is being published as {expected:?}; make them match")]
    NameMismatch { found: String, expected: String },
}

fn at(position: Option<(usize, usize)>) -> String {
    match position {
        Some((line, column)) => format!(" (line {line}, column {column})"),
        None => String::new(),
    }
}

impl ManifestError {
    pub fn invalid(
        key: impl Into<String>,
        position: Option<(usize, usize)>,
        message: impl Into<String>,
    ) -> Self {
        ManifestError::Invalid {
            key: key.into(),
            position,
            message: message.into(),
        }
    }
}

/// Reads `text` into `T`; a failure names the path of the key that failed.
pub(super) fn deserialize<T: DeserializeOwned>(text: &str) -> Result<T, ManifestError> {
    let deserializer = serde_yaml_ng::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let key = err.path().to_string();
        let inner = err.into_inner();
        let position = inner.location().map(|l| (l.line(), l.column()));
        let shown = inner.to_string();
        let message = match position {
            Some((line, column)) => shown
                .strip_suffix(&format!(" at line {line} column {column}"))
                .unwrap_or(&shown)
                .to_owned(),
            None => shown,
        };
        // serde_yaml_ng puts the path in front of the message too; it is in `key` already.
        let message = message
            .strip_prefix(&format!("{key}: "))
            .unwrap_or(&message);
        let message = reword(message);
        if key == "." || key.is_empty() {
            if message.contains("missing field `name`") {
                return ManifestError::invalid(
                    "name",
                    position,
                    "is missing; a manifest names its application (`name: <application>`)",
                );
            }
            if let Some(found) = message.strip_prefix("expected a mapping") {
                return ManifestError::Syntax {
                    position,
                    message: format!("expected a YAML mapping of manifest keys (`name: …`){found}"),
                };
            }
            return ManifestError::Syntax { position, message };
        }
        ManifestError::invalid(key, position, message)
    })
}

/// serde's "invalid type: string \"x\", expected u16" as "expected a number from 0 to
/// 65535, found the string \"x\"": what to write first, in the manifest's own terms.
fn reword(message: &str) -> String {
    let Some(rest) = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
    else {
        return message.to_owned();
    };
    let Some((found, expected)) = rest.rsplit_once(", expected ") else {
        return message.to_owned();
    };
    let expected = match expected {
        "a sequence" => "a list",
        "a boolean" => "true or false",
        "u16" => "a number from 0 to 65535",
        "u32" => "a whole number from 0 to 4294967295",
        "i32" => "a whole number from -2147483648 to 2147483647",
        "a map" => "a mapping",
        other if other.starts_with("struct ") => "a mapping",
        other => other,
    };
    let found = if let Some(text) = found.strip_prefix("string ") {
        let shown: String = text.chars().take(64).collect();
        let cut = if shown.len() < text.len() { "…" } else { "" };
        format!("the string {shown}{cut}")
    } else if let Some(number) = found
        .strip_prefix("integer `")
        .or_else(|| found.strip_prefix("floating point `"))
        .or_else(|| found.strip_prefix("boolean `"))
    {
        number.trim_end_matches('`').to_owned()
    } else {
        match found {
            "sequence" => "a sequence".to_owned(),
            "map" => "a mapping".to_owned(),
            "unit value" => "nothing (null)".to_owned(),
            other => other.to_owned(),
        }
    };
    format!("expected {expected}, found {found}")
}
