//! The file store's cache: every change seen at the next lookup, damage never widening trust.

use std::fs::FileTimes;

use std::fs::{self, File};
use std::path::Path;

use super::*;
use crate::trust::store::TRUST_FILE;
use crate::trust::{fingerprint, TrustStore, TrustedCert};

fn cert() -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["ams".into()]).unwrap();
    (ck.cert.pem(), fingerprint(ck.cert.der()))
}

fn file_with(fp: &str, role: Role) -> Vec<u8> {
    let file: TrustFile<String> = TrustFile {
        trusted: vec![TrustedCert {
            fingerprint: fp.to_owned(),
            role,
            subject: "s".to_owned(),
            not_after: "2030-01-01T00:00:00Z".to_owned(),
            origin: "test".to_owned(),
            added_at: "2025-01-01T00:00:00Z".to_owned(),
            certificate: String::new(),
        }],
        revoked: vec![],
    };
    serde_json::to_vec(&file).unwrap()
}

/// Replaces trust.json the way the store does (new file, rename), then forces the new
/// file's mtime to `mtime`, as if both writes fell within one timestamp tick.
fn replace_with_mtime(dir: &Path, bytes: &[u8], mtime: std::time::SystemTime) {
    let temp = dir.join("replace.tmp");
    let file = File::create(&temp).unwrap();
    std::io::Write::write_all(&mut &file, bytes).unwrap();
    file.set_times(FileTimes::new().set_modified(mtime))
        .unwrap();
    drop(file);
    fs::rename(&temp, dir.join(TRUST_FILE)).unwrap();
}

#[test]
fn missing_store_trusts_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TrustCache::new(dir.path());
    assert_eq!(cache.lookup(&"a".repeat(64)), Access::Unknown);
    assert_eq!(cache.counts(), (0, 0));
    cache.refresh().unwrap();
}

#[test]
fn every_write_is_seen_by_the_very_next_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let store = TrustStore::open(dir.path());
    let cache = TrustCache::new(dir.path());
    let (pem_a, a) = cert();
    let (pem_b, b) = cert();
    assert_eq!(cache.lookup(&a), Access::Unknown);

    // No sleeps: consecutive writes land within one mtime tick on most filesystems.
    for _ in 0..20 {
        store.add(pem_a.as_bytes(), Role::Client, "cli").unwrap();
        assert_eq!(cache.lookup(&a), Access::Trusted(Role::Client));
        assert_eq!(cache.counts(), (0, 1));
        store.add(pem_a.as_bytes(), Role::Publisher, "cli").unwrap();
        assert_eq!(cache.lookup(&a), Access::Trusted(Role::Publisher));
        assert_eq!(cache.counts(), (1, 0));
        store.remove(&a).unwrap();
        assert_eq!(cache.lookup(&a), Access::Unknown);
        // Same length as the entry for `a`, so often the same file size too.
        store.add(pem_b.as_bytes(), Role::Client, "cli").unwrap();
        assert_eq!(cache.lookup(&b), Access::Trusted(Role::Client));
        assert_eq!(cache.lookup(&a), Access::Unknown);
        store.remove(&b).unwrap();
        assert_eq!(cache.lookup(&b), Access::Unknown);
    }

    store.add(pem_a.as_bytes(), Role::Publisher, "cli").unwrap();
    assert_eq!(cache.lookup(&a), Access::Trusted(Role::Publisher));
    store.revoke(&a).unwrap();
    assert_eq!(cache.lookup(&a), Access::Revoked);
    assert_eq!(cache.lookup(&a.to_uppercase()), Access::Revoked);
    assert_eq!(cache.counts(), (0, 0));
}

