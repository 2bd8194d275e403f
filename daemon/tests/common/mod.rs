//! Test harness for the `aar` integration tests, on either storage backend.
//!
//! * [`content`]: digests, deterministic content of any size, streamed request bodies.
//! * [`identity`]: client certificates made with rcgen (publisher, client, untrusted, revoked).
//! * [`instance`]: a temporary directory with a config file, state directory and storage (a
//!   directory, or a section naming an S3 bucket), plus the CLI run against it.
//! * [`daemon`]: a running `aar serve` on `127.0.0.1:0`; dropping it kills the process.
//! * [`client`]: HTTPS pinning the server fingerprint, and plain HTTP for redirects.
//! * [`operations`]: the registry's API as the tests call it (uploads, publishing).
//! * [`s3_server`]: a real S3 server on loopback, SigV4 verified, that can be stopped and
//!   resumed.
//!
//! Every integration test compiles this module on its own and uses part of it, hence the
//! `dead_code` and `unused_imports` allowances.
#![allow(dead_code)]

mod client;
mod content;
mod daemon;
mod identity;
mod instance;
mod operations;
mod s3_server;

// Each test binary uses some of these; the rest would be reported as unused.
#[allow(unused_imports)]
pub use self::{
    client::*, content::*, daemon::*, identity::*, instance::*, operations::*, s3_server::*,
};

use std::fs;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_aar");
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const KIB: u64 = 1024;
pub const MIB: u64 = 1024 * 1024;
pub const GIB: u64 = 1024 * 1024 * 1024;

/// How long the daemon may take to print its ready line. An S3 backend is checked before
/// the line is printed, so this includes its round trips under a loaded machine.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Upper bound for any single request made by the helpers.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// Polls `f` until it returns `Some`, for at most `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut f: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reads a file into a string, or "" if it does not exist.
pub fn read_string(p: &Path) -> String {
    let mut s = String::new();
    if let Ok(mut f) = fs::File::open(p) {
        let _ = f.read_to_string(&mut s);
    }
    s
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/<pid>/status")
}
