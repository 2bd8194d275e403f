//! The store through its public operations: what each change writes, what it refuses, and
//! that concurrent writers lose nothing.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

use super::*;
use crate::trust::fingerprint;

fn cert() -> (String, String) {
    let ck = rcgen::generate_simple_self_signed(vec!["ams".into()]).unwrap();
    (ck.cert.pem(), fingerprint(ck.cert.der()))
}

/// An entry as text (for a file written by hand) or as read back.
fn fake_entry<F: std::str::FromStr>(fp: &str, role: Role, subject: &str) -> TrustedCert<F>
where
    F::Err: std::fmt::Debug,
{
    TrustedCert {
        fingerprint: fp.parse().unwrap(),
        role,
        subject: subject.to_owned(),
        not_after: "2030-01-01T00:00:00Z".to_owned(),
        origin: "test".to_owned(),
        added_at: "2025-01-01T00:00:00Z".to_owned(),
        certificate: String::new(),
    }
}

fn write_raw(dir: &Path, file: &TrustFile<String>) {
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
        .map(|c| c.fingerprint.to_string())
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
    params.not_after = (std::time::SystemTime::now() - std::time::Duration::from_secs(60)).into();
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
