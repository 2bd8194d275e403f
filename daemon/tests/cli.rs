//! The command line: `aar --version`, `aar config check`, `aar trust ...` (no server needed).
//!
//! Long on purpose: every command's messages and formats are checked word for word.

mod common;

use std::io::Write;
use std::process::{Command, Output, Stdio};

use common::*;
use serde_json::Value;

/// The one message of a failed command: stderr if any, else stdout.
fn message(out: &Output) -> String {
    let e = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if e.is_empty() {
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    } else {
        e
    }
}

fn config_check(text: &str) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("aar.yaml");
    std::fs::write(&p, text).unwrap();
    Command::new(BIN)
        .args(["config", "check"])
        .arg(&p)
        .env_remove("AAR_CONFIG")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// Asserts a failed `config check`: exit 1 and a one-line message, returned.
#[track_caller]
fn check_fails(text: &str) -> String {
    let out = config_check(text);
    assert_eq!(out.status.code(), Some(1), "{}", out_text(&out));
    let msg = message(&out);
    assert!(!msg.is_empty(), "no message: {}", out_text(&out));
    assert!(
        !msg.contains('\n'),
        "message must be one line: {}",
        out_text(&out)
    );
    msg
}

/// The number that follows `word` (skipping non-digits) in `msg`.
fn number_after(msg: &str, word: &str) -> Option<u64> {
    let lower = msg.to_lowercase();
    let i = lower.find(word)? + word.len();
    let digits: String = lower[i..]
        .chars()
        .skip_while(|c| !c.is_ascii_digit())
        .take_while(|c| c.is_ascii_digit())
        .collect();
    digits.parse().ok()
}

#[track_caller]
fn assert_line_col(msg: &str, line: u64, col: u64) {
    let ok = (number_after(msg, "line") == Some(line) && number_after(msg, "column") == Some(col))
        || msg.contains(&format!(":{line}:{col}"));
    assert!(ok, "message should name line {line}, column {col}: {msg}");
}

#[test]
fn version_flag() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert_success(&out, "aar --version");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("aar {VERSION}")
    );
}

