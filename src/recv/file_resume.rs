//! A file target's side of resumable receives (docs/STREAM.md §7): opening the kept partial state,
//! accepting only its continuation, checkpointing as records are applied, and keeping the partial
//! state (with a token to continue) when the stream stops.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::super::beside::{create_temp, journal_path, note};
use super::super::resume::{kept_note, partial_path, remove_checkpoint, Checkpoint, Clock, Kind};
use super::super::state::{self, read_state};
use super::super::undo::Undo;
use super::super::{Options, RecvError};
use super::{ident, restore_state, FileSink};
use crate::cleanup::{Guard, Hook};
use crate::error::{Error, Result};
use crate::io as sys;
use crate::stream::native::Mode;
use crate::stream::{Format, Start};

/// What a resumable receive (or one onto a kept partial state) tracks.
pub(crate) struct Partial {
    /// The checkpoint kept before this receive started: only its continuation is accepted.
    found: Option<Checkpoint>,
    /// The last checkpoint stored.
    last: Option<Checkpoint>,
    /// Records were applied to the partial state in this run (a new checkpoint is due on a stop).
    active: bool,
    /// The stream was refused as not this partial state's continuation.
    refused: bool,
    /// Where the records applied so far end.
    offset: u64,
    clock: Clock,
    /// What a signal prints: the last checkpoint's token and command.
    shown: Arc<Mutex<Option<String>>>,
    hook: Option<Hook>,
}

impl Partial {
    fn new(found: Option<Checkpoint>) -> Partial {
        let last = found.clone();
        let shown = Arc::new(Mutex::new(None));
        let offset = found.as_ref().map_or(0, |c| c.offset);
        Partial { found, last, active: false, refused: false, offset, clock: Clock::new(), shown, hook: None }
    }

    /// A partial state was kept before this receive.
    pub fn kept(&self) -> bool {
        self.found.is_some()
    }
}

type Opened = (File, Option<(PathBuf, Option<Guard>)>, Option<Partial>);

fn open_rw(p: &Path) -> io::Result<File> {
    OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(p)
}

fn refuse(target: &Path, what: String) -> Error {
    RecvError::Resume { target: target.to_path_buf(), what }.into()
}

/// A checkpoint whose receive completed (its partial state is gone and the target records its
/// stream): a crash came between the commit and the checkpoint's removal.
fn completed(target: &Path, c: &Checkpoint) -> bool {
    let gone = match c.kind {
        Kind::Temp => !partial_path(target).exists(),
        Kind::Journal => !journal_path(target).exists(),
    };
    let st = read_state(target, None).ok().flatten();
    gone && st.and_then(|s| s.stream_id).as_deref() == Some(c.header.stream_id.as_str())
}

/// Removes a partial file no checkpoint describes and no live receive holds (one killed before
/// its first checkpoint).
fn remove_stale_partial(target: &Path) -> Result<()> {
    let pp = partial_path(target);
    let Ok(f) = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&pp) else {
        return Ok(());
    };
    if sys::try_lock(f.as_raw_fd()).unwrap_or(false) {
        state::remove_if_exists(&pp)?;
        note(&format!(
            "{}: removed {}, left by a receive killed before its first checkpoint",
            target.display(),
            pp.display()
        ));
    }
    Ok(())
}

/// Opens what the stream is written into: the kept partial state, a new partial file (`-s`), the
/// existing target, or a new temporary.
pub(super) fn open_target(path: &Path, opts: &Options, exists: bool) -> Result<Opened> {
    let mut found = Checkpoint::load(path)?;
    if found.as_ref().is_some_and(|c| completed(path, c)) {
        remove_checkpoint(path)?;
        found = None;
    }
    if found.is_none() {
        remove_stale_partial(path)?;
    }
    let open_target = || open_rw(path).map_err(|e| Error::io(path, e));
    match found {
        Some(c) if c.kind == Kind::Temp => {
            let pp = partial_path(path);
            let f = open_rw(&pp).map_err(|e| {
                refuse(
                    path,
                    format!(
                        "its partial file {} cannot be opened ({e}); discard the partial receive with `recv --abort`",
                        pp.display()
                    ),
                )
            })?;
            if !sys::try_lock(f.as_raw_fd()).map_err(|e| Error::io(&pp, e))? {
                return Err(RecvError::Busy { target: path.to_path_buf(), journal: pp }.into());
            }
            Ok((f, Some((pp, None)), Some(Partial::new(Some(c)))))
        }
        Some(_) if !exists => Err(refuse(
            path,
            "it is missing, but a checkpoint of a receive into it in place is kept; discard it with `recv --abort`"
                .into(),
        )),
        Some(c) => Ok((open_target()?, None, Some(Partial::new(Some(c))))),
        None if opts.resumable && exists => Ok((open_target()?, None, Some(Partial::new(None)))),
        None if opts.resumable => {
            let pp = partial_path(path);
            let f = state::create_exclusive(&pp).map_err(|e| match e.kind() {
                io::ErrorKind::AlreadyExists => {
                    RecvError::Busy { target: path.to_path_buf(), journal: pp.clone() }.into()
                }
                _ => Error::from(RecvError::CannotCreate {
                    target: path.to_path_buf(),
                    dir: state::dir_of(path),
                    source: e,
                }),
            })?;
            let _ = f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644));
            Ok((f, Some((pp, None)), Some(Partial::new(None))))
        }
        None if exists => Ok((open_target()?, None, None)),
        None => {
            let (f, (p, g)) = create_temp(path)?;
            Ok((f, Some((p, Some(g))), None))
        }
    }
}

