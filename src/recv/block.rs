//! A block-device target, written in place: opened exclusively, its size checked before the first
//! write, holes of a full stream and UNMAPs zeroed (discard where it reads back as zeros, zero-out
//! elsewhere). `recv --to DEV` protects incremental and LINBIT streams with the undo journal (kept
//! beside the state file), so a failure leaves the device unchanged; a full stream rewrites the
//! whole device, which no journal would make cheap, so it is marked incomplete until it ends.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::beside::remove_stale_temps;
use super::journal::{self, write_zeros, Ident};
use super::state::{self, check_base, default_state_file, read_plain, state_for, State};
use super::target::{Slots, Target};
use super::undo::{outcome_note, Undo};
use super::RecvError;
use super::{check_range, finish_line, Apply, Options};
use crate::cleanup::writing;
use crate::error::{Error, Result};
use crate::io as sys;
use crate::progress::Progress;
use crate::stream::native::Mode;
use crate::stream::{Start, Summary};

/// A block-device receiver. The LVM receiver uses it on the fresh LV it stages (nothing to journal
/// there: a failed staging LV is removed); `recv --to DEV` uses it with the journal.
pub struct BlockSink<'o> {
    opts: &'o Options,
    path: PathBuf,
    file: File,
    size: u64,
    lbs: u64,
    /// Discard granularity; 0 once discard proved unsupported.
    discard: u64,
    state_file: PathBuf,
    /// For a full native stream: everything below this offset was written or zeroed; the gaps
    /// between records (and the tail) are unmapped as they are passed.
    cursor: Option<u64>,
    limit: u64,
    journaled: bool,
    slots: Slots,
    written: bool,
    /// The incomplete state, recorded just before the first unjournaled write.
    mark: Option<State>,
}

fn journal_path(state_file: &Path) -> PathBuf {
    let mut s = state_file.as_os_str().to_os_string();
    s.push(".journal");
    PathBuf::from(s)
}

/// Puts back the state a journal saved (or removes the one this receive wrote).
fn restore_block_state(state_file: &Path, old: Option<&[u8]>) -> Result<()> {
    match old {
        Some(b) => state::write_atomically(state_file, b),
        None => state::remove_if_exists(state_file),
    }
}

fn discard_granularity(f: &File) -> Option<u64> {
    let rdev = f.metadata().ok()?.rdev();
    let (maj, min) = (libc::major(rdev), libc::minor(rdev));
    let q = format!("/sys/dev/block/{maj}:{min}/queue");
    let read = |n: &str| -> Option<u64> { std::fs::read_to_string(format!("{q}/{n}")).ok()?.trim().parse().ok() };
    if read("discard_max_bytes") == Some(0) {
        return Some(0);
    }
    read("discard_granularity").filter(|g| *g > 0)
}

impl<'o> BlockSink<'o> {
    /// Opens `path` exclusively (refusing a device in use); no undo journal.
    pub fn open(path: &Path, opts: &'o Options) -> Result<Self> {
        let file =
            OpenOptions::new().write(true).read(true).custom_flags(libc::O_EXCL | libc::O_CLOEXEC).open(path).map_err(
                |e| {
                    if e.raw_os_error() == Some(libc::EBUSY) {
                        RecvError::DeviceBusy { target: path.to_path_buf() }.into()
                    } else {
                        Error::io(path, e)
                    }
                },
            )?;
        let fd = file.as_raw_fd();
        let size = sys::blk_size(fd).map_err(|e| Error::io(path, e))?;
        let lbs = sys::blk_logical_block_size(fd).unwrap_or(512) as u64;
        let discard = discard_granularity(&file).unwrap_or(lbs);
        Ok(BlockSink {
            opts,
            path: path.to_path_buf(),
            file,
            size,
            lbs,
            discard,
            state_file: opts.state_file.clone().unwrap_or_else(|| default_state_file(path)),
            cursor: None,
            limit: size,
            journaled: false,
            slots: Slots::new(Progress::new(opts.progress, "received", None)),
            written: false,
            mark: None,
        })
    }

