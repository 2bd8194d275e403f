//! `aar trust …` end to end through [`super::run_with`]. Long because every subcommand's
//! messages and every list format are pinned word for word, as operators and scripts read them.

use std::fs;

use clap::Parser;

use super::*;
use crate::trust::{fingerprint, TrustStore};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    cmd: TrustCommand,
}

struct Env {
    dir: tempfile::TempDir,
}

struct Cert {
    pem: String,
    fp: String,
    key_pem: String,
}

fn cert() -> Cert {
    let ck = rcgen::generate_simple_self_signed(vec!["ams".into()]).unwrap();
    Cert {
        pem: ck.cert.pem(),
        fp: fingerprint(ck.cert.der()),
        key_pem: ck.key_pair.serialize_pem(),
    }
}

impl Env {
    fn new() -> Env {
        Env {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn file(&self, name: &str, contents: &str) -> String {
        let path = self.dir.path().join(name);
        fs::write(&path, contents).unwrap();
        path.display().to_string()
    }

    fn run_full(&self, args: &[&str], stdin: &str, terminal: bool) -> Result<String, TrustError> {
        let cli =
            Cli::try_parse_from(std::iter::once("trust").chain(args.iter().copied())).unwrap();
        let mut out = Vec::new();
        let store = TrustLocation::new(&self.state(), None);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run_with(
            cli.cmd,
            &store,
            &mut stdin.as_bytes(),
            terminal,
            &mut out,
        ))?;
        Ok(String::from_utf8(out).unwrap())
    }

    fn run(&self, args: &[&str], stdin: &str) -> Result<String, TrustError> {
        self.run_full(args, stdin, false)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.run(args, "").unwrap()
    }

    fn err(&self, args: &[&str], stdin: &str) -> String {
        self.run(args, stdin).unwrap_err().to_string()
    }
}

const SUBJECT: &str = "rcgen self signed cert";

#[test]
fn arguments_parse_as_documented() {
    let cli = Cli::try_parse_from(["trust", "add", "--publisher", "ams.crt"]).unwrap();
    assert!(matches!(
        cli.cmd,
        TrustCommand::Add { path: Some(ref p), publisher: true, ref origin } if p == Path::new("ams.crt") && origin == "cli"
    ));
    let cli = Cli::try_parse_from(["trust", "add", "--origin", "relation:publisher/0"]).unwrap();
    assert!(matches!(
        cli.cmd,
        TrustCommand::Add { path: None, publisher: false, ref origin } if origin == "relation:publisher/0"
    ));
    let cli = Cli::try_parse_from(["trust", "list"]).unwrap();
    assert!(matches!(
        cli.cmd,
        TrustCommand::List {
            format: ListFormat::Table,
            revoked: false
        }
    ));
    let cli = Cli::try_parse_from(["trust", "list", "--format", "yaml", "--revoked"]).unwrap();
    assert!(matches!(
        cli.cmd,
        TrustCommand::List {
            format: ListFormat::Yaml,
            revoked: true
        }
    ));
    assert!(Cli::try_parse_from(["trust", "list", "--format", "xml"]).is_err());
    assert!(Cli::try_parse_from(["trust", "remove"]).is_err());
    let cli = Cli::try_parse_from(["trust", "revoke", "abcd", "--yes"]).unwrap();
    assert!(
        matches!(cli.cmd, TrustCommand::Revoke { ref fingerprint, yes: true } if fingerprint == "abcd")
    );
}

#[test]
fn add_from_a_file_and_from_stdin() {
    let env = Env::new();
    let (a, b, c) = (cert(), cert(), cert());
    let path = env.file("a.crt", &a.pem);

    assert_eq!(
        env.ok(&["add", "--publisher", &path]),
        format!("trusted {} ({SUBJECT}) as publisher\n", a.fp)
    );
    assert_eq!(
        env.run(&["add"], &b.pem).unwrap(),
        format!("trusted {} ({SUBJECT}) as client\n", b.fp)
    );
    assert_eq!(
        env.run(&["add", "-", "--origin", "charm"], &c.pem).unwrap(),
        format!("trusted {} ({SUBJECT}) as client\n", c.fp)
    );
    assert_eq!(
        env.ok(&["add", "--publisher", &path]),
        format!(
            "{} ({SUBJECT}) is already trusted as publisher; nothing changed\n",
            a.fp
        )
    );
    assert_eq!(
        env.ok(&["add", &path]),
        format!("changed {} ({SUBJECT}) from publisher to client\n", a.fp)
    );

    let file = TrustStore::open(&env.state()).list().unwrap();
    let origins: Vec<&str> = file.trusted.iter().map(|c| c.origin.as_str()).collect();
    assert_eq!(origins, ["cli", "cli", "charm"]);
}

#[test]
fn add_on_a_terminal_says_it_reads_stdin() {
    let env = Env::new();
    let a = cert();
    let out = env.run_full(&["add"], &a.pem, true).unwrap();
    assert!(
        out.starts_with("reading the certificate from standard input"),
        "{out}"
    );
}

#[test]
fn add_errors_name_the_input_and_the_fix() {
    let env = Env::new();
    let (a, b) = (cert(), cert());

    let missing = env.dir.path().join("missing.crt").display().to_string();
    let msg = env.err(&["add", &missing], "");
    assert!(
        msg.starts_with(&format!("cannot read the certificate from {missing}: ")),
        "{msg}"
    );
    assert!(msg.ends_with("; check the path"), "{msg}");

    assert_eq!(
        env.err(&["add"], ""),
        "no PEM certificate found in standard input: expected -----BEGIN CERTIFICATE----- \
         (found nothing: the input is empty)"
    );
    let notes = env.file("notes.txt", "just some text\n");
    assert_eq!(
        env.err(&["add", &notes], ""),
        format!("no PEM certificate found in {notes}: expected -----BEGIN CERTIFICATE-----")
    );

    let key_msg = env.err(&["add"], &a.key_pem);
    assert!(
        key_msg.starts_with("standard input is a private key; pass the certificate"),
        "{key_msg}"
    );
    let key_line = a.key_pem.lines().nth(1).unwrap();
    assert!(!key_msg.contains(&key_line[..16]));

    let both = env.file("both.pem", &format!("{}{}", a.pem, b.pem));
    assert_eq!(
        env.err(&["add", &both], ""),
        format!(
            "{both} contains 2 certificates; trust them one at a time \
             (one file or one standard-input stream per certificate)"
        )
    );

    let garbage = env.file("garbage.der", "0garbage");
    let msg = env.err(&["add", &garbage], "");
    assert!(
        msg.starts_with(&format!("{garbage} is not an X.509 certificate: ")),
        "{msg}"
    );

    let huge = "x".repeat(MAX_CERTIFICATE_INPUT + 1);
    assert!(env
        .err(&["add"], &huge)
        .starts_with("standard input is larger than 1048576 bytes"));

    assert!(
        !env.state().join("trust.json").exists(),
        "nothing was written"
    );
}

#[test]
fn add_after_revoke_is_refused_forever() {
    let env = Env::new();
    let a = cert();
    env.run(&["add"], &a.pem).unwrap();
    env.ok(&["revoke", &a.fp, "--yes"]);
    let msg = env.err(&["add", "--publisher"], &a.pem);
    let revoked_at = &TrustStore::open(&env.state()).list().unwrap().revoked[0].revoked_at;
    assert_eq!(
        msg,
        format!(
            "certificate {} was revoked on {revoked_at}; revocation is permanent, so it can \
             never be trusted again: issue a new certificate and trust that one",
            a.fp
        )
    );
}

fn two_trusted(env: &Env) -> (Cert, Cert) {
    let (a, b) = (cert(), cert());
    env.run(&["add", "--publisher", "--origin", "relation"], &a.pem)
        .unwrap();
    env.run(&["add"], &b.pem).unwrap();
    (a, b)
}

#[test]
fn list_as_an_aligned_table() {
    let env = Env::new();
    assert_eq!(
        env.ok(&["list"]),
        "FINGERPRINT  ROLE  SUBJECT  EXPIRES  ORIGIN  ADDED\n"
    );
    let (a, b) = two_trusted(&env);
    let out = env.ok(&["list"]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3);
    assert!(
        lines[1].starts_with(&format!(
            "{}  publisher  {SUBJECT}  4096-01-01T00:00:00Z  relation  ",
            a.fp
        )),
        "{out}"
    );
    assert!(
        lines[2].starts_with(&format!(
            "{}  client     {SUBJECT}  4096-01-01T00:00:00Z  cli       ",
            b.fp
        )),
        "{out}"
    );
    for column in ["ROLE", "SUBJECT", "EXPIRES", "ORIGIN", "ADDED"] {
        let at = lines[0].find(column).unwrap();
        assert_eq!(at, lines[0].find(column).unwrap());
        for line in &lines[1..] {
            assert_ne!(line.as_bytes()[at], b' ', "{column} misaligned:\n{out}");
            assert_eq!(line.as_bytes()[at - 1], b' ', "{column} misaligned:\n{out}");
        }
    }
}

#[test]
fn list_as_csv() {
    let env = Env::new();
    assert_eq!(
        env.ok(&["list", "--format", "csv"]),
        "fingerprint,role,subject,not_after,expiry,origin,added_at\n"
    );
    let (a, b) = two_trusted(&env);
    let out = env.ok(&["list", "--format", "csv"]);
    let mut reader = csv::Reader::from_reader(out.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec![
            "fingerprint",
            "role",
            "subject",
            "not_after",
            "expiry",
            "origin",
            "added_at"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(&rows[0][0], a.fp);
    assert_eq!(&rows[0][1], "publisher");
    assert_eq!(&rows[0][2], SUBJECT);
    assert_eq!(&rows[0][3], "4096-01-01T00:00:00Z");
    assert_eq!(&rows[0][4], "valid");
    assert_eq!(&rows[0][5], "relation");
    assert_eq!(&rows[1][0], b.fp);
    assert_eq!(&rows[1][1], "client");
}

#[test]
fn list_as_json_and_yaml() {
    let env = Env::new();
    assert_eq!(env.ok(&["list", "--format", "json"]), "[]\n");
    assert_eq!(env.ok(&["list", "--format", "yaml"]), "[]\n");
    let (a, b) = two_trusted(&env);

    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["list", "--format", "json"])).unwrap();
    let yaml: serde_json::Value =
        serde_yaml_ng::from_str(&env.ok(&["list", "--format", "yaml"])).unwrap();
    for value in [json, yaml] {
        let rows = value.as_array().unwrap();
        assert_eq!(rows.len(), 2);
        let first = rows[0].as_object().unwrap();
        let keys: Vec<&str> = first.keys().map(String::as_str).collect();
        let mut expected = [
            "fingerprint",
            "role",
            "subject",
            "not_after",
            "expiry",
            "origin",
            "added_at",
        ];
        expected.sort();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort();
        assert_eq!(keys_sorted, expected);
        assert_eq!(first["fingerprint"], a.fp.as_str());
        assert_eq!(first["role"], "publisher");
        assert_eq!(first["subject"], SUBJECT);
        assert_eq!(rows[1]["fingerprint"], b.fp.as_str());
        assert_eq!(rows[1]["role"], "client");
    }
}

#[test]
fn list_revoked_in_every_format() {
    let env = Env::new();
    let (a, _) = two_trusted(&env);
    let stranger = "e".repeat(64);
    env.ok(&["revoke", &a.fp[..8], "--yes"]);
    env.ok(&["revoke", &stranger, "--yes"]);
    let revoked_at = TrustStore::open(&env.state()).list().unwrap().revoked[0]
        .revoked_at
        .clone();

    let table = env.ok(&["list", "--revoked"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0],
        format!("{:<64}  SUBJECT                 REVOKED", "FINGERPRINT")
    );
    assert_eq!(lines[1], format!("{}  {SUBJECT}  {revoked_at}", a.fp));
    assert!(lines[2].starts_with(&format!("{stranger}  -                       ")));

    let csv_out = env.ok(&["list", "--revoked", "--format", "csv"]);
    assert_eq!(
        csv_out.lines().take(2).collect::<Vec<_>>(),
        [
            "fingerprint,subject,revoked_at".to_owned(),
            format!("{},{SUBJECT},{revoked_at}", a.fp)
        ]
    );
    assert!(csv_out
        .lines()
        .nth(2)
        .unwrap()
        .starts_with(&format!("{stranger},,")));

    let json: serde_json::Value =
        serde_json::from_str(&env.ok(&["list", "--revoked", "--format", "json"])).unwrap();
    assert_eq!(json[0]["fingerprint"], a.fp.as_str());
    assert_eq!(json[0]["revoked_at"], revoked_at.as_str());
    assert_eq!(json[1]["subject"], "");
    let yaml: serde_json::Value =
        serde_yaml_ng::from_str(&env.ok(&["list", "--revoked", "--format", "yaml"])).unwrap();
    assert_eq!(yaml, json);

    // The trusted list no longer shows it.
    assert!(!env.ok(&["list"]).contains(&a.fp));
}

#[test]
fn remove_by_prefix_and_its_errors() {
    let env = Env::new();
    let (a, b) = two_trusted(&env);
    assert_eq!(
        env.ok(&["remove", &a.fp[..12].to_uppercase()]),
        format!("removed {} ({SUBJECT}); it is no longer trusted\n", a.fp)
    );
    assert_eq!(
        env.err(&["remove", &a.fp], ""),
        format!(
            "no trusted certificate has a fingerprint starting with {}; see `aar trust list`",
            a.fp
        )
    );
    assert!(env
        .err(&["remove", "xyz!"], "")
        .starts_with("\"xyz!\" is not a certificate fingerprint: it may only contain hex digits"));
    // Removed, not revoked: it can come back.
    env.run(&["add"], &a.pem).unwrap();
    env.ok(&["remove", &b.fp]);
}

#[test]
fn ambiguous_prefixes_list_the_candidates() {
    let env = Env::new();
    let store_dir = env.state();
    fs::create_dir_all(&store_dir).unwrap();
    let entry = |fp: String, subject: &str| TrustedCert {
        fingerprint: fp,
        role: Role::Client,
        subject: subject.to_owned(),
        not_after: String::new(),
        origin: String::new(),
        added_at: String::new(),
        certificate: String::new(),
    };
    let (a, b) = (
        format!("beef{}", "1".repeat(60)),
        format!("beef{}", "2".repeat(60)),
    );
    let file = crate::trust::TrustFile {
        trusted: vec![entry(a.clone(), "one"), entry(b.clone(), "two")],
        revoked: vec![],
    };
    fs::write(
        store_dir.join("trust.json"),
        serde_json::to_vec(&file).unwrap(),
    )
    .unwrap();
    let expected = format!(
        "fingerprint prefix beef is ambiguous, it matches:\n  {a} (one)\n  {b} (two)\n\
         type more characters of the fingerprint"
    );
    assert_eq!(env.err(&["remove", "beef"], ""), expected);
    assert_eq!(env.err(&["revoke", "beef", "--yes"], ""), expected);
}

#[test]
fn revoke_needs_confirmation() {
    let env = Env::new();
    let (a, _) = two_trusted(&env);

    assert_eq!(
        env.err(&["revoke", &a.fp[..8]], "y\n"),
        "revocation is permanent; pass --yes to confirm"
    );

    let prompt = format!("Revoke {} ({SUBJECT}) permanently? [y/N] ", a.fp);
    for answer in ["\n", "n\n", "", "nope\n"] {
        let err = env
            .run_full(&["revoke", &a.fp[..8]], answer, true)
            .unwrap_err();
        assert_eq!(err.to_string(), "revocation cancelled; nothing was changed");
    }
    assert!(TrustStore::open(&env.state())
        .list()
        .unwrap()
        .revoked
        .is_empty());

    let out = env.run_full(&["revoke", &a.fp[..8]], "Y\n", true).unwrap();
    assert_eq!(
        out,
        format!("{prompt}revoked {} ({SUBJECT}) permanently\n", a.fp)
    );

    assert_eq!(
        env.ok(&["revoke", &a.fp]),
        format!(
            "{} was already revoked on {}; nothing changed\n",
            a.fp,
            TrustStore::open(&env.state()).list().unwrap().revoked[0].revoked_at
        )
    );
}

#[test]
fn revoke_a_certificate_that_was_never_trusted() {
    let env = Env::new();
    let a = cert();
    assert_eq!(
        env.err(&["revoke", &a.fp[..16], "--yes"], ""),
        format!(
            "no trusted certificate has a fingerprint starting with {}; to revoke a \
             certificate that is not trusted, pass its full 64-character fingerprint",
            &a.fp[..16]
        )
    );
    let err = env
        .run_full(&["revoke", &a.fp[..16]], "y\n", true)
        .unwrap_err();
    assert!(
        matches!(err, TrustError::UnknownFingerprint { .. }),
        "fails before prompting: {err}"
    );
    let out = env.run_full(&["revoke", &a.fp], "yes\n", true).unwrap();
    assert_eq!(
        out,
        format!(
            "Revoke {} (not currently trusted) permanently? [y/N] revoked {} \
             (not previously trusted) permanently\n",
            a.fp, a.fp
        )
    );
    assert!(env
        .err(&["add"], &a.pem)
        .contains("revocation is permanent"));
}

#[test]
fn corrupt_store_is_reported_by_every_command() {
    let env = Env::new();
    fs::create_dir_all(env.state()).unwrap();
    let path = env.state().join("trust.json");
    fs::write(&path, "not json").unwrap();
    let a = cert();
    let prefix = format!("trust store {} is corrupt: ", path.display());
    for (args, stdin) in [
        (vec!["list"], ""),
        (vec!["add"], a.pem.as_str()),
        (vec!["remove", "abcd"], ""),
        (vec!["revoke", "abcd", "--yes"], ""),
    ] {
        let msg = env.err(&args, stdin);
        assert!(msg.starts_with(&prefix), "{args:?}: {msg}");
    }
    assert_eq!(fs::read_to_string(&path).unwrap(), "not json");
}

#[test]
fn control_characters_in_subjects_do_not_reach_the_terminal() {
    assert_eq!(printable("ams\u{1b}[31mred"), "ams\u{fffd}[31mred");
    assert_eq!(printable_or("", "-"), "-");
}
