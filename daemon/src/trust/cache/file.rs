//! The trust store as `trust.json` in the state directory: every lookup stats the file
//! and re-reads it only when it changed, so a change made by the CLI applies from the very
//! next request without a restart, and an unchanged store costs one `statx` and a map
//! lookup.

use std::fs::{self, File, Metadata};
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

use super::View;
use crate::trust::file::parse;
use crate::trust::store::TRUST_FILE;
use crate::trust::TrustError;

pub(super) struct FileSource {
    path: PathBuf,
    state: Mutex<State>,
}

/// Identity of one version of the file. Writers replace the file by rename, so each version
/// has its own inode; size and times catch editors that rewrite it in place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
}

impl Stamp {
    fn of(meta: &Metadata) -> Stamp {
        Stamp {
            dev: meta.dev(),
            ino: meta.ino(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
        }
    }
}

enum Source {
    Unloaded,
    Missing,
    Loaded {
        stamp: Stamp,
        // Kept open so the inode cannot be freed and handed to a later version of the file:
        // with a recycled inode, two writes within one mtime tick could share a stamp.
        _pin: File,
    },
}

struct State {
    source: Source,
    view: Arc<View>,
    /// The version that failed to load, so it is neither re-read nor reported again on every
    /// request.
    failed: Option<Stamp>,
    stat_failure_reported: bool,
}

impl FileSource {
    pub(super) fn new(state_dir: &Path) -> FileSource {
        FileSource {
            path: state_dir.join(TRUST_FILE),
            state: Mutex::new(State {
                source: Source::Unloaded,
                view: Arc::default(),
                failed: None,
                stat_failure_reported: false,
            }),
        }
    }

    pub(super) fn view(&self) -> Arc<View> {
        self.current(false).0
    }

    /// Re-reads the store now and reports why it cannot be used, for a daemon that wants to
    /// refuse to start on a damaged store. The previous view stays in place on error.
    pub(super) fn refresh(&self) -> Result<(), TrustError> {
        match self.current(true) {
            (_, Some(err)) => Err(err),
            (_, None) => Ok(()),
        }
    }

    fn current(&self, force: bool) -> (Arc<View>, Option<TrustError>) {
        let stat = fs::metadata(&self.path);
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let stamp = match stat {
            Ok(meta) => {
                state.stat_failure_reported = false;
                Some(Stamp::of(&meta))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(error) => {
                let err = TrustError::Io {
                    action: "read",
                    path: self.path.clone(),
                    error,
                };
                if !state.stat_failure_reported {
                    state.stat_failure_reported = true;
                    tracing::warn!("{err}; keeping the trust list loaded before");
                }
                return (Arc::clone(&state.view), Some(err));
            }
        };

        let unchanged = match (&state.source, stamp) {
            (Source::Missing, None) => true,
            (Source::Loaded { stamp: loaded, .. }, Some(now)) => *loaded == now,
            _ => false,
        };
        if !force && (unchanged || (stamp.is_some() && stamp == state.failed)) {
            return (Arc::clone(&state.view), None);
        }

        match load(&self.path) {
            Ok(Some((stamp, pin, view))) => {
                state.view = view.loaded(self.path.display());
                state.source = Source::Loaded { stamp, _pin: pin };
                state.failed = None;
                (Arc::clone(&state.view), None)
            }
            Ok(None) => {
                if matches!(state.source, Source::Loaded { .. }) {
                    tracing::warn!(
                        "trust store {} was removed; no certificate is trusted any more",
                        self.path.display()
                    );
                }
                state.view = Arc::default();
                state.source = Source::Missing;
                state.failed = None;
                (Arc::clone(&state.view), None)
            }
            Err((failed, err)) => {
                if failed.is_none() || failed != state.failed {
                    tracing::warn!("{err}; keeping the trust list loaded before");
                }
                state.failed = failed;
                (Arc::clone(&state.view), Some(*err))
            }
        }
    }
}

type Loaded = (Stamp, File, View);

/// Reads one version of the file. The stamp comes from the open descriptor, not the earlier
/// stat, so it describes exactly the bytes that were parsed even if the file was replaced in
/// between. `Ok(None)` means there is no file. The error is boxed: with the stamp beside
/// it, it would otherwise outweigh the whole successful result.
fn load(path: &Path) -> Result<Option<Loaded>, (Option<Stamp>, Box<TrustError>)> {
    let io_err = |action, error| {
        Box::new(TrustError::Io {
            action,
            path: path.to_owned(),
            error,
        })
    };
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err((None, io_err("open", e))),
    };
    let stamp = file
        .metadata()
        .map(|meta| Stamp::of(&meta))
        .map_err(|e| (None, io_err("stat", e)))?;
    let mut bytes = Vec::with_capacity(usize::try_from(stamp.size).unwrap_or(0));
    file.read_to_end(&mut bytes)
        .map_err(|e| (Some(stamp), io_err("read", e)))?;
    let parsed = parse(path, &bytes).map_err(|e| (Some(stamp), Box::new(e)))?;

    let view = View::of(parsed);
    Ok(Some((stamp, file, view)))
}
