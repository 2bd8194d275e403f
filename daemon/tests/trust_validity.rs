//! Certificates that cannot work: refused by `aar trust add` (X.509 v1, keys the TLS stack
//! cannot verify, expired, not yet valid), refused at request time once they expire,
//! announced ahead of expiry, and handshake failures of trusted ones logged at warn.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime};

use common::*;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

const DAY: Duration = Duration::from_secs(24 * 3600);

fn openssl(dir: &Path, args: &[&str]) -> Output {
    let out = Command::new("openssl")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the openssl command line is needed by this test (apt-get install openssl)");
    assert!(out.status.success(), "openssl {args:?}: {}", out_text(&out));
    out
}

/// An X.509 version 1 certificate (`openssl x509 -req` without extensions) for an rcgen
/// ECDSA key, so the harness's rustls client can present it.
fn identity_v1(dir: &Path, name: &str) -> Identity {
    let key = rcgen::KeyPair::generate().unwrap();
    std::fs::write(dir.join(format!("{name}.key")), key.serialize_pem()).unwrap();
    let subj = format!("/CN={name}");
    let (key_file, csr, crt) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
    );
    openssl(
        dir,
        &[
            "req", "-new", "-key", &key_file, "-subj", &subj, "-out", &csr,
        ],
    );
    openssl(
        dir,
        &[
            "x509", "-req", "-in", &csr, "-signkey", &key_file, "-days", "30", "-out", &crt,
        ],
    );
    let pem = std::fs::read_to_string(dir.join(&crt)).unwrap();
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
    let text = openssl(dir, &["x509", "-in", &crt, "-noout", "-text"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("Version: 1 (0x0)"),
        "openssl made a version 1 certificate"
    );
    Identity {
        name: name.to_string(),
        cert_pem: pem,
        key_pem: key.serialize_pem(),
        fingerprint: sha256_hex(&der),
        cert_der: der,
        key_der: key.serialize_der(),
    }
}

/// `openssl req -x509` with the given `-newkey` argument (and `-pkeyopt`s); the path of the
/// certificate.
fn openssl_cert(dir: &Path, name: &str, newkey: &[&str]) -> PathBuf {
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    let subj = format!("/CN={name}");
    let mut args = vec!["req", "-x509"];
    args.extend_from_slice(newkey);
    args.extend_from_slice(&[
        "-nodes", "-days", "30", "-subj", &subj, "-keyout", &key, "-out", &crt,
    ]);
    openssl(dir, &args);
    dir.join(crt)
}

fn trust_add_path(inst: &Instance, path: &Path) -> Output {
    inst.cmd(&["trust", "add"]).arg(path).output().unwrap()
}

/// The error of a refused `aar trust add`, after checking that nothing was trusted.
#[track_caller]
fn refused(inst: &Instance, path: &Path) -> String {
    let before = inst.trust_list_json(false);
    let out = trust_add_path(inst, path);
    assert_eq!(out.status.code(), Some(1), "{}", out_text(&out));
    assert_eq!(inst.trust_list_json(false), before, "nothing was trusted");
    let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
    assert!(msg.starts_with("aar: "), "{msg}");
    assert!(!msg.contains('\n'), "one line: {msg}");
    msg
}

#[test]
fn trust_add_refuses_certificates_that_can_never_connect() {
    let inst = Instance::new("", None);
    let dir = inst.dir.path();

    let weak = openssl_cert(dir, "weak-rsa", &["-newkey", "rsa:1024"]);
    let msg = refused(&inst, &weak);
    assert!(msg.contains(&weak.display().to_string()), "{msg}");
    assert!(msg.contains("1024-bit RSA key"), "says why: {msg}");
    assert!(
        msg.contains("2048 bits or more"),
        "says what to do instead: {msg}"
    );

    let v1 = identity_v1(dir, "v1");
    let path = v1.write_pem(dir);
    let msg = refused(&inst, &path);
    assert!(msg.contains("X.509 version 1"), "says why: {msg}");
    assert!(msg.contains("version 3"), "says what to do: {msg}");

    // What the TLS stack verifies is still accepted.
    for (name, newkey) in [
        ("rsa-2048", vec!["-newkey", "rsa:2048"]),
        (
            "ec-p384",
            vec!["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384"],
        ),
        ("ed25519", vec!["-newkey", "ed25519"]),
    ] {
        let path = openssl_cert(dir, name, &newkey);
        let out = trust_add_path(&inst, &path);
        assert_success(&out, &format!("aar trust add {name}"));
    }
    inst.trust_add(
        &Identity::generate_valid("fresh", SystemTime::now(), SystemTime::now() + DAY),
        false,
    );
}

