//! The registry service: the rules of the model on top of a storage backend.
//!
//! Layering: `api` (HTTP) → `registry` (rules, index) → `storage` (bytes and records).
//! The registry never speaks HTTP and the storage never enforces model rules.
//!
//! Reads are answered from an in-memory index rebuilt from storage at start; writes go
//! to storage first and reach the index only once durable, so the index never shows
//! something a restart would lose. Publishes, deletes and garbage collection are
//! serialised by one async mutex: they are rare, and it makes "never collect a blob a
//! version is about to reference" a matter of holding that lock.

use crate::digest::Digest;
use crate::manifest::{self, ManifestError};
use crate::model::{self, ImageRef, NameError, VersionRecord};
use crate::storage::{Cleanup, Storage, StorageError, UploadState};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

pub struct Registry {
    storage: Arc<dyn Storage>,
    index: RwLock<BTreeMap<String, BTreeMap<u32, Arc<VersionRecord>>>>,
    writes: tokio::sync::Mutex<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What `POST /1.0/applications/{name}/versions` carries.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    pub version: Option<u32>,
    pub manifest: String,
    pub images: BTreeMap<String, Digest>,
    /// Whether the images are virtual-machine images; the manifest does not say.
    #[serde(default)]
    pub vm: bool,
}

/// An application as the index holds it: every version, oldest first, never none.
#[derive(Debug, Clone)]
pub struct Application {
    pub name: String,
    pub versions: Vec<Arc<VersionRecord>>,
}

impl Application {
    fn from_index(name: &str, versions: &BTreeMap<u32, Arc<VersionRecord>>) -> Option<Self> {
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
}

/// Splits an AMS `registry.filter` value: comma-separated tags, blanks ignored.
pub fn parse_tag_filter(filter: &str) -> Vec<&str> {
    filter
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .collect()
}

/// The settings of a record written before records carried them, read from its manifest.
/// A manifest the current parser refuses (it was accepted by an older, laxer one) still
/// serves its version, with empty settings, rather than hiding it.
fn settings_of_legacy(record: &VersionRecord) -> model::VersionSettings {
    match manifest::parse(&record.manifest) {
        Ok(manifest) => manifest.settings(),
        Err(err) => {
            tracing::warn!(
                application = record.application,
                version = record.version,
                error = %err,
                "stored manifest no longer parses; its version is served with empty settings"
            );
            model::VersionSettings::default()
        }
    }
}

impl Registry {
    /// Cleans what a crash left behind, then indexes everything the storage holds.
    pub async fn open(storage: Arc<dyn Storage>) -> Result<Self, StorageError> {
        let cleanup = storage.recover().await?;
        if cleanup != Cleanup::default() {
            tracing::info!(?cleanup, "removed leftovers of an interrupted run");
        }
        let registry = Registry {
            storage,
            index: RwLock::default(),
            writes: tokio::sync::Mutex::new(()),
        };
        registry.reload().await?;
        Ok(registry)
    }

    /// Rebuilds the index from storage (the source of truth).
    pub async fn reload(&self) -> Result<(), StorageError> {
        let index = self.read_index().await?;
        let versions: usize = index.values().map(BTreeMap::len).sum();
        tracing::info!(
            applications = index.len(),
            versions,
            "index loaded from storage"
        );
        *self.index.write().unwrap() = index;
        Ok(())
    }

    /// Rebuilds the index from storage when other daemons may write to it (see
    /// [`Storage::refresh_interval`]). Holds the write lock, so that a publish of this
    /// daemon is never lost between the listing and the swap; logs only changes.
    pub async fn refresh(&self) -> Result<(), StorageError> {
        let _writes = self.writes.lock().await;
        let index = self.read_index().await?;
        let mut current = self.index.write().unwrap();
        let before: usize = current.values().map(BTreeMap::len).sum();
        let after: usize = index.values().map(BTreeMap::len).sum();
        if before != after || current.len() != index.len() {
            tracing::info!(
                applications = index.len(),
                versions = after,
                "index refreshed from storage"
            );
        }
        *current = index;
        Ok(())
    }

