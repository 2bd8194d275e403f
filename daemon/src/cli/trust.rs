//! `aar trust …`: manage which AMS certificates the registry accepts.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::trust::{
    check_trustable, parse_certificate_from, preemptive_target, unix_now, AddOutcome, Expiry,
    Found, RevokedCert, Role, TrustError, TrustStore, TrustedCert,
};

/// Far above any certificate, low enough that piping in the wrong file fails fast.
const MAX_CERTIFICATE_INPUT: usize = 1024 * 1024;

#[derive(Debug, clap::Subcommand)]
pub enum TrustCommand {
    /// Trust an AMS certificate (PEM or DER), read-only unless --publisher.
    Add {
        /// Certificate file; standard input when omitted or "-".
        path: Option<PathBuf>,
        /// Allow uploads, publishing and deletion, not only reads.
        #[arg(long)]
        publisher: bool,
        /// Free text recorded with the certificate to say where it came from.
        #[arg(long, default_value = "cli")]
        origin: String,
    },
    /// List trusted certificates, or revoked ones with --revoked.
    List {
        #[arg(long, value_enum, default_value_t = ListFormat::Table)]
        format: ListFormat,
        /// List revoked certificates instead of trusted ones.
        #[arg(long)]
        revoked: bool,
    },
    /// Stop trusting a certificate; it can be added again later.
    Remove {
        /// Full fingerprint or an unambiguous prefix (at least 4 hex characters).
        fingerprint: String,
    },
    /// Stop trusting a certificate and refuse it forever.
    Revoke {
        /// Full fingerprint or an unambiguous prefix of a trusted certificate; the full
        /// fingerprint to revoke a certificate that is not trusted.
        fingerprint: String,
        /// Do not ask for confirmation.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ListFormat {
    #[default]
    Table,
    Csv,
    Json,
    Yaml,
}

impl ListFormat {
    fn name(self) -> &'static str {
        match self {
            ListFormat::Table => "table",
            ListFormat::Csv => "csv",
            ListFormat::Json => "json",
            ListFormat::Yaml => "yaml",
        }
    }
}

/// Runs a trust subcommand against `<state_dir>/trust.json`. Whether `revoke` may prompt
/// depends on whether the process's standard input is a terminal.
pub fn run(
    cmd: TrustCommand,
    state_dir: &Path,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<(), TrustError> {
    let interactive = std::io::stdin().is_terminal();
    run_with(cmd, state_dir, stdin, interactive, out)
}

/// [`run`] with the terminal check made by the caller, so prompting can be exercised with an
/// in-memory `stdin`.
pub fn run_with(
    cmd: TrustCommand,
    state_dir: &Path,
    stdin: &mut dyn Read,
    stdin_is_terminal: bool,
    out: &mut dyn Write,
) -> Result<(), TrustError> {
    let store = TrustStore::open(state_dir);
    match cmd {
        TrustCommand::Add {
            path,
            publisher,
            origin,
        } => {
            let role = if publisher {
                Role::Publisher
            } else {
                Role::Client
            };
            let (input, source) = match path.filter(|p| p.as_os_str() != "-") {
                Some(path) => (read_file(&path)?, path.display().to_string()),
                None => {
                    if stdin_is_terminal {
                        writeln!(
                            out,
                            "reading the certificate from standard input (end with Ctrl-D)"
                        )
                        .map_err(TrustError::Output)?;
                    }
                    (read_stdin(stdin)?, "standard input".to_owned())
                }
            };
            // Parsed and checked here as well as in the store so that errors name the file.
            let (info, der) = parse_certificate_from(&input, &source)?;
            check_trustable(&der, &source, unix_now())?;
            let outcome = store.add(&input, role, &origin)?;
            let (fp, subject) = (&info.fingerprint, printable(&info.subject));
            audit("trust_add", fp, Some(role), add_outcome(&outcome));
            match outcome {
                AddOutcome::Added => writeln!(out, "trusted {fp} ({subject}) as {role}"),
                AddOutcome::Unchanged => writeln!(
                    out,
                    "{fp} ({subject}) is already trusted as {role}; nothing changed"
                ),
                AddOutcome::RoleChanged { from, to } => {
                    writeln!(out, "changed {fp} ({subject}) from {from} to {to}")
                }
            }
            .map_err(TrustError::Output)
        }
        TrustCommand::List { format, revoked } => {
            let file = store.list()?;
            if revoked {
                list_revoked(&file.revoked, format, out)
            } else {
                list_trusted(&file.trusted, format, out)
            }
        }
        TrustCommand::Remove { fingerprint } => {
            let removed = store.remove(&fingerprint)?;
            audit("trust_remove", &removed.fingerprint, None, "removed");
            writeln!(
                out,
                "removed {} ({}); it is no longer trusted",
                removed.fingerprint,
                printable(&removed.subject)
            )
            .map_err(TrustError::Output)
        }
        TrustCommand::Revoke { fingerprint, yes } => {
            let (target, subject) = match store.list()?.find(&fingerprint)? {
                Found::Trusted(cert) => (cert.fingerprint.clone(), printable(&cert.subject)),
                Found::Revoked(revoked) => {
                    return writeln!(
                        out,
                        "{} was already revoked on {}; nothing changed",
                        revoked.fingerprint, revoked.revoked_at
                    )
                    .map_err(TrustError::Output);
                }
                // Checked before prompting, so nobody confirms a revocation that then fails.
                Found::Nothing => (
                    preemptive_target(&fingerprint)?,
                    "not currently trusted".to_owned(),
                ),
            };
            if !yes {
                if !stdin_is_terminal {
                    return Err(TrustError::ConfirmationRequired);
                }
                write!(out, "Revoke {target} ({subject}) permanently? [y/N] ")
                    .and_then(|()| out.flush())
                    .map_err(TrustError::Output)?;
                if !confirmed(stdin) {
                    return Err(TrustError::Cancelled);
                }
            }
            let revoked = store.revoke(&target)?;
            audit("trust_revoke", &revoked.fingerprint, None, "revoked");
            writeln!(
                out,
                "revoked {} ({}) permanently",
                revoked.fingerprint,
                printable_or(&revoked.subject, "not previously trusted")
            )
            .map_err(TrustError::Output)
        }
    }
}

fn add_outcome(outcome: &AddOutcome) -> &'static str {
    match outcome {
        AddOutcome::Added => "added",
        AddOutcome::Unchanged => "unchanged",
        AddOutcome::RoleChanged { .. } => "role_changed",
    }
}

