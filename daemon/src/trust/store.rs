use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::cert::{now_rfc3339, parse_certificate, to_pem};
use super::{check_trustable, time, Role, TrustError};

pub(crate) const TRUST_FILE: &str = "trust.json";
const LOCK_FILE: &str = "trust.lock";
const MIN_PREFIX: usize = 4;
const FINGERPRINT_LEN: usize = 64;

/// The contents of `trust.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustFile {
    #[serde(default)]
    pub trusted: Vec<TrustedCert>,
    #[serde(default)]
    pub revoked: Vec<RevokedCert>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedCert {
    pub fingerprint: String,
    pub role: Role,
    pub subject: String,
    /// RFC 3339.
    pub not_after: String,
    /// Who added it: "cli", a relation name, ...
    pub origin: String,
    /// RFC 3339.
    pub added_at: String,
    /// PEM.
    pub certificate: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedCert {
    pub fingerprint: String,
    /// Empty when the certificate was revoked without ever being trusted.
    #[serde(default)]
    pub subject: String,
    /// RFC 3339.
    pub revoked_at: String,
}

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

/// Where a fingerprint or prefix points, as answered by [`TrustFile::find`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found<'a> {
    Trusted(&'a TrustedCert),
    Revoked(&'a RevokedCert),
    Nothing,
}

impl TrustFile {
    /// Resolves a full fingerprint or an unambiguous prefix (case-insensitive, colons allowed
    /// as in `openssl x509 -fingerprint`), trusted certificates first.
    pub fn find(&self, prefix: &str) -> Result<Found<'_>, TrustError> {
        let needle = normalize(prefix)?;
        let trusted = matching(&self.trusted, &needle, |c| (&c.fingerprint, &c.subject))?;
        if let Some(cert) = trusted {
            return Ok(Found::Trusted(cert));
        }
        let revoked = matching(&self.revoked, &needle, |c| (&c.fingerprint, &c.subject))?;
        Ok(revoked.map_or(Found::Nothing, Found::Revoked))
    }

    fn revoked_entry(&self, fingerprint: &str) -> Option<&RevokedCert> {
        self.revoked.iter().find(|r| r.fingerprint == fingerprint)
    }

    /// Rejects what the daemon could misread. A fingerprint both trusted and revoked is let
    /// through (revocation wins at lookup): refusing the file would make the daemon keep its
    /// previous view, in which that certificate is still trusted.
    fn validate(mut self, path: &Path) -> Result<Self, TrustError> {
        let corrupt = |detail: String| TrustError::Corrupt {
            path: path.to_owned(),
            detail,
        };
        let mut seen = HashSet::new();
        for (i, cert) in self.trusted.iter_mut().enumerate() {
            cert.fingerprint = valid_fingerprint(&cert.fingerprint).ok_or_else(|| {
                corrupt(format!("trusted[{i}].fingerprint is not 64 hex characters"))
            })?;
            if !seen.insert(cert.fingerprint.clone()) {
                return Err(corrupt(format!(
                    "{} is listed twice under \"trusted\"",
                    cert.fingerprint
                )));
            }
        }
        for (i, cert) in self.revoked.iter_mut().enumerate() {
            cert.fingerprint = valid_fingerprint(&cert.fingerprint).ok_or_else(|| {
                corrupt(format!("revoked[{i}].fingerprint is not 64 hex characters"))
            })?;
        }
        Ok(self)
    }
}

/// The fingerprint to revoke when `prefix` matches nothing in the store: only a full one,
/// since a prefix of a certificate that is not there identifies nothing.
pub(crate) fn preemptive_target(prefix: &str) -> Result<String, TrustError> {
    let needle = normalize(prefix)?;
    if needle.len() != FINGERPRINT_LEN {
        return Err(TrustError::UnknownFingerprint {
            prefix: needle,
            hint: "to revoke a certificate that is not trusted, \
                   pass its full 64-character fingerprint",
        });
    }
    Ok(needle)
}

fn matching<'a, T>(
    items: &'a [T],
    needle: &str,
    key: impl Fn(&T) -> (&String, &String),
) -> Result<Option<&'a T>, TrustError> {
    let hits: Vec<&T> = items
        .iter()
        .filter(|item| key(item).0.starts_with(needle))
        .collect();
    match hits.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(TrustError::Ambiguous {
            prefix: needle.to_owned(),
            candidates: many
                .iter()
                .map(|item| {
                    let (fp, subject) = key(item);
                    format!("  {fp} ({subject})")
                })
                .collect(),
        }),
    }
}

