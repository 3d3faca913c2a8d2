//! The undo journal of an in-place receive. Before a range of the target is overwritten, unmapped or
//! cut off, its old contents are appended to the journal and made durable (fdatasync); on failure,
//! or in the next run after a crash, the journal is played backwards and the target is exactly what
//! it was. The receive commits by syncing the target and its new state, then removing the journal.
//!
//! Layout (little endian): a header (`TSNDUNDO`, version, flags, the target's length, device, inode
//! and mtime, its old state record, crc32c), then entries: `UNDO`, kind (data or hole), offset,
//! length, crc32c over those and the data, then the data. A torn last entry (a crash while it was
//! appended) is ignored: the target range it was for had not been touched yet.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::RecvError;
use crate::cleanup::Hook;
use crate::error::{Error, Result};
use crate::io as sys;
use crate::ondisk::{on_disk, OnDisk};

use super::playback::play_back;
pub(crate) use super::playback::{punch_or_zero, write_zeros};
use super::state::create_exclusive;

const MAGIC: &[u8; 8] = b"TSNDUNDO";
const VERSION: u32 = 1;
pub(super) const ENTRY_MAGIC: u32 = 0x4f44_4e55; // "UNDO"
pub(super) const ENTRY_LEN: u64 = EntryHead::SIZE as u64;
pub(super) const KIND_DATA: u32 = 0;
pub(super) const KIND_HOLE: u32 = 1;
/// Flag: the target is a regular file (holes are kept as holes, length and mtime restored).
const FLAG_FILE: u32 = 1;
pub(super) const CHUNK: usize = 1 << 20;
const NO_STATE: u32 = u32::MAX;

/// The header before each journal entry; its crc covers `kind`, `off`, `len` and the saved bytes.
pub(super) struct EntryHead {
    pub magic: u32,
    pub kind: u32,
    pub off: u64,
    pub len: u64,
    pub crc: u32,
}
on_disk!(EntryHead, 28, { magic @ 0, kind @ 4, off @ 8, len @ 16, crc @ 24 });

impl EntryHead {
    /// The bytes the entry's crc starts from.
    pub fn crc_seed(head: &[u8; ENTRY_LEN as usize]) -> u32 {
        crc32c::crc32c(&head[4..24])
    }
}

/// Which target a journal belongs to, and what is restored besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ident {
    pub file: bool,
    pub len: u64,
    pub dev: u64,
    pub ino: u64,
    pub mtime_ns: i128,
}

/// What a rollback restored.
#[derive(Debug)]
pub(crate) struct Restored {
    /// The journal was cut before its header was durable: the receive had changed nothing, and the
    /// target's state record stays as it is.
    pub torn: bool,
    pub old_state: Option<Vec<u8>>,
    pub ranges: u64,
    pub bytes: u64,
}

pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    ident: Ident,
    header_len: u64,
    end: u64,
    /// Target ranges already saved (start -> end), never saved twice: the first save holds the
    /// contents before this receive.
    saved: BTreeMap<u64, u64>,
    /// Entries appended since the last sync.
    dirty: bool,
    buf: Vec<u8>,
    /// Plays the journal back if a signal ends the process (see [`Journal::arm`]).
    hook: Option<Hook>,
}

/// After a playback on a signal: restores the target's state record from the one the journal saved.
pub(crate) type AfterPlayback = Box<dyn FnOnce(Option<&[u8]>) -> Result<()> + Send>;

fn header_bytes(ident: &Ident, old_state: Option<&[u8]>) -> Vec<u8> {
    let mut h = Vec::with_capacity(64 + old_state.map_or(0, <[u8]>::len));
    h.extend_from_slice(MAGIC);
    h.extend_from_slice(&VERSION.to_le_bytes());
    h.extend_from_slice(&(if ident.file { FLAG_FILE } else { 0 }).to_le_bytes());
    h.extend_from_slice(&ident.len.to_le_bytes());
    h.extend_from_slice(&ident.dev.to_le_bytes());
    h.extend_from_slice(&ident.ino.to_le_bytes());
    h.extend_from_slice(&ident.mtime_ns.to_le_bytes());
    match old_state {
        Some(s) => {
            h.extend_from_slice(&(s.len() as u32).to_le_bytes());
            h.extend_from_slice(s);
        }
        None => h.extend_from_slice(&NO_STATE.to_le_bytes()),
    }
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    h
}