/// The audit trail of the trust store: one `aar::audit` event per change made here. The
/// caller is whoever runs the command on the machine, named by user id.
fn audit(action: &'static str, object: &str, granted: Option<Role>, outcome: &'static str) {
    tracing::info!(
        target: "aar::audit",
        action,
        object,
        granted = granted.map(|r| r.to_string()),
        fingerprint = "local",
        role = "operator",
        uid = rustix::process::getuid().as_raw(),
        outcome,
        "trust change"
    );
}

fn read_file(path: &Path) -> Result<Vec<u8>, TrustError> {
    let source = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|error| TrustError::ReadInput {
        input: source.clone(),
        error,
    })?;
    read_limited(file, source)
}

fn read_stdin(stdin: &mut dyn Read) -> Result<Vec<u8>, TrustError> {
    read_limited(stdin, "standard input".to_owned())
}

fn read_limited(input: impl Read, source: String) -> Result<Vec<u8>, TrustError> {
    let mut bytes = Vec::new();
    input
        .take(MAX_CERTIFICATE_INPUT as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| TrustError::ReadInput {
            input: source.clone(),
            error,
        })?;
    if bytes.len() > MAX_CERTIFICATE_INPUT {
        return Err(TrustError::InputTooLarge {
            input: source,
            limit: MAX_CERTIFICATE_INPUT,
        });
    }
    Ok(bytes)
}

/// Reads one answer line byte by byte, so nothing after it is consumed from `stdin`.
fn confirmed(stdin: &mut dyn Read) -> bool {
    let mut line = Vec::new();
    let mut byte = [0u8];
    while line.len() < 64 {
        match stdin.read(&mut byte) {
            Ok(1) if byte[0] != b'\n' => line.push(byte[0]),
            _ => break,
        }
    }
    let answer = String::from_utf8_lossy(&line).trim().to_ascii_lowercase();
    answer == "y" || answer == "yes"
}

/// Subjects and origins come from certificates and callers: keep control characters out of
/// the operator's terminal.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { '\u{fffd}' } else { c })
        .collect()
}

fn printable_or(text: &str, empty: &str) -> String {
    if text.is_empty() {
        empty.to_owned()
    } else {
        printable(text)
    }
}

/// One row of `trust list`: the stored entry without its PEM, which would swamp every
/// format and is not needed to identify a certificate, plus where it stands against its
/// expiry (`valid`, `soon`: within 30 days, `expired`, `unknown`).
#[derive(Serialize)]
struct TrustedRow<'a> {
    fingerprint: &'a str,
    role: Role,
    subject: &'a str,
    not_after: &'a str,
    expiry: &'static str,
    origin: &'a str,
    added_at: &'a str,
}

impl<'a> TrustedRow<'a> {
    fn new(c: &'a TrustedCert, now: i64) -> Self {
        TrustedRow {
            fingerprint: &c.fingerprint,
            role: c.role,
            subject: &c.subject,
            not_after: &c.not_after,
            expiry: Expiry::of(&c.not_after, now).as_str(),
            origin: &c.origin,
            added_at: &c.added_at,
        }
    }
}

