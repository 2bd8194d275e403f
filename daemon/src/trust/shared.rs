//! The trust store kept beside the data, for storage that several daemons share (an S3
//! bucket): one document that every unit's CLI changes and every daemon re-reads.
//!
//! Changes are read-modify-write with a conditional write on the version read (`If-Match`,
//! or `If-None-Match: *` when there is none yet), retried from a fresh read when another
//! writer got there first, so two units changing trust at once never lose either change.
//! The storage backend supplies the document ([`SharedDocument`]); this module knows
//! nothing of S3.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::edit::{self, Merged};
use super::file::parse;
use super::store::TRUST_FILE;
use super::{AddOutcome, RevokedCert, Role, TrustError, TrustFile, TrustStore, TrustedCert};

/// A local `trust.json` that was brought into the shared store is renamed with this
/// suffix: kept for the record, never read again.
pub const IMPORTED_SUFFIX: &str = ".imported";

/// Conflicting writers are rare (trust changes come from hooks and operators); this many
/// rounds only run out when something rewrites the document without pause.
const MAX_ATTEMPTS: u32 = 8;

/// Why the shared document could not be read or written, in the backend's words (which
/// name the bucket and key, never a credential).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SharedError(pub String);

/// The outcome of a conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Written {
    /// Written; the new version's tag when the backend said it.
    Done(Option<String>),
    /// The document was not at the expected version: someone else wrote first.
    Conflict,
}

/// One document in shared storage, versioned by an opaque tag (an S3 ETag).
#[async_trait::async_trait]
pub trait SharedDocument: Send + Sync {
    /// Where the document is, for messages: `s3://bucket/trust/trust.json`.
    fn location(&self) -> String;
    /// The tag of the current version, `None` when there is no document. Meant to be
    /// cheaper than [`read`](Self::read): it is asked every refresh.
    async fn version(&self) -> Result<Option<String>, SharedError>;
    /// The whole current version and its tag, `None` when there is no document.
    async fn read(&self) -> Result<Option<(Vec<u8>, String)>, SharedError>;
    /// Writes `bytes` only if the current version is still `expected` (`None`: only if
    /// there is no document).
    async fn write(&self, bytes: Vec<u8>, expected: Option<&str>) -> Result<Written, SharedError>;
}

/// What [`SharedStore::fetch_if_changed`] found.
pub enum Fetched {
    /// Still the version the caller knows.
    Unchanged,
    /// There is no document: nobody has been trusted or revoked on this storage yet.
    Missing,
    Current {
        file: TrustFile,
        tag: String,
    },
    /// A version the store's reader refuses (not JSON, a malformed fingerprint).
    Corrupt {
        tag: String,
        error: TrustError,
    },
}

/// The trust store as a shared document, with the changes of `aar trust …`.
#[derive(Clone)]
pub struct SharedStore {
    doc: Arc<dyn SharedDocument>,
    /// Where a local `trust.json` from before the store was shared may still be.
    state_dir: PathBuf,
}

impl SharedStore {
    pub fn new(doc: Arc<dyn SharedDocument>, state_dir: &Path) -> SharedStore {
        SharedStore {
            doc,
            state_dir: state_dir.to_owned(),
        }
    }

    pub fn location(&self) -> String {
        self.doc.location()
    }

    fn unreachable(&self, action: &'static str, err: SharedError) -> TrustError {
        TrustError::Shared {
            action,
            location: self.location(),
            detail: err.0,
        }
    }

    /// The document as it is now, and its tag; an empty store when there is none.
    async fn current(&self) -> Result<(TrustFile, Option<String>), TrustError> {
        match self.doc.read().await {
            Ok(Some((bytes, tag))) => Ok((self.parse(&bytes)?, Some(tag))),
            Ok(None) => Ok((TrustFile::default(), None)),
            Err(e) => Err(self.unreachable("read", e)),
        }
    }

    fn parse(&self, bytes: &[u8]) -> Result<TrustFile, TrustError> {
        parse(Path::new(&self.location()), bytes)
    }

    /// Reads the store as it is now, after bringing in a local store left from before.
    pub async fn list(&self) -> Result<TrustFile, TrustError> {
        self.import_local().await?;
        Ok(self.current().await?.0)
    }

