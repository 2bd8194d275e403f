//! The Anbox Cloud application manifest, as the publisher AMS sends it with a version.
//!
//! Every key of the Anbox manifest reference is read with its type, so that a wrong type is
//! refused at publish with the key, its line and what was expected, instead of reaching
//! the client AMS units that import the version. Keys the reference does not list are not
//! an error: AMS adds keys over releases, and the manifest is stored verbatim anyway.
//! Values are not checked against AMS's own lists (video encoders, permission names): the
//! publishing AMS has validated them, and a newer AMS may know values this registry does
//! not.

mod depth;
mod error;
mod scalar;

pub use depth::MAX_DEPTH;
pub use error::ManifestError;

use crate::model::VersionSettings;
use scalar::Text;
use serde::Deserialize;
use std::collections::BTreeMap;

/// The longest `version` the Anbox reference allows.
pub const MAX_VERSION_LEN: usize = 50;

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Manifest {
    pub name: Text,
    #[serde(default)]
    pub version: Option<Text>,
    #[serde(default)]
    pub instance_type: Option<Text>,
    #[serde(default)]
    pub required_permissions: Option<Vec<Text>>,
    #[serde(default)]
    pub image: Option<Text>,
    #[serde(default)]
    pub addons: Option<Vec<Text>>,
    #[serde(default)]
    pub tags: Option<Vec<Text>>,
    #[serde(default)]
    pub boot_package: Option<Text>,
    #[serde(default)]
    pub boot_activity: Option<Text>,
    #[serde(default)]
    pub video_encoder: Option<Text>,
    #[serde(default)]
    pub features: Option<Vec<Text>>,
    #[serde(default)]
    pub hooks: Option<Hooks>,
    #[serde(default)]
    pub bootstrap: Option<Bootstrap>,
    #[serde(default)]
    pub watchdog: Option<Watchdog>,
    #[serde(default)]
    pub services: Option<Vec<Service>>,
    #[serde(default)]
    pub resources: Option<Resources>,
    #[serde(default)]
    pub extra_data: Option<BTreeMap<String, ExtraData>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Hooks {
    #[serde(default)]
    pub timeout: Option<Text>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct Bootstrap {
    #[serde(default)]
    pub keep: Option<Vec<Text>>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Watchdog {
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default)]
    pub allowed_packages: Option<Vec<Text>>,
}

/// One entry of `services`. AMS's own type spells the range end `port_end`; the
/// reference's examples use `port-max`: both are read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Service {
    #[serde(default)]
    pub name: Option<Text>,
    #[serde(default)]
    pub port: Option<u16>,
    #[serde(default, alias = "port_end")]
    pub port_max: Option<u16>,
    #[serde(default)]
    pub protocols: Option<Vec<Text>>,
    #[serde(default)]
    pub expose: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Resources {
    #[serde(default)]
    pub cpus: Option<u32>,
    #[serde(default)]
    pub memory: Option<Text>,
    #[serde(default)]
    pub disk_size: Option<Text>,
    #[serde(default)]
    pub gpu_slots: Option<i32>,
    #[serde(default)]
    pub gpu_type: Option<Text>,
    #[serde(default)]
    pub vpu_slots: Option<i32>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub struct ExtraData {
    #[serde(default)]
    pub target: Option<Text>,
    #[serde(default)]
    pub owner: Option<Text>,
    #[serde(default)]
    pub permissions: Option<Text>,
}

/// Reads a manifest. Deep nesting is refused before the YAML parser sees the text (its
/// cost grows with the square of the depth); every other failure names the key, its line
/// and column, and what was expected.
pub fn parse(text: &str) -> Result<Manifest, ManifestError> {
    if let Some(line) = depth::too_deep(text) {
        return Err(ManifestError::TooDeep { line });
    }
    let manifest: Manifest = error::deserialize(text)?;
    if manifest.name.is_empty() {
        return Err(ManifestError::invalid("name", None, "must not be empty"));
    }
    if let Some(version) = &manifest.version {
        let len = version.chars().count();
        if len > MAX_VERSION_LEN {
            return Err(ManifestError::invalid(
                "version",
                None,
                format!("is {len} characters long; the Anbox limit is {MAX_VERSION_LEN}"),
            ));
        }
    }
    for (index, tag) in manifest.tags().iter().enumerate() {
        // A comma would make the tag unreachable through the comma-separated filter.
        if tag.is_empty()
            || tag.len() > 64
            || tag.contains(',')
            || tag.chars().any(char::is_control)
        {
            return Err(ManifestError::invalid(
                format!("tags[{index}]"),
                None,
                "must be 1 to 64 characters, without commas or control characters",
            ));
        }
    }
    Ok(manifest)
}

fn texts(list: &Option<Vec<Text>>) -> Vec<String> {
    list.iter().flatten().map(|t| t.to_string()).collect()
}

fn text(value: &Option<Text>) -> String {
    value.as_ref().map(Text::to_string).unwrap_or_default()
}

impl Manifest {
    pub fn tags(&self) -> Vec<String> {
        texts(&self.tags)
    }

    pub fn instance_type(&self) -> Option<String> {
        self.instance_type.as_ref().map(Text::to_string)
    }

    pub fn boot_package(&self) -> Option<String> {
        self.boot_package.as_ref().map(Text::to_string)
    }

    pub fn boot_activity(&self) -> String {
        text(&self.boot_activity)
    }

    pub fn video_encoder(&self) -> String {
        text(&self.video_encoder)
    }

    pub fn features(&self) -> Vec<String> {
        texts(&self.features)
    }

    pub fn hooks_timeout(&self) -> String {
        self.hooks
            .as_ref()
            .map(|h| text(&h.timeout))
            .unwrap_or_default()
    }

    pub fn bootstrap_keep(&self) -> Vec<String> {
        self.bootstrap
            .as_ref()
            .map(|b| texts(&b.keep))
            .unwrap_or_default()
    }

    /// What AMS imports with each version, absent keys as empty values.
    pub fn settings(&self) -> VersionSettings {
        VersionSettings {
            boot_activity: self.boot_activity(),
            features: self.features(),
            hooks_timeout: self.hooks_timeout(),
            bootstrap_keep: self.bootstrap_keep(),
            video_encoder: self.video_encoder(),
        }
    }
}

#[cfg(test)]
mod tests;
