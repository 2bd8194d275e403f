//! `aar verify [--repair]`: what is damaged in storage, and what to do about it.

use crate::registry::{self, Verification};
use std::io::{self, Write};

/// Prints the report of a verification; `Ok(true)` when storage is clean.
pub fn report(v: &Verification, repair: bool, out: &mut impl Write) -> io::Result<bool> {
    writeln!(
        out,
        "checked {} version records and {} images ({} bytes hashed)",
        v.records, v.images, v.bytes
    )?;
    for location in &v.unreadable_records {
        writeln!(
            out,
            "unreadable version record: {location}\n  its version is not served and no image is garbage-collected while it exists; restore it from a backup or remove it"
        )?;
    }
    for (digest, problem, versions) in &v.damaged {
        writeln!(
            out,
            "damaged image {digest}: {problem}\n  used by {}",
            versions.join(", ")
        )?;
    }
    if !v.removed.is_empty() {
        writeln!(
            out,
            "removed {} damaged image(s): upload each again (POST /1.0/uploads with the same digest) to restore the versions that use it",
            v.removed.len()
        )?;
    } else if !v.damaged.is_empty() && !repair {
        writeln!(
            out,
            "run `aar verify --repair` to remove the damaged images, then upload them again"
        )?;
    }
    if v.is_clean() {
        writeln!(out, "storage is clean")?;
    }
    Ok(v.is_clean())
}

/// Verifies the storage `config` names; `Ok(true)` when clean.
pub async fn run(
    config: &crate::config::Config,
    repair: bool,
    out: &mut impl Write,
) -> anyhow::Result<bool> {
    let storage = crate::daemon::open_storage(config).await?;
    let verification = registry::verify(storage.as_ref(), repair, None).await?;
    Ok(report(&verification, repair, out)?)
}
