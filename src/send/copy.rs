//! Moving bytes from the source into the stream: readahead and cache dropping ahead of and behind the
//! reads, splice where bytes pass unchanged (LINBIT), the [`Out`] every path writes through (paced by
//! `--bwlimit`), and the [`Sender`] that turns the plan's records into framing and payload on the
//! splice paths (the native default is `pipeline`).

use std::collections::VecDeque;
use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use super::internal;
use super::out::{out_error, Out};
use super::plan::{Emit, Step, Steps};
use super::pump::Pump;
use crate::error::{Error, Result};
use crate::io as sys;
use crate::progress::Progress;
use crate::stream::RecordWriter;

/// How native DATA payloads reach the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyMode {
    /// Read once by a reader thread (four reading a block device `O_DIRECT`, one per core when
    /// compressing), checked for zero blocks, checksummed and compressed there; uncompressed bytes
    /// go into the stream by splice from a private pipe they were read through (`piped`),
    /// compressed ones are written by a writer thread.
    #[default]
    Buffered,
    /// As `Buffered`, but uncompressed bytes are read into the buffer (`O_DIRECT` from a block
    /// device) and written from it: one more copy (kept for benchmarks).
    BufferedWrite,
    /// pread into a buffer for the crc, then splice the same range from the source (reads twice; no
    /// zero elision, no compression: kept for benchmarks).
    SpliceAfterRead,
    /// pread into a buffer, crc, write the buffer.
    ReadWrite,
    /// splice into a private pipe, tee it to a second pipe that is read for the crc, then splice
    /// the first pipe into the stream.
    Tee,
}

impl CopyMode {
    /// `THINSEND_COPY=splice|readwrite|tee|buffered` picks an older mode (for benchmarks).
    pub fn from_env() -> Self {
        match std::env::var("THINSEND_COPY").as_deref() {
            Ok("splice") => CopyMode::SpliceAfterRead,
            Ok("readwrite") => CopyMode::ReadWrite,
            Ok("tee") => CopyMode::Tee,
            Ok("buffered") => CopyMode::BufferedWrite,
            _ => CopyMode::Buffered,
        }
    }
}

/// The data source, opened read-only.
pub(crate) struct Source {
    file: File,
    /// The same block device opened `O_DIRECT` (see [`Source::direct`]).
    direct: Option<File>,
    path: PathBuf,
    what: &'static str,
    bs: u64,
    from_thin: bool,
}

impl Source {
    pub(crate) fn open(path: &Path, what: &'static str, bs: u64, from_thin: bool) -> Result<Self> {
        // A FIFO or character device would block in open or never end: refused at once.
        let (file, meta) = crate::block::open_file_or_block_device(path, false)?;
        // Ranges are scattered in an incremental send: the kernel's own readahead would read
        // around them. [`Readahead`] asks for exactly the ranges that will be read.
        let _ = sys::fadvise(file.as_raw_fd(), 0, 0, sys::Advice::Random);
        let direct = if meta.file_type().is_block_device() { reopen_direct(&file, &meta) } else { None };
        Ok(Source { file, direct, path: path.to_path_buf(), what, bs, from_thin })
    }