#[test]
fn trust_add_refuses_expired_and_not_yet_valid_certificates() {
    let inst = Instance::new("", None);
    let now = SystemTime::now();

    let expired = Identity::generate_valid("expired", now - 30 * DAY, now - DAY);
    let msg = refused(&inst, &expired.write_pem(inst.dir.path()));
    assert!(msg.contains("expired on 20"), "says when: {msg}");
    assert!(
        msg.contains("issue a new certificate"),
        "says what to do: {msg}"
    );

    let early = Identity::generate_valid("early", now + DAY, now + 30 * DAY);
    let msg = refused(&inst, &early.write_pem(inst.dir.path()));
    assert!(msg.contains("not valid before 20"), "says when: {msg}");

    // The same refusal on standard input, which is how the charm adds a related unit.
    let mut child = inst
        .cmd(&["trust", "add", "-", "--origin", "relation client:ams/0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(
        &mut child.stdin.take().unwrap(),
        expired.cert_pem.as_bytes(),
    )
    .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", out_text(&out));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.starts_with("aar: the certificate from standard input expired on 20"),
        "{msg}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_certificate_is_refused_once_it_expires() {
    let d = Daemon::start("");
    let now = SystemTime::now();
    let short = Identity::generate_valid("short-lived", now - DAY, now + Duration::from_secs(3));
    d.trust_add(&short, false);
    let client = d.client(Some(&short));
    let mut kept = client.connect().await.unwrap();
    kept.get("/1.0/applications").await.expect(200);
    client.get("/1.0/applications").await.expect(200);

    // X.509 times have whole seconds; the certificate is valid through its last second.
    tokio::time::sleep(Duration::from_millis(5200)).await;
    let err = client.get("/1.0/applications").await.expect_error(403);
    assert!(err.contains("expired on 20"), "says why: {err}");
    assert!(
        err.contains(&short.fingerprint),
        "names the certificate: {err}"
    );
    let err = kept.get("/1.0/applications").await.expect_error(403);
    assert!(
        err.contains("expired"),
        "also on a kept-alive connection: {err}"
    );
    let info = client.get("/1.0").await;
    assert_eq!(info.expect(200).metadata()["auth"], "untrusted");

    // Others are untouched, and each refusal is counted in the log.
    d.reader().get("/1.0/applications").await.expect(200);
    let log = d.stderr();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("WARN") && l.contains(&short.fingerprint[..16]))
        .filter(|l| l.contains("expired"))
        .collect();
    assert_eq!(lines.len(), 2, "one warn line per refused request:\n{log}");

    let table = String::from_utf8_lossy(&d.run(&["trust", "list"], &[]).stdout).to_string();
    let row = table
        .lines()
        .find(|l| l.starts_with(&short.fingerprint))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(row.contains("(expired)"), "{table}");
}

#[test]
fn certificates_expiring_within_30_days_are_announced() {
    let now = SystemTime::now();
    let soon =
        Identity::generate_valid("soon", now - DAY, now + 10 * DAY + Duration::from_secs(600));
    let d = Daemon::builder("").start();
    d.trust_add(&soon, false);
    let mut d = d;
    d.restart();
    let log = d.stderr();
    let line = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains(&soon.fingerprint[..16]))
        .unwrap_or_else(|| panic!("no warning at start:\n{log}"));
    assert!(line.contains("expires"), "{line}");
    assert!(line.contains("in 10 days"), "{line}");
    assert!(
        !log.lines()
            .any(|l| l.contains("WARN") && l.contains(&publisher().fingerprint[..16])),
        "certificates far from expiry are not announced:\n{log}"
    );

    let table = String::from_utf8_lossy(&d.run(&["trust", "list"], &[]).stdout).to_string();
    let row = |fp: &str| {
        table
            .lines()
            .find(|l| l.starts_with(fp))
            .unwrap_or_else(|| panic!("{table}"))
            .to_string()
    };
    assert!(row(&soon.fingerprint).contains("(in 10 days)"), "{table}");
    assert!(!row(&publisher().fingerprint).contains("(in "), "{table}");

    let json = d.trust_list_json(false);
    let entry = json
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["fingerprint"] == soon.fingerprint.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["expiry"], "soon", "{entry}");
    let other = json
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["fingerprint"] == publisher().fingerprint.as_str())
        .unwrap()
        .clone();
    assert_eq!(other["expiry"], "valid", "{other}");
}

