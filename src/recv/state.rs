//! What a target records about the last receive into it ([`State`]): a file's user xattr (or a
//! sidecar file where the filesystem has none), a block device's JSON state file; the checks an
//! incremental stream must pass against it; and the exclusive, short-named files recv creates next
//! to a target.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::RecvError;
use crate::error::{Error, Result};
use crate::io as sys;
use crate::stream::native::{Header, Identity};
use crate::stream::Start;

/// Extended attribute holding a file target's [`State`].
pub const XATTR: &str = "user.thinsend.state";
/// Suffix of the sidecar file used where the filesystem has no user xattrs.
pub const SIDECAR_SUFFIX: &str = ".thinsend";

/// What a target holds, as recorded after each receive.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// False while a block device is being written, and after a failed receive into it.
    pub complete: bool,
    /// `native`, `linbit-1.1` or `linbit-1.0`.
    pub format: String,
    /// The snapshot the target now equals (native streams only).
    pub source: Option<Identity>,
    pub stream_id: Option<String>,
    pub volume_size: Option<u64>,
    pub received_at: u64,
    /// A file target as it was left by the receive: a later change to it is detected.
    pub file: Option<Fingerprint>,
}

/// Size, identity and times of a file target right after a receive.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
    pub mtime_ns: i128,
    /// Only where the state lives outside the file (a sidecar): writing the state into the file's own
    /// xattr changes its ctime, so there it cannot be recorded.
    pub ctime_ns: Option<i128>,
}

impl Fingerprint {
    pub fn of(m: &std::fs::Metadata, with_ctime: bool) -> Fingerprint {
        Fingerprint {
            size: m.len(),
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: with_ctime.then(|| i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec())),
        }
    }

    /// What differs in `now` from this recorded fingerprint, in words; `None` if nothing.
    pub fn changes(&self, now: &Fingerprint) -> Option<String> {
        let mut what = Vec::new();
        if self.dev != now.dev || self.ino != now.ino {
            what.push(format!(
                "it is another file (inode {} on device {}, was {} on {})",
                now.ino, now.dev, self.ino, self.dev
            ));
        }
        if self.size != now.size {
            what.push(format!("its size is {} bytes, was {}", now.size, self.size));
        }
        if self.mtime_ns != now.mtime_ns {
            what.push("its modification time changed (it was written)".into());
        }
        if let (Some(a), Some(b)) = (self.ctime_ns, now.ctime_ns) {
            if a != b && self.mtime_ns == now.mtime_ns {
                what.push("its change time changed".into());
            }
        }
        (!what.is_empty()).then(|| what.join(", "))
    }
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

pub(crate) fn state_for(start: &Start, complete: bool) -> State {
    State {
        complete,
        format: start.format.name().to_string(),
        source: start.header.as_ref().map(|h| h.source.clone()),
        stream_id: start.header.as_ref().map(|h| h.stream_id.clone()),
        volume_size: start.volume_size(),
        received_at: now(),
        file: None,
    }
}

pub(crate) fn to_json(state: &State) -> Result<Vec<u8>> {
    serde_json::to_vec(state).map_err(|e| RecvError::StateEncode(e).into())
}

fn parse(where_: &Path, b: &[u8]) -> Result<State> {
    serde_json::from_slice(b).map_err(|source| RecvError::StateUnreadable { at: where_.to_path_buf(), source }.into())
}

/// The state recorded for a target path: a file's xattr (or sidecar), a block device's state file.
pub fn read_state(path: &Path, state_file: Option<&Path>) -> Result<Option<State>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    if meta.file_type().is_block_device() {
        let sf = state_file.map(Path::to_path_buf).unwrap_or_else(|| default_state_file(path));
        return match read_plain(&sf)? {
            Some(b) => parse(&sf, &b).map(Some),
            None => Ok(None),
        };
    }
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    match raw_file_state(path, &f)? {
        Some((w, b)) => parse(&w, &b).map(Some),
        None => Ok(None),
    }
}

/// The raw state bytes of a file target and where they came from.
pub(crate) fn raw_file_state(path: &Path, f: &File) -> Result<Option<(PathBuf, Vec<u8>)>> {
    match sys::get_xattr(f.as_raw_fd(), XATTR) {
        Ok(Some(b)) => Ok(Some((path.to_path_buf(), b))),
        Ok(None) => Ok(read_plain(&sidecar(path))?.map(|b| (sidecar(path), b))),
        Err(e) if sys::is_unsupported(&e) => Ok(read_plain(&sidecar(path))?.map(|b| (sidecar(path), b))),
        Err(e) => Err(Error::io(path, e)),
    }
}

/// A file's bytes, `None` if it does not exist. Refuses a symlink or anything but a regular file.
pub(crate) fn read_plain(p: &Path) -> Result<Option<Vec<u8>>> {
    use std::io::Read;
    let mut f = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(p) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Err(RecvError::StateSymlink { at: p.to_path_buf() }.into())
        }
        Err(e) => return Err(Error::io(p, e)),
    };
    let m = f.metadata().map_err(|e| Error::io(p, e))?;
    if !m.is_file() || m.len() > 1 << 20 {
        return Err(RecvError::StateNotAFile { at: p.to_path_buf() }.into());
    }
    let mut b = Vec::new();
    f.read_to_end(&mut b).map_err(|e| Error::io(p, e))?;
    Ok(Some(b))
}