/// `recv --abort`: discards the partial state kept for `path`; the target is as before the
/// interrupted receive (a new file: not created; an existing one: played back from its journal).
pub(crate) fn abort(path: &Path) -> Result<String> {
    let Some(c) = Checkpoint::load(path)? else {
        return Err(refuse(path, "no partial receive is kept for it: nothing to abort".into()));
    };
    let shown = path.display();
    let what = match c.kind {
        Kind::Temp => {
            let pp = partial_path(path);
            if let Ok(f) = OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC).open(&pp) {
                if !sys::try_lock(f.as_raw_fd()).map_err(|e| Error::io(&pp, e))? {
                    return Err(RecvError::Busy { target: path.to_path_buf(), journal: pp }.into());
                }
                state::remove_if_exists(&pp)?;
            }
            format!("{shown}: partial receive discarded (the file was not created)")
        }
        Kind::Journal => {
            let f = open_rw(path).map_err(|e| Error::io(path, e))?;
            let jp = journal_path(path);
            match super::super::journal::recover(&jp, &f, &ident(&f, path)?, path)? {
                Some(r) if !r.torn => {
                    restore_state(path, &f, r.old_state.as_deref())?;
                    format!(
                        "{shown}: partial receive discarded; rolled back ({} ranges, {} bytes restored)",
                        r.ranges, r.bytes
                    )
                }
                _ => format!("{shown}: partial receive discarded (nothing had changed)"),
            }
        }
    };
    remove_checkpoint(path)?;
    Ok(what)
}

