//! A regular-file target. A new file is received into a short-named temporary in its directory
//! (created exclusively, locked, removed on failure or signal), renamed into place without replacing
//! anything. An existing file is written in place under the undo journal, so its owner, mode, hard
//! links and xattrs stay. Where the filesystem has reflink, a clone of the received state is kept
//! beside it, for `--rollback` of a target changed since.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

#[path = "file_resume.rs"]
mod resume;

pub(crate) use resume::abort;

use super::beside::{base_path, journal_path, note, remove_stale_temps};
use super::journal::{self, punch_or_zero, Ident};
use super::state::{self, check_base, dir_of, raw_file_state, sidecar, state_for, tag, Fingerprint, State, XATTR};
use super::target::{Slots, Target};
use super::undo::{outcome_note, Outcome, Undo};
use super::RecvError;
use super::{check_range, volume_size, Apply, Options};
use crate::cleanup::{writing, Guard};
use crate::error::{Error, Result};
use crate::io as sys;
use crate::progress::Progress;
use crate::stream::native::Mode;
use crate::stream::Start;

pub(crate) struct FileSink<'o> {
    opts: &'o Options,
    path: PathBuf,
    file: File,
    /// The temporary a new file is received into, with the guard removing it (none for the partial
    /// file of a resumable receive, which an interruption keeps).
    temp: Option<(PathBuf, Option<Guard>)>,
    /// A resumable receive (`-s`), or one onto a kept partial state.
    partial: Option<resume::Partial>,
    slots: Slots,
    /// The volume size: the file's length once received.
    limit: u64,
    /// Full streams into an existing file: everything below this offset is the stream's.
    cursor: Option<u64>,
    committed: bool,
    /// `--rollback` returned the target to its received state before the journal began.
    reverted: bool,
}

pub(crate) fn ident(f: &File, path: &Path) -> Result<Ident> {
    let m = f.metadata().map_err(|e| Error::io(path, e))?;
    let fp = Fingerprint::of(&m, false);
    Ok(Ident { file: true, len: fp.size, dev: fp.dev, ino: fp.ino, mtime_ns: fp.mtime_ns })
}

/// Puts back the state record a journal saved (or removes the one this receive wrote).
pub(crate) fn restore_state(path: &Path, f: &File, old: Option<&[u8]>) -> Result<()> {
    let sc = sidecar(path);
    match old {
        Some(b) => match sys::set_xattr(f.as_raw_fd(), XATTR, b) {
            Ok(()) => state::remove_if_exists(&sc),
            Err(e) if sys::is_unsupported(&e) => state::write_atomically(&sc, &with_current_ctime(f, b)),
            Err(e) => Err(Error::io(path, e)),
        },
        None => {
            match sys::remove_xattr(f.as_raw_fd(), XATTR) {
                Err(e) if !sys::is_unsupported(&e) => return Err(Error::io(path, e)),
                _ => {}
            }
            state::remove_if_exists(&sc)
        }
    }
}

/// A sidecar state restored after a rollback: the contents are the received ones again, but writing
/// them back moved the file's ctime, so the recorded ctime becomes the current one.
fn with_current_ctime(f: &File, old: &[u8]) -> Vec<u8> {
    let (Ok(mut st), Ok(m)) = (serde_json::from_slice::<State>(old), f.metadata()) else {
        return old.to_vec();
    };
    match &mut st.file {
        Some(fp) if fp.ctime_ns.is_some() => fp.ctime_ns = Fingerprint::of(&m, true).ctime_ns,
        _ => return old.to_vec(),
    }
    state::to_json(&st).unwrap_or_else(|_| old.to_vec())
}

