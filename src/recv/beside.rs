//! The files recv keeps beside a file target, all named `.<tag>.thinsend-…` (short whatever the
//! target's name): the temporary a new file is received into, the undo journal, the reflink copy of
//! the received state; and the removal of temporaries a killed receive left.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::state::{self, dir_of, tag};
use super::RecvError;
use crate::cleanup::{Action, Guard};
use crate::error::{Error, Result};
use crate::io as sys;

pub(crate) fn journal_path(path: &Path) -> PathBuf {
    dir_of(path).join(format!(".{}.thinsend-journal", tag(path)))
}

pub(crate) fn base_path(path: &Path) -> PathBuf {
    dir_of(path).join(format!(".{}.thinsend-base", tag(path)))
}

pub(crate) fn note(msg: &str) {
    eprintln!("thinsend-native: {msg}");
}

/// Removes temporaries of this target that no live receive holds (a receive killed by SIGKILL or a
/// crash leaves its temporary; a live one keeps it locked).
pub(crate) fn remove_stale_temps(path: &Path) -> Result<()> {
    let dir = dir_of(path);
    let prefix = format!(".{}.thinsend-", tag(path));
    let entries = std::fs::read_dir(&dir).map_err(|e| Error::io(&dir, e))?;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with(&prefix) && name.ends_with(".tmp")) {
            continue;
        }
        let p = dir.join(&name);
        let Ok(f) = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&p) else {
            continue;
        };
        if sys::try_lock(f.as_raw_fd()).unwrap_or(false) {
            let len = f.metadata().map(|m| m.len()).unwrap_or(0);
            std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            note(&format!("{}: removed {} ({len} bytes), left by an interrupted receive", path.display(), p.display()));
        }
    }
    Ok(())
}

/// Creates the temporary a new file is received into: `.<tag>.thinsend-<pid>.tmp` beside it,
/// exclusively, locked (so a later run can tell it from a live receive's), removed on failure.
pub(crate) fn create_temp(path: &Path) -> Result<(File, (PathBuf, Guard))> {
    let name = dir_of(path).join(format!(".{}.thinsend-{}.tmp", tag(path), std::process::id()));
    // Registered before the file exists, so a signal can never leave it behind.
    let guard = Guard::new(Action::RemoveFile { path: name.clone() });
    match state::create_exclusive(&name) {
        Ok(f) => {
            let _ = f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
            Ok((f, (name, guard)))
        }
        Err(e) => {
            guard.disarm();
            Err(RecvError::CannotCreate { target: path.to_path_buf(), dir: dir_of(path), source: e }.into())
        }
    }
}