fn bad(path: &Path, what: impl std::fmt::Display) -> Error {
    RecvError::BadJournal { journal: path.to_path_buf(), what: what.to_string() }.into()
}

type Header = (Ident, Option<Vec<u8>>, u64);

/// Parses a journal's header: the target it belongs to, its old state, and where entries start;
/// `None` for a header cut short or torn (a crash before it was durable, so before any change).
fn parse_header(path: &Path, f: &File) -> Result<Option<Header>> {
    let mut fixed = [0u8; 60];
    let flen = f.metadata().map_err(|e| Error::io(path, e))?.len();
    if flen < 64 {
        return Ok(None);
    }
    f.read_exact_at(&mut fixed, 0).map_err(|e| Error::io(path, e))?;
    let u32_at = |o: usize| u32::from_le_bytes(fixed[o..o + 4].try_into().unwrap_or_default());
    let u64_at = |o: usize| u64::from_le_bytes(fixed[o..o + 8].try_into().unwrap_or_default());
    if fixed[..8].iter().all(|&b| b == 0) {
        return Ok(None);
    }
    if &fixed[..8] != MAGIC || u32_at(8) != VERSION {
        return Err(bad(path, "unknown magic or version"));
    }
    let ident = Ident {
        file: u32_at(12) & FLAG_FILE != 0,
        len: u64_at(16),
        dev: u64_at(24),
        ino: u64_at(32),
        mtime_ns: i128::from_le_bytes(fixed[40..56].try_into().unwrap_or_default()),
    };
    let slen = u32_at(56);
    let state_len = if slen == NO_STATE { 0 } else { u64::from(slen) };
    if 60 + state_len + 4 > flen || state_len > 1 << 20 {
        return Ok(None);
    }
    let mut rest = vec![0u8; state_len as usize + 4];
    f.read_exact_at(&mut rest, 60).map_err(|e| bad(path, e))?;
    let stored = u32::from_le_bytes(rest[state_len as usize..].try_into().unwrap_or_default());
    let mut crc = crc32c::crc32c(&fixed);
    crc = crc32c::crc32c_append(crc, &rest[..state_len as usize]);
    if crc != stored {
        return Ok(None);
    }
    rest.truncate(state_len as usize);
    let state = (slen != NO_STATE).then_some(rest);
    Ok(Some((ident, state, 60 + state_len + 4)))
}

impl Journal {
    /// Creates the journal for a target (exclusively, never through a symlink), locked for this
    /// process, its header durable before this returns.
    pub fn create(path: &Path, ident: Ident, old_state: Option<&[u8]>) -> Result<Journal> {
        let file = create_exclusive(path).map_err(|e| Error::io(path, e))?;
        let locked = sys::try_lock(file.as_raw_fd()).map_err(|e| Error::io(path, e))?;
        let h = header_bytes(&ident, old_state);
        let r = (|| {
            if !locked {
                return Err(io::Error::other("locked by another process"));
            }
            file.write_all_at(&h, 0)?;
            file.sync_all()?;
            sys::sync_dir_of(path)
        })();
        if let Err(e) = r {
            let _ = std::fs::remove_file(path);
            return Err(Error::io(path, e));
        }
        let header_len = h.len() as u64;
        Ok(Journal {
            file,
            path: path.to_path_buf(),
            ident,
            header_len,
            end: header_len,
            saved: BTreeMap::new(),
            dirty: false,
            buf: Vec::new(),
            hook: None,
        })
    }

