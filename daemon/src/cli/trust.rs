//! `aar trust …`: manage which AMS certificates the registry accepts.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use super::output::ListFormat;
use super::output::{self, printable, printable_or, OutputError, Row};
use crate::config::Config;
use crate::trust::{
    check_trustable, parse_certificate_from, preemptive_target, unix_now, AddOutcome, Expiry,
    Fingerprint, Found, RevokedCert, Role, TrustError, TrustLocation, TrustedCert,
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

/// Runs a trust subcommand against the store `config` puts it in: the state directory's
/// `trust.json`, or the bucket's with S3 storage. Whether `revoke` may prompt depends on
/// whether the process's standard input is a terminal.
pub async fn run(
    cmd: TrustCommand,
    config: &Config,
    stdin: &mut dyn Read,
    out: &mut dyn Write,
) -> Result<(), TrustError> {
    let interactive = std::io::stdin().is_terminal();
    let store = crate::trust_setup::location(config).await;
    run_with(cmd, &store, stdin, interactive, out).await
}

/// [`run`] on a given store, with the terminal check made by the caller, so prompting can
/// be exercised with an in-memory `stdin`.
pub async fn run_with(
    cmd: TrustCommand,
    store: &TrustLocation,
    stdin: &mut dyn Read,
    stdin_is_terminal: bool,
    out: &mut dyn Write,
) -> Result<(), TrustError> {
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
            let outcome = store.add(&input, role, &origin).await?;
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
            let file = store.list().await?;
            if revoked {
                list(&file.revoked, format, out)
            } else {
                let now = unix_now();
                let rows: Vec<TrustedRow<'_>> = file
                    .trusted
                    .iter()
                    .map(|c| TrustedRow::new(c, now))
                    .collect();
                list(&rows, format, out)
            }
        }
        TrustCommand::Remove { fingerprint } => {
            let removed = store.remove(&fingerprint).await?;
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
            let (target, subject) = match store.list().await?.find(&fingerprint)? {
                Found::Trusted(cert) => (cert.fingerprint, printable(&cert.subject)),
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
            let revoked = store.revoke(&target.to_string()).await?;
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
fn audit(action: &'static str, object: &Fingerprint, granted: Option<Role>, outcome: &'static str) {
    tracing::info!(
        target: "aar::audit",
        action,
        %object,
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

/// One row of `trust list`: the stored entry without its PEM, which would swamp every
/// format and is not needed to identify a certificate, plus where it stands against its
/// expiry (`valid`, `soon`: within 30 days, `expired`, `unknown`).
#[derive(Serialize)]
struct TrustedRow<'a> {
    fingerprint: Fingerprint,
    role: Role,
    subject: &'a str,
    not_after: &'a str,
    expiry: &'static str,
    origin: &'a str,
    added_at: &'a str,
    #[serde(skip)]
    now: i64,
}

impl<'a> TrustedRow<'a> {
    fn new(c: &'a TrustedCert, now: i64) -> Self {
        TrustedRow {
            fingerprint: c.fingerprint,
            role: c.role,
            subject: &c.subject,
            not_after: &c.not_after,
            expiry: Expiry::of(&c.not_after, now).as_str(),
            origin: &c.origin,
            added_at: &c.added_at,
            now,
        }
    }
}

impl Row for TrustedRow<'_> {
    const HEADER: &'static [&'static str] = &[
        "FINGERPRINT",
        "ROLE",
        "SUBJECT",
        "EXPIRES",
        "ORIGIN",
        "ADDED",
    ];
    const COLUMNS: &'static [&'static str] = &[
        "fingerprint",
        "role",
        "subject",
        "not_after",
        "expiry",
        "origin",
        "added_at",
    ];

    fn cells(&self) -> Vec<String> {
        vec![
            self.fingerprint.to_string(),
            self.role.to_string(),
            printable_or(self.subject, "-"),
            expires_cell(self.not_after, self.now),
            printable_or(self.origin, "-"),
            printable_or(self.added_at, "-"),
        ]
    }
}

impl Row for RevokedCert {
    const HEADER: &'static [&'static str] = &["FINGERPRINT", "SUBJECT", "REVOKED"];
    const COLUMNS: &'static [&'static str] = &["fingerprint", "subject", "revoked_at"];

    fn cells(&self) -> Vec<String> {
        vec![
            self.fingerprint.to_string(),
            printable_or(&self.subject, "-"),
            printable_or(&self.revoked_at, "-"),
        ]
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

fn list<R: Row>(rows: &[R], format: ListFormat, out: &mut dyn Write) -> Result<(), TrustError> {
    output::render(rows, format, out).map_err(|error| match error {
        OutputError::Write(error) => TrustError::Output(error),
        OutputError::Format { format, detail } => TrustError::Format { format, detail },
    })
}

#[cfg(test)]
mod tests;