    /// The source opened `O_DIRECT`: a block device (an LV) is read straight into the send's
    /// buffers, without filling and then evicting the page cache, with several reads in flight.
    /// `None` for files (their cache is worth using), when asked (`THINSEND_DIRECT=0`), or where
    /// the device refuses it.
    pub(crate) fn direct(&self) -> Option<&File> {
        self.direct.as_ref()
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    /// The descriptor to `splice` `len` bytes at `off` from: the `O_DIRECT` one where there is one
    /// and the range is aligned for it (the kernel then reads the device straight into new pages it
    /// hands to the pipe: no copy, no page cache), else the buffered one.
    pub(crate) fn splice_fd(&self, off: u64, len: usize) -> RawFd {
        match &self.direct {
            Some(f) if off % DIRECT_ALIGN as u64 == 0 && len % DIRECT_ALIGN == 0 => f.as_raw_fd(),
            _ => self.fd(),
        }
    }

    pub(crate) fn read_error(&self, off: u64, e: std::io::Error) -> Error {
        let block = off.checked_div(self.bs).unwrap_or(0);
        let unit = if self.from_thin { "thin" } else { "data" };
        let what = if e.kind() == std::io::ErrorKind::UnexpectedEof {
            format!("ends before byte {off} ({unit} block {block}): is it the right device?")
        } else {
            format!("reading byte {off} ({unit} block {block}): {e}")
        };
        Error::Other(format!("{} {}: {what}", self.what, self.path.display()))
    }

    pub(crate) fn read_at(&self, buf: &mut [u8], off: u64) -> Result<()> {
        self.file.read_exact_at(buf, off).map_err(|e| self.read_error(off, e))
    }
}

/// `O_DIRECT` wants offsets, lengths and buffers aligned to the device's logical block size; 4096 is
/// the largest Linux allows, so it suits every device.
pub(crate) const DIRECT_ALIGN: usize = 4096;

/// `file` (a block device) opened again with `O_DIRECT` through its `/proc/self/fd` link, so it is
/// the same device even if the path changed meanwhile; `None` if that fails or is turned off.
fn reopen_direct(file: &File, meta: &std::fs::Metadata) -> Option<File> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    if std::env::var("THINSEND_DIRECT").as_deref() == Ok("0") {
        return None;
    }
    let link = format!("/proc/self/fd/{}", file.as_raw_fd());
    let f = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT | libc::O_CLOEXEC).open(link).ok()?;
    let same = f.metadata().ok().is_some_and(|m| m.rdev() == meta.rdev() && m.file_type().is_block_device());
    same.then_some(f)
}

/// Source ranges in the order the send reads them, walked ahead of the send by a second planner
/// iterator: each range gets WILLNEED a window before it is read, and once the stream is well past
/// it, DONTNEED if it was not in the page cache before this send asked for it (so a send never
/// evicts what others had cached, nor leaves behind what only it needed).
pub(crate) struct Readahead<'a> {
    fd: RawFd,
    ahead: Steps<'a>,
    /// Source bytes prefetched / consumed so far, counted in send order.
    prefetched: u64,
    consumed: u64,
    /// Prefetched ranges not yet released: (offset, length, drop afterwards, end in send order).
    pending: VecDeque<(u64, u64, bool, u64)>,
    done: bool,
}

/// How far ahead of the reads the prefetch runs, and how far behind them the cache is dropped
/// (the stream pipe may still reference pages just spliced).
const AHEAD: u64 = 32 << 20;
const BEHIND: u64 = 4 << 20;
/// One `mincore` (is it cached?) per piece: 4 MiB, 256 calls a GiB. Coarser pieces (16 MiB) made a
/// cold file send a quarter slower: the prefetch came in bursts the reads caught up with.
const PREFETCH_PIECE: u64 = 4 << 20;

impl<'a> Readahead<'a> {
    pub(crate) fn new(fd: RawFd, ahead: Steps<'a>) -> Self {
        Readahead { fd, ahead, prefetched: 0, consumed: 0, pending: VecDeque::new(), done: false }
    }

    /// Turned off, it prefetches and drops nothing.
    pub(crate) fn on(mut self, on: bool) -> Self {
        self.done |= !on;
        self
    }

    /// Before reading the next `len` source bytes.
    pub(crate) fn before(&mut self, len: u64) {
        let want = self.consumed + len + AHEAD;
        while !self.done && self.prefetched < want {
            match self.ahead.next() {
                Some(Ok(Step::Data { len, src, .. })) => {
                    let mut done = 0;
                    while done < len {
                        let n = (len - done).min(PREFETCH_PIECE);
                        let off = src + done;
                        let cached = sys::is_cached(self.fd, off, n);
                        if !cached {
                            let _ = sys::fadvise(self.fd, off, n, sys::Advice::WillNeed);
                        }
                        self.prefetched += n;
                        self.pending.push_back((off, n, !cached, self.prefetched));
                        done += n;
                    }
                }
                Some(Ok(Step::Unmap { .. })) => {}
                // The send's own walk reports errors.
                Some(Err(_)) | None => self.done = true,
            }
        }
    }

