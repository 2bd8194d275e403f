//! The CLI's side of the trust store: changes to `trust.json` under a lock, written
//! atomically so that the daemon never reads half a file.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::cert::parse_certificate;
use super::file::parse;
use super::{check_trustable, edit, time, Role, TrustError, TrustFile};
use super::{RevokedCert, TrustedCert};

pub(crate) const TRUST_FILE: &str = "trust.json";
const LOCK_FILE: &str = "trust.lock";

/// What [`TrustStore::add`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddOutcome {
    Added,
    /// Already trusted in that role; the file was not touched.
    Unchanged,
    RoleChanged {
        from: Role,
        to: Role,
    },
}

/// The CLI's read-modify-write view of `<state-directory>/trust.json`.
#[derive(Clone, Debug)]
pub struct TrustStore {
    dir: PathBuf,
}

impl TrustStore {
    /// Touches nothing on disk: the directory and file are created by the first change.
    pub fn open(state_dir: &Path) -> TrustStore {
        TrustStore {
            dir: state_dir.to_owned(),
        }
    }

    /// Path of `trust.json`.
    pub fn path(&self) -> PathBuf {
        self.dir.join(TRUST_FILE)
    }

    /// Reads the store as it is now; takes no lock, since writers replace the file atomically.
    pub fn list(&self) -> Result<TrustFile, TrustError> {
        let path = self.path();
        match fs::read(&path) {
            Ok(bytes) => parse(&path, &bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(TrustFile::default()),
            Err(error) => Err(TrustError::Io {
                action: "read",
                path,
                error,
            }),
        }
    }

    pub fn add(
        &self,
        cert_input: &[u8],
        role: Role,
        origin: &str,
    ) -> Result<AddOutcome, TrustError> {
        let (info, der) = parse_certificate(cert_input)?;
        check_trustable(&der, "the input", time::now())?;
        self.update(|file| edit::add(file, &info, &der, role, origin))
    }

    /// Stops trusting a certificate; unlike [`revoke`](Self::revoke) it can be added again.
    pub fn remove(&self, prefix: &str) -> Result<TrustedCert, TrustError> {
        self.update(|file| edit::remove(file, prefix))
    }

    /// Stops trusting a certificate and refuses it forever. A full fingerprint of a
    /// certificate that was never trusted is revoked pre-emptively; revoking an already
    /// revoked certificate returns its existing record.
    pub fn revoke(&self, prefix: &str) -> Result<RevokedCert, TrustError> {
        self.update(|file| edit::revoke(file, prefix))
    }

    /// Replaces the whole store with `file` (a restore).
    pub fn replace(&self, file: &TrustFile) -> Result<(), TrustError> {
        let _lock = self.lock()?;
        self.write(file)
    }

    /// Runs `change` on the current contents under the store's lock, and writes the result
    /// back when it says it changed something.
    fn update<T>(
        &self,
        change: impl FnOnce(&mut TrustFile) -> Result<(T, bool), TrustError>,
    ) -> Result<T, TrustError> {
        let _lock = self.lock()?;
        let mut file = self.list()?;
        let (result, changed) = change(&mut file)?;
        if changed {
            self.write(&file)?;
        }
        Ok(result)
    }

    fn lock(&self) -> Result<File, TrustError> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(|error| TrustError::Io {
                action: "create the state directory",
                path: self.dir.clone(),
                error,
            })?;
        let path = self.dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|error| TrustError::Io {
                action: "open the lock file",
                path: path.clone(),
                error,
            })?;
        // rustix rather than `File::lock`, which needs Rust 1.89 while the workspace promises
        // 1.85; both are flock(2), released when the file is closed.
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map_err(|errno| {
            TrustError::Io {
                action: "lock",
                path,
                error: errno.into(),
            }
        })?;
        Ok(lock)
    }

    /// Replaces trust.json atomically: readers, the daemon included, see the old file or the
    /// new one, never a partial write, and the rename gives the new version a new inode,
    /// which is how [`super::TrustCache`] tells versions apart.
    fn write(&self, file: &TrustFile) -> Result<(), TrustError> {
        let mut json = serde_json::to_vec_pretty(file).expect("trust file serializes");
        json.push(b'\n');
        let path = self.path();
        crate::fsutil::write_atomic(&path, &json, 0o600, crate::fsutil::Replace::Overwrite).map_err(
            |error| TrustError::Io {
                action: "replace",
                path,
                error,
            },
        )
    }
}

#[cfg(test)]
mod tests;
