//! Images: finding one for a download, opening it, and verifying every stored image
//! against its digest (`aar verify` and the background scrub).
//!
//! Opening an image checks the stored size against the record, which costs a `stat`, so a
//! truncated or extended blob is never served as a clean 200. Flipped bytes of the right
//! size are found only by hashing, which [`Registry::verify`] does.

use super::{Registry, RegistryError};
use crate::digest::Digest;
use crate::model::{self, ImageRef};
use crate::storage::{BlobBody, Storage, StorageError};
use futures_util::StreamExt;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What is wrong with one stored image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageCheck {
    Missing,
    WrongSize { stored: u64, recorded: u64 },
    WrongDigest { actual: Digest },
    Unreachable(String),
}

impl std::fmt::Display for ImageCheck {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageCheck::Missing => write!(f, "missing from storage"),
            ImageCheck::WrongSize { stored, recorded } => {
                write!(f, "{stored} bytes stored, {recorded} recorded")
            }
            ImageCheck::WrongDigest { actual } => write!(f, "the bytes hash to {actual}"),
            ImageCheck::Unreachable(e) => write!(f, "could not be read: {e}"),
        }
    }
}

/// The outcome of [`Registry::verify`].
#[derive(Debug, Default)]
pub struct Verification {
    pub records: usize,
    pub unreadable_records: Vec<String>,
    pub images: usize,
    pub bytes: u64,
    /// Each damaged image, what is wrong, and the versions (`name/N/arch`) that use it.
    pub damaged: Vec<(Digest, ImageCheck, Vec<String>)>,
    /// Damaged images removed with `repair`, so that an upload of the same bytes replaces
    /// them.
    pub removed: Vec<Digest>,
}

impl Verification {
    pub fn is_clean(&self) -> bool {
        self.unreadable_records.is_empty() && self.damaged.is_empty()
    }
}

impl Registry {
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

    /// Opens `image` for a download of `range` (inclusive start, exclusive end).
    pub async fn open_image(
        &self,
        image: &ImageRef,
        range: Option<(u64, u64)>,
    ) -> Result<BlobBody, RegistryError> {
        let opened = match self.0.storage.read_blob(image, range).await {
            // A version is only published with its image stored: a missing one was lost.
            Err(StorageError::NotFound(_)) => Err(StorageError::Damaged(format!(
                "image {} is missing from storage",
                image.digest
            ))),
            other => other,
        };
        opened.map_err(|e| damage_reported(image, e))
    }

    /// Checks that `image` is stored with its recorded size, for a `HEAD`.
    pub async fn check_image(&self, image: &ImageRef) -> Result<(), RegistryError> {
        let found = self.0.storage.blob_size(&image.digest).await?;
        let err = match found {
            Some(size) if size == image.size => return Ok(()),
            Some(size) => StorageError::Damaged(format!(
                "image {} has {size} bytes in storage but {} recorded",
                image.digest, image.size
            )),
            None => {
                StorageError::Damaged(format!("image {} is missing from storage", image.digest))
            }
        };
        Err(damage_reported(image, err))
    }

    /// Hashes every image a stored record references and reads every record, reading at
    /// most `rate` bytes per second (the background scrub). It only reports: removing a
    /// damaged image is `aar verify --repair`, an operator's decision.
    pub async fn verify(&self, rate: Option<u64>) -> Result<Verification, StorageError> {
        verify(self.0.storage.as_ref(), false, rate).await
    }
}

/// Hashes every image a stored record references and reads every record; with `repair`,
/// removes damaged images so that an upload of the same bytes restores the versions using
/// them. `rate` bounds the bytes hashed per second; `None` reads as fast as storage allows.
/// Works on a backend no registry has opened (`aar verify`, beside a daemon that may be
/// running): nothing is recovered or collected here.
pub async fn verify(
    storage: &dyn Storage,
    repair: bool,
    rate: Option<u64>,
) -> Result<Verification, StorageError> {
    let stored = storage.load_versions().await?;
    let mut users: BTreeMap<ImageRef, Vec<String>> = BTreeMap::new();
    for record in &stored.records {
        for (arch, image) in &record.images {
            users
                .entry(*image)
                .or_default()
                .push(format!("{}/{}/{arch}", record.application, record.version));
        }
    }
    let mut report = Verification {
        records: stored.records.len(),
        unreadable_records: stored.unreadable,
        images: users.len(),
        ..Verification::default()
    };
    let pacer = Pacer::new(rate);
    for (image, versions) in users {
        let check = match storage.scan_blob(&image.digest).await {
            Ok(stream) => hash_stream(stream, &pacer, &mut report.bytes).await,
            Err(StorageError::NotFound(_)) => Err(ImageCheck::Missing),
            Err(e) => Err(ImageCheck::Unreachable(e.to_string())),
        };
        let problem = match check {
            Ok((size, _)) if size != image.size => ImageCheck::WrongSize {
                stored: size,
                recorded: image.size,
            },
            Ok((_, actual)) if actual != image.digest => ImageCheck::WrongDigest { actual },
            Ok(_) => continue,
            Err(problem) => problem,
        };
        tracing::error!(image = %image.digest, problem = %problem, versions = ?versions, "damaged image");
        let removable = matches!(
            problem,
            ImageCheck::WrongSize { .. } | ImageCheck::WrongDigest { .. }
        );
        if repair && removable {
            match storage.delete_blob(&image.digest).await {
                Ok(()) | Err(StorageError::NotFound(_)) => report.removed.push(image.digest),
                Err(e) => return Err(e),
            }
        }
        report.damaged.push((image.digest, problem, versions));
    }
    Ok(report)
}

/// Logs a damaged image where the operator looks, and passes the error on.
fn damage_reported(image: &ImageRef, err: StorageError) -> RegistryError {
    if let StorageError::Damaged(what) = &err {
        tracing::error!(image = %image.digest, problem = what, "damaged image refused; run `aar verify --repair`, then upload the image again");
    }
    err.into()
}

/// Hashes a blob's bytes; the error is what made it unreadable.
async fn hash_stream(
    mut stream: crate::storage::ByteStream,
    pacer: &Pacer,
    total: &mut u64,
) -> Result<(u64, Digest), ImageCheck> {
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ImageCheck::Unreachable(e.to_string()))?;
        hasher.update(&chunk);
        size += chunk.len() as u64;
        *total += chunk.len() as u64;
        pacer.pace(*total).await;
    }
    Ok((size, Digest::from_bytes(hasher.finalize().into())))
}

/// Keeps a long read at or under `rate` bytes per second.
struct Pacer {
    rate: Option<u64>,
    started: Instant,
}

impl Pacer {
    fn new(rate: Option<u64>) -> Self {
        Pacer {
            rate,
            started: Instant::now(),
        }
    }

    async fn pace(&self, done: u64) {
        let Some(rate) = self.rate.filter(|r| *r > 0) else {
            return;
        };
        let due = Duration::from_secs_f64(done as f64 / rate as f64);
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            tokio::time::sleep(wait).await;
        }
    }
}
