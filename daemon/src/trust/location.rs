//! Where the trust store is: `trust.json` in the state directory (fs storage, only this
//! daemon serves the data), or one document in shared storage (S3: every daemon on the
//! bucket applies the same trust). Whatever changes trust — `aar trust …`, backup and
//! restore — goes through here, so it never matters which.

use std::path::Path;
use std::sync::Arc;

use super::shared::{SharedDocument, SharedStore};
use super::{AddOutcome, RevokedCert, Role, TrustError, TrustFile, TrustStore, TrustedCert};

pub enum TrustLocation {
    File(TrustStore),
    Shared(SharedStore),
}

impl TrustLocation {
    /// The shared document when storage offers one, else the state directory's file.
    pub fn new(state_dir: &Path, shared: Option<Arc<dyn SharedDocument>>) -> TrustLocation {
        match shared {
            Some(doc) => TrustLocation::Shared(SharedStore::new(doc, state_dir)),
            None => TrustLocation::File(TrustStore::open(state_dir)),
        }
    }

    /// Where it is, for messages.
    pub fn describe(&self) -> String {
        match self {
            TrustLocation::File(store) => store.path().display().to_string(),
            TrustLocation::Shared(store) => store.location(),
        }
    }

    pub async fn list(&self) -> Result<TrustFile, TrustError> {
        match self {
            TrustLocation::File(store) => store.list(),
            TrustLocation::Shared(store) => store.list().await,
        }
    }

    pub async fn add(
        &self,
        cert_input: &[u8],
        role: Role,
        origin: &str,
    ) -> Result<AddOutcome, TrustError> {
        match self {
            TrustLocation::File(store) => store.add(cert_input, role, origin),
            TrustLocation::Shared(store) => store.add(cert_input, role, origin).await,
        }
    }

    pub async fn remove(&self, prefix: &str) -> Result<TrustedCert, TrustError> {
        match self {
            TrustLocation::File(store) => store.remove(prefix),
            TrustLocation::Shared(store) => store.remove(prefix).await,
        }
    }

    pub async fn revoke(&self, prefix: &str) -> Result<RevokedCert, TrustError> {
        match self {
            TrustLocation::File(store) => store.revoke(prefix),
            TrustLocation::Shared(store) => store.revoke(prefix).await,
        }
    }

    /// Replaces the whole store with the document `bytes` (a restore). The bytes are
    /// checked by the store's own reader first (duplicates, malformed fingerprints):
    /// what it would refuse is never written.
    pub async fn replace(&self, bytes: &[u8]) -> Result<TrustFile, TrustError> {
        let file = super::file::parse(Path::new(&self.describe()), bytes)?;
        match self {
            TrustLocation::File(store) => store.replace(&file)?,
            TrustLocation::Shared(store) => store.replace(&file).await?,
        }
        Ok(file)
    }
}