    async fn read_index(
        &self,
    ) -> Result<BTreeMap<String, BTreeMap<u32, Arc<VersionRecord>>>, StorageError> {
        let mut index: BTreeMap<String, BTreeMap<u32, Arc<VersionRecord>>> = BTreeMap::new();
        for mut record in self.storage.load_versions().await? {
            if record.settings.is_none() {
                record.settings = Some(settings_of_legacy(&record));
            }
            index
                .entry(record.application.clone())
                .or_default()
                .insert(record.version, Arc::new(record));
        }
        Ok(index)
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.storage
    }

    /// Applications carrying every tag of `tags` (all of them when `tags` is empty).
    pub fn list(&self, tags: &[&str]) -> Vec<Application> {
        let index = self.index.read().unwrap();
        index
            .iter()
            .filter(|(_, versions)| {
                versions.values().next_back().is_some_and(|latest| {
                    tags.iter()
                        .all(|t| latest.tags.iter().any(|have| have == t))
                })
            })
            .filter_map(|(name, versions)| Application::from_index(name, versions))
            .collect()
    }

    pub fn application(&self, name: &str) -> Result<Application, RegistryError> {
        model::validate_name("application name", name)?;
        let index = self.index.read().unwrap();
        index
            .get(name)
            .and_then(|versions| Application::from_index(name, versions))
            .ok_or_else(|| RegistryError::NotFound(format!("application {name:?}")))
    }

    pub fn version(&self, name: &str, version: u32) -> Result<Arc<VersionRecord>, RegistryError> {
        model::validate_name("application name", name)?;
        let index = self.index.read().unwrap();
        index
            .get(name)
            .and_then(|versions| versions.get(&version))
            .cloned()
            .ok_or_else(|| {
                RegistryError::NotFound(format!("version {version} of application {name:?}"))
            })
    }

    pub fn image(&self, name: &str, version: u32, arch: &str) -> Result<ImageRef, RegistryError> {
        model::validate_name("architecture", arch)?;
        let record = self.version(name, version)?;
        record.images.get(arch).copied().ok_or_else(|| {
            RegistryError::NotFound(format!(
                "image for architecture {arch:?} in version {version} of {name:?} (it has: {})",
                record.images.keys().cloned().collect::<Vec<_>>().join(", ")
            ))
        })
    }

    pub fn counts(&self) -> (usize, usize) {
        let index = self.index.read().unwrap();
        (index.len(), index.values().map(BTreeMap::len).sum())
    }

    /// Starts an upload. Serialised with garbage collection, so a blob answered as
    /// already present cannot be collected before the publish that follows.
    pub async fn create_upload(
        &self,
        digest: Digest,
        size: u64,
    ) -> Result<UploadState, StorageError> {
        let _writes = self.writes.lock().await;
        self.storage.create_upload(digest, size).await
    }