/// The date, and how soon it comes when that needs attention: "… (in 12 days)".
fn expires_cell(not_after: &str, now: i64) -> String {
    let date = printable_or(not_after, "-");
    match Expiry::of(not_after, now).note() {
        Some(note) => format!("{date} ({note})"),
        None => date,
    }
}

fn list_trusted(
    certs: &[TrustedCert],
    format: ListFormat,
    out: &mut dyn Write,
) -> Result<(), TrustError> {
    let now = unix_now();
    if format == ListFormat::Table {
        let cells = certs
            .iter()
            .map(|c| {
                vec![
                    c.fingerprint.clone(),
                    c.role.to_string(),
                    printable_or(&c.subject, "-"),
                    expires_cell(&c.not_after, now),
                    printable_or(&c.origin, "-"),
                    printable_or(&c.added_at, "-"),
                ]
            })
            .collect();
        let header = [
            "FINGERPRINT",
            "ROLE",
            "SUBJECT",
            "EXPIRES",
            "ORIGIN",
            "ADDED",
        ];
        return table(&header, cells, out);
    }
    let rows: Vec<TrustedRow<'_>> = certs.iter().map(|c| TrustedRow::new(c, now)).collect();
    structured(&rows, TRUSTED_COLUMNS, format, out)
}

fn list_revoked(
    certs: &[RevokedCert],
    format: ListFormat,
    out: &mut dyn Write,
) -> Result<(), TrustError> {
    if format == ListFormat::Table {
        let cells = certs
            .iter()
            .map(|c| {
                vec![
                    c.fingerprint.clone(),
                    printable_or(&c.subject, "-"),
                    printable_or(&c.revoked_at, "-"),
                ]
            })
            .collect();
        return table(&["FINGERPRINT", "SUBJECT", "REVOKED"], cells, out);
    }
    structured(certs, REVOKED_COLUMNS, format, out)
}

/// Column names, in the order of the fields of the row types. Written by hand so that an
/// empty list still gets its CSV header: serde only reveals names through a row.
const TRUSTED_COLUMNS: &[&str] = &[
    "fingerprint",
    "role",
    "subject",
    "not_after",
    "expiry",
    "origin",
    "added_at",
];
const REVOKED_COLUMNS: &[&str] = &["fingerprint", "subject", "revoked_at"];

fn structured<T: Serialize>(
    rows: &[T],
    columns: &[&str],
    format: ListFormat,
    out: &mut dyn Write,
) -> Result<(), TrustError> {
    let format_err = |detail: String| TrustError::Format {
        format: format.name(),
        detail,
    };
    match format {
        ListFormat::Table => unreachable!("tables are drawn by the callers"),
        ListFormat::Csv => {
            let mut writer = csv::WriterBuilder::new()
                .has_headers(false)
                .from_writer(out);
            writer
                .write_record(columns)
                .map_err(|e| format_err(e.to_string()))?;
            for row in rows {
                writer
                    .serialize(row)
                    .map_err(|e| format_err(e.to_string()))?;
            }
            writer.flush().map_err(TrustError::Output)
        }
        ListFormat::Json => {
            serde_json::to_writer_pretty(&mut *out, rows).map_err(|e| format_err(e.to_string()))?;
            writeln!(out).map_err(TrustError::Output)
        }
        ListFormat::Yaml => {
            let text = serde_yaml_ng::to_string(rows).map_err(|e| format_err(e.to_string()))?;
            out.write_all(text.as_bytes()).map_err(TrustError::Output)
        }
    }
}

fn table(header: &[&str], rows: Vec<Vec<String>>, out: &mut dyn Write) -> Result<(), TrustError> {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let header = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(header).chain(rows) {
        let mut line = String::new();
        for (i, (cell, width)) in row.iter().zip(&widths).enumerate() {
            if i + 1 == row.len() {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<width$}  "));
            }
        }
        writeln!(out, "{}", line.trim_end()).map_err(TrustError::Output)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use clap::Parser;

    use super::*;
    use crate::trust::fingerprint;

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

        fn run_full(
            &self,
            args: &[&str],
            stdin: &str,
            terminal: bool,
        ) -> Result<String, TrustError> {
            let cli =
                Cli::try_parse_from(std::iter::once("trust").chain(args.iter().copied())).unwrap();
            let mut out = Vec::new();
            run_with(
                cli.cmd,
                &self.state(),
                &mut stdin.as_bytes(),
                terminal,
                &mut out,
            )?;
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
        let cli =
            Cli::try_parse_from(["trust", "add", "--origin", "relation:publisher/0"]).unwrap();
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
        assert!(env.err(&["remove", "xyz!"], "").starts_with(
            "\"xyz!\" is not a certificate fingerprint: it may only contain hex digits"
        ));
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
}