#[test]
fn same_size_same_mtime_replacement_is_seen() {
    let dir = tempfile::tempdir().unwrap();
    let cache = TrustCache::new(dir.path());
    let (a, b, c) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
    let first = file_with(&a, Role::Client);
    fs::write(dir.path().join(TRUST_FILE), &first).unwrap();
    let mtime = fs::metadata(dir.path().join(TRUST_FILE))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(cache.lookup(&a), Access::Trusted(Role::Client));

    let second = file_with(&b, Role::Client);
    assert_eq!(first.len(), second.len());
    replace_with_mtime(dir.path(), &second, mtime);
    assert_eq!(cache.lookup(&a), Access::Unknown);
    assert_eq!(cache.lookup(&b), Access::Trusted(Role::Client));

    // Two replacements with no lookup in between: the second could reuse the inode freed
    // by the first if the cache did not keep its version open.
    replace_with_mtime(dir.path(), &file_with(&a, Role::Client), mtime);
    replace_with_mtime(dir.path(), &file_with(&c, Role::Client), mtime);
    assert_eq!(cache.lookup(&c), Access::Trusted(Role::Client));
    assert_eq!(cache.lookup(&b), Access::Unknown);
}

#[test]
fn corrupt_store_keeps_the_last_good_view() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(TRUST_FILE);
    let cache = TrustCache::new(dir.path());
    let a = "a".repeat(64);
    fs::write(&path, file_with(&a, Role::Publisher)).unwrap();
    assert_eq!(cache.lookup(&a), Access::Trusted(Role::Publisher));

    replace_with_mtime(dir.path(), b"{ not json", std::time::SystemTime::now());
    assert_eq!(cache.lookup(&a), Access::Trusted(Role::Publisher));
    assert_eq!(cache.counts(), (1, 0));
    let err = cache.refresh().unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("is corrupt"), "{err}");

    replace_with_mtime(
        dir.path(),
        &file_with(&a, Role::Client),
        std::time::SystemTime::now(),
    );
    assert_eq!(cache.lookup(&a), Access::Trusted(Role::Client));
    cache.refresh().unwrap();

    fs::remove_file(&path).unwrap();
    assert_eq!(cache.lookup(&a), Access::Unknown);
}

#[test]
fn corrupt_store_at_start_trusts_nobody() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join(TRUST_FILE), b"[]").unwrap();
    let cache = TrustCache::new(dir.path());
    assert_eq!(cache.lookup(&"a".repeat(64)), Access::Unknown);
    assert!(cache.refresh().is_err());
}

#[test]
fn a_certificate_expires_after_its_last_second() {
    let dir = tempfile::tempdir().unwrap();
    let a = "a".repeat(64);
    fs::write(dir.path().join(TRUST_FILE), file_with(&a, Role::Publisher)).unwrap();
    let cache = TrustCache::new(dir.path());
    let end = crate::trust::time::parse("2030-01-01T00:00:00Z").unwrap();
    assert_eq!(cache.lookup_at(&a, end), Access::Trusted(Role::Publisher));
    assert_eq!(
        cache.lookup_at(&a, end + 1),
        Access::Expired { not_after: end }
    );
    assert_eq!(cache.lookup_at(&"b".repeat(64), end + 1), Access::Unknown);
}

#[test]
fn revocation_wins_over_a_stale_trusted_entry() {
    let dir = tempfile::tempdir().unwrap();
    let a = "a".repeat(64);
    let json = format!(
        r#"{{"trusted":[{{"fingerprint":"{a}","role":"publisher","subject":"s","not_after":"","origin":"","added_at":"","certificate":""}}],
           "revoked":[{{"fingerprint":"{a}","revoked_at":"2025-01-01T00:00:00Z"}}]}}"#
    );
    fs::write(dir.path().join(TRUST_FILE), json).unwrap();
    let cache = TrustCache::new(dir.path());
    assert_eq!(cache.lookup(&a), Access::Revoked);
    assert_eq!(cache.counts(), (0, 0));
}

#[test]
fn an_entry_without_a_readable_date_is_not_checked_for_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let a = "a".repeat(64);
    let json = format!(
        r#"{{"trusted":[{{"fingerprint":"{a}","role":"client","subject":"s","not_after":"","origin":"","added_at":"","certificate":""}}]}}"#
    );
    fs::write(dir.path().join(TRUST_FILE), json).unwrap();
    let cache = TrustCache::new(dir.path());
    assert_eq!(cache.lookup_at(&a, i64::MAX), Access::Trusted(Role::Client));
}