    /// Reopens the journal a resumable receive kept, to continue it: its valid entries stay (and
    /// count as saved, so nothing is saved twice), a torn tail is cut off. Refuses a journal another
    /// receive holds or that belongs to another file.
    pub fn reopen(path: &Path, target: &Ident, what: &Path) -> Result<Journal> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        if !sys::try_lock(file.as_raw_fd()).map_err(|e| Error::io(path, e))? {
            return Err(RecvError::JournalHeld { target: what.to_path_buf(), journal: path.to_path_buf() }.into());
        }
        let Some((ident, _, start)) = parse_header(path, &file)? else {
            return Err(bad(path, "its header does not read back"));
        };
        if ident.file != target.file || ident.dev != target.dev || ident.ino != target.ino {
            let (target, journal) = (what.to_path_buf(), path.to_path_buf());
            return Err(RecvError::ForeignJournal { target, journal, dev: ident.dev, ino: ident.ino }.into());
        }
        let entries = super::playback::scan(path, &file, start)?;
        let end = entries.last().map_or(start, |&(k, _, len, pos)| pos + if k == KIND_DATA { len } else { 0 });
        file.set_len(end).and_then(|_| file.sync_all()).map_err(|e| Error::io(path, e))?;
        let mut j = Journal {
            file,
            path: path.to_path_buf(),
            ident,
            header_len: start,
            end,
            saved: BTreeMap::new(),
            dirty: false,
            buf: Vec::new(),
            hook: None,
        };
        for (_, off, len, _) in entries {
            j.mark_saved(off, off.saturating_add(len));
        }
        Ok(j)
    }

    /// Makes a signal that ends the process play this journal back into `target` (then restore its
    /// state record with `state`) before it exits, unless it committed or rolled back first. The
    /// caller changes `target` only under [`crate::cleanup::writing`].
    pub fn arm(&mut self, target: &File, state: AfterPlayback) -> Result<()> {
        let jf = self.file.try_clone().map_err(|e| Error::io(&self.path, e))?;
        let target = target.try_clone().map_err(|e| Error::io(&self.path, e))?;
        let (path, start, ident) = (self.path.clone(), self.header_len, self.ident);
        self.hook = Some(Hook::new(move || {
            let undo = || -> Result<()> {
                let old_state = parse_header(&path, &jf)?.and_then(|(_, s, _)| s);
                play_back(&path, &jf, start, &ident, &target)?;
                state(old_state.as_deref())?;
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                let _ = sys::sync_dir_of(&path);
                Ok(())
            };
            undo().map_err(|e| e.to_string())
        }));
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The parts of `[off, end)` not saved yet.
    fn unsaved(&self, off: u64, end: u64) -> Vec<(u64, u64)> {
        let mut out = Vec::new();
        let mut at = off;
        let first = self.saved.range(..=off).next_back().map(|(s, e)| (*s, *e));
        let iter = first.into_iter().chain(self.saved.range(off + 1..end).map(|(s, e)| (*s, *e)));
        for (s, e) in iter {
            if e <= at {
                continue;
            }
            if s > at {
                out.push((at, s.min(end)));
            }
            at = at.max(e);
            if at >= end {
                break;
            }
        }
        if at < end {
            out.push((at, end));
        }
        out
    }

    fn mark_saved(&mut self, mut s: u64, mut e: u64) {
        if let Some((&ps, &pe)) = self.saved.range(..=s).next_back() {
            if pe >= s {
                s = ps;
                e = e.max(pe);
                self.saved.remove(&ps);
            }
        }
        while let Some((&ns, &ne)) = self.saved.range(s..=e).next() {
            e = e.max(ne);
            self.saved.remove(&ns);
        }
        self.saved.insert(s, e);
    }

    /// Saves the current contents of `[off, off+len)` of `target` (the part inside its original
    /// length, not saved before), durably, before the caller changes that range.
    pub fn save(&mut self, target: &File, off: u64, len: u64) -> io::Result<()> {
        self.stage(target, off, len)?;
        self.sync()
    }

    /// [`Journal::save`] without the sync: durable only after the next [`Journal::sync`], and the
    /// range must not change before it.
    pub fn stage(&mut self, target: &File, off: u64, len: u64) -> io::Result<()> {
        let end = off.saturating_add(len).min(self.ident.len);
        if end <= off {
            return Ok(());
        }
        for (s, e) in self.unsaved(off, end) {
            if self.ident.file {
                self.save_sparse(target, s, e)?;
            } else {
                self.append(target, KIND_DATA, s, e - s)?;
            }
            self.mark_saved(s, e);
            self.dirty = true;
        }
        Ok(())
    }

    pub fn sync(&mut self) -> io::Result<()> {
        if self.dirty {
            self.file.sync_data()?;
            self.dirty = false;
        }
        Ok(())
    }

    /// File targets: data extents as data, holes as hole entries (nothing to copy).
    fn save_sparse(&mut self, target: &File, s: u64, e: u64) -> io::Result<()> {
        let fd = target.as_raw_fd();
        let mut at = s;
        while at < e {
            let data = match sys::seek_data_hole(fd, at, true) {
                Ok(Some(d)) => d.min(e),
                Ok(None) => e,
                Err(_) => at,
            };
            if data > at {
                self.append(target, KIND_HOLE, at, data - at)?;
            }
            if data >= e {
                break;
            }
            let hole = match sys::seek_data_hole(fd, data, false) {
                Ok(Some(h)) => h.min(e),
                _ => e,
            };
            self.append(target, KIND_DATA, data, hole - data)?;
            at = hole;
        }
        Ok(())
    }

    fn append(&mut self, target: &File, kind: u32, off: u64, len: u64) -> io::Result<()> {
        let mut entry = EntryHead { magic: ENTRY_MAGIC, kind, off, len, crc: 0 };
        let mut head = [0u8; ENTRY_LEN as usize];
        entry.pack(&mut head);
        let mut crc = EntryHead::crc_seed(&head);
        let at = self.end;
        if kind == KIND_DATA {
            if self.buf.is_empty() {
                self.buf = vec![0u8; CHUNK];
            }
            let mut done = 0u64;
            while done < len {
                let n = (len - done).min(CHUNK as u64) as usize;
                target.read_exact_at(&mut self.buf[..n], off + done)?;
                crc = crc32c::crc32c_append(crc, &self.buf[..n]);
                self.file.write_all_at(&self.buf[..n], at + ENTRY_LEN + done)?;
                done += n as u64;
            }
        }
        entry.crc = crc;
        entry.pack(&mut head);
        self.file.write_all_at(&head, at)?;
        self.end = at + ENTRY_LEN + if kind == KIND_DATA { len } else { 0 };
        Ok(())
    }

    /// The receive is committed (target and state durable): the journal goes.
    pub fn commit(self) -> Result<()> {
        std::fs::remove_file(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let _ = sys::sync_dir_of(&self.path);
        Ok(())
    }

    /// Undoes this receive's changes to `target`; the journal is removed once the target is back.
    pub fn rollback(self, target: &File) -> Result<Restored> {
        let old_state = match parse_header(&self.path, &self.file)? {
            Some((_, s, _)) => s,
            None => return Err(bad(&self.path, "its header no longer reads back")),
        };
        let (ranges, bytes) = play_back(&self.path, &self.file, self.header_len, &self.ident, target)?;
        self.commit()?;
        Ok(Restored { torn: false, old_state, ranges, bytes })
    }
}

/// A journal left at `path` by a receive that did not finish: `None` if there is none. Refuses one
/// that another live receive holds, or that belongs to another file than `target`.
pub(crate) fn recover(path: &Path, target: &File, ident: &Ident, what: &Path) -> Result<Option<Restored>> {
    let f = match OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    if !sys::try_lock(f.as_raw_fd()).map_err(|e| Error::io(path, e))? {
        return Err(RecvError::JournalHeld { target: what.to_path_buf(), journal: path.to_path_buf() }.into());
    }
    let Some((j, old_state, start)) = parse_header(path, &f)? else {
        // Cut before its header was durable: the target was never touched.
        std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
        return Ok(Some(Restored { torn: true, old_state: None, ranges: 0, bytes: 0 }));
    };
    if j.file != ident.file || j.dev != ident.dev || j.ino != ident.ino {
        let (target, journal) = (what.to_path_buf(), path.to_path_buf());
        return Err(RecvError::ForeignJournal { target, journal, dev: j.dev, ino: j.ino }.into());
    }
    let (ranges, bytes) = play_back(path, &f, start, &j, target)?;
    std::fs::remove_file(path).map_err(|e| Error::io(path, e))?;
    let _ = sys::sync_dir_of(path);
    Ok(Some(Restored { torn: false, old_state, ranges, bytes }))
}

#[cfg(test)]
#[path = "journal_tests.rs"]
mod tests;
