//! The embedded default backend: blobs and metadata in a local directory.
//!
//! ```text
//! <root>/blobs/sha256/<hex>                 image bytes, named by their digest
//! <root>/uploads/<id>/info.json             declared digest and size of an upload
//! <root>/uploads/<id>/data                  the bytes received so far
//! <root>/apps/<name>/versions/<n>.json      one published version (VersionRecord)
//! ```
//!
//! Every file that becomes visible is written through [`crate::fsutil`] (temporary
//! file, fsync, rename, directory fsync), so a crash at any point leaves either the old
//! state or the new one plus temporary files that [`Storage::recover`] removes.
//!
//! One job a file: [`upload`] (uploads, appended with O_DIRECT and committed by
//! rename), [`blobs`] (reading, listing and removing blobs), [`records`] (version
//! records). This file holds the layout, recovery and the [`Storage`] impl.

mod blobs;
mod records;
#[cfg(test)]
mod tests;
mod upload;

use super::sessions::Sessions;
use super::{
    BlobBody, ByteStream, Cleanup, LoadedVersions, Result, Storage, StorageError, StorageKind,
    UploadState,
};
use crate::digest::Digest;
use crate::fsutil;
use crate::model::{ImageRef, VersionRecord};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

pub struct FsStorage {
    root: PathBuf,
    min_free: u64,
    /// Serialises the writers of each upload and keeps its hash state between PATCHes,
    /// so a resumed upload does not re-read what it already hashed.
    sessions: Sessions<upload::Session>,
}

impl FsStorage {
    pub fn new(root: impl Into<PathBuf>, min_free: u64) -> Result<Self> {
        let root = root.into();
        for dir in ["blobs/sha256", "uploads", "apps"] {
            let dir = root.join(dir);
            fsutil::create_dirs(&dir)
                .map_err(|e| StorageError::io(format!("creating {}", dir.display()), e))?;
        }
        Ok(FsStorage {
            root,
            min_free,
            sessions: Sessions::new(),
        })
    }

    fn blobs_dir(&self) -> PathBuf {
        self.root.join("blobs/sha256")
    }

    fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blobs_dir().join(digest.hex())
    }

    fn uploads_dir(&self) -> PathBuf {
        self.root.join("uploads")
    }

    fn upload_dir(&self, id: &str) -> PathBuf {
        self.uploads_dir().join(id)
    }

    fn apps_dir(&self) -> PathBuf {
        self.root.join("apps")
    }

    fn versions_dir(&self, application: &str) -> PathBuf {
        self.apps_dir().join(application).join("versions")
    }

    fn check_free_space(&self, needed: u64) -> Result<()> {
        let stat = rustix::fs::statvfs(&self.root)
            .map_err(|e| StorageError::io("checking free space", e.into()))?;
        let available = stat.f_bavail.saturating_mul(stat.f_frsize);
        if available < needed.saturating_add(self.min_free) {
            return Err(StorageError::Full(format!(
                "{needed} bytes needed but {available} bytes are free under {} (keeping {} bytes free, storage.fs.min-free); free space or move the root directory",
                self.root.display(),
                self.min_free
            )));
        }
        Ok(())
    }
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StorageError::io("storage task", io::Error::other(e)))?
}

/// Removes what a crash left under `root`: temporary files, application deletes that
/// were under way, and uploads created but never described.
fn recover(root: &Path) -> Result<Cleanup> {
    let err = |what: &Path, e| StorageError::io(format!("cleaning {}", what.display()), e);
    let mut cleanup = Cleanup::default();
    let blobs = root.join("blobs/sha256");
    cleanup.temp_files += fsutil::remove_temp_files(&blobs).map_err(|e| err(&blobs, e))?;
    let apps = root.join("apps");
    cleanup.temp_files += fsutil::remove_temp_files(&apps).map_err(|e| err(&apps, e))?;
    for entry in fs::read_dir(&apps).map_err(|e| err(&apps, e))? {
        let path = entry.map_err(|e| err(&apps, e))?.path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with(".deleting-") {
            // A delete that a crash interrupted: it was already invisible.
            fs::remove_dir_all(&path).map_err(|e| err(&path, e))?;
            continue;
        }
        let versions = path.join("versions");
        cleanup.temp_files +=
            fsutil::remove_temp_files(&versions).map_err(|e| err(&versions, e))?;
    }
    let uploads = root.join("uploads");
    for entry in fs::read_dir(&uploads).map_err(|e| err(&uploads, e))? {
        let path = entry.map_err(|e| err(&uploads, e))?.path();
        if !path.is_dir() {
            fs::remove_file(&path).map_err(|e| err(&path, e))?;
            cleanup.temp_files += 1;
        } else if !path.join("info.json").exists() {
            // Created but never described: nobody can resume it.
            fs::remove_dir_all(&path).map_err(|e| err(&path, e))?;
            cleanup.uploads += 1;
        } else {
            cleanup.temp_files += fsutil::remove_temp_files(&path).map_err(|e| err(&path, e))?;
        }
    }
    Ok(cleanup)
}

#[async_trait::async_trait]
impl Storage for FsStorage {
    fn kind(&self) -> StorageKind {
        StorageKind::Fs
    }

    async fn recover(&self) -> Result<Cleanup> {
        let root = self.root.clone();
        blocking(move || recover(&root)).await
    }

    async fn create_upload(&self, digest: Digest, size: u64) -> Result<UploadState> {
        upload::create(self, digest, size).await
    }

    async fn upload_state(&self, id: &str) -> Result<UploadState> {
        upload::state(self, id)
    }

    async fn append_upload(&self, id: &str, offset: u64, body: ByteStream) -> Result<UploadState> {
        upload::append(self, id, offset, body).await
    }

    async fn abort_upload(&self, id: &str) -> Result<()> {
        upload::abort(self, id).await
    }

    async fn expire_uploads(&self, idle_since: SystemTime) -> Result<usize> {
        upload::expire(self, idle_since)
    }

    async fn blob_size(&self, digest: &Digest) -> Result<Option<u64>> {
        blobs::size(self, digest)
    }

    async fn read_blob(&self, image: &ImageRef, range: Option<(u64, u64)>) -> Result<BlobBody> {
        blobs::read(self, image, range)
    }

    async fn scan_blob(&self, digest: &Digest) -> Result<ByteStream> {
        blobs::scan(self, digest)
    }

    async fn list_blobs(&self) -> Result<Vec<(Digest, SystemTime)>> {
        let dir = self.blobs_dir();
        blocking(move || blobs::list(&dir)).await
    }

    async fn delete_blob(&self, digest: &Digest) -> Result<()> {
        blobs::delete(self, digest)
    }

    async fn put_version(&self, record: &VersionRecord) -> Result<()> {
        records::put(self, record).await
    }

    async fn delete_version(&self, application: &str, version: u32) -> Result<()> {
        records::delete_version(self, application, version).await
    }

    async fn delete_application(&self, application: &str) -> Result<()> {
        records::delete_application(self, application).await
    }

    async fn load_versions(&self) -> Result<LoadedVersions> {
        let apps = self.apps_dir();
        blocking(move || records::load(&apps)).await
    }
}
