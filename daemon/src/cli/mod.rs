//! The `aar` command line: `serve`, `trust …`, `verify`, `backup`, `restore`, `status`,
//! `config check`.

pub mod backup;
pub mod output;
pub mod status;
pub mod trust;
pub mod verify;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(name = "aar", version, about = "Anbox Application Registry daemon")]
pub struct Cli {
    /// The daemon's config file; without it every key takes its default.
    #[arg(long, global = true, env = "AAR_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the registry.
    Serve,
    /// Manage trusted client certificates.
    #[command(subcommand)]
    Trust(trust::TrustCommand),
    /// Check a config file.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Hash every stored image against its digest and read every version record; exit 1
    /// when anything is damaged. Safe to run beside a serving daemon.
    Verify {
        /// Remove damaged images, so that uploading the same image again restores the
        /// versions that use it.
        #[arg(long)]
        repair: bool,
    },
    /// Write what cannot be recreated to FILE (`-`: standard output): the server key and
    /// certificate, the trust store, the version records and, with fs storage, the images.
    /// Safe beside a serving daemon; the file is readable by its owner only.
    Backup {
        file: String,
        /// Leave the images out (fs storage; with S3 they always stay in the bucket).
        #[arg(long)]
        no_blobs: bool,
    },
    /// Restore a backup from FILE (`-`: standard input) into this registry's state and
    /// storage. Stop the daemon first. Refuses a registry that already holds something
    /// unless --force.
    Restore {
        file: String,
        /// Restore over existing state: the server identity and trust store are replaced,
        /// records are added beside the stored ones (never overwriting a version).
        #[arg(long)]
        force: bool,
    },
    /// Ask the running daemon (at the config's metrics.addr) how the registry stands.
    Status {
        #[arg(long, value_enum, default_value_t)]
        format: status::Format,
    },
}

#[derive(Subcommand, Debug)]
pub enum ConfigCommand {
    /// Validate FILE; exit 0 when valid, 1 with the problem otherwise.
    Check { file: PathBuf },
}