fn valid_fingerprint(fp: &str) -> Option<String> {
    (fp.len() == FINGERPRINT_LEN && fp.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| fp.to_ascii_lowercase())
}

fn normalize(input: &str) -> Result<String, TrustError> {
    let invalid = |reason| TrustError::InvalidFingerprint {
        input: input.to_owned(),
        reason,
    };
    let hex: String = input
        .trim()
        .chars()
        .filter(|&c| c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(invalid("it may only contain hex digits (0-9, a-f)"));
    }
    if hex.len() > FINGERPRINT_LEN {
        return Err(invalid("it is longer than 64 hex characters"));
    }
    if hex.len() < MIN_PREFIX {
        return Err(invalid("it is too short"));
    }
    Ok(hex)
}

/// Reads `trust.json`. A missing file is an empty store; anything unreadable is an error,
/// never an empty store, so a damaged file cannot silently drop revocations.
pub(crate) fn parse(path: &Path, bytes: &[u8]) -> Result<TrustFile, TrustError> {
    let corrupt = |detail: String| TrustError::Corrupt {
        path: path.to_owned(),
        detail,
    };
    // serde would also accept an array for the struct, reading `[]` as an empty store.
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err(corrupt(
            "expected a JSON object with \"trusted\" and \"revoked\" lists".to_owned(),
        ));
    }
    serde_json::from_slice::<TrustFile>(bytes)
        .map_err(|e| corrupt(e.to_string()))?
        .validate(path)
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
        self.update(|file| {
            if let Some(revoked) = file.revoked_entry(&info.fingerprint) {
                return Err(TrustError::Revoked {
                    fingerprint: info.fingerprint.clone(),
                    revoked_at: revoked.revoked_at.clone(),
                });
            }
            if let Some(existing) = file
                .trusted
                .iter_mut()
                .find(|c| c.fingerprint == info.fingerprint)
            {
                if existing.role == role {
                    return Ok((AddOutcome::Unchanged, false));
                }
                let from = existing.role;
                existing.role = role;
                existing.origin = origin.to_owned();
                return Ok((AddOutcome::RoleChanged { from, to: role }, true));
            }
            file.trusted.push(TrustedCert {
                fingerprint: info.fingerprint.clone(),
                role,
                subject: info.subject.clone(),
                not_after: info.not_after.clone(),
                origin: origin.to_owned(),
                added_at: now_rfc3339(),
                certificate: to_pem(&der),
            });
            Ok((AddOutcome::Added, true))
        })
    }

    /// Stops trusting a certificate; unlike [`revoke`](Self::revoke) it can be added again.
    pub fn remove(&self, prefix: &str) -> Result<TrustedCert, TrustError> {
        self.update(|file| {
            let fingerprint = match file.find(prefix)? {
                Found::Trusted(cert) => cert.fingerprint.clone(),
                Found::Revoked(revoked) => {
                    return Err(TrustError::AlreadyRevoked {
                        fingerprint: revoked.fingerprint.clone(),
                        revoked_at: revoked.revoked_at.clone(),
                    })
                }
                Found::Nothing => {
                    return Err(TrustError::UnknownFingerprint {
                        prefix: normalize(prefix)?,
                        hint: "see `aar trust list`",
                    })
                }
            };
            let index = file
                .trusted
                .iter()
                .position(|c| c.fingerprint == fingerprint)
                .expect("found above");
            Ok((file.trusted.remove(index), true))
        })
    }

    /// Stops trusting a certificate and refuses it forever. A full fingerprint of a
    /// certificate that was never trusted is revoked pre-emptively; revoking an already
    /// revoked certificate returns its existing record.
    pub fn revoke(&self, prefix: &str) -> Result<RevokedCert, TrustError> {
        self.update(|file| {
            let (fingerprint, subject) = match file.find(prefix)? {
                Found::Trusted(cert) => (cert.fingerprint.clone(), cert.subject.clone()),
                Found::Revoked(revoked) => return Ok((revoked.clone(), false)),
                Found::Nothing => (preemptive_target(prefix)?, String::new()),
            };
            file.trusted.retain(|c| c.fingerprint != fingerprint);
            // A hand-edited file may list it under both; keep the original revocation date.
            if let Some(existing) = file.revoked_entry(&fingerprint) {
                return Ok((existing.clone(), true));
            }
            let record = RevokedCert {
                fingerprint,
                subject,
                revoked_at: now_rfc3339(),
            };
            file.revoked.push(record.clone());
            Ok((record, true))
        })
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
mod tests {
    use std::os::unix::fs::MetadataExt;
    use std::sync::Arc;

    use super::*;
    use crate::trust::fingerprint;

    fn cert() -> (String, String) {
        let ck = rcgen::generate_simple_self_signed(vec!["ams".into()]).unwrap();
        (ck.cert.pem(), fingerprint(ck.cert.der()))
    }

    fn fake_entry(fp: &str, role: Role, subject: &str) -> TrustedCert {
        TrustedCert {
            fingerprint: fp.to_owned(),
            role,
            subject: subject.to_owned(),
            not_after: "2030-01-01T00:00:00Z".to_owned(),
            origin: "test".to_owned(),
            added_at: "2025-01-01T00:00:00Z".to_owned(),
            certificate: String::new(),
        }
    }

    fn write_raw(dir: &Path, file: &TrustFile) {
        fs::write(dir.join(TRUST_FILE), serde_json::to_vec(file).unwrap()).unwrap();
    }

    #[test]
    fn missing_file_is_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::open(&dir.path().join("not-yet"));
        assert_eq!(store.list().unwrap(), TrustFile::default());
    }

    #[test]
    fn add_then_same_role_then_other_role() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let store = TrustStore::open(&state);
        let (pem, fp) = cert();

        assert_eq!(
            store.add(pem.as_bytes(), Role::Client, "cli").unwrap(),
            AddOutcome::Added
        );
        let listed = store.list().unwrap();
        assert_eq!(listed.trusted.len(), 1);
        let entry = &listed.trusted[0];
        assert_eq!(entry.fingerprint, fp);
        assert_eq!(entry.role, Role::Client);
        assert_eq!(entry.subject, "rcgen self signed cert");
        assert_eq!(entry.origin, "cli");
        assert_eq!(entry.certificate, pem.replace("\r\n", "\n"));
        assert_eq!(entry.added_at.len(), "2025-01-01T00:00:00Z".len());

        let meta = fs::metadata(store.path()).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o600);
        assert_eq!(fs::metadata(&state).unwrap().mode() & 0o777, 0o700);

        assert_eq!(
            store.add(pem.as_bytes(), Role::Client, "other").unwrap(),
            AddOutcome::Unchanged
        );
        assert_eq!(
            fs::metadata(store.path()).unwrap().ino(),
            meta.ino(),
            "no-op must not rewrite"
        );

        assert_eq!(
            store
                .add(pem.as_bytes(), Role::Publisher, "relation")
                .unwrap(),
            AddOutcome::RoleChanged {
                from: Role::Client,
                to: Role::Publisher
            }
        );
        let listed = store.list().unwrap();
        assert_eq!(listed.trusted.len(), 1);
        assert_eq!(listed.trusted[0].role, Role::Publisher);
        assert_eq!(listed.trusted[0].origin, "relation");
        assert_eq!(
            crate::fsutil::remove_temp_files(&dir.path().join("state")).unwrap(),
            0
        );
    }

    #[test]
    fn revoked_certificate_can_never_be_added_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::open(dir.path());
        let (pem, fp) = cert();
        store.add(pem.as_bytes(), Role::Publisher, "cli").unwrap();

        let revoked = store.revoke(&fp[..8].to_uppercase()).unwrap();
        assert_eq!(revoked.fingerprint, fp);
        assert_eq!(revoked.subject, "rcgen self signed cert");
        let listed = store.list().unwrap();
        assert!(listed.trusted.is_empty());
        assert_eq!(listed.revoked, vec![revoked.clone()]);

        for role in [Role::Client, Role::Publisher] {
            let err = store.add(pem.as_bytes(), role, "cli").unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains(&fp), "{msg}");
            assert!(msg.contains(&revoked.revoked_at), "{msg}");
            assert!(msg.contains("revocation is permanent"), "{msg}");
        }

        // Revoking again is idempotent and keeps the original date.
        assert_eq!(store.revoke(&fp).unwrap(), revoked);
        assert_eq!(store.list().unwrap().revoked.len(), 1);

        let err = store.remove(&fp).unwrap_err();
        assert!(err.to_string().contains("it was revoked on"), "{err}");
    }

    #[test]
    fn pre_emptive_revocation_needs_the_full_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::open(dir.path());
        let (pem, fp) = cert();

        let err = store.revoke(&fp[..10]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "no trusted certificate has a fingerprint starting with {}; to revoke a \
                 certificate that is not trusted, pass its full 64-character fingerprint",
                &fp[..10]
            )
        );

        let colons: Vec<String> = fp
            .as_bytes()
            .chunks(2)
            .map(|p| String::from_utf8(p.to_vec()).unwrap().to_uppercase())
            .collect();
        let revoked = store.revoke(&colons.join(":")).unwrap();
        assert_eq!(revoked.fingerprint, fp);
        assert_eq!(revoked.subject, "");
        assert!(matches!(
            store.add(pem.as_bytes(), Role::Client, "cli"),
            Err(TrustError::Revoked { .. })
        ));
    }

    #[test]
    fn remove_allows_adding_again() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::open(dir.path());
        let (pem, fp) = cert();
        store.add(pem.as_bytes(), Role::Client, "cli").unwrap();
        let removed = store.remove(&fp[..6]).unwrap();
        assert_eq!(removed.fingerprint, fp);
        assert!(store.list().unwrap().trusted.is_empty());
        assert!(store.list().unwrap().revoked.is_empty());
        assert_eq!(
            store.add(pem.as_bytes(), Role::Client, "cli").unwrap(),
            AddOutcome::Added
        );
    }

    #[test]
    fn prefixes_must_be_unambiguous_known_and_hex() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::open(dir.path());
        let a = format!("abcd{}", "0".repeat(60));
        let b = format!("abcd{}", "1".repeat(60));
        write_raw(
            dir.path(),
            &TrustFile {
                trusted: vec![
                    fake_entry(&a, Role::Client, "one"),
                    fake_entry(&b, Role::Publisher, "two"),
                ],
                revoked: vec![],
            },
        );

        let err = store.remove("ABCD").unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "fingerprint prefix abcd is ambiguous, it matches:\n  {a} (one)\n  {b} (two)\n\
                 type more characters of the fingerprint"
            )
        );
        assert!(store.revoke("abcd").is_err());
        assert_eq!(store.list().unwrap().trusted.len(), 2, "nothing changed");

        let err = store.remove("ffff").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no trusted certificate has a fingerprint starting with ffff; see `aar trust list`"
        );

        let err = store.remove("abc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "\"abc\" is not a certificate fingerprint: it is too short; pass the 64 hex \
             characters shown by `aar trust list`, or an unambiguous prefix of at least 4 of them"
        );
        let err = store.remove("abcdxyz").unwrap_err();
        assert!(
            err.to_string().contains("it may only contain hex digits"),
            "{err}"
        );
        let err = store.remove(&"a".repeat(65)).unwrap_err();
        assert!(err.to_string().contains("longer than 64"), "{err}");

        assert_eq!(store.remove("abcd1").unwrap().fingerprint, b);
        assert_eq!(
            store.list().unwrap().trusted,
            vec![fake_entry(&a, Role::Client, "one")]
        );
    }

    #[test]
    fn corrupt_file_is_an_error_naming_it_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::open(dir.path());
        fs::write(store.path(), b"{\"trusted\": [").unwrap();
        let err = store.list().unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "trust store {} is corrupt: ",
                store.path().display()
            )),
            "{msg}"
        );
        assert!(msg.contains("restore it from a backup"), "{msg}");

        let (pem, _) = cert();
        assert!(matches!(
            store.add(pem.as_bytes(), Role::Client, "cli"),
            Err(TrustError::Corrupt { .. })
        ));
        assert_eq!(fs::read(store.path()).unwrap(), b"{\"trusted\": [");

        fs::write(
            store.path(),
            br#"{"trusted":[{"fingerprint":"zz","role":"client"}]}"#,
        )
        .unwrap();
        assert!(matches!(store.list(), Err(TrustError::Corrupt { .. })));

        let fp = "a".repeat(64);
        write_raw(
            dir.path(),
            &TrustFile {
                trusted: vec![
                    fake_entry(&fp, Role::Client, "x"),
                    fake_entry(&fp, Role::Publisher, "x"),
                ],
                revoked: vec![],
            },
        );
        let err = store.list().unwrap_err();
        assert!(err.to_string().contains("listed twice"), "{err}");
    }

    #[test]
    fn hand_edited_uppercase_fingerprints_are_normalised() {
        let dir = tempfile::tempdir().unwrap();
        let fp = "AB".repeat(32);
        write_raw(
            dir.path(),
            &TrustFile {
                trusted: vec![fake_entry(&fp, Role::Client, "x")],
                revoked: vec![],
            },
        );
        let listed = TrustStore::open(dir.path()).list().unwrap();
        assert_eq!(listed.trusted[0].fingerprint, "ab".repeat(32));
    }

    #[test]
    fn concurrent_writers_do_not_lose_updates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(TrustStore::open(dir.path()));
        let certs: Vec<(String, String)> = (0..8).map(|_| cert()).collect();
        let threads: Vec<_> = certs
            .iter()
            .cloned()
            .map(|(pem, _)| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || store.add(pem.as_bytes(), Role::Client, "cli").unwrap())
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap(), AddOutcome::Added);
        }
        let listed: HashSet<String> = store
            .list()
            .unwrap()
            .trusted
            .into_iter()
            .map(|c| c.fingerprint)
            .collect();
        let expected: HashSet<String> = certs.into_iter().map(|(_, fp)| fp).collect();
        assert_eq!(listed, expected);
    }

    #[test]
    fn add_refuses_an_expired_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::open(dir.path());
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["ams".to_owned()]).unwrap();
        params.not_after =
            (std::time::SystemTime::now() - std::time::Duration::from_secs(60)).into();
        let pem = params.self_signed(&key).unwrap().pem();
        let err = store.add(pem.as_bytes(), Role::Client, "cli").unwrap_err();
        assert!(matches!(err, TrustError::Expired { .. }), "{err}");
        assert!(
            err.to_string()
                .starts_with("the certificate from the input expired on "),
            "{err}"
        );
        assert!(!store.path().exists());
    }

    #[test]
    fn add_refuses_what_is_not_one_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let store = TrustStore::open(dir.path());
        let err = store.add(b"nope", Role::Client, "cli").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("no PEM certificate found in the input"),
            "{err}"
        );
        assert!(!store.path().exists());
    }
}
