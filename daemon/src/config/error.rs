//! `ConfigError`: why a config file or `storage_config` document was refused, shown as one
//! line an operator can act on (file, key path, line, column, what to do). The reading and
//! the rewording of serde's and libyaml's messages that produce it are in `read.rs`.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use super::locate::{self, Segment, Target};

/// Why a config file or `storage_config` document was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("cannot read config file {}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The text is not YAML, does not follow the schema, or holds a value out of bounds.
    #[error("{}", Located::new(.file, .path, .line, .column, .message))]
    Invalid {
        /// The file, when the text was read by [`super::load`].
        file: Option<PathBuf>,
        /// Dotted key path, e.g. `storage.s3.bucket`; empty for the document itself.
        path: String,
        /// 1-based.
        line: Option<usize>,
        /// 1-based.
        column: Option<usize>,
        /// What is wrong and how to fix it; never contains a secret.
        message: String,
    },
}

impl ConfigError {
    /// The dotted key path, e.g. `storage.s3.bucket`; empty when the error concerns the whole
    /// document or the file could not be read.
    pub fn path(&self) -> &str {
        match self {
            ConfigError::Invalid { path, .. } => path,
            ConfigError::Read { .. } => "",
        }
    }

    /// 1-based line of the offending key or value.
    pub fn line(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { line, .. } => *line,
            ConfigError::Read { .. } => None,
        }
    }

    /// 1-based column of the offending key or value.
    pub fn column(&self) -> Option<usize> {
        match self {
            ConfigError::Invalid { column, .. } => *column,
            ConfigError::Read { .. } => None,
        }
    }

    /// The message without path and position.
    pub fn message(&self) -> String {
        match self {
            ConfigError::Invalid { message, .. } => message.clone(),
            ConfigError::Read { source, .. } => source.to_string(),
        }
    }

    /// The file the error was found in, if it came from [`super::load`].
    pub fn file(&self) -> Option<&Path> {
        match self {
            ConfigError::Invalid { file, .. } => file.as_deref(),
            ConfigError::Read { file, .. } => Some(file),
        }
    }

    pub(super) fn in_file(self, path: &Path) -> ConfigError {
        match self {
            ConfigError::Invalid {
                path: key_path,
                line,
                column,
                message,
                ..
            } => ConfigError::Invalid {
                file: Some(path.to_owned()),
                path: key_path,
                line,
                column,
                message,
            },
            other => other,
        }
    }

    pub(super) fn invalid(
        path: String,
        position: Option<(usize, usize)>,
        message: String,
    ) -> ConfigError {
        ConfigError::Invalid {
            file: None,
            path,
            line: position.map(|(line, _)| line),
            column: position.map(|(_, column)| column),
            message,
        }
    }

    /// An error about the value at `path` in `text`, found again to tell its position.
    pub(super) fn at_value(text: &str, path: &[&str], message: impl Into<String>) -> ConfigError {
        let segments: Vec<Segment> = path
            .iter()
            .map(|key| Segment::Key(key.to_string()))
            .collect();
        ConfigError::invalid(
            path.join("."),
            locate::locate(text, &segments, Target::Value),
            message.into(),
        )
    }
}

struct Located<'a> {
    file: &'a Option<PathBuf>,
    path: &'a str,
    line: &'a Option<usize>,
    column: &'a Option<usize>,
    message: &'a str,
}

impl<'a> Located<'a> {
    fn new(
        file: &'a Option<PathBuf>,
        path: &'a str,
        line: &'a Option<usize>,
        column: &'a Option<usize>,
        message: &'a str,
    ) -> Self {
        Located {
            file,
            path,
            line,
            column,
            message,
        }
    }
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = self.file {
            write!(f, "{}: ", file.display())?;
        }
        let position = match (self.line, self.column) {
            (Some(line), Some(column)) => Some(format!("line {line}, column {column}")),
            (Some(line), None) => Some(format!("line {line}")),
            _ => None,
        };
        match (self.path.is_empty(), position) {
            (false, Some(position)) => write!(f, "{} ({position}): ", self.path)?,
            (false, None) => write!(f, "{}: ", self.path)?,
            (true, Some(position)) => write!(f, "{position}: ")?,
            (true, None) => {}
        }
        f.write_str(self.message)
    }
}