#[test]
fn config_check_accepts_good_files() {
    let inst = Instance::new("", None);
    let out = Command::new(BIN)
        .args(["config", "check"])
        .arg(&inst.config_path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", out_text(&out));

    // Every key has a default: a minimal file is valid.
    let out = config_check("state-directory: /tmp/aar-test-minimal\n");
    assert_eq!(out.status.code(), Some(0), "{}", out_text(&out));

    // The documented S3 form with CloudFront and Go-style durations. `config check` parses
    // the CloudFront key, so it must be a real RSA key.
    let key_dir = tempfile::tempdir().unwrap();
    let key_path = key_dir.path().join("cloudfront.pem");
    let made = Command::new("openssl")
        .args(["genrsa", "-traditional", "-out"])
        .arg(&key_path)
        .arg("2048")
        .output()
        .expect("the openssl command line");
    assert!(made.status.success(), "{}", out_text(&made));
    let key: String = std::fs::read_to_string(&key_path)
        .unwrap()
        .lines()
        .map(|line| format!("        {line}\n"))
        .collect();
    let out = config_check(&format!(
        r#"http:
  addr: 0.0.0.0:3000
  shutdown-timeout: 1m30s
  tls:
    min-version: "1.2"
storage:
  s3:
    region: eu-west-3
    bucket: aar0
    access-key: AKIAEXAMPLE
    secret-access-key: notreallysecret
    cloudfront:
      base-url: d1dfsdfjmcefekdotjm.cloudfront.net
      private-key: |
{key}      keypair-id: ADF443JOEF3423JF
      duration: 1m
"#
    ));
    assert_eq!(out.status.code(), Some(0), "{}", out_text(&out));
}

#[test]
fn config_check_unknown_key_names_path_line_column_and_suggestion() {
    let msg = check_fails(
        "http:\n  addr: 127.0.0.1:0\nstate-directory: /tmp/x\nstorage:\n  fs:\n    root-directry: /tmp/y\n",
    );
    assert!(msg.contains("root-directry"), "names the key: {msg}");
    assert!(msg.contains("storage.fs"), "names the key path: {msg}");
    assert!(
        msg.contains("root-directory"),
        "suggests the closest key: {msg}"
    );
    assert_line_col(&msg, 6, 5);

    // At top level.
    let msg = check_fails("http:\n  addr: 127.0.0.1:0\nstorag:\n  fs: {}\n");
    assert!(msg.contains("storag"), "{msg}");
    assert!(msg.contains("storage"), "suggests storage: {msg}");
    assert_line_col(&msg, 3, 1);

    // Inside http.limits.
    let msg = check_fails("http:\n  limits:\n    body-timout: 2s\n");
    assert!(msg.contains("http.limits"), "{msg}");
    assert!(msg.contains("body-timeout"), "{msg}");
    assert_line_col(&msg, 3, 5);
}

#[test]
fn config_check_bad_values_name_the_key() {
    let msg = check_fails("http:\n  shutdown-timeout: 5 parsecs\n");
    assert!(msg.contains("http.shutdown-timeout"), "{msg}");
    assert!(msg.to_lowercase().contains("duration"), "{msg}");
    assert_line_col(&msg, 2, 21);

    let msg = check_fails("gc:\n  interval: soon\n");
    assert!(msg.contains("gc.interval"), "{msg}");

    let msg = check_fails("http:\n  limits:\n    max-image-size: lots\n");
    assert!(msg.contains("http.limits.max-image-size"), "{msg}");

    let msg = check_fails("http:\n  tls:\n    min-version: \"1.1\"\n");
    assert!(msg.contains("http.tls.min-version"), "{msg}");

    let msg = check_fails("http:\n  addr: not-an-address\n");
    assert!(msg.contains("http.addr"), "{msg}");

    let msg = check_fails("http: [1, 2\n");
    assert!(msg.to_lowercase().contains("line"), "{msg}");
}

#[test]
fn config_check_missing_required_key() {
    let msg = check_fails("storage:\n  s3:\n    region: eu-west-3\n");
    assert!(msg.contains("bucket"), "names the missing key: {msg}");
    assert!(msg.contains("storage.s3"), "names the key path: {msg}");

    // CloudFront needs its key pair id.
    let msg = check_fails(
        "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n    cloudfront:\n      base-url: x.cloudfront.net\n      private-key: |\n        -----BEGIN RSA PRIVATE KEY-----\n        MIIBOgIBAAJBAKj34GkxFhD90vcNLYLInFEX6Ppy1tPf9Cnzj4p4WGeKLs1Pt8Qu\n        -----END RSA PRIVATE KEY-----\n",
    );
    assert!(msg.contains("keypair-id"), "{msg}");

    // Only one backend at a time.
    let out = config_check(
        "storage:\n  fs:\n    root-directory: /tmp/x\n  s3:\n    region: r\n    bucket: aar0\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", out_text(&out));
}

#[test]
fn config_check_never_echoes_secrets() {
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY";
    let msg = check_fails(&format!(
        "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n    access-key: AKIAEXAMPLE\n    secret-access-key: {secret}\n    endpiont: http://127.0.0.1:9000\n"
    ));
    assert!(msg.contains("endpiont"), "{msg}");
    assert!(!msg.contains(secret), "secret leaked in: {msg}");

    // A secret of the wrong type must not be echoed either.
    let out = config_check(&format!(
        "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n    access-key: AKIAEXAMPLE\n    secret-access-key: [{secret}]\n"
    ));
    assert_eq!(out.status.code(), Some(1), "{}", out_text(&out));
    let all = out_text(&out);
    assert!(!all.contains(secret), "secret leaked in: {all}");
}

/// A secret pasted into the wrong field (or as a key) is refused without being quoted: at
/// most 4 of its characters in a row reach the message, which names the key path instead.
#[test]
fn config_check_never_quotes_a_secret_pasted_into_the_wrong_field() {
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYSECRETKEY";
    let base = "storage:\n  s3:\n    region: eu-west-3\n    bucket: aar0\n";
    let cases = [
        ("storage.s3.region", format!("storage:\n  s3:\n    region: {secret}\n    bucket: aar0\n")),
        ("storage.s3.bucket", format!("storage:\n  s3:\n    region: eu-west-3\n    bucket: {secret}\n")),
        ("storage.s3.endpoint", format!("{base}    endpoint: {secret}\n")),
        ("storage.s3.presign-duration", format!("{base}    presign-duration: {secret}\n")),
        (
            "storage.s3.cloudfront.keypair-id",
            format!("{base}    cloudfront:\n      base-url: d1.cloudfront.net\n      keypair-id: {secret}\n      private-key: x\n"),
        ),
        (
            "storage.s3.cloudfront.duration",
            format!("{base}    cloudfront:\n      base-url: d1.cloudfront.net\n      duration: {secret}\n"),
        ),
        ("storage.s3.?", format!("{base}    {secret}: x\n")),
        ("storage.s3.?", format!("{base}    AKIAIOSFODNN7EXAMPLE: x\n")),
    ];
    for (path, text) in cases {
        let msg = check_fails(&text);
        assert!(
            msg.contains(&format!("{path} (line ")),
            "names {path}: {msg}"
        );
        for piece in secret
            .as_bytes()
            .windows(5)
            .chain(b"AKIAIOSFODNN7EXAMPLE".windows(5))
        {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(!msg.contains(piece), "{piece:?} shown in: {msg}");
        }
    }
    // A short value shows its first characters and its length; a key name that reads like
    // one is still named, with the closest valid key.
    let msg = check_fails(&format!("{base}    endpoint: 127.0.0.1:9000\n"));
    assert!(msg.ends_with("storage.s3.endpoint (line 5, column 15): invalid endpoint \"127.…\" (14 characters): add the scheme, http:// or https://, before the host"), "{msg}");
    let msg = check_fails(&format!("{base}    endpiont: http://127.0.0.1:9000\n"));
    assert!(msg.ends_with(r#"storage.s3.endpiont (line 5, column 5): unknown key "endpiont"; did you mean "endpoint"?"#), "{msg}");
}

#[test]
fn config_check_missing_file() {
    let out = Command::new(BIN)
        .args(["config", "check", "/nonexistent/aar.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", out_text(&out));
    assert!(
        message(&out).contains("/nonexistent/aar.yaml"),
        "{}",
        out_text(&out)
    );
}

// ---------------------------------------------------------------------------------------------
// trust
// ---------------------------------------------------------------------------------------------

/// Every JSON object (anywhere in `v`) with a `fingerprint` field.
fn entries(v: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    match v {
        Value::Array(a) => a.iter().for_each(|x| out.extend(entries(x))),
        Value::Object(o) => {
            if o.contains_key("fingerprint") {
                out.push(v.clone());
            } else {
                o.values().for_each(|x| out.extend(entries(x)));
            }
        }
        _ => {}
    }
    out
}

fn entry(v: &Value, fp: &str) -> Option<Value> {
    entries(v)
        .into_iter()
        .find(|e| e["fingerprint"].as_str() == Some(fp))
}

/// The role of an entry: the value of its `role` (or `mode`) field.
fn role(e: &Value) -> String {
    e.get("role")
        .or_else(|| e.get("mode"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("trust entry without role: {e}"))
        .to_string()
}

fn add_stdin(inst: &Instance, args: &[&str], pem: &str) -> Output {
    let mut c = inst.cmd(&["trust", "add"]);
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    // The command may refuse before reading stdin: a broken pipe is not an error here.
    let _ = child.stdin.take().unwrap().write_all(pem.as_bytes());
    child.wait_with_output().unwrap()
}

#[test]
fn trust_add_from_file_and_stdin_and_list_in_all_formats() {
    let inst = Instance::new("", None);
    let a = Identity::generate("ams-alpha");
    let b = Identity::generate("ams-bravo");
    let c = Identity::generate("ams-charlie");

    // From a file, as a client.
    let path = a.write_pem(inst.dir.path());
    let out = inst.run(&["trust", "add"], &[path.to_str().unwrap()]);
    assert_success(&out, "trust add FILE");
    // From stdin with "-", as a publisher.
    let out = add_stdin(&inst, &["-", "--publisher"], &b.cert_pem);
    assert_success(&out, "trust add - --publisher");
    // From stdin with no path.
    let out = add_stdin(&inst, &[], &c.cert_pem);
    assert_success(&out, "trust add (stdin)");

    // json
    let list = inst.trust_list_json(false);
    assert_eq!(entries(&list).len(), 3, "{list}");
    assert_eq!(
        role(&entry(&list, &a.fingerprint).expect("a listed")),
        "client"
    );
    assert_eq!(
        role(&entry(&list, &b.fingerprint).expect("b listed")),
        "publisher"
    );
    assert_eq!(
        role(&entry(&list, &c.fingerprint).expect("c listed")),
        "client"
    );

    // yaml
    let out = inst.run(&["trust", "list"], &["--format", "yaml"]);
    assert_success(&out, "trust list --format yaml");
    let y: Value = serde_yaml_ng::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not YAML ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(entries(&y).len(), 3, "{y}");
    assert_eq!(
        role(&entry(&y, &b.fingerprint).expect("b in yaml")),
        "publisher"
    );

    // csv: a header then one row per certificate, with the full fingerprint.
    let out = inst.run(&["trust", "list"], &["--format", "csv"]);
    assert_success(&out, "trust list --format csv");
    let csv = String::from_utf8_lossy(&out.stdout).to_string();
    let lines: Vec<&str> = csv.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 4, "header + 3 rows: {csv}");
    assert!(
        lines[0].to_lowercase().contains("fingerprint"),
        "header: {csv}"
    );
    for (id, r) in [(&a, "client"), (&b, "publisher"), (&c, "client")] {
        let row = lines
            .iter()
            .find(|l| l.contains(&id.fingerprint))
            .unwrap_or_else(|| panic!("{} missing from csv: {csv}", id.name));
        assert!(row.split(',').any(|f| f.trim() == r), "role {r} in {row}");
    }

    // table (default and explicit): at least a 12-character prefix of each fingerprint.
    for args in [&[][..], &["--format", "table"][..]] {
        let out = inst.run(&["trust", "list"], args);
        assert_success(&out, "trust list --format table");
        let t = String::from_utf8_lossy(&out.stdout).to_string();
        for id in [&a, &b, &c] {
            assert!(
                t.contains(&id.fingerprint[..12]),
                "{} in table: {t}",
                id.name
            );
        }
        assert!(t.contains("publisher") && t.contains("client"), "{t}");
    }

    // Unknown format.
    let out = inst.run(&["trust", "list"], &["--format", "xml"]);
    assert!(!out.status.success(), "{}", out_text(&out));

    // AAR_CONFIG instead of --config.
    let out = Command::new(BIN)
        .args(["trust", "list", "--format", "json"])
        .env("AAR_CONFIG", &inst.config_path)
        .output()
        .unwrap();
    assert_success(&out, "AAR_CONFIG=... aar trust list");
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(entries(&v).len(), 3);
}

#[test]
fn trust_add_rejects_garbage() {
    let inst = Instance::new("", None);
    let out = add_stdin(&inst, &["-"], "this is not a certificate\n");
    assert!(!out.status.success(), "{}", out_text(&out));
    assert!(!message(&out).is_empty());
    let p = inst.dir.path().join("missing.crt");
    let out = inst.run(&["trust", "add"], &[p.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", out_text(&out));
    assert!(message(&out).contains("missing.crt"), "{}", out_text(&out));
    assert_eq!(entries(&inst.trust_list_json(false)).len(), 0);
}

#[test]
fn trust_remove_by_prefix_and_ambiguous_prefix() {
    let inst = Instance::new("", None);
    // Two certificates whose fingerprints share a 4-character prefix.
    let mut seen: std::collections::HashMap<String, Identity> = Default::default();
    let (x, y) = loop {
        let id = Identity::generate("ams-prefix");
        let p = id.fingerprint[..4].to_string();
        if let Some(other) = seen.remove(&p) {
            break (other, id);
        }
        assert!(seen.len() < 20000, "no prefix collision found");
        seen.insert(p, id);
    };
    let prefix = &x.fingerprint[..4];
    inst.trust_add(&x, false);
    inst.trust_add(&y, true);
    let z = Identity::generate("ams-zulu");
    inst.trust_add(&z, false);

    // Ambiguous: refused, names the problem, nothing removed.
    let out = inst.run(&["trust", "remove"], &[prefix]);
    assert!(!out.status.success(), "{}", out_text(&out));
    assert!(
        message(&out).to_lowercase().contains("ambiguous"),
        "{}",
        out_text(&out)
    );
    assert_eq!(entries(&inst.trust_list_json(false)).len(), 3);

    // Unknown prefix.
    let unknown = if z.fingerprint.starts_with("ffff") {
        "0000"
    } else {
        "ffff"
    };
    if !x.fingerprint.starts_with(unknown) && !y.fingerprint.starts_with(unknown) {
        let out = inst.run(&["trust", "remove"], &[unknown]);
        assert!(!out.status.success(), "{}", out_text(&out));
    }

    // Unambiguous prefixes remove exactly one certificate each.
    inst.trust_remove(&x.fingerprint[..12]);
    let list = inst.trust_list_json(false);
    assert!(entry(&list, &x.fingerprint).is_none(), "{list}");
    assert!(entry(&list, &y.fingerprint).is_some(), "{list}");
    inst.trust_remove(prefix); // now unambiguous
    inst.trust_remove(&z.fingerprint);
    assert_eq!(entries(&inst.trust_list_json(false)).len(), 0);

    // A removed (not revoked) certificate can be added again.
    inst.trust_add(&x, false);
    assert!(entry(&inst.trust_list_json(false), &x.fingerprint).is_some());
}

#[test]
fn trust_revoke_needs_yes_and_is_permanent() {
    let inst = Instance::new("", None);
    let a = Identity::generate("ams-revoked");
    let keep = Identity::generate("ams-kept");
    inst.trust_add(&a, true);
    inst.trust_add(&keep, false);

    // Not a tty and no --yes: refused, nothing revoked.
    let out = inst.run(&["trust", "revoke"], &[&a.fingerprint[..10]]);
    assert!(!out.status.success(), "{}", out_text(&out));
    assert!(message(&out).contains("--yes"), "{}", out_text(&out));
    assert!(entry(&inst.trust_list_json(false), &a.fingerprint).is_some());

    inst.trust_revoke(&a.fingerprint[..10]);
    let list = inst.trust_list_json(false);
    assert!(entry(&list, &a.fingerprint).is_none(), "{list}");
    assert!(entry(&list, &keep.fingerprint).is_some(), "{list}");
    let revoked = inst.trust_list_json(true);
    assert!(
        entry(&revoked, &a.fingerprint).is_some(),
        "--revoked lists it: {revoked}"
    );
    assert!(entry(&revoked, &keep.fingerprint).is_none(), "{revoked}");

    // Never again: from a file, from stdin, as publisher or client.
    let path = a.write_pem(inst.dir.path());
    for args in [
        vec![path.to_str().unwrap()],
        vec![path.to_str().unwrap(), "--publisher"],
    ] {
        let out = inst.run(&["trust", "add"], &args);
        assert!(!out.status.success(), "{}", out_text(&out));
        assert!(
            message(&out).to_lowercase().contains("revoked"),
            "{}",
            out_text(&out)
        );
    }
    let out = add_stdin(&inst, &["-"], &a.cert_pem);
    assert!(!out.status.success(), "{}", out_text(&out));
    assert!(entry(&inst.trust_list_json(false), &a.fingerprint).is_none());
}

#[test]
fn serve_refuses_an_invalid_config() {
    let inst = Instance::new("http: {limits: {body-timout: 2s}}", None);
    let out = std::process::Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&inst.config_path)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success(), "{}", out_text(&out));
    assert!(out.stdout.is_empty(), "no ready line: {}", out_text(&out));
    let msg = String::from_utf8_lossy(&out.stderr);
    assert!(
        msg.contains("body-timout") && msg.contains("body-timeout"),
        "{msg}"
    );
}
