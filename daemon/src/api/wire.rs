//! The JSON shapes the API answers with. Applications follow the AMS contract: AMS decodes
//! each listed application into `RegistryApplication` of its Go SDK (canonical/ams-sdk,
//! `api/ams/registry.go`), so those fields keep the SDK's names and JSON types, `versions`
//! is an object keyed by the version number, and an absent value is the zero of its type
//! (`""`, `[]`, `false`), never `null`, which Go would read as a nil list. The registry's
//! own fields sit beside them under names the SDK does not use.

use crate::digest::Digest;
use crate::model::{ImageRef, VersionRecord, VersionSettings};
use crate::registry::{Application, UploadState};
use serde::Serialize;
use std::collections::BTreeMap;

/// `RegistryApplication`, plus `latest_version` and `updated_at`.
#[derive(Serialize)]
pub struct ApplicationBody<'a> {
    name: &'a str,
    architectures: Vec<&'a str>,
    boot_package: &'a str,
    instance_type: &'a str,
    tags: &'a [String],
    /// serde_json writes integer keys as strings: `{"1": …}`, as Go's `map[int]` reads them.
    versions: BTreeMap<u32, VersionEntry<'a>>,
    vm: bool,
    latest_version: u32,
    updated_at: &'a str,
}

/// `RegistryApplicationVersion`, plus the version's images and publish time.
#[derive(Serialize)]
struct VersionEntry<'a> {
    #[serde(flatten)]
    ams: AmsVersion<'a>,
    images: &'a BTreeMap<String, ImageRef>,
    /// Not `created_at`: AMS's own `ApplicationVersion` has one of another type.
    published_at: &'a str,
}

/// The fields of `RegistryApplicationVersion`, from a version's manifest settings.
#[derive(Serialize)]
struct AmsVersion<'a> {
    boot_activity: &'a str,
    features: &'a [String],
    hooks: Hooks<'a>,
    bootstrap: Bootstrap<'a>,
    video_encoder: &'a str,
}

#[derive(Serialize)]
struct Hooks<'a> {
    timeout: &'a str,
}

#[derive(Serialize)]
struct Bootstrap<'a> {
    keep: &'a [String],
}

/// `GET …/versions/{n}`: the stored record, with the per-version AMS fields at its top level.
#[derive(Serialize)]
pub struct VersionBody<'a> {
    application: &'a str,
    version: u32,
    manifest: &'a str,
    tags: &'a [String],
    instance_type: &'a str,
    boot_package: &'a str,
    architectures: Vec<&'a str>,
    images: &'a BTreeMap<String, ImageRef>,
    created_at: &'a str,
    vm: bool,
    #[serde(flatten)]
    ams: AmsVersion<'a>,
}

static NO_SETTINGS: VersionSettings = VersionSettings {
    boot_activity: String::new(),
    features: Vec::new(),
    hooks_timeout: String::new(),
    bootstrap_keep: Vec::new(),
    video_encoder: String::new(),
};

impl<'a> From<&'a VersionRecord> for AmsVersion<'a> {
    fn from(record: &'a VersionRecord) -> Self {
        let s = record.settings.as_ref().unwrap_or(&NO_SETTINGS);
        AmsVersion {
            boot_activity: &s.boot_activity,
            features: &s.features,
            hooks: Hooks {
                timeout: &s.hooks_timeout,
            },
            bootstrap: Bootstrap {
                keep: &s.bootstrap_keep,
            },
            video_encoder: &s.video_encoder,
        }
    }
}

fn architectures(record: &VersionRecord) -> Vec<&str> {
    record.images.keys().map(String::as_str).collect()
}

impl<'a> From<&'a Application> for ApplicationBody<'a> {
    fn from(app: &'a Application) -> Self {
        let latest = app.latest();
        ApplicationBody {
            name: &app.name,
            architectures: architectures(latest),
            boot_package: latest.boot_package.as_deref().unwrap_or_default(),
            instance_type: latest.instance_type.as_deref().unwrap_or_default(),
            tags: &latest.tags,
            versions: app
                .versions
                .iter()
                .map(|record| (record.version, VersionEntry::from(&**record)))
                .collect(),
            vm: latest.vm,
            latest_version: latest.version,
            updated_at: &latest.created_at,
        }
    }
}

impl<'a> From<&'a VersionRecord> for VersionEntry<'a> {
    fn from(record: &'a VersionRecord) -> Self {
        VersionEntry {
            ams: AmsVersion::from(record),
            images: &record.images,
            published_at: &record.created_at,
        }
    }
}

impl<'a> From<&'a VersionRecord> for VersionBody<'a> {
    fn from(record: &'a VersionRecord) -> Self {
        VersionBody {
            application: &record.application,
            version: record.version,
            manifest: &record.manifest,
            tags: &record.tags,
            instance_type: record.instance_type.as_deref().unwrap_or_default(),
            boot_package: record.boot_package.as_deref().unwrap_or_default(),
            architectures: architectures(record),
            images: &record.images,
            created_at: &record.created_at,
            vm: record.vm,
            ams: AmsVersion::from(record),
        }
    }
}

/// The listing: one body per application.
pub fn applications(apps: &[Application]) -> Vec<ApplicationBody<'_>> {
    apps.iter().map(ApplicationBody::from).collect()
}

/// Where an upload stands (`POST`, `PATCH`, `GET /1.0/uploads/…`).
#[derive(Serialize)]
pub struct UploadBody<'a> {
    /// Absent when the blob already existed and no upload was needed.
    #[serde(skip_serializing_if = "str::is_empty")]
    id: &'a str,
    digest: Digest,
    size: u64,
    offset: u64,
    complete: bool,
}

impl<'a> From<&'a UploadState> for UploadBody<'a> {
    fn from(upload: &'a UploadState) -> Self {
        UploadBody {
            id: &upload.id,
            digest: upload.digest,
            size: upload.size,
            offset: upload.offset,
            complete: upload.complete,
        }
    }
}
