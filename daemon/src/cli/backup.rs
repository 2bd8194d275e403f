//! `aar backup FILE` and `aar restore FILE`: where the archive goes or comes from, and
//! the summary an operator reads.

use crate::backup::{self, Restored, Taken};
use crate::config::Config;
use crate::fsutil;
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Writes the backup to `file` (`-`: standard output). A file is written beside its
/// final name and renamed into place when complete, readable by its owner only (it holds
/// the server's private key), so a failed backup never leaves a file that looks whole.
pub async fn run_backup(
    config: &Config,
    file: &str,
    blobs: bool,
    report: &mut impl Write,
) -> anyhow::Result<()> {
    let storage = crate::daemon::open_storage(config).await?;
    let taken = if file == "-" {
        backup::backup(config, storage, blobs, Box::new(io::stdout())).await?
    } else {
        let path = Path::new(file);
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let partial = fsutil::temp_path(dir);
        let out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&partial)
            .map_err(|e| anyhow::anyhow!("creating {}: {e}", partial.display()))?;
        let taken = match backup::backup(config, storage, blobs, Box::new(out)).await {
            Ok(taken) => taken,
            Err(e) => {
                let _ = std::fs::remove_file(&partial);
                return Err(e.into());
            }
        };
        let synced = std::fs::File::open(&partial).and_then(|f| f.sync_all());
        synced
            .and_then(|()| fsutil::rename(&partial, path, fsutil::Replace::Overwrite))
            .map_err(|e| {
                let _ = std::fs::remove_file(&partial);
                anyhow::anyhow!("writing {file}: {e}")
            })?;
        taken
    };
    summarise_backup(&taken, report)?;
    Ok(())
}

fn summarise_backup(taken: &Taken, out: &mut impl Write) -> io::Result<()> {
    let images = match taken.blobs {
        Some(n) => format!("{n} images ({} bytes)", taken.blob_bytes),
        None => "no images (they stay in storage)".to_string(),
    };
    writeln!(
        out,
        "backed up the server identity (fingerprint {}), {} trusted and {} revoked certificates, {} version records and {images}",
        taken.server_fingerprint, taken.trusted, taken.revoked, taken.records
    )?;
    for location in &taken.unreadable {
        writeln!(
            out,
            "not backed up: unreadable version record {location} (see `aar verify`)"
        )?;
    }
    Ok(())
}

/// Restores `file` (`-`: standard input); `Ok(false)` when some versions could not be
/// restored (the report says which and why).
pub async fn run_restore(
    config: &Config,
    file: &str,
    force: bool,
    report: &mut impl Write,
) -> anyhow::Result<bool> {
    let input: Box<dyn io::Read + Send> = if file == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(std::fs::File::open(file).map_err(|e| anyhow::anyhow!("opening {file}: {e}"))?)
    };
    let storage = crate::daemon::open_storage(config).await?;
    let restored = backup::restore(config, storage, force, input).await?;
    Ok(summarise_restore(&restored, report)?)
}

fn summarise_restore(r: &Restored, out: &mut impl Write) -> io::Result<bool> {
    writeln!(
        out,
        "restored the server identity (fingerprint {}), {} trusted and {} revoked certificates, {} version records ({} already present) and {} images ({} already present)",
        r.server_fingerprint,
        r.trusted,
        r.revoked,
        r.records_added,
        r.records_present,
        r.blobs_added,
        r.blobs_present
    )?;
    for (name, version) in &r.differing {
        writeln!(
            out,
            "kept as stored: version {version} of {name:?} differs from the backup's (versions are immutable; delete it first to take the backup's)"
        )?;
    }
    for (name, version) in &r.without_images {
        writeln!(
            out,
            "not restored: version {version} of {name:?}: an image it uses is neither in the backup nor in storage; upload the image, then restore again"
        )?;
    }
    Ok(r.differing.is_empty() && r.without_images.is_empty())
}
