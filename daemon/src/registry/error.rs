//! What can go wrong in a registry operation, and the one classification of it that the
//! layer above turns into a response. The API never looks at storage errors itself.

use crate::manifest::ManifestError;
use crate::model::NameError;
use crate::storage::StorageError;

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
    #[error("{records} stored version record(s) cannot be read, so the registry does not answer a list that would lack them (AMS would delete what is missing); the registry's log names them and `aar verify` reports them: restore or remove them")]
    Incomplete { records: usize },
    #[error("the registry has not loaded its index from storage yet (storage has not been reachable since it started); retry shortly")]
    NotLoaded,
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// The classes of failure a caller can act on differently.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request itself is wrong (names, manifest, sizes, digests, a cut-off body).
    Invalid,
    /// The request body stopped arriving for longer than the idle timeout.
    TimedOut,
    NotFound,
    /// The request conflicts with what is stored (exists, busy, wrong offset).
    Conflict,
    /// Storage has no room left.
    Full,
    /// Stored bytes disagree with their record; they are never served.
    Damaged,
    /// Storage cannot be reached now; retrying later can succeed.
    Unavailable,
    /// Anything else; the details are for the registry's log, not the caller.
    Internal,
}

impl RegistryError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            RegistryError::Name(_) | RegistryError::Manifest(_) | RegistryError::BadRequest(_) => {
                ErrorKind::Invalid
            }
            RegistryError::NotFound(_) => ErrorKind::NotFound,
            RegistryError::Conflict(_) => ErrorKind::Conflict,
            RegistryError::Incomplete { .. } | RegistryError::NotLoaded => ErrorKind::Unavailable,
            RegistryError::Storage(err) => match err {
                StorageError::NotFound(_) => ErrorKind::NotFound,
                StorageError::AlreadyExists(_)
                | StorageError::Busy { .. }
                | StorageError::OffsetMismatch { .. } => ErrorKind::Conflict,
                StorageError::TooLong { .. } | StorageError::DigestMismatch { .. } => {
                    ErrorKind::Invalid
                }
                StorageError::BodyInterrupted(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    ErrorKind::TimedOut
                }
                StorageError::BodyInterrupted(_) => ErrorKind::Invalid,
                StorageError::Full(_) => ErrorKind::Full,
                StorageError::Damaged(_) => ErrorKind::Damaged,
                StorageError::Unavailable(_) => ErrorKind::Unavailable,
                StorageError::Io { .. } => ErrorKind::Internal,
            },
        }
    }

    /// For an append at the wrong offset: where the upload really stands, so that the
    /// caller can resume from there.
    pub fn upload_offset(&self) -> Option<u64> {
        match self {
            RegistryError::Storage(StorageError::OffsetMismatch { expected, .. }) => {
                Some(*expected)
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn storage_failures_are_classified_by_what_the_caller_can_do() {
        let cases = [
            (StorageError::NotFound("x".into()), ErrorKind::NotFound),
            (StorageError::Busy { id: "u".into() }, ErrorKind::Conflict),
            (StorageError::TooLong { declared: 1 }, ErrorKind::Invalid),
            (
                StorageError::BodyInterrupted(io::Error::from(io::ErrorKind::TimedOut)),
                ErrorKind::TimedOut,
            ),
            (
                StorageError::BodyInterrupted(io::Error::from(io::ErrorKind::ConnectionReset)),
                ErrorKind::Invalid,
            ),
            (StorageError::Full("disk".into()), ErrorKind::Full),
            (StorageError::Damaged("blob".into()), ErrorKind::Damaged),
            (
                StorageError::Unavailable("bucket".into()),
                ErrorKind::Unavailable,
            ),
            (
                StorageError::io("reading", io::Error::other("boom")),
                ErrorKind::Internal,
            ),
        ];
        for (err, kind) in cases {
            assert_eq!(RegistryError::from(err).kind(), kind);
        }
    }

    #[test]
    fn only_an_offset_mismatch_names_an_offset() {
        let mismatch = RegistryError::from(StorageError::OffsetMismatch {
            id: "u".into(),
            expected: 42,
            got: 7,
        });
        assert_eq!(mismatch.kind(), ErrorKind::Conflict);
        assert_eq!(mismatch.upload_offset(), Some(42));
        assert_eq!(RegistryError::NotFound("x".into()).upload_offset(), None);
    }
}
