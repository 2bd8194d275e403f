use std::collections::{HashMap, HashSet};
use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::file::parse;
use super::store::TRUST_FILE;
use super::{Fingerprint, Role, TrustError};

/// What the trust store says about a certificate fingerprint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    Trusted(Role),
    /// Trusted, but past the end of its validity (Unix time): refused like an untrusted one.
    Expired {
        not_after: i64,
    },
    Revoked,
    Unknown,
}

/// The daemon's request-time view of `trust.json`.
///
/// Every call stats the file and re-reads it only when it changed, so a change made by the
/// CLI applies from the very next request without a restart, and an unchanged store costs one
/// `statx` and a map lookup.
pub struct TrustCache {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Default)]
struct View {
    trusted: HashMap<Fingerprint, Grant>,
    revoked: HashSet<Fingerprint>,
    publishers: usize,
    clients: usize,
}

impl View {
    fn access(&self, fingerprint: &Fingerprint, now: i64) -> Access {
        if self.revoked.contains(fingerprint) {
            Access::Revoked
        } else if let Some(grant) = self.trusted.get(fingerprint) {
            match grant.not_after {
                // A certificate is valid through the second its validity ends in.
                Some(not_after) if now > not_after => Access::Expired { not_after },
                _ => Access::Trusted(grant.role),
            }
        } else {
            Access::Unknown
        }
    }
}

#[derive(Clone, Copy)]
struct Grant {
    role: Role,
    /// Unix time; `None` when the store does not say in a form we read (a hand-written
    /// entry), in which case validity is not checked.
    not_after: Option<i64>,
}

/// Identity of one version of the file. Writers replace the file by rename, so each version
/// has its own inode; size and times catch editors that rewrite it in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

enum Source {
    Unloaded,
    Missing,
    Loaded {
        stamp: Stamp,
        // Kept open so the inode cannot be freed and handed to a later version of the file:
        // with a recycled inode, two writes within one mtime tick could share a stamp.
        _pin: File,
    },
}

struct State {
    source: Source,
    view: Arc<View>,
    /// The version that failed to load, so it is neither re-read nor reported again on every
    /// request.
    failed: Option<Stamp>,
    stat_failure_reported: bool,
}

impl TrustCache {
    /// Reads nothing yet: the first lookup loads the store.
    pub fn new(state_dir: &Path) -> TrustCache {
        TrustCache {
            path: state_dir.join(TRUST_FILE),
            state: Mutex::new(State {
                source: Source::Unloaded,
                view: Arc::default(),
                failed: None,
                stat_failure_reported: false,
            }),
        }
    }

    /// Looks `fingerprint` up at the current time.
    pub fn access(&self, fingerprint: &Fingerprint) -> Access {
        let (view, _) = self.current(false);
        view.access(fingerprint, super::time::now())
    }

    /// Looks up a fingerprint given as text, at the current time.
    pub fn lookup(&self, fingerprint: &str) -> Access {
        self.lookup_at(fingerprint, super::time::now())
    }

    /// Looks up a fingerprint given as text, in either case, as of `now` (Unix time). Text
    /// that is not a fingerprint names no certificate: [`Access::Unknown`].
    pub fn lookup_at(&self, fingerprint: &str, now: i64) -> Access {
        let (view, _) = self.current(false);
        match fingerprint.parse() {
            Ok(fingerprint) => view.access(&fingerprint, now),
            Err(_) => Access::Unknown,
        }
    }

    /// Number of trusted (publishers, clients).
    pub fn counts(&self) -> (usize, usize) {
        let (view, _) = self.current(false);
        (view.publishers, view.clients)
    }

    /// Re-reads the store now and reports why it cannot be used, for a daemon that wants to
    /// refuse to start on a damaged store. The previous view stays in place on error.
    pub fn refresh(&self) -> Result<(), TrustError> {
        match self.current(true) {
            (_, Some(err)) => Err(err),
            (_, None) => Ok(()),
        }
    }

