use std::io;
use std::path::PathBuf;

use super::Fingerprint;

/// Everything that can go wrong with the trust store or the certificates given to it.
///
/// Each message says what is wrong and how to fix it, because these texts reach operators
/// directly (CLI output, charm status). None of them ever quotes the input, so a private key
/// passed by mistake is never echoed.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    // The underlying error is part of the message rather than a `#[source]`, so a caller that
    // prints the whole chain does not show it twice.
    #[error("cannot {action} {}: {error}{}", path.display(), io_hint(error))]
    Io {
        action: &'static str,
        path: PathBuf,
        error: io::Error,
    },

    #[error("cannot read the certificate from {input}: {error}{}", io_hint(error))]
    ReadInput { input: String, error: io::Error },

    #[error(
        "{input} is larger than {limit} bytes, which is far too big for a certificate; \
         pass the certificate file (PEM or DER) itself"
    )]
    InputTooLarge { input: String, limit: usize },

    #[error(
        "no PEM certificate found in {input}: expected -----BEGIN CERTIFICATE-----{}",
        found_hint(found)
    )]
    NoCertificate {
        input: String,
        found: Option<String>,
    },

    #[error(
        "{input} contains {count} certificates; trust them one at a time \
         (one file or one standard-input stream per certificate)"
    )]
    MultipleCertificates { input: String, count: usize },

    #[error(
        "{input} is a private key; pass the certificate (the block that starts with \
         -----BEGIN CERTIFICATE-----) and keep the private key where it is"
    )]
    PrivateKey { input: String },

    #[error(
        "{input} contains a private key next to the certificate; pass a file that holds \
         only the certificate, so the private key is not copied around"
    )]
    PrivateKeyWithCertificate { input: String },

    #[error("{input} has a malformed PEM block: {detail}; export the certificate again in PEM or DER form")]
    MalformedPem { input: String, detail: String },

    #[error("{input} is not an X.509 certificate: {detail}")]
    NotX509 { input: String, detail: String },

    #[error("{input} has {extra} bytes of trailing data after the certificate; pass exactly one DER certificate")]
    TrailingData { input: String, extra: usize },

    #[error(
        "the certificate from {input} {reason}, so every connection with it would fail: {}",
        reason.fix()
    )]
    Unusable {
        input: String,
        reason: super::Unusable,
    },

    #[error(
        "the certificate from {input} expired on {not_after}; an expired certificate is \
         refused at every request: issue a new certificate and trust that one"
    )]
    Expired { input: String, not_after: String },

    #[error(
        "the certificate from {input} is not valid before {not_before}; trust it once it is, \
         or check the clocks of this machine and of the one that issued it"
    )]
    NotYetValid { input: String, not_before: String },

    #[error(
        "trust store {} is corrupt: {detail}; it was left as it is: repair it (it is JSON) \
         or restore it from a backup",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },

    #[error(
        "certificate {fingerprint} was revoked on {revoked_at}; revocation is permanent, so it \
         can never be trusted again: issue a new certificate and trust that one"
    )]
    Revoked {
        fingerprint: Fingerprint,
        revoked_at: String,
    },

    #[error(
        "{input:?} is not a certificate fingerprint: {reason}; pass the 64 hex characters \
         shown by `aar trust list`, or an unambiguous prefix of at least 4 of them"
    )]
    InvalidFingerprint { input: String, reason: &'static str },

    #[error("no trusted certificate has a fingerprint starting with {prefix}; {hint}")]
    UnknownFingerprint { prefix: String, hint: &'static str },

    #[error("certificate {fingerprint} is not trusted: it was revoked on {revoked_at}, which is permanent")]
    AlreadyRevoked {
        fingerprint: Fingerprint,
        revoked_at: String,
    },

    #[error("fingerprint prefix {prefix} is ambiguous, it matches:\n{}\ntype more characters of the fingerprint", candidates.join("\n"))]
    Ambiguous {
        prefix: String,
        /// One line per match: `  <fingerprint> (<subject>)`.
        candidates: Vec<String>,
    },

    #[error(
        "cannot {action} the trust store {location} (with S3 storage it is kept in the bucket, \
         beside the data): {detail}"
    )]
    Shared {
        action: &'static str,
        location: String,
        detail: String,
    },

    #[error(
        "the trust store {location} changed under every one of {attempts} attempts to \
         write it; something is rewriting it without pause: nothing was changed, try again"
    )]
    Contended { location: String, attempts: u32 },

    #[error("revocation is permanent; pass --yes to confirm")]
    ConfirmationRequired,

    #[error("revocation cancelled; nothing was changed")]
    Cancelled,

    #[error("cannot write the output: {0}")]
    Output(io::Error),

    #[error("cannot format the list as {format}: {detail}")]
    Format {
        format: &'static str,
        detail: String,
    },
}

fn io_hint(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::PermissionDenied => {
            "; run the command as the user that owns the state directory (usually root: sudo)"
        }
        io::ErrorKind::NotFound => "; check the path",
        _ => "",
    }
}

fn found_hint(found: &Option<String>) -> String {
    match found {
        Some(what) => format!(" (found {what})"),
        None => String::new(),
    }
}