/// Connects with `openssl s_client` (the harness's rustls client refuses to present such
/// certificates at all) and returns once the handshake is over, whatever its outcome.
fn s_client(d: &Daemon, cert: &Path, key: &Path) {
    let out = Command::new("openssl")
        .args(["s_client", "-connect", &d.addr.to_string(), "-tls1_3"])
        // OpenSSL's own policy would refuse to send a 1024-bit RSA key.
        .args(["-cipher", "DEFAULT@SECLEVEL=0", "-cert"])
        .arg(cert)
        .arg("-key")
        .arg(key)
        .stdin(Stdio::null())
        .output()
        .expect("the openssl command line");
    let _ = out;
}

fn trusted_entry(id_fingerprint: &str, subject: &str, pem: &str) -> serde_json::Value {
    serde_json::json!({
        "fingerprint": id_fingerprint,
        "role": "client",
        "subject": subject,
        "not_after": "2099-01-01T00:00:00Z",
        "origin": "cli",
        "added_at": "2025-01-01T00:00:00Z",
        "certificate": pem,
    })
}

/// A store written by an earlier version may hold a certificate that cannot complete a
/// handshake; its holder's failures must be visible without debug logging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_failures_of_a_trusted_certificate_are_logged_at_warn() {
    let d = Daemon::builder("").no_trust().start();
    let dir = d.dir.path();
    let v1 = identity_v1(dir, "old-ams");
    let weak = openssl_cert(dir, "weak-ams", &["-newkey", "rsa:1024"]);
    let weak_pem = std::fs::read_to_string(&weak).unwrap();
    let weak_fp = sha256_hex(&CertificateDer::from_pem_slice(weak_pem.as_bytes()).unwrap());
    let stranger = identity_v1(dir, "stranger");
    let store = serde_json::json!({
        "trusted": [
            trusted_entry(&v1.fingerprint, "old-ams", &v1.cert_pem),
            trusted_entry(&weak_fp, "weak-ams", &weak_pem),
        ],
        "revoked": [],
    });
    std::fs::write(
        d.state_dir.join("trust.json"),
        serde_json::to_vec_pretty(&store).unwrap(),
    )
    .unwrap();

    s_client(&d, &dir.join("old-ams.crt"), &dir.join("old-ams.key"));
    s_client(&d, &weak, &dir.join("weak-ams.key"));
    s_client(&d, &dir.join("stranger.crt"), &dir.join("stranger.key"));

    let warned = |fp: &str| {
        d.stderr()
            .lines()
            .find(|l| l.contains("WARN") && l.contains(&fp[..16]))
            .map(str::to_owned)
    };
    let v1_line = eventually(Duration::from_secs(5), || async { warned(&v1.fingerprint) }).await;
    let weak_line = eventually(Duration::from_secs(5), || async { warned(&weak_fp) }).await;
    let log = d.stderr();
    let v1_line = v1_line.unwrap_or_else(|| panic!("no warn line for the v1 certificate:\n{log}"));
    assert!(v1_line.contains("version 1"), "gives the reason: {v1_line}");
    let weak_line =
        weak_line.unwrap_or_else(|| panic!("no warn line for the RSA-1024 certificate:\n{log}"));
    assert!(
        weak_line.contains("1024-bit RSA"),
        "gives the reason: {weak_line}"
    );
    assert!(
        warned(&stranger.fingerprint).is_none(),
        "an untrusted certificate's failures stay at debug:\n{log}"
    );
}
