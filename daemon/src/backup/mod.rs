//! `aar backup` and `aar restore`: what cannot be recreated, in one tar stream.
//!
//! The archive holds the server key and certificate (the fingerprint every AMS pins), the
//! trust store, every version record and, with fs storage, the images the records use.
//! Everything goes through the [`Storage`](crate::storage::Storage) trait, never through
//! the backend's layout, so a restore verifies each image against its digest on the way
//! in (damaged bytes are refused, not restored) and writes images before the records
//! that reference them: a restore cut short leaves only unreferenced images, which
//! garbage collection removes.
//!
//! Layout (in this order, so a restore can check the format before writing anything):
//!
//! ```text
//! aar-backup/manifest.json            format, date, storage kind, server fingerprint
//! aar-backup/tls/server.crt, server.key
//! aar-backup/trust.json               the trust store file as it is
//! aar-backup/blobs/sha256/<hex>       fs storage only, unless --no-blobs
//! aar-backup/records/<name>/<n>.json  version records
//! ```

mod restore;
mod take;

pub use restore::{restore, Restored};
pub use take::{backup, Taken};

use serde::{Deserialize, Serialize};

const ROOT: &str = "aar-backup";
const FORMAT: u32 = 1;

/// The archive's first entry.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: u32,
    created_at: String,
    storage: String,
    server_fingerprint: String,
    /// Whether images are in the archive; without them a restore needs the images
    /// already in storage (or uploaded again).
    blobs: bool,
}

/// Where in the archive an entry belongs.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    Manifest,
    Certificate,
    Key,
    Trust,
    Blob(crate::digest::Digest),
    Record,
}

impl Entry {
    fn of(path: &str) -> Option<Entry> {
        let rest = path.strip_prefix(ROOT)?.strip_prefix('/')?;
        Some(match rest {
            "manifest.json" => Entry::Manifest,
            "tls/server.crt" => Entry::Certificate,
            "tls/server.key" => Entry::Key,
            "trust.json" => Entry::Trust,
            _ => {
                if let Some(hex) = rest.strip_prefix("blobs/sha256/") {
                    Entry::Blob(format!("sha256:{hex}").parse().ok()?)
                } else if rest.starts_with("records/") && rest.ends_with(".json") {
                    Entry::Record
                } else {
                    return None;
                }
            }
        })
    }
}

/// Why a backup or a restore stopped.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("{0} is not an aar backup ({1}); give a file written by `aar backup`")]
    NotABackup(String, String),
    #[error("the backup is format {found}, this aar reads format {FORMAT}; restore it with the aar version that wrote it")]
    Format { found: u32 },
    #[error("the registry's state is not empty ({0}); restore into a fresh state directory, or pass --force to add the backup to it (the server key and certificate and the trust store are replaced)")]
    NotEmpty(String),
    #[error("version {version} of {application:?} is stored with different contents than in the backup; versions are immutable, so it was left as stored (remove it with DELETE first to take the backup's)")]
    RecordDiffers { application: String, version: u32 },
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    Trust(#[from] crate::trust::TrustError),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BackupError {
    let context = context.into();
    move |source| BackupError::Io { context, source }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Digest;

    #[test]
    fn entries_are_recognised_by_their_place_only() {
        let digest = Digest::of(b"x");
        assert_eq!(
            Entry::of(&format!("aar-backup/blobs/sha256/{}", digest.hex())),
            Some(Entry::Blob(digest))
        );
        assert_eq!(Entry::of("aar-backup/manifest.json"), Some(Entry::Manifest));
        assert_eq!(
            Entry::of("aar-backup/records/game/1.json"),
            Some(Entry::Record)
        );
        assert_eq!(Entry::of("aar-backup/blobs/sha256/nothex"), None);
        assert_eq!(Entry::of("elsewhere/manifest.json"), None);
        assert_eq!(Entry::of("aar-backup/../etc/passwd"), None);
    }
}
