//! The registry service: the rules of the model on top of a storage backend.
//!
//! Layering: `api` (HTTP) → `registry` (rules, index) → `storage` (bytes and records).
//! The registry never speaks HTTP and the storage never enforces model rules; the API
//! reaches storage only through the operations here.
//!
//! Reads are answered from an in-memory index rebuilt from storage at start; writes go
//! to storage first and reach the index only once durable, so the index never shows
//! something a restart would lose. Every write runs as its own task ([`detached`]), so a
//! caller that stops waiting (a client that hangs up) cannot split a durable write from
//! its index update. Publishes, deletes and garbage collection are serialised by one async
//! mutex: they are rare, and it makes "never collect a blob a version is about to
//! reference" a matter of holding that lock.

mod application;
mod detached;
mod error;
mod gc;
mod images;
mod publish;
#[cfg(test)]
mod tests;
mod uploads;

pub use application::{parse_tag_filter, Application};
pub use error::{ErrorKind, RegistryError};
pub use images::{verify, ImageCheck, Verification};
pub use publish::PublishRequest;
// What the API hands on without looking inside.
pub use crate::storage::{BlobBody, ByteStream, UploadState};

use crate::manifest;
use crate::model::{self, VersionRecord};
use crate::storage::{Cleanup, Storage, StorageError, StorageKind};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

type Index = BTreeMap<String, BTreeMap<u32, Arc<VersionRecord>>>;

/// A handle on the registry; clones share one index and one backend.
#[derive(Clone)]
pub struct Registry(Arc<Inner>);