impl<'o> FileSink<'o> {
    /// Checks the target before any stream byte is read: an existing file is opened for writing
    /// (and a journal left by a crashed receive rolled back); for a new one, the temporary created.
    pub fn open(path: &Path, opts: &'o Options, exists: bool) -> Result<Self> {
        let dir = dir_of(path);
        match std::fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(RecvError::NotADirectory { target: path.to_path_buf(), dir }.into()),
            Err(source) => return Err(RecvError::Directory { target: path.to_path_buf(), dir, source }.into()),
        }
        remove_stale_temps(path)?;
        remove_stale_temps(&sidecar(path))?;
        let (file, temp, partial) = resume::open_target(path, opts, exists)?;
        let kept = partial.as_ref().is_some_and(|p| p.kept());
        let sink = FileSink {
            opts,
            path: path.to_path_buf(),
            file,
            temp,
            partial,
            slots: Slots::new(Progress::new(opts.progress, "received", None)),
            limit: 0,
            cursor: None,
            committed: false,
            reverted: false,
        };
        if exists && !kept {
            sink.recover()?;
        }
        Ok(sink)
    }

    fn recover(&self) -> Result<()> {
        let jp = journal_path(&self.path);
        let id = ident(&self.file, &self.path)?;
        if let Some(r) = journal::recover(&jp, &self.file, &id, &self.path)? {
            if !r.torn {
                restore_state(&self.path, &self.file, r.old_state.as_deref())?;
            }
            note(&format!(
                "{}: rolled back an interrupted receive ({} ranges, {} bytes restored from {})",
                self.path.display(),
                r.ranges,
                r.bytes,
                jp.display()
            ));
        }
        Ok(())
    }

    fn len(&self) -> Result<u64> {
        Ok(self.file.metadata().map_err(|e| Error::io(&self.path, e))?.len())
    }

    /// Refuses a target changed since the last receive, or with `--rollback` returns it to the
    /// received state from the reflink copy kept beside it.
    fn check_unchanged(&mut self, fp: &Fingerprint, st: Option<&State>) -> Result<()> {
        let m = self.file.metadata().map_err(|e| Error::io(&self.path, e))?;
        let Some(what) = fp.changes(&Fingerprint::of(&m, fp.ctime_ns.is_some())) else {
            return Ok(());
        };
        let p = self.path.display().to_string();
        if !self.opts.rollback {
            return Err(RecvError::Modified { target: self.path.clone(), what }.into());
        }
        let base = base_path(&self.path);
        let b = match OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&base) {
            Ok(b) if b.metadata().map(|m| m.len() == fp.size).unwrap_or(false) => b,
            _ => return Err(RecvError::NoReceivedCopy { target: self.path.clone(), what }.into()),
        };
        sys::reflink(b.as_raw_fd(), self.file.as_raw_fd()).map_err(|e| Error::io(&self.path, e))?;
        self.file.set_len(fp.size).map_err(|e| Error::io(&self.path, e))?;
        self.file.sync_all().map_err(|e| Error::io(&self.path, e))?;
        // The target is the received state again: record it so, in case what follows fails.
        if let Some(s) = st {
            self.record_state(s.clone())?;
        }
        self.reverted = true;
        note(&format!("{p}: rolled back to the last received state ({what} since)"));
        Ok(())
    }

    fn open_journal(&mut self) -> Result<()> {
        let jp = journal_path(&self.path);
        let old = raw_file_state(&self.path, &self.file)?.map(|(_, b)| b);
        let id = ident(&self.file, &self.path)?;
        let (path, f) = (self.path.clone(), self.file.try_clone().map_err(|e| self.err(e))?);
        let restore = std::sync::Arc::new(move |old: Option<&[u8]>| restore_state(&path, &f, old));
        let saving = "saving its old contents to";
        let arm = self.partial.is_none();
        let j = Undo::begin(&jp, id, old.as_deref(), &self.file, restore, saving, arm).map_err(|e| match e {
            Error::Io { source, .. } if source.kind() == io::ErrorKind::AlreadyExists => {
                RecvError::Busy { target: self.path.clone(), journal: jp.clone() }.into()
            }
            e => e,
        })?;
        self.slots.journal = Some(j);
        Ok(())
    }

    /// Gives the file the volume's length (a shrink saves the cut-off tail in the journal first).
    fn resize(&mut self, len: u64) -> Result<()> {
        if len == self.limit {
            return Ok(());
        }
        if let Some(j) = &mut self.slots.journal {
            j.save(&self.file, &self.path, self.limit, len.saturating_sub(self.limit))?;
        }
        self.file.set_len(self.limit).map_err(|e| self.err(e))
    }

    fn err(&self, e: io::Error) -> Error {
        match &self.temp {
            Some((t, _)) => RecvError::Temporary { target: self.path.clone(), temp: t.clone(), source: e }.into(),
            None => Error::io(&self.path, e),
        }
    }

    /// DATA: written now, or (under the journal) held for the next flush.
    fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        check_range(&self.path, offset, bytes.len() as u64, self.limit)?;
        self.fill_gap(offset)?;
        match &mut self.slots.journal {
            Some(j) => j.write(&self.file, &self.path, offset, bytes),
            None => self.file.write_all_at(bytes, offset).map_err(|e| self.err(e)),
        }
    }

    /// Journals and writes the held DATA.
    fn flush(&mut self) -> Result<()> {
        match &mut self.slots.journal {
            Some(j) => j.flush(&self.file, &self.path),
            None => Ok(()),
        }
    }

    /// Saves `[offset, offset+len)` in the journal before it changes.
    fn before_change(&mut self, offset: u64, len: u64) -> Result<()> {
        self.flush()?;
        check_range(&self.path, offset, len, self.limit)?;
        self.fill_gap(offset)?;
        match &mut self.slots.journal {
            Some(j) => j.save(&self.file, &self.path, offset, len),
            None => Ok(()),
        }
    }

    /// Full streams into an existing file: what lies between records reads as zeros.
    fn fill_gap(&mut self, upto: u64) -> Result<()> {
        let Some(c) = self.cursor else {
            return Ok(());
        };
        self.cursor = Some(c.max(upto));
        if upto > c {
            if let Some(j) = &mut self.slots.journal {
                j.save(&self.file, &self.path, c, upto - c)?;
            }
            punch_or_zero(&self.file, c, upto - c).map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    fn advance(&mut self, end: u64) {
        if let Some(c) = self.cursor {
            self.cursor = Some(c.max(end));
        }
    }

    /// Writes the state record: the file's xattr, or a sidecar where it has no user xattrs.
    fn record_state(&mut self, mut st: State) -> Result<()> {
        let m = self.file.metadata().map_err(|e| self.err(e))?;
        st.file = Some(Fingerprint::of(&m, false));
        let json = state::to_json(&st)?;
        let sc = sidecar(&self.path);
        match sys::set_xattr(self.file.as_raw_fd(), XATTR, &json) {
            Ok(()) => state::remove_if_exists(&sc),
            Err(e) if sys::is_unsupported(&e) => {
                st.file = Some(Fingerprint::of(&m, true));
                state::write_atomically(&sc, &state::to_json(&st)?)
            }
            Err(e) => Err(self.err(e)),
        }
    }

    /// Keeps a reflink clone of the received state for `--rollback`; where the filesystem has no
    /// reflink, none (and an older one goes: it no longer matches).
    fn keep_base(&self) {
        let base = base_path(&self.path);
        let tmp = dir_of(&self.path).join(format!(".{}.thinsend-{}.base.tmp", tag(&self.path), std::process::id()));
        let cloned = state::create_exclusive(&tmp)
            .and_then(|t| sys::reflink(self.file.as_raw_fd(), t.as_raw_fd()))
            .and_then(|_| std::fs::rename(&tmp, &base));
        if cloned.is_err() {
            let _ = std::fs::remove_file(&tmp);
            let _ = std::fs::remove_file(&base);
        }
    }
}

impl Target for FileSink<'_> {
    fn slots(&mut self) -> &mut Slots {
        &mut self.slots
    }

    fn begin_stream(&mut self, start: &Start) -> Result<()> {
        if self.resume_begin(start)? {
            return Ok(());
        }
        let existing = self.temp.is_none();
        let len = self.len()?;
        self.limit = volume_size(start, self.opts, &self.path, existing.then_some(len))?;
        match start.header.as_ref().map(|h| (h.mode, h)) {
            Some((Mode::Full, _)) if existing && len > 0 && !self.opts.force => {
                return Err(RecvError::FullOverExisting { target: self.path.clone(), len }.into())
            }
            Some((Mode::Incremental, _)) if !existing => {
                return Err(RecvError::NoBase { target: self.path.clone() }.into())
            }
            Some((Mode::Incremental, h)) if !self.opts.force => {
                let st = state::read_state(&self.path, None)?;
                check_base(&self.path, h, st.as_ref())?;
                if let Some(fp) = st.as_ref().and_then(|s| s.file.clone()) {
                    self.check_unchanged(&fp, st.as_ref())?;
                }
            }
            Some((Mode::Full, _)) if existing => self.cursor = Some(0),
            _ => {}
        }
        if existing {
            self.open_journal()?;
        }
        let len = self.len()?;
        self.resize(len)?;
        self.first_checkpoint(start)
    }

    fn put(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let r = self.write(offset, bytes);
        self.advance(offset + bytes.len() as u64);
        r?;
        self.applied(offset + bytes.len() as u64, bytes.len() as u64)
    }

    fn splice_into(&mut self, offset: u64, len: u64) -> Result<RawFd> {
        let r = self.before_change(offset, len).map(|_| self.file.as_raw_fd());
        self.advance(offset.saturating_add(len));
        r
    }

    fn zero(&mut self, offset: u64, len: u64) -> Result<()> {
        let r = self
            .before_change(offset, len)
            .and_then(|_| punch_or_zero(&self.file, offset, len).map_err(|e| self.err(e)));
        self.advance(offset.saturating_add(len));
        r?;
        self.applied(offset.saturating_add(len), len)
    }

    fn complete(&mut self) -> Result<()> {
        let Some(start) = self.slots.start.clone() else {
            return Ok(()); // empty input accepted with --allow-empty: nothing to apply
        };
        self.flush()?;
        self.fill_gap(self.limit)?;
        self.file.sync_all().map_err(|e| self.err(e))?;
        let start = self.original_start().unwrap_or(start);
        self.record_state(state_for(&start, true))?;
        self.file.sync_all().map_err(|e| self.err(e))?;
        if let Some((tmp, _)) = &self.temp {
            if let Err(e) = sys::rename_noreplace(tmp, &self.path) {
                let _ = state::remove_if_exists(&sidecar(&self.path));
                return Err(if e.raw_os_error() == Some(libc::EEXIST) {
                    RecvError::Appeared { target: self.path.clone() }.into()
                } else {
                    Error::io(&self.path, e)
                });
            }
            let _ = sys::sync_dir_of(&self.path);
            if let Some((_, Some(g))) = self.temp.take() {
                g.disarm();
            }
        }
        if let Some(j) = self.slots.journal.take() {
            j.commit()?;
        }
        self.committed = true;
        self.resume_done()?;
        self.keep_base();
        Ok(())
    }
}

impl Apply for FileSink<'_> {
    fn abort(&mut self) -> String {
        let _w = writing();
        if let Some(kept) = self.keep_partial() {
            return kept;
        }
        let p = self.path.display();
        if let Some((t, g)) = self.temp.take() {
            let Some(g) = g else {
                return format!("{p} not created");
            };
            return match g.run() {
                Ok(()) => format!("{p} not created"),
                Err(e) => format!("{p} not created (its temporary {} could not be removed: {e})", t.display()),
            };
        }
        let Some(j) = self.slots.journal.take() else {
            return match self.reverted {
                true => {
                    format!("{p} holds its last received state (--rollback restored it; the stream was not applied)")
                }
                false => format!("{p} left unchanged"),
            };
        };
        let jp = j.path().to_path_buf();
        match j.rollback(&self.file) {
            Outcome::Restored if self.reverted => {
                format!("{p} holds its last received state (--rollback restored it; the stream was not applied)")
            }
            o => outcome_note(o, &self.path, &jp, "state record"),
        }
    }

    fn progress(&mut self) -> &mut Progress {
        &mut self.slots.progress
    }

    fn target_error(&mut self) -> Option<String> {
        self.slots.error.take()
    }
}
