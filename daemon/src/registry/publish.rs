//! Publishing and deleting versions: the durable write, then the index, as one unit.

use super::detached::detached;
use super::{Registry, RegistryError};
use crate::digest::Digest;
use crate::manifest::{self, ManifestError};
use crate::model::{self, ImageRef, VersionRecord};
use crate::storage::StorageError;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

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

impl Registry {
    pub async fn publish(
        &self,
        name: &str,
        request: PublishRequest,
    ) -> Result<Arc<VersionRecord>, RegistryError> {
        let this = self.clone();
        let name = name.to_owned();
        detached(async move { this.publish_now(&name, request).await }).await
    }

    pub async fn delete_version(&self, name: &str, version: u32) -> Result<(), RegistryError> {
        let this = self.clone();
        let name = name.to_owned();
        detached(async move { this.delete_version_now(&name, version).await }).await
    }

    pub async fn delete_application(&self, name: &str) -> Result<(), RegistryError> {
        let this = self.clone();
        let name = name.to_owned();
        detached(async move { this.delete_application_now(&name).await }).await
    }

    async fn publish_now(
        &self,
        name: &str,
        request: PublishRequest,
    ) -> Result<Arc<VersionRecord>, RegistryError> {
        model::validate_name("application name", name)?;
        // Numbering and the existence checks read the index: not before it is loaded.
        self.loaded()?;
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

        let inner = &self.0;
        let _writes = inner.writes.lock().await;
        let mut images = BTreeMap::new();
        for (arch, digest) in requested {
            let size = inner.storage.blob_size(&digest).await?.ok_or_else(|| {
                RegistryError::BadRequest(format!(
                    "image {digest} for {arch} has not been uploaded; upload it with POST /1.0/uploads first"
                ))
            })?;
            images.insert(arch, ImageRef { digest, size });
        }
        let version = match version {
            Some(v) => v,
            None => {
                let index = inner.index.read().unwrap();
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
        match inner.storage.put_version(&record).await {
            Ok(()) => {}
            Err(StorageError::AlreadyExists(_)) => {
                return Err(RegistryError::Conflict(format!(
                    "version {version} of {name:?} already exists and versions are immutable; publish a new version number"
                )))
            }
            Err(e) => return Err(e.into()),
        }
        let record = Arc::new(record);
        let mut index = inner.index.write().unwrap();
        index
            .entry(name.to_string())
            .or_default()
            .insert(version, record.clone());
        self.changed(&index);
        drop(index);
        // Under a read lock: readers are not held up while the gauges are summed.
        super::record_index_metrics(&inner.index.read().unwrap());
        tracing::info!(application = name, version, "version published");
        Ok(record)
    }

    async fn delete_version_now(&self, name: &str, version: u32) -> Result<(), RegistryError> {
        self.version(name, version)?;
        let inner = &self.0;
        let _writes = inner.writes.lock().await;
        inner.storage.delete_version(name, version).await?;
        let mut index = inner.index.write().unwrap();
        if let Some(versions) = index.get_mut(name) {
            versions.remove(&version);
            if versions.is_empty() {
                index.remove(name);
            }
        }
        self.changed(&index);
        drop(index);
        super::record_index_metrics(&inner.index.read().unwrap());
        tracing::info!(application = name, version, "version deleted");
        Ok(())
    }

    async fn delete_application_now(&self, name: &str) -> Result<(), RegistryError> {
        model::validate_name("application name", name)?;
        self.loaded()?;
        self.indexed(name)?;
        let inner = &self.0;
        let _writes = inner.writes.lock().await;
        inner.storage.delete_application(name).await?;
        let mut index = inner.index.write().unwrap();
        index.remove(name);
        self.changed(&index);
        drop(index);
        super::record_index_metrics(&inner.index.read().unwrap());
        tracing::info!(application = name, "application deleted");
        Ok(())
    }
}