    /// Opens `path` for `recv --to`: incremental and LINBIT streams are journaled, and a journal a
    /// crashed receive left is rolled back first.
    pub(crate) fn open_journaled(path: &Path, opts: &'o Options) -> Result<Self> {
        let mut s = Self::open(path, opts)?;
        s.journaled = true;
        if s.state_file.parent().is_some_and(Path::is_dir) {
            remove_stale_temps(&s.state_file)?;
        }
        let jp = journal_path(&s.state_file);
        if let Some(r) = journal::recover(&jp, &s.file, &s.ident()?, path)? {
            if !r.torn {
                restore_block_state(&s.state_file, r.old_state.as_deref())?;
            }
            eprintln!(
                "thinsend-native: {}: rolled back an interrupted receive ({} ranges, {} bytes restored from {})",
                path.display(),
                r.ranges,
                r.bytes,
                jp.display()
            );
        }
        Ok(s)
    }

    fn ident(&self) -> Result<Ident> {
        let m = self.file.metadata().map_err(|e| Error::io(&self.path, e))?;
        Ok(Ident { file: false, len: self.size, dev: m.rdev(), ino: 0, mtime_ns: 0 })
    }

    /// A resumed full stream (the LV form's kept staging LV): everything below `offset` is done.
    pub fn resume_at(&mut self, offset: u64) {
        if self.cursor.is_some() {
            self.cursor = Some(offset);
        }
    }