struct Inner {
    storage: Arc<dyn Storage>,
    index: RwLock<Index>,
    /// How many stored records the last index load could not read. While any exists,
    /// listings are refused rather than answered without them: AMS deletes what
    /// vanishes from the registry, so a partial answer would be data loss on every client.
    unreadable: AtomicUsize,
    /// Whether the index has been loaded from storage since start. Until it has, nothing
    /// is answered from it: an index not loaded is not an empty registry.
    loaded: AtomicBool,
    /// Moves on at every change of the index, while its write lock is held: an answer
    /// built from the index after reading generation `g` is at least as new as `g`.
    generation: AtomicU64,
    writes: tokio::sync::Mutex<()>,
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
        let registry = Registry::unloaded(storage);
        registry.start().await?;
        Ok(registry)
    }

    /// A registry that answers nothing from its index until [`start`](Self::start)
    /// succeeds: reads and writes get `Unavailable` (503) meanwhile.
    pub fn unloaded(storage: Arc<dyn Storage>) -> Self {
        Registry(Arc::new(Inner {
            storage,
            index: RwLock::default(),
            unreadable: AtomicUsize::new(0),
            loaded: AtomicBool::new(false),
            generation: AtomicU64::new(0),
            writes: tokio::sync::Mutex::new(()),
        }))
    }

    /// Cleans what a crash left behind, then loads the index; from then on the registry
    /// answers.
    pub async fn start(&self) -> Result<(), StorageError> {
        let cleanup = self.0.storage.recover().await?;
        if cleanup != Cleanup::default() {
            tracing::info!(?cleanup, "removed leftovers of an interrupted run");
        }
        self.reload().await?;
        self.0.loaded.store(true, Ordering::Release);
        Ok(())
    }

    fn loaded(&self) -> Result<(), RegistryError> {
        if self.0.loaded.load(Ordering::Acquire) {
            Ok(())
        } else {
            Err(RegistryError::NotLoaded)
        }
    }

    /// Which backend holds the registry.
    pub fn storage_kind(&self) -> StorageKind {
        self.0.storage.kind()
    }

    /// How often the index should be rebuilt because other daemons write to the same
    /// storage; `None` when only this daemon writes.
    pub fn refresh_interval(&self) -> Option<Duration> {
        self.0.storage.refresh_interval()
    }

    /// Rebuilds the index from storage (the source of truth).
    pub async fn reload(&self) -> Result<(), StorageError> {
        let loaded = self.read_index().await;
        let (index, unreadable) = self.storage_answered(loaded)?;
        record_index_metrics(&index);
        let versions: usize = index.values().map(BTreeMap::len).sum();
        tracing::info!(
            applications = index.len(),
            versions,
            "index loaded from storage"
        );
        let mut current = self.0.index.write().unwrap();
        *current = index;
        self.0.unreadable.store(unreadable, Ordering::Release);
        self.changed(&current);
        Ok(())
    }

    /// Rebuilds the index from storage when other daemons may write to it (see
    /// [`Storage::refresh_interval`]). Holds the write lock, so that a publish of this
    /// daemon is never lost between the listing and the swap; logs only changes.
    pub async fn refresh(&self) -> Result<(), StorageError> {
        if self.loaded().is_err() {
            // The first load is start's, after recovery.
            return Ok(());
        }
        let _writes = self.0.writes.lock().await;
        let loaded = self.read_index().await;
        let (index, unreadable) = self.storage_answered(loaded)?;
        record_index_metrics(&index);
        let mut current = self.0.index.write().unwrap();
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
        self.0.unreadable.store(unreadable, Ordering::Release);
        self.changed(&current);
        Ok(())
    }

    /// Sets `aar_storage_up` from a load or refresh of the index.
    fn storage_answered<T>(&self, loaded: Result<T, StorageError>) -> Result<T, StorageError> {
        crate::metrics::global().storage_up(self.storage_kind().as_str(), loaded.is_ok());
        loaded
    }

    /// The index and how many stored records it lacks because they cannot be read.
    async fn read_index(&self) -> Result<(Index, usize), StorageError> {
        let loaded = self.0.storage.load_versions().await?;
        // The backend has logged each record; what follows from them is said once here.
        if let Some(first) = loaded.unreadable.first() {
            tracing::error!(
                unreadable = loaded.unreadable.len(),
                first,
                "unreadable version records are not served, and garbage collection of images is paused until they are repaired or removed (see `aar verify`)"
            );
        }
        let mut index = Index::new();
        for mut record in loaded.records {
            if record.settings.is_none() {
                record.settings = Some(settings_of_legacy(&record));
            }
            index
                .entry(record.application.clone())
                .or_default()
                .insert(record.version, Arc::new(record));
        }
        crate::metrics::global().set_unreadable_records(loaded.unreadable.len());
        Ok((index, loaded.unreadable.len()))
    }

    /// Applications whose latest version carries every tag of `tags` (all of them when
    /// `tags` is empty). Refused while a stored record cannot be read (see
    /// [`Inner::unreadable`]).
    pub fn list(&self, tags: &[&str]) -> Result<Vec<Application>, RegistryError> {
        self.complete()?;
        let index = self.0.index.read().unwrap();
        Ok(index
            .iter()
            .filter_map(|(name, versions)| Application::from_index(name, versions))
            .filter(|app| app.carries_all(tags))
            .collect())
    }

    /// An application with every version; refused, like [`list`](Self::list), while a
    /// stored record cannot be read, since the missing one may be among its versions.
    pub fn application(&self, name: &str) -> Result<Application, RegistryError> {
        model::validate_name("application name", name)?;
        self.complete()?;
        self.indexed(name)
    }

    /// The index's generation (see [`Inner::generation`]), for caches of answers built
    /// from it.
    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    /// Called with the index's write lock held, after changing it.
    fn changed(&self, _held: &Index) {
        self.0.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// Whether lists may be answered now: the index is loaded and holds every stored
    /// record. [`list`](Self::list) and [`application`](Self::application) check it
    /// themselves; a cache of their answers checks it before serving one.
    pub fn ready_for_lists(&self) -> Result<(), RegistryError> {
        self.complete()
    }

    /// Whether one version may be answered now: the index is loaded (an unreadable record
    /// elsewhere does not hide a readable one). [`version`](Self::version) checks it
    /// itself; a cache of its answers checks it before serving one.
    pub fn ready_for_versions(&self) -> Result<(), RegistryError> {
        self.loaded()
    }

    fn complete(&self) -> Result<(), RegistryError> {
        self.loaded()?;
        match self.0.unreadable.load(Ordering::Acquire) {
            0 => Ok(()),
            records => Err(RegistryError::Incomplete { records }),
        }
    }

    fn indexed(&self, name: &str) -> Result<Application, RegistryError> {
        let index = self.0.index.read().unwrap();
        index
            .get(name)
            .and_then(|versions| Application::from_index(name, versions))
            .ok_or_else(|| RegistryError::NotFound(format!("application {name:?}")))
    }

    pub fn version(&self, name: &str, version: u32) -> Result<Arc<VersionRecord>, RegistryError> {
        model::validate_name("application name", name)?;
        self.loaded()?;
        let index = self.0.index.read().unwrap();
        index
            .get(name)
            .and_then(|versions| versions.get(&version))
            .cloned()
            .ok_or_else(|| {
                RegistryError::NotFound(format!("version {version} of application {name:?}"))
            })
    }
}

/// The index's gauges: applications, versions, the bytes of the distinct images they
/// reference, and the newest version's creation time as the last publish.
fn record_index_metrics(index: &Index) {
    let mut images = std::collections::HashMap::new();
    let mut versions = 0;
    let mut newest: Option<&str> = None;
    for record in index.values().flat_map(BTreeMap::values) {
        versions += 1;
        for image in record.images.values() {
            images.insert(image.digest, image.size);
        }
        // RFC 3339 in UTC to the second, as written at publish: text order is time order.
        if newest.is_none_or(|n| record.created_at.as_str() > n) {
            newest = Some(&record.created_at);
        }
    }
    let metrics = crate::metrics::global();
    metrics.set_index(index.len(), versions, images.values().sum());
    if let Some(at) = newest.and_then(|t| humantime::parse_rfc3339(t).ok()) {
        let seconds = at
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        metrics.published_at(i64::try_from(seconds).unwrap_or(i64::MAX));
    }
}