    /// After `len` source bytes went into the stream.
    fn after(&mut self, len: u64) {
        self.consumed += len;
        while let Some(&(off, n, drop, end)) = self.pending.front() {
            if end + BEHIND > self.consumed {
                break;
            }
            if drop {
                let _ = sys::fadvise(self.fd, off, n, sys::Advice::DontNeed);
            }
            self.pending.pop_front();
        }
    }

    /// The stream consumed `total` source bytes so far (counted by another thread).
    pub(crate) fn caught_up(&mut self, total: u64) {
        if total > self.consumed {
            self.after(total - self.consumed);
        }
    }

    /// At the end of the send: release everything this send brought in.
    pub(crate) fn finish(&mut self) {
        while let Some((off, n, drop, end)) = self.pending.pop_front() {
            if drop && end <= self.consumed {
                let _ = sys::fadvise(self.fd, off, n, sys::Advice::DontNeed);
            }
        }
    }
}

/// Sends over a private pipe pair: splice in, tee for the checksum, splice out.
pub(crate) struct TeePipes {
    a: (OwnedFd, OwnedFd),
    b: (OwnedFd, OwnedFd),
    cap: usize,
}

impl TeePipes {
    fn new() -> std::io::Result<Self> {
        let a = sys::pipe()?;
        let b = sys::pipe()?;
        let cap = sys::grow_pipe(a.1.as_raw_fd(), 1 << 20).min(sys::grow_pipe(b.1.as_raw_fd(), 1 << 20));
        Ok(TeePipes { a, b, cap })
    }
}

/// Moves records into the stream.
pub(crate) struct Sender<'s, 'a> {
    pub out: &'s mut Out,
    pub src: &'s Source,
    pub ra: Readahead<'a>,
    pub mode: CopyMode,
    pub writer: Box<dyn RecordWriter>,
    /// A checksummed DATA record whose header waits for its payload's checksum.
    pub pending: Option<(u64, u64)>,
    pub buf: Vec<u8>,
    pub tee: Option<TeePipes>,
    pub progress: &'s mut Progress,
    /// Unchanged bytes (LINBIT DATA) from a block device: read `O_DIRECT`, several at once.
    pub pump: Option<Pump>,
}

impl Sender<'_, '_> {
    /// Header bytes for the stream, in order with the pieces before them.
    pub(crate) fn put(&mut self, b: Vec<u8>) -> Result<()> {
        match &mut self.pump {
            Some(pump) => pump.bytes(self.out, b),
            None => self.out.write(&b),
        }
    }

    /// Writes everything the pump still holds.
    pub(crate) fn flush(&mut self) -> Result<()> {
        match &mut self.pump {
            Some(pump) => pump.finish(self.out, self.progress),
            None => Ok(()),
        }
    }

    fn data_record(&mut self, offset: u64, len: u64, src: u64) -> Result<()> {
        let n = len as usize;
        match self.mode {
            CopyMode::SpliceAfterRead | CopyMode::Buffered | CopyMode::BufferedWrite => {
                self.buf.resize(n, 0);
                self.src.read_at(&mut self.buf[..n], src)?;
                let crc = crc32c::crc32c(&self.buf[..n]);
                let h = self.writer.data(offset, len, crc);
                self.out.write(&h)?;
                self.out.copy(self.src, src, len)
            }
            CopyMode::ReadWrite => {
                // Room for the header before the payload, so both go out in one write.
                const ROOM: usize = 64;
                self.buf.resize(ROOM + n, 0);
                self.src.read_at(&mut self.buf[ROOM..ROOM + n], src)?;
                let crc = crc32c::crc32c(&self.buf[ROOM..ROOM + n]);
                let h = self.writer.data(offset, len, crc);
                let Some(at) = ROOM.checked_sub(h.len()) else {
                    return Err(internal("record header longer than its room"));
                };
                self.buf[at..ROOM].copy_from_slice(&h);
                let buf = std::mem::take(&mut self.buf);
                let r = self.out.write(&buf[at..ROOM + n]);
                self.buf = buf;
                r
            }
            CopyMode::Tee => self.tee_record(offset, len, src),
        }
    }

