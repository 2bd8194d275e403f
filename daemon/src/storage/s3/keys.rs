//! The bucket's key layout, in one place.
//!
//! ```text
//! blobs/sha256/<hex>                  image bytes, named by their digest
//! uploads/<id>.json                   an open upload: declared digest and size, the
//!                                     multipart upload it writes, its parts so far and
//!                                     the SHA-256 state after them
//! apps/<name>/versions/<n>.json       one published version (VersionRecord)
//! deletions/<id>.json                 an application delete in progress: the keys it
//!                                     removes (hidden from listings until done)
//! probes/<id>                         written and removed by the start-up check
//! trust/trust.json                    the trust store every daemon on the bucket applies
//! index/versions.json                 a cache of every version record with the ETag it
//!                                     was read under, so a start reads one object, not
//!                                     one per version (see [`super::snapshot`])
//! ```
//!
//! Keys use `[a-z0-9._/-]` only (application names are validated, ids are UUIDs), so they
//! need no escaping in S3 requests nor in CloudFront URLs.

use crate::digest::Digest;

pub const BLOBS: &str = "blobs/sha256/";
pub const UPLOADS: &str = "uploads/";
pub const APPS: &str = "apps/";
pub const DELETIONS: &str = "deletions/";
pub const PROBES: &str = "probes/";
/// The trust store every daemon on the bucket applies.
pub const TRUST: &str = "trust/trust.json";
/// The index snapshot: a cache, never the authority on which versions exist.
pub const SNAPSHOT: &str = "index/versions.json";

pub fn blob(digest: &Digest) -> String {
    format!("{BLOBS}{}", digest.hex())
}

pub fn parse_blob(key: &str) -> Option<Digest> {
    format!("sha256:{}", key.strip_prefix(BLOBS)?).parse().ok()
}

pub fn upload(id: &str) -> String {
    format!("{UPLOADS}{id}.json")
}

pub fn parse_upload(key: &str) -> Option<&str> {
    key.strip_prefix(UPLOADS)?.strip_suffix(".json")
}

pub fn application(name: &str) -> String {
    format!("{APPS}{name}/versions/")
}

pub fn version(name: &str, version: u32) -> String {
    format!("{APPS}{name}/versions/{version}.json")
}

/// `(application, version)` of a version record's key; `None` for anything else.
pub fn parse_version(key: &str) -> Option<(&str, u32)> {
    let (name, file) = key.strip_prefix(APPS)?.split_once("/versions/")?;
    let number = file.strip_suffix(".json")?;
    // "007.json" would be a second name for version 7.
    if name.is_empty() || name.contains('/') || number.starts_with('0') {
        return None;
    }
    Some((name, number.parse().ok()?))
}

pub fn deletion(id: &str) -> String {
    format!("{DELETIONS}{id}.json")
}

pub fn probe(id: &str) -> String {
    format!("{PROBES}{id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout() {
        let digest = Digest::of(b"");
        assert_eq!(
            blob(&digest),
            "blobs/sha256/e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(parse_blob(&blob(&digest)), Some(digest));
        assert_eq!(parse_blob("blobs/sha256/xyz"), None);
        assert_eq!(parse_blob("uploads/x.json"), None);
        assert_eq!(upload("0b7c"), "uploads/0b7c.json");
        assert_eq!(parse_upload("uploads/0b7c.json"), Some("0b7c"));
        assert_eq!(version("bench", 12), "apps/bench/versions/12.json");
        assert_eq!(application("bench"), "apps/bench/versions/");
        assert_eq!(
            parse_version("apps/bench/versions/12.json"),
            Some(("bench", 12))
        );
        assert_eq!(parse_version("apps/bench/versions/012.json"), None);
        assert_eq!(parse_version("apps/bench/versions/12.json.tmp"), None);
        assert_eq!(parse_version("apps/a/b/versions/1.json"), None);
        assert_eq!(parse_version("apps//versions/1.json"), None);
        assert_eq!(deletion("d1"), "deletions/d1.json");
        assert_eq!(probe("p1"), "probes/p1");
    }
}