/// A short tag naming `path`'s file name (FNV-1a, 16 hex digits): the names recv creates next to a
/// target start with it, so they stay short whatever the target's name and belong to one target.
pub(crate) fn tag(path: &Path) -> String {
    let name = path.file_name().map(|n| n.as_encoded_bytes().to_vec()).unwrap_or_default();
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

pub(crate) fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// `<target>.thinsend`, or `.<tag>.thinsend` where that name would be too long.
pub fn sidecar(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.len()).unwrap_or(0);
    if name + SIDECAR_SUFFIX.len() <= 255 {
        let mut s = path.as_os_str().to_os_string();
        s.push(SIDECAR_SUFFIX);
        PathBuf::from(s)
    } else {
        dir_of(path).join(format!(".{}{SIDECAR_SUFFIX}", tag(path)))
    }
}

/// `$THINSEND_STATE_DIR/<target path with / as _>.json`.
pub fn default_state_file(target: &Path) -> PathBuf {
    let dir = std::env::var_os("THINSEND_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/thinsend-native"));
    let name: String = target.to_string_lossy().chars().map(|c| if c == '/' { '_' } else { c }).collect();
    dir.join(format!("{name}.json"))
}

/// Creates `path` exclusively: never through a symlink, never over an existing file. The file is
/// locked (`flock`) while this process has it open, so a later run can tell a live receive's file
/// from one a killed receive left.
pub(crate) fn create_exclusive(path: &Path) -> io::Result<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o600)
        .open(path)?;
    sys::try_lock(f.as_raw_fd())?;
    Ok(f)
}

/// Writes `bytes` to `path` atomically: an exclusively created temporary in the same directory,
/// fsync, rename over `path` (which replaces a symlink there rather than following it), directory
/// fsync.
pub(crate) fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let dir = dir_of(path);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    if let Ok(m) = std::fs::symlink_metadata(path) {
        if m.is_dir() {
            return Err(RecvError::StateIsDirectory { at: path.to_path_buf() }.into());
        }
    }
    let tmp = dir.join(format!(".{}.thinsend-{}.state.tmp", tag(path), std::process::id()));
    let r = (|| {
        let f = create_exclusive(&tmp)?;
        f.write_all_at(bytes, 0)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sys::sync_dir_of(path)
    })();
    if let Err(e) = r {
        if e.kind() != io::ErrorKind::AlreadyExists {
            let _ = std::fs::remove_file(&tmp);
        }
        return Err(Error::io(path, e));
    }
    Ok(())
}

/// Removes `path` if it exists.
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io(path, e)),
        _ => Ok(()),
    }
}

/// The identity check of an incremental stream against what the target records.
pub(crate) fn check_base(target: &Path, header: &Header, state: Option<&State>) -> Result<()> {
    let Some(base) = &header.base else {
        return Ok(());
    };
    let refuse =
        |why: String| Err(RecvError::WrongBase { target: target.to_path_buf(), why, base: base.describe() }.into());
    match state {
        None => refuse("the target records no received snapshot".into()),
        Some(s) if !s.complete => refuse("the target is marked incomplete (an earlier receive failed)".into()),
        Some(s) => match &s.source {
            None => refuse(format!("the target was last written by a {} stream, which carries no identity", s.format)),
            Some(src) if !src.same_snapshot(base) => refuse(format!("the target holds {}", src.describe())),
            Some(_) => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp() -> Fingerprint {
        Fingerprint { size: 10, dev: 1, ino: 2, mtime_ns: 5, ctime_ns: Some(6) }
    }

    #[test]
    fn fingerprint_names_each_change() {
        assert_eq!(fp().changes(&fp()), None);
        let mut n = fp();
        n.size = 11;
        n.mtime_ns = 7;
        let c = fp().changes(&n).unwrap();
        assert!(c.contains("size is 11 bytes, was 10") && c.contains("modification time"), "{c}");
        let mut n = fp();
        n.ino = 3;
        assert!(fp().changes(&n).unwrap().contains("another file"));
        let mut n = fp();
        n.ctime_ns = Some(9);
        assert!(fp().changes(&n).unwrap().contains("change time"));
    }

    #[test]
    fn sidecar_and_tag_stay_short_for_long_names() {
        let long = "x".repeat(250);
        let p = Path::new("/d").join(&long);
        let sc = sidecar(&p);
        assert!(sc.file_name().unwrap().len() <= 255);
        assert_eq!(sc.parent(), Some(Path::new("/d")));
        assert_eq!(sidecar(Path::new("/d/a.img")), Path::new("/d/a.img.thinsend"));
        assert_ne!(tag(Path::new("a")), tag(Path::new("b")));
        assert_eq!(tag(Path::new("/x/a")), tag(Path::new("/y/a")));
    }

    #[test]
    fn atomic_write_replaces_a_symlink_instead_of_following_it() {
        let d = tempfile::tempdir().unwrap();
        let outside = d.path().join("outside");
        std::fs::write(&outside, b"keep").unwrap();
        let p = d.path().join("state");
        std::os::unix::fs::symlink(&outside, &p).unwrap();
        write_atomically(&p, b"new").unwrap();
        assert_eq!(std::fs::read(&outside).unwrap(), b"keep");
        assert_eq!(std::fs::read(&p).unwrap(), b"new");
        assert!(!std::fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
    }
}