    /// The document if its tag is not `known`: what the daemon's refresh asks for.
    pub async fn fetch_if_changed(&self, known: Option<&str>) -> Result<Fetched, TrustError> {
        let tag = self
            .doc
            .version()
            .await
            .map_err(|e| self.unreachable("check", e))?;
        match tag {
            None => Ok(Fetched::Missing),
            Some(tag) if Some(tag.as_str()) == known => Ok(Fetched::Unchanged),
            Some(_) => match self.doc.read().await {
                Ok(Some((bytes, tag))) => Ok(match self.parse(&bytes) {
                    Ok(file) => Fetched::Current { file, tag },
                    Err(error) => Fetched::Corrupt { tag, error },
                }),
                // Deleted between the two requests.
                Ok(None) => Ok(Fetched::Missing),
                Err(e) => Err(self.unreachable("read", e)),
            },
        }
    }

    pub async fn add(
        &self,
        cert_input: &[u8],
        role: Role,
        origin: &str,
    ) -> Result<AddOutcome, TrustError> {
        let (info, der) = super::parse_certificate(cert_input)?;
        super::check_trustable(&der, "the input", super::time::now())?;
        self.import_local().await?;
        self.update(|file| edit::add(file, &info, &der, role, origin))
            .await
    }

    pub async fn remove(&self, prefix: &str) -> Result<TrustedCert, TrustError> {
        self.import_local().await?;
        self.update(|file| edit::remove(file, prefix)).await
    }

    pub async fn revoke(&self, prefix: &str) -> Result<RevokedCert, TrustError> {
        self.import_local().await?;
        self.update(|file| edit::revoke(file, prefix)).await
    }

    /// Replaces the whole store with `file` (a restore), whatever it holds now.
    pub async fn replace(&self, file: &TrustFile) -> Result<(), TrustError> {
        self.update(|current| {
            *current = file.clone();
            Ok(((), true))
        })
        .await
    }

    /// Brings a `trust.json` left in the state directory from before the store was shared
    /// into the shared one, once: revocations and certificates the shared store does not
    /// know are added ([`edit::merge`]), then the local file is renamed with
    /// [`IMPORTED_SUFFIX`]. Every unit that had its own store imports it this way, so
    /// several units converge on the union of what they trusted and revoked. A local file
    /// that cannot be read stops here with its path: importing around it could drop a
    /// revocation.
    pub async fn import_local(&self) -> Result<Option<Merged>, TrustError> {
        let local = TrustStore::open(&self.state_dir);
        let path = local.path();
        if !path.exists() {
            return Ok(None);
        }
        let from = local.list()?;
        let merged = self
            .update(|shared| {
                let merged = edit::merge(shared, from.clone());
                Ok((merged, merged != Merged::default()))
            })
            .await?;
        let kept = self
            .state_dir
            .join(format!("{TRUST_FILE}{IMPORTED_SUFFIX}"));
        match std::fs::rename(&path, &kept) {
            Ok(()) => {
                crate::fsutil::fsync_dir(&self.state_dir).ok();
                tracing::info!(
                    trusted = merged.trusted,
                    revoked = merged.revoked,
                    "imported the local trust store {} into {}; the local file is kept as {}",
                    path.display(),
                    self.location(),
                    kept.display()
                );
            }
            // Another process on this unit imported it at the same moment.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => {
                return Err(TrustError::Io {
                    action: "rename the imported trust store",
                    path,
                    error,
                })
            }
        }
        Ok(Some(merged))
    }

    /// Reads, changes and writes back on the version read, again from a fresh read when
    /// another writer got in between.
    async fn update<T>(
        &self,
        mut change: impl FnMut(&mut TrustFile) -> Result<(T, bool), TrustError>,
    ) -> Result<T, TrustError> {
        for attempt in 0..MAX_ATTEMPTS {
            let (mut file, tag) = self.current().await?;
            let (result, changed) = change(&mut file)?;
            if !changed {
                return Ok(result);
            }
            let mut bytes = serde_json::to_vec_pretty(&file).expect("trust file serializes");
            bytes.push(b'\n');
            match self.doc.write(bytes, tag.as_deref()).await {
                Ok(Written::Done(_)) => return Ok(result),
                Ok(Written::Conflict) => tokio::time::sleep(backoff(attempt)).await,
                Err(e) => return Err(self.unreachable("write", e)),
            }
        }
        Err(TrustError::Contended {
            location: self.location(),
            attempts: MAX_ATTEMPTS,
        })
    }
}

/// A pause that grows with each conflict, with jitter so that two writers that collided
/// do not collide again in step.
fn backoff(attempt: u32) -> Duration {
    let jitter = (uuid::Uuid::new_v4().as_u128() % 50) as u64;
    Duration::from_millis(20 * u64::from(attempt + 1) + jitter)
}