impl FileSink<'_> {
    fn kind(&self) -> Kind {
        if self.temp.is_some() {
            Kind::Temp
        } else {
            Kind::Journal
        }
    }

    /// Checks the stream against the kept partial state; `true` if it continues it (then the
    /// target is set up to go on from the checkpoint and the usual checks do not apply).
    pub(super) fn resume_begin(&mut self, start: &Start) -> Result<bool> {
        let r = self.check_resumed(start);
        if let (Err(_), Some(p)) = (&r, &mut self.partial) {
            p.refused = true;
        }
        r
    }

    fn check_resumed(&mut self, start: &Start) -> Result<bool> {
        let h = start.header.as_ref();
        let Some(p) = &self.partial else {
            if let Some(r) = h.and_then(|h| h.resume.as_ref()) {
                return Err(refuse(
                    &self.path,
                    format!(
                        "the stream resumes stream {} at byte {}, but no partial receive is kept here (it \
                         completed or was aborted); nothing was changed",
                        r.of, r.from_offset
                    ),
                ));
            }
            return Ok(false);
        };
        let Some(c) = p.found.clone() else {
            return match h {
                None => Err(refuse(
                    &self.path,
                    format!(
                        "recv -s needs a native stream: a {} stream carries no identity to resume against",
                        start.format.name()
                    ),
                )),
                Some(h) if h.resume.is_some() => Err(refuse(
                    &self.path,
                    "the stream is a resumed one, but no partial receive is kept here; nothing was changed".into(),
                )),
                Some(_) => Ok(false),
            };
        };
        let Some(h) = h else {
            return Err(c.busy(&self.path, false));
        };
        c.accepts(&self.path, false, h)?;
        self.limit = c.header.volume_size;
        if self.len()? != self.limit {
            return Err(refuse(
                &self.path,
                "its partial state does not have the volume's length: discard it with `recv --abort`".into(),
            ));
        }
        if c.kind == Kind::Journal {
            if c.header.mode == Mode::Full {
                self.cursor = Some(c.offset);
            }
            let (path, f) = (self.path.clone(), self.file.try_clone().map_err(|e| self.err(e))?);
            let restore = Arc::new(move |old: Option<&[u8]>| restore_state(&path, &f, old));
            let id = ident(&self.file, &self.path)?;
            let u = Undo::resume(&journal_path(&self.path), &id, &self.path, restore, "saving its old contents to")?;
            self.slots.journal = Some(u);
        }
        self.armed(c.offset, c);
        Ok(true)
    }

    /// A checkpoint stands: the receive is active, and a signal prints how to continue.
    fn armed(&mut self, offset: u64, c: Checkpoint) {
        let note = kept_note(&self.path, false, &c);
        let Some(p) = &mut self.partial else {
            return;
        };
        p.active = true;
        p.offset = offset;
        *p.shown.lock().unwrap_or_else(|e| e.into_inner()) = Some(note);
        p.last = Some(c);
        if p.hook.is_none() {
            let shown = Arc::clone(&p.shown);
            p.hook = Some(Hook::new(move || {
                if let Some(n) = shown.lock().unwrap_or_else(|e| e.into_inner()).take() {
                    eprintln!("thinsend-native: {n}");
                }
                Ok(())
            }));
        }
    }

    /// A new resumable receive: the partial state exists with the volume's length; checkpoint 0.
    pub(super) fn first_checkpoint(&mut self, start: &Start) -> Result<()> {
        if self.partial.is_none() {
            return Ok(());
        }
        let Some(h) = &start.header else {
            return Ok(());
        };
        let c = Checkpoint::new(self.kind(), h, 0);
        self.file.sync_all().map_err(|e| self.err(e))?;
        sys::sync_dir_of(&self.path).map_err(|e| self.err(e))?;
        c.store(&self.path)?;
        self.armed(0, c);
        Ok(())
    }

    /// A record ending at `end` (`n` bytes) was applied: a checkpoint when one is due.
    pub(super) fn applied(&mut self, end: u64, n: u64) -> Result<()> {
        let Some(p) = &mut self.partial else {
            return Ok(());
        };
        if !p.active {
            return Ok(());
        }
        p.offset = end;
        if p.clock.due(n) {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Syncs what was applied (held DATA written first), then stores the checkpoint.
    fn checkpoint(&mut self) -> Result<()> {
        let Some(last) = self.partial.as_ref().and_then(|p| p.last.clone()) else {
            return Ok(());
        };
        let offset = self.partial.as_ref().map_or(0, |p| p.offset);
        self.flush()?;
        self.file.sync_data().map_err(|e| self.err(e))?;
        let c = Checkpoint::new(last.kind, &last.header, offset);
        c.store(&self.path)?;
        if let Some(p) = &mut self.partial {
            p.clock.reset();
        }
        self.armed(offset, c);
        Ok(())
    }

    /// After a failure: keeps the partial state at a fresh checkpoint and says how to continue;
    /// `None` where there is nothing to keep (the usual undo applies).
    pub(super) fn keep_partial(&mut self) -> Option<String> {
        let p = self.partial.as_ref()?;
        let shown = self.path.display().to_string();
        if p.last.is_none() {
            // No checkpoint yet: a fresh partial file goes, an in-place target is rolled back.
            let (t, _) = self.temp.take()?;
            let _ = std::fs::remove_file(&t);
            return Some(format!("{shown} not created"));
        }
        if !p.active && p.refused {
            return Some(format!("nothing was changed (the partial receive into {shown} is kept as it was)"));
        }
        if p.active {
            if let Err(e) = self.checkpoint() {
                note(&format!("{shown}: the checkpoint could not be brought up to date ({e}); the last one stands"));
            }
        }
        if let Some(j) = self.slots.journal.take() {
            j.keep();
        }
        self.temp = None;
        let p = self.partial.as_mut()?;
        p.shown.lock().unwrap_or_else(|e| e.into_inner()).take();
        p.last.as_ref().map(|c| kept_note(&self.path, false, c))
    }

    /// The stream the target now holds was begun by the kept partial state's stream.
    pub(super) fn original_start(&self) -> Option<Start> {
        let c = self.partial.as_ref()?.last.as_ref()?;
        Some(Start::new(Format::Native, Some(c.header.clone()), None))
    }

    /// The receive committed: its checkpoint goes.
    pub(super) fn resume_done(&mut self) -> Result<()> {
        if let Some(p) = self.partial.take() {
            p.shown.lock().unwrap_or_else(|e| e.into_inner()).take();
            if p.last.is_some() {
                remove_checkpoint(&self.path)?;
            }
        }
        Ok(())
    }
}
