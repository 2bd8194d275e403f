//! An application as the index holds it, and AMS's tag filter.

use crate::model::VersionRecord;
use std::collections::BTreeMap;
use std::sync::Arc;

/// An application: every version, oldest first, never none.
#[derive(Debug, Clone)]
pub struct Application {
    pub name: String,
    pub versions: Vec<Arc<VersionRecord>>,
}

impl Application {
    pub(super) fn from_index(
        name: &str,
        versions: &BTreeMap<u32, Arc<VersionRecord>>,
    ) -> Option<Self> {
        if versions.is_empty() {
            return None;
        }
        Some(Application {
            name: name.to_string(),
            versions: versions.values().cloned().collect(),
        })
    }

    /// The latest version speaks for the application: AMS imports it.
    pub fn latest(&self) -> &VersionRecord {
        self.versions
            .last()
            .expect("an indexed application has a version")
    }

    /// Whether the latest version carries every tag of `tags`.
    pub(super) fn carries_all(&self, tags: &[&str]) -> bool {
        let have = &self.latest().tags;
        tags.iter().all(|t| have.iter().any(|h| h == t))
    }
}

/// Splits an AMS `registry.filter` value: comma-separated tags, blanks ignored.
pub fn parse_tag_filter(filter: &str) -> Vec<&str> {
    filter
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}
