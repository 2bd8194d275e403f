//! Version records, one file each under `apps/<name>/versions/`, and deleting a whole
//! application with one rename.

use super::{blocking, FsStorage};
use crate::fsutil::{self, Replace};
use crate::model::VersionRecord;
use crate::storage::{LoadedVersions, Result, StorageError};
use std::fs;
use std::io;
use std::path::Path;

pub(super) async fn put(storage: &FsStorage, record: &VersionRecord) -> Result<()> {
    let path = storage
        .versions_dir(&record.application)
        .join(format!("{}.json", record.version));
    let data = serde_json::to_vec_pretty(record).expect("serialisable");
    let what = format!("version {} of {}", record.version, record.application);
    blocking(
        move || match fsutil::write_atomic(&path, &data, 0o600, Replace::Never) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                Err(StorageError::AlreadyExists(what))
            }
            Err(e) => Err(StorageError::io(format!("writing {what}"), e)),
        },
    )
    .await
}

pub(super) async fn delete_version(
    storage: &FsStorage,
    application: &str,
    version: u32,
) -> Result<()> {
    let dir = storage.versions_dir(application);
    let app_dir = storage.apps_dir().join(application);
    let what = format!("version {version} of {application}");
    blocking(move || {
        let err = |e| StorageError::io(format!("deleting {what}"), e);
        match fs::remove_file(dir.join(format!("{version}.json"))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound(what))
            }
            Err(e) => return Err(err(e)),
        }
        fsutil::fsync_dir(&dir).map_err(err)?;
        // The last version gone, the application goes too; a concurrent publish
        // recreates the directories it needs.
        if fs::remove_dir(&dir).is_ok() && fs::remove_dir(&app_dir).is_ok() {
            fsutil::fsync_dir(app_dir.parent().unwrap()).map_err(err)?;
        }
        Ok(())
    })
    .await
}

pub(super) async fn delete_application(storage: &FsStorage, application: &str) -> Result<()> {
    let apps = storage.apps_dir();
    let dir = apps.join(application);
    let what = format!("application {application}");
    let doomed = apps.join(format!(
        ".deleting-{application}-{}",
        uuid::Uuid::new_v4().simple()
    ));
    blocking(move || {
        let err = |e| StorageError::io(format!("deleting {what}"), e);
        // One rename makes every version disappear at once; removing the files can
        // then take as long as it takes, and start-up finishes it after a crash.
        match fs::rename(&dir, &doomed) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StorageError::NotFound(what))
            }
            Err(e) => return Err(err(e)),
        }
        fsutil::fsync_dir(&apps).map_err(err)?;
        fs::remove_dir_all(&doomed).map_err(err)
    })
    .await
}

fn read_err(what: &Path, e: io::Error) -> StorageError {
    StorageError::io(format!("reading {}", what.display()), e)
}

/// Every version record under `apps`, and where the ones that cannot be read are.
pub(super) fn load(apps: &Path) -> Result<LoadedVersions> {
    let mut loaded = LoadedVersions::default();
    for app in fs::read_dir(apps).map_err(|e| read_err(apps, e))? {
        let app = app.map_err(|e| read_err(apps, e))?;
        let name = app.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || !app.path().is_dir() {
            continue;
        }
        load_application(&name, &app.path().join("versions"), &mut loaded)?;
    }
    Ok(loaded)
}

/// Adds the records of application `name`, kept in `versions`, to `loaded`.
fn load_application(name: &str, versions: &Path, loaded: &mut LoadedVersions) -> Result<()> {
    let entries = match fs::read_dir(versions) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(read_err(versions, e)),
    };
    for entry in entries {
        let path = entry.map_err(|e| read_err(versions, e))?.path();
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let Some(number) = file
            .strip_suffix(".json")
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let bytes = fs::read(&path).map_err(|e| read_err(&path, e))?;
        match serde_json::from_slice::<VersionRecord>(&bytes) {
            Ok(record) if record.application == name && record.version == number => {
                loaded.records.push(record)
            }
            Ok(_) => {
                tracing::error!(path = %path.display(), "version record does not match its location; skipped");
                loaded.unreadable.push(path.display().to_string());
            }
            // Atomic writes make this a sign of outside damage: keep the file for
            // inspection rather than delete evidence.
            Err(e) => {
                tracing::error!(path = %path.display(), error = %e, "unreadable version record; skipped");
                loaded.unreadable.push(path.display().to_string());
            }
        }
    }
    Ok(())
}