    fn current(&self, force: bool) -> (Arc<View>, Option<TrustError>) {
        let stat = fs::metadata(&self.path);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let stamp = match stat {
            Ok(meta) => {
                state.stat_failure_reported = false;
                Some(Stamp::of(&meta))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(error) => {
                let err = TrustError::Io {
                    action: "read",
                    path: self.path.clone(),
                    error,
                };
                if !state.stat_failure_reported {
                    state.stat_failure_reported = true;
                    tracing::warn!("{err}; keeping the trust list loaded before");
                }
                return (Arc::clone(&state.view), Some(err));
            }
        };

        let unchanged = match (&state.source, stamp) {
            (Source::Missing, None) => true,
            (Source::Loaded { stamp: loaded, .. }, Some(now)) => *loaded == now,
            _ => false,
        };
        if !force && (unchanged || (stamp.is_some() && stamp == state.failed)) {
            return (Arc::clone(&state.view), None);
        }

        match load(&self.path) {
            Ok(Some((stamp, pin, view))) => {
                tracing::info!(
                    publishers = view.publishers,
                    clients = view.clients,
                    revoked = view.revoked.len(),
                    "loaded trust store {}",
                    self.path.display()
                );
                crate::metrics::global().trust_refreshed();
                state.view = Arc::new(view);
                state.source = Source::Loaded { stamp, _pin: pin };
                state.failed = None;
                (Arc::clone(&state.view), None)
            }
            Ok(None) => {
                if matches!(state.source, Source::Loaded { .. }) {
                    tracing::warn!(
                        "trust store {} was removed; no certificate is trusted any more",
                        self.path.display()
                    );
                }
                state.view = Arc::default();
                state.source = Source::Missing;
                state.failed = None;
                (Arc::clone(&state.view), None)
            }
            Err((failed, err)) => {
                if failed.is_none() || failed != state.failed {
                    tracing::warn!("{err}; keeping the trust list loaded before");
                }
                state.failed = failed;
                (Arc::clone(&state.view), Some(*err))
            }
        }
    }
}

type Loaded = (Stamp, File, View);

/// Reads one version of the file. The stamp comes from the open descriptor, not the earlier
/// stat, so it describes exactly the bytes that were parsed even if the file was replaced in
/// between. `Ok(None)` means there is no file. The error is boxed: with the stamp beside
/// it, it would otherwise outweigh the whole successful result.
fn load(path: &Path) -> Result<Option<Loaded>, (Option<Stamp>, Box<TrustError>)> {
    let io_err = |action, error| {
        Box::new(TrustError::Io {
            action,
            path: path.to_owned(),
            error,
        })
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err((None, io_err("open", e))),
    };
    let stamp = file
        .metadata()
        .map(|meta| Stamp::of(&meta))
        .map_err(|e| (None, io_err("stat", e)))?;
    let mut bytes = Vec::with_capacity(usize::try_from(stamp.size).unwrap_or(0));
    file.read_to_end(&mut bytes)
        .map_err(|e| (Some(stamp), io_err("read", e)))?;
    let parsed = parse(path, &bytes).map_err(|e| (Some(stamp), Box::new(e)))?;

    let revoked: HashSet<Fingerprint> = parsed.revoked.into_iter().map(|r| r.fingerprint).collect();
    let mut view = View::default();
    for cert in parsed.trusted {
        if revoked.contains(&cert.fingerprint) {
            continue;
        }
        match cert.role {
            Role::Publisher => view.publishers += 1,
            Role::Client => view.clients += 1,
        }
        let not_after = super::time::parse(&cert.not_after);
        view.trusted.insert(
            cert.fingerprint,
            Grant {
                role: cert.role,
                not_after,
            },
        );
    }
    view.revoked = revoked;
    Ok(Some((stamp, file, view)))
}

#[cfg(test)]
mod tests {
    use std::fs::FileTimes;

    use super::*;
    use crate::trust::{fingerprint, TrustFile, TrustStore, TrustedCert};

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
}
