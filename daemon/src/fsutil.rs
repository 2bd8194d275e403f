//! Crash-safe local file writes: temporary file in the target's directory, fsync,
//! rename, fsync of the directory. A reader (or a restart after `kill -9`) sees the old
//! file or the new one, never a mix; leftovers carry [`TEMP_PREFIX`] so start-up can
//! remove them.
//!
//! Directories made here are 0700: they hold every image and manifest, the trust store and
//! the server key, and only the daemon's user (and root, for backups) has any business in
//! them. Files take the mode their writer asks for, 0600 for everything but the server
//! certificate.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Prefix of every temporary file; nothing else in a managed directory starts with it.
pub const TEMP_PREFIX: &str = ".tmp-";

pub fn temp_path(dir: &Path) -> PathBuf {
    dir.join(format!("{TEMP_PREFIX}{}", uuid::Uuid::new_v4().simple()))
}

pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Creates `dir` and its missing parents (0700) and makes each new one durable in its
/// parent. Existing directories keep their mode.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        create_dirs(parent)?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e),
    }
    if let Some(parent) = dir.parent() {
        fsync_dir(parent)?;
    }
    Ok(())
}

/// The permission bits of `dir` when other users may list, enter or write it; `None` when
/// they may not, or when it does not exist.
pub fn open_to_others(dir: &Path) -> Option<u32> {
    let mode = fs::metadata(dir).ok()?.permissions().mode() & 0o777;
    (mode & 0o007 != 0).then_some(mode)
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

    #[test]
    fn new_directories_are_private_and_existing_ones_are_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        create_dirs(&dir.path().join("a/b")).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.path().join("a")), 0o700);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
        assert_eq!(mode(dir.path()), 0o755);
        assert_eq!(open_to_others(dir.path()), Some(0o755));
        assert_eq!(open_to_others(&dir.path().join("a")), None);
        assert_eq!(open_to_others(&dir.path().join("missing")), None);
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o750)).unwrap();
        assert_eq!(open_to_others(dir.path()), None);
    }
}
