//! Crash-safe local file writes: temporary file in the target's directory, fsync,
//! rename, fsync of the directory. A reader (or a restart after `kill -9`) sees the old
//! file or the new one, never a mix; leftovers carry [`TEMP_PREFIX`] so start-up can
//! remove them.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Prefix of every temporary file; nothing else in a managed directory starts with it.
pub const TEMP_PREFIX: &str = ".tmp-";

pub fn temp_path(dir: &Path) -> PathBuf {
    dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()))
}

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `path`'s parent directories and makes each new one durable in its parent.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replace {
    /// Atomically replace an existing file.
    Overwrite,
    /// Fail with `AlreadyExists` if the target exists (renameat2 `RENAME_NOREPLACE`), so
    /// two writers can never overwrite each other.
    Never,
}

/// Writes `data` to `path` atomically and durably with the given file mode.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32, replace: Replace) -> io::Result<()> {
    let dir = path
        .parent()
        .ok_or_else(|| io::Error::other("path has no parent directory"))?;
    create_dirs(dir)?;
    let tmp = temp_path(dir);
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        rename(&tmp, path, replace)?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

pub fn rename(from: &Path, to: &Path, replace: Replace) -> io::Result<()> {
    match replace {
        Replace::Overwrite => fs::rename(from, to),
        Replace::Never => rustix::fs::renameat_with(
            rustix::fs::CWD,
            from,
            rustix::fs::CWD,
            to,
            rustix::fs::RenameFlags::NOREPLACE,
        )
        .map_err(io::Error::from),
    }
}

/// Removes every [`TEMP_PREFIX`] file directly inside `dir`; returns how many.
pub fn remove_temp_files(dir: &Path) -> io::Result<usize> {
    let mut removed = 0;
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_name().to_string_lossy().starts_with(TEMP_PREFIX) {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_never_overwrites_when_asked_not_to() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/v1.json");
        write_atomic(&path, b"one", 0o644, Replace::Never).unwrap();
        let err = write_atomic(&path, b"two", 0o644, Replace::Never).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&path).unwrap(), b"one");
        write_atomic(&path, b"three", 0o600, Replace::Overwrite).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"three");
        assert_eq!(remove_temp_files(path.parent().unwrap()).unwrap(), 0);
    }
}