    /// Makes what was written so far durable (a resumable receive's checkpoint follows).
    pub fn sync(&mut self) -> Result<()> {
        self.flush()?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))
    }

    pub fn finish_progress(&mut self, summary: &Summary, what: &str) {
        finish_line(&mut self.slots.progress, summary, what);
    }

    /// Called before every change to `[offset, offset+len)`: the journal saves it, or the first
    /// unjournaled change records the target as incomplete.
    fn touch(&mut self, offset: u64, len: u64) -> Result<()> {
        self.flush()?;
        if let Some(j) = &mut self.slots.journal {
            j.save(&self.file, &self.path, offset, len)?;
        }
        if let Some(m) = self.mark.take() {
            self.write_state(&m)?;
        }
        self.written = true;
        Ok(())
    }

    fn write_state(&self, state: &State) -> Result<()> {
        state::write_atomically(&self.state_file, &state::to_json(state)?)
    }

    /// Makes `[offset, offset+len)` read as zeros: BLKDISCARD of the part aligned to the discard
    /// granularity, BLKZEROOUT (or written zeros) for the edges and wherever discard is unsupported.
    fn unmap_range(&mut self, offset: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.touch(offset, len)?;
        let end = offset + len;
        let g = self.discard.max(self.lbs);
        let mid_start = offset.div_ceil(g) * g;
        let mid_end = end / g * g;
        if self.discard == 0 || mid_end <= mid_start {
            return self.zero(offset, len);
        }
        self.zero(offset, mid_start - offset)?;
        let mut at = mid_start;
        while at < mid_end {
            let n = (mid_end - at).min(1 << 30);
            match sys::blk_discard(self.file.as_raw_fd(), at, n) {
                Ok(()) => at += n,
                Err(e) if sys::is_unsupported(&e) || e.raw_os_error() == Some(libc::EINVAL) => {
                    self.discard = 0;
                    break;
                }
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        self.zero(at, mid_end - at)?;
        self.zero(mid_end, end - mid_end)
    }

    fn zero(&mut self, offset: u64, len: u64) -> Result<()> {
        let l = self.lbs;
        let a_start = offset.div_ceil(l) * l;
        let a_end = (offset + len) / l * l;
        let wz = |f: &File, o, n| write_zeros(f, o, n).map_err(|e| Error::io(&self.path, e));
        if a_end <= a_start {
            return wz(&self.file, offset, len);
        }
        wz(&self.file, offset, a_start - offset)?;
        let mut at = a_start;
        while at < a_end {
            let n = (a_end - at).min(1 << 30);
            match sys::blk_zeroout(self.file.as_raw_fd(), at, n) {
                Ok(()) => at += n,
                Err(e) if sys::is_unsupported(&e) || e.raw_os_error() == Some(libc::EINVAL) => break,
                Err(e) => return Err(Error::io(&self.path, e)),
            }
        }
        wz(&self.file, at, a_end - at)?;
        wz(&self.file, a_end, offset + len - a_end)
    }

    /// Full streams: zero what lies between the last record and `upto`.
    fn fill_gap(&mut self, upto: u64) -> Result<()> {
        if let Some(c) = self.cursor {
            if upto > c {
                self.unmap_range(c, upto - c)?;
            }
            self.cursor = Some(upto.max(c));
        }
        Ok(())
    }

    fn advance(&mut self, end: u64) {
        if self.cursor.is_some() {
            self.cursor = Some(end);
        }
    }

    /// Journals and writes the held DATA.
    fn flush(&mut self) -> Result<()> {
        match &mut self.slots.journal {
            Some(j) => j.flush(&self.file, &self.path),
            None => Ok(()),
        }
    }

    fn write_data(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let len = bytes.len() as u64;
        check_range(&self.path, offset, len, self.limit)?;
        if let Some(j) = &mut self.slots.journal {
            self.written = true;
            return j.write(&self.file, &self.path, offset, bytes);
        }
        self.fill_gap(offset)?;
        self.touch(offset, len)?;
        self.file.write_all_at(bytes, offset).map_err(|e| Error::io(&self.path, e))?;
        self.advance(offset + len);
        Ok(())
    }
}

impl Target for BlockSink<'_> {
    fn slots(&mut self) -> &mut Slots {
        &mut self.slots
    }

    fn begin_stream(&mut self, start: &Start) -> Result<()> {
        let want = start.volume_size().or(self.opts.size).unwrap_or(self.size);
        if want > self.size {
            return Err(RecvError::DeviceTooSmall { target: self.path.clone(), size: self.size, want }.into());
        }
        self.limit = want;
        let full = start.header.as_ref().is_some_and(|h| h.mode == Mode::Full);
        if let Some(h) = &start.header {
            if h.mode == Mode::Incremental && !self.opts.force {
                let st = state::read_state(&self.path, Some(&self.state_file))?;
                check_base(&self.path, h, st.as_ref())?;
            }
        }
        if full {
            self.cursor = Some(0);
        }
        if self.journaled && !full {
            let dir = state::dir_of(&self.state_file);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            let old = read_plain(&self.state_file)?;
            let sf = self.state_file.clone();
            let restore = std::sync::Arc::new(move |old: Option<&[u8]>| restore_block_state(&sf, old));
            let jp = journal_path(&self.state_file);
            let (id, saving) = (self.ident()?, "saving to");
            self.slots.journal = Some(Undo::begin(&jp, id, old.as_deref(), &self.file, restore, saving, true)?);
        } else {
            self.mark = Some(state_for(start, false));
        }
        Ok(())
    }

    fn put(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        self.write_data(offset, bytes)
    }

    fn splice_into(&mut self, offset: u64, len: u64) -> Result<RawFd> {
        check_range(&self.path, offset, len, self.limit).and_then(|_| self.touch(offset, len))?;
        Ok(self.file.as_raw_fd())
    }

    fn zero(&mut self, offset: u64, len: u64) -> Result<()> {
        let r = check_range(&self.path, offset, len, self.limit)
            .and_then(|_| self.fill_gap(offset))
            .and_then(|_| self.unmap_range(offset, len));
        self.advance(offset.saturating_add(len));
        r
    }

    fn complete(&mut self) -> Result<()> {
        let Some(start) = self.slots.start.clone() else {
            return Ok(()); // empty input accepted with --allow-empty: nothing to apply
        };
        self.fill_gap(self.limit)?;
        self.touch(0, 0)?;
        self.file.sync_data().map_err(|e| Error::io(&self.path, e))?;
        self.write_state(&state_for(&start, true))?;
        if let Some(j) = self.slots.journal.take() {
            j.commit()?;
        }
        Ok(())
    }
}

impl Apply for BlockSink<'_> {
    fn abort(&mut self) -> String {
        let _w = writing();
        let p = self.path.display();
        if let Some(j) = self.slots.journal.take() {
            let jp = j.path().to_path_buf();
            return outcome_note(j.rollback(&self.file), &self.path, &jp, "state");
        }
        if self.written {
            format!(
                "{p} is INCOMPLETE: it was partially written and is marked incomplete in {}",
                self.state_file.display()
            )
        } else {
            format!("nothing was written to {p}")
        }
    }

    fn progress(&mut self) -> &mut Progress {
        &mut self.slots.progress
    }

    fn target_error(&mut self) -> Option<String> {
        self.slots.error.take()
    }
}
