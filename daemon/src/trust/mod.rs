//! TEMPORARY STUB: replaced by the real trust module.
use sha2::Digest;
use std::path::Path;
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Publisher,
    Client,
}
impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Role::Publisher => "publisher",
            Role::Client => "client",
        })
    }
}
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    Trusted(Role),
    Revoked,
    Unknown,
}
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(der))
}
pub struct TrustCache;
impl TrustCache {
    pub fn new(_state_dir: &Path) -> Self {
        TrustCache
    }
    pub fn lookup(&self, _fp: &str) -> Access {
        Access::Trusted(Role::Publisher)
    }
    pub fn counts(&self) -> (usize, usize) {
        (0, 0)
    }
}