    fn tee_record(&mut self, offset: u64, len: u64, src: u64) -> Result<()> {
        if self.tee.is_none() {
            self.tee = Some(TeePipes::new().map_err(out_error)?);
        }
        let Some(t) = &self.tee else {
            return Err(internal("tee pipes"));
        };
        let (ar, aw) = (t.a.0.as_raw_fd(), t.a.1.as_raw_fd());
        let (br, bw) = (t.b.0.as_raw_fd(), t.b.1.as_raw_fd());
        let cap = t.cap as u64;
        let mut done = 0u64;
        let mut crc = 0u32;
        // The whole payload must sit in pipe a before its header can be written: records larger
        // than the pipe go the splice-after-read way.
        if len > cap {
            return self.data_record_fallback(offset, len, src);
        }
        let mut pos = src as i64;
        while done < len {
            let n = sys::splice(self.src.fd(), Some(&mut pos), aw, None, (len - done) as usize)
                .map_err(|e| self.src.read_error(src + done, e))?;
            if n == 0 {
                return Err(self.src.read_error(src + done, std::io::ErrorKind::UnexpectedEof.into()));
            }
            done += n as u64;
        }
        let mut teed = 0u64;
        self.buf.resize(len as usize, 0);
        while teed < len {
            let n = sys::tee(ar, bw, (len - teed) as usize).map_err(out_error)?;
            let mut got = 0usize;
            while got < n {
                let m = sys::read(br, &mut self.buf[teed as usize + got..teed as usize + n]).map_err(out_error)?;
                if m == 0 {
                    return Err(internal("tee pipe closed"));
                }
                got += m;
            }
            crc = crc32c::crc32c_append(crc, &self.buf[teed as usize..teed as usize + n]);
            teed += n as u64;
        }
        let h = self.writer.data(offset, len, crc);
        self.out.write(&h)?;
        if let Some(p) = &mut self.out.pace {
            p.take(len as usize);
        }
        let mut left = len as usize;
        while left > 0 {
            let m = sys::splice(ar, None, self.out.fd, None, left).map_err(out_error)?;
            if m == 0 {
                return Err(out_error(std::io::ErrorKind::WriteZero.into()));
            }
            left -= m;
            self.out.bytes += m as u64;
        }
        Ok(())
    }

    fn data_record_fallback(&mut self, offset: u64, len: u64, src: u64) -> Result<()> {
        let mode = self.mode;
        self.mode = CopyMode::SpliceAfterRead;
        let r = self.data_record(offset, len, src);
        self.mode = mode;
        r
    }
}

impl Emit for Sender<'_, '_> {
    fn data(&mut self, offset: u64, len: u64) -> Result<()> {
        if self.writer.checksummed() {
            self.pending = Some((offset, len));
            return Ok(());
        }
        let h = self.writer.data(offset, len, 0);
        self.put(h)
    }
    fn piece(&mut self, src: u64, len: u64) -> Result<()> {
        if let Some((offset, rlen)) = self.pending.take() {
            // A checksummed record's payload is one piece (the planner cuts records that way).
            if rlen != len {
                return Err(internal("checksummed DATA record with more than one piece"));
            }
            self.ra.before(len);
            self.data_record(offset, len, src)?;
            self.ra.after(len);
            self.progress.add(len);
            return Ok(());
        }
        if let Some(pump) = &mut self.pump {
            return pump.piece(self.out, self.progress, src, len);
        }
        // Large pieces go in windows so readahead and cache dropping keep pace.
        const WINDOW: u64 = 8 << 20;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(WINDOW);
            self.ra.before(n);
            self.out.copy(self.src, src + done, n)?;
            self.ra.after(n);
            self.progress.add(n);
            done += n;
        }
        Ok(())
    }
    fn unmap(&mut self, offset: u64, len: u64) -> Result<()> {
        let h = self.writer.unmap(offset, len);
        self.put(h)
    }
}