    pub async fn publish(
        &self,
        name: &str,
        request: PublishRequest,
    ) -> Result<Arc<VersionRecord>, RegistryError> {
        model::validate_name("application name", name)?;
        let PublishRequest {
            version,
            manifest: text,
            images: requested,
            vm,
        } = request;
        // Off the async workers: a manifest may be up to max-metadata-size of YAML.
        let (manifest, text) = tokio::task::spawn_blocking(move || {
            let parsed = manifest::parse(&text);
            (parsed, text)
        })
        .await
        .expect("manifest parsing does not panic");
        let manifest = manifest?;
        if *manifest.name != *name {
            return Err(ManifestError::NameMismatch {
                found: manifest.name.to_string(),
                expected: name.to_string(),
            }
            .into());
        }
        if requested.is_empty() {
            return Err(RegistryError::BadRequest(
                "a version needs at least one image: set images to {\"<arch>\": \"sha256:<digest of an uploaded image>\"}".into(),
            ));
        }
        for arch in requested.keys() {
            model::validate_name("architecture", arch)?;
        }
        if version == Some(0) {
            return Err(RegistryError::BadRequest(
                "version numbers start at 1".into(),
            ));
        }

        let _writes = self.writes.lock().await;
        let mut images = BTreeMap::new();
        for (arch, digest) in requested {
            let size = self.storage.blob_size(&digest).await?.ok_or_else(|| {
                RegistryError::BadRequest(format!(
                    "image {digest} for {arch} has not been uploaded; upload it with POST /1.0/uploads first"
                ))
            })?;
            images.insert(arch, ImageRef { digest, size });
        }
        let version = match version {
            Some(v) => v,
            None => {
                let index = self.index.read().unwrap();
                let last = index
                    .get(name)
                    .and_then(|v| v.keys().next_back().copied())
                    .unwrap_or(0);
                last.checked_add(1)
                    .ok_or_else(|| RegistryError::Conflict("no version numbers left".into()))?
            }
        };
        let record = VersionRecord {
            application: name.to_string(),
            version,
            manifest: text,
            tags: manifest.tags(),
            instance_type: manifest.instance_type(),
            boot_package: manifest.boot_package(),
            images,
            created_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            vm,
            settings: Some(manifest.settings()),
        };
        match self.storage.put_version(&record).await {
            Ok(()) => {}
            Err(StorageError::AlreadyExists(_)) => {
                return Err(RegistryError::Conflict(format!(
                    "version {version} of {name:?} already exists and versions are immutable; publish a new version number"
                )))
            }
            Err(e) => return Err(e.into()),
        }
        let record = Arc::new(record);
        self.index
            .write()
            .unwrap()
            .entry(name.to_string())
            .or_default()
            .insert(version, record.clone());
        tracing::info!(application = name, version, "version published");
        Ok(record)
    }

    pub async fn delete_version(&self, name: &str, version: u32) -> Result<(), RegistryError> {
        self.version(name, version)?;
        let _writes = self.writes.lock().await;
        self.storage.delete_version(name, version).await?;
        let mut index = self.index.write().unwrap();
        if let Some(versions) = index.get_mut(name) {
            versions.remove(&version);
            if versions.is_empty() {
                index.remove(name);
            }
        }
        tracing::info!(application = name, version, "version deleted");
        Ok(())
    }

    pub async fn delete_application(&self, name: &str) -> Result<(), RegistryError> {
        self.application(name)?;
        let _writes = self.writes.lock().await;
        self.storage.delete_application(name).await?;
        self.index.write().unwrap().remove(name);
        tracing::info!(application = name, "application deleted");
        Ok(())
    }

    /// Removes uploads idle for longer than `grace` and blobs no version references that
    /// are older than `grace` (younger ones may be waiting for their publish).
    pub async fn collect_garbage(&self, grace: Duration) -> Result<Cleanup, StorageError> {
        let cutoff = SystemTime::now()
            .checked_sub(grace)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let mut cleanup = Cleanup {
            uploads: self.storage.expire_uploads(cutoff).await?,
            ..Cleanup::default()
        };
        let _writes = self.writes.lock().await;
        let referenced: HashSet<Digest> = {
            let index = self.index.read().unwrap();
            index
                .values()
                .flat_map(|v| v.values())
                .flat_map(|r| r.images.values().map(|i| i.digest))
                .collect()
        };
        let doomed: BTreeSet<Digest> = self
            .storage
            .list_blobs()
            .await?
            .into_iter()
            .filter(|(digest, stored)| !referenced.contains(digest) && *stored < cutoff)
            .map(|(digest, _)| digest)
            .collect();
        for digest in doomed {
            match self.storage.delete_blob(&digest).await {
                Ok(()) | Err(StorageError::NotFound(_)) => cleanup.blobs += 1,
                Err(e) => return Err(e),
            }
        }
        if cleanup != Cleanup::default() {
            tracing::info!(
                uploads = cleanup.uploads,
                blobs = cleanup.blobs,
                "garbage collected"
            );
        }
        Ok(cleanup)
    }
}
