//! `recv`: applies a stream to a regular file or a block device.
//!
//! A file target is never modified in place: the stream goes into a temporary file in the same
//! directory (a fresh sparse file for a full stream, a copy of the target for an incremental or LINBIT
//! one), which is synced, stamped with the received identity and renamed over the target only after
//! the stream proved complete. A block device is written in place, opened exclusively, its size
//! checked before the first write and its recorded state marked incomplete until the end.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cleanup::{Action, Guard};
use crate::error::{Error, Result};
use crate::io as sys;
use crate::progress::{self, human, Progress};
use crate::stream::native::{Header, Identity, Mode};
use crate::stream::{self, ReadOptions, Sink, Start, Summary};

/// Extended attribute holding a file target's [`State`].
pub const XATTR: &str = "user.thinsend.state";
/// Suffix of the sidecar file used where the filesystem has no user xattrs.
pub const SIDECAR_SUFFIX: &str = ".thinsend";

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub to: PathBuf,
    /// Apply an incremental stream whatever the target records, and replace an existing file with a
    /// full stream.
    pub force: bool,
    pub read: ReadOptions,
    pub progress: progress::Mode,
    /// Where a block device target's state is kept (default: `$THINSEND_STATE_DIR` or
    /// `/var/lib/thinsend-native`, one JSON file per target path).
    pub state_file: Option<PathBuf>,
}

/// What a target holds, as recorded after each receive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// False while a block device is being written, and after a failed receive into it.
    pub complete: bool,
    /// `native`, `linbit-1.1` or `linbit-1.0`.
    pub format: String,
    /// The snapshot the target now equals (native streams only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub volume_size: Option<u64>,
    pub received_at: u64,
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn state_for(start: &Start, complete: bool) -> State {
    State {
        complete,
        format: start.format.name().to_string(),
        source: start.header.as_ref().map(|h| h.source.clone()),
        stream_id: start.header.as_ref().map(|h| h.stream_id.clone()),
        volume_size: start.header.as_ref().map(|h| h.volume_size),
        received_at: now(),
    }
}

/// The state recorded for a target path: a file's xattr (or sidecar), a block device's state file.
pub fn read_state(path: &Path, state_file: Option<&Path>) -> Result<Option<State>> {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(path, e)),
    };
    let raw = if meta.file_type().is_block_device() {
        let sf = state_file.map(Path::to_path_buf).unwrap_or_else(|| default_state_file(path));
        match std::fs::read(&sf) {
            Ok(b) => Some((sf, b)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::io(&sf, e)),
        }
    } else {
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        match sys::get_xattr(f.as_raw_fd(), XATTR) {
            Ok(Some(b)) => Some((path.to_path_buf(), b)),
            Ok(None) => read_sidecar(path)?,
            Err(e) if sys::is_unsupported(&e) => read_sidecar(path)?,
            Err(e) => return Err(Error::io(path, e)),
        }
    };
    match raw {
        None => Ok(None),
        Some((where_, b)) => serde_json::from_slice(&b).map(Some).map_err(|e| {
            Error::Other(format!(
                "{}: unreadable thinsend state ({e}); receive a full stream or use --force",
                where_.display()
            ))
        }),
    }
}

fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(SIDECAR_SUFFIX);
    PathBuf::from(s)
}

fn read_sidecar(path: &Path) -> Result<Option<(PathBuf, Vec<u8>)>> {
    let sc = sidecar(path);
    match std::fs::read(&sc) {
        Ok(b) => Ok(Some((sc, b))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(&sc, e)),
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

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, directory fsync).
fn write_atomically(path: &Path, bytes: &[u8]) -> io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut tmp = path.as_os_str().to_os_string();
    tmp.push(format!(".{}.tmp", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let r = (|| {
        let f = File::create(&tmp)?;
        f.write_all_at(bytes, 0)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        sys::sync_dir_of(path)
    })();
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r
}

/// The identity check of an incremental stream against what the target records.
fn check_base(target: &Path, header: &Header, state: Option<&State>) -> Result<()> {
    let Some(base) = &header.base else {
        return Ok(());
    };
    let refuse = |why: String| {
        Err(Error::Other(format!(
            "{}: refusing an incremental stream: {why}; the stream applies to {}. Receive a full \
             stream first, or use --force if you know the target equals that base",
            target.display(),
            base.describe()
        )))
    };
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

/// A regular-file target, received into a temporary file that replaces it on success.
struct FileTarget {
    path: PathBuf,
    existing: Option<std::fs::Metadata>,
    temp: Option<(PathBuf, File)>,
    committed: bool,
    /// Removes the temporary on drop, and on SIGINT/SIGTERM/SIGHUP, unless committed.
    cleanup: Option<Guard>,
}

impl Drop for FileTarget {
    fn drop(&mut self) {
        if let Some(g) = self.cleanup.take() {
            if self.committed {
                g.disarm();
            }
        }
    }
}

impl FileTarget {
    fn create_temp(&mut self) -> Result<()> {
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let base = self.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "target".into());
        let mut last = None;
        for i in 0..100u32 {
            let name = dir.join(format!(".{base}.thinsend-{}-{i}.tmp", std::process::id()));
            // Registered before the file exists, so a signal can never leave it behind. (The name
            // carries our pid: a file already there is a stale one of an earlier process.)
            let guard = Guard::new(Action::RemoveFile { path: name.clone() });
            match OpenOptions::new().read(true).write(true).create_new(true).custom_flags(libc::O_CLOEXEC).open(&name) {
                Ok(f) => {
                    if let Some(m) = &self.existing {
                        let _ = f.set_permissions(m.permissions());
                    }
                    self.cleanup = Some(guard);
                    self.temp = Some((name, f));
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    guard.disarm();
                    last = Some(e)
                }
                Err(e) => {
                    guard.disarm();
                    return Err(Error::io(&name, e));
                }
            }
        }
        Err(Error::io(&dir, last.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into())))
    }

    fn temp(&self) -> Result<&File> {
        self.temp.as_ref().map(|(_, f)| f).ok_or_else(|| Error::Other("internal error: no temporary file".into()))
    }

    fn temp_error(&self, e: io::Error) -> Error {
        match &self.temp {
            Some((p, _)) => Error::io(p, e),
            None => Error::io(&self.path, e),
        }
    }

    /// Copies the current target into the temporary file: a reflink where the filesystem can,
    /// otherwise `copy_file_range` of its allocated extents only, so holes stay holes.
    fn copy_existing(&self) -> Result<()> {
        let src = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let dst = self.temp()?;
        let len = src.metadata().map_err(|e| Error::io(&self.path, e))?.len();
        if sys::reflink(src.as_raw_fd(), dst.as_raw_fd()).is_ok() {
            return Ok(());
        }
        dst.set_len(len).map_err(|e| self.temp_error(e))?;
        let s = src.as_raw_fd();
        let mut off = 0u64;
        while off < len {
            let start = match sys::seek_data_hole(s, off, true) {
                Ok(Some(x)) => x,
                Ok(None) => break,
                // No SEEK_DATA here: treat the rest as data.
                Err(_) => off,
            };
            let end = match sys::seek_data_hole(s, start, false) {
                Ok(Some(x)) => x.min(len),
                _ => len,
            };
            copy_range(&src, dst, start, end - start).map_err(|e| Error::io(&self.path, e))?;
            off = end;
        }
        Ok(())
    }
}

fn copy_range(src: &File, dst: &File, off: u64, len: u64) -> io::Result<()> {
    let (s, d) = (src.as_raw_fd(), dst.as_raw_fd());
    let mut pi = off as i64;
    let mut po = off as i64;
    let mut done = 0u64;
    while done < len {
        match sys::copy_file_range(s, &mut pi, d, &mut po, (len - done).min(1 << 30) as usize) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => done += n as u64,
            Err(e) if done == 0 && (sys::is_unsupported(&e) || e.raw_os_error() == Some(libc::EINVAL)) => {
                // No in-kernel copy between these files: through a buffer.
                let mut buf = vec![0u8; 1 << 20];
                while done < len {
                    let n = (len - done).min(buf.len() as u64) as usize;
                    src.read_exact_at(&mut buf[..n], off + done)?;
                    dst.write_all_at(&buf[..n], off + done)?;
                    done += n as u64;
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A block-device target, written in place.
struct BlockTarget {
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
    volume_size: u64,
    written: bool,
    /// The incomplete state, recorded just before the first write.
    mark: Option<State>,
    zeros: Vec<u8>,
}

impl BlockTarget {
    fn open(path: &Path, state_file: Option<&Path>) -> Result<Self> {
        let file =
            OpenOptions::new().write(true).custom_flags(libc::O_EXCL | libc::O_CLOEXEC).open(path).map_err(|e| {
                if e.raw_os_error() == Some(libc::EBUSY) {
                    Error::Other(format!(
                        "{}: device is in use (mounted, or held by another process): not writing to it",
                        path.display()
                    ))
                } else {
                    Error::io(path, e)
                }
            })?;
        let fd = file.as_raw_fd();
        let size = sys::blk_size(fd).map_err(|e| Error::io(path, e))?;
        let lbs = sys::blk_logical_block_size(fd).unwrap_or(512) as u64;
        let discard = discard_granularity(&file).unwrap_or(lbs);
        Ok(BlockTarget {
            path: path.to_path_buf(),
            file,
            size,
            lbs,
            discard,
            state_file: state_file.map(Path::to_path_buf).unwrap_or_else(|| default_state_file(path)),
            cursor: None,
            volume_size: 0,
            written: false,
            mark: None,
            zeros: Vec::new(),
        })
    }

    fn check_range(&self, offset: u64, len: u64) -> Result<()> {
        match offset.checked_add(len) {
            Some(e) if e <= self.size => Ok(()),
            _ => Err(Error::Other(format!(
                "{}: range [{offset}, +{len}) is past the end of the device ({} bytes)",
                self.path.display(),
                self.size
            ))),
        }
    }

    /// Called before every write: the first one records the target as incomplete.
    fn touch(&mut self) -> Result<()> {
        if let Some(m) = self.mark.take() {
            self.write_state(&m)?;
        }
        self.written = true;
        Ok(())
    }

    fn write_state(&self, state: &State) -> Result<()> {
        let json = serde_json::to_vec_pretty(state).unwrap_or_default();
        write_atomically(&self.state_file, &json).map_err(|e| Error::io(&self.state_file, e))
    }

    /// Makes `[offset, offset+len)` read as zeros: BLKDISCARD of the part aligned to the discard
    /// granularity, BLKZEROOUT (or written zeros) for the edges and wherever discard is unsupported.
    fn unmap(&mut self, offset: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        self.touch()?;
        let end = offset + len;
        let g = self.discard.max(self.lbs);
        let mid_start = offset.div_ceil(g) * g;
        let mid_end = end / g * g;
        if self.discard > 0 && mid_end > mid_start {
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
        } else {
            self.zero(offset, len)
        }
    }

    fn zero(&mut self, offset: u64, len: u64) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let l = self.lbs;
        let a_start = offset.div_ceil(l) * l;
        let a_end = (offset + len) / l * l;
        if a_end > a_start {
            self.write_zeros(offset, a_start - offset)?;
            let mut at = a_start;
            while at < a_end {
                let n = (a_end - at).min(1 << 30);
                match sys::blk_zeroout(self.file.as_raw_fd(), at, n) {
                    Ok(()) => at += n,
                    Err(e) if sys::is_unsupported(&e) || e.raw_os_error() == Some(libc::EINVAL) => {
                        break;
                    }
                    Err(e) => return Err(Error::io(&self.path, e)),
                }
            }
            self.write_zeros(at, a_end - at)?;
            self.write_zeros(a_end, offset + len - a_end)
        } else {
            self.write_zeros(offset, len)
        }
    }

    fn write_zeros(&mut self, offset: u64, len: u64) -> Result<()> {
        if self.zeros.is_empty() {
            self.zeros = vec![0u8; 1 << 20];
        }
        let mut done = 0;
        while done < len {
            let n = (len - done).min(self.zeros.len() as u64) as usize;
            self.file.write_all_at(&self.zeros[..n], offset + done).map_err(|e| Error::io(&self.path, e))?;
            done += n as u64;
        }
        Ok(())
    }

    /// Full streams: zero what lies between the last record and `upto`.
    fn fill_gap(&mut self, upto: u64) -> Result<()> {
        if let Some(c) = self.cursor {
            if upto > c {
                self.unmap(c, upto - c)?;
            }
            self.cursor = Some(upto.max(c));
        }
        Ok(())
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

enum Target {
    File(FileTarget),
    Block(BlockTarget),
}

struct Receiver<'o> {
    opts: &'o Options,
    target: Target,
    start: Option<Start>,
    progress: Progress,
}

impl Receiver<'_> {
    fn begin_file(&mut self, start: &Start) -> Result<()> {
        let Target::File(t) = &mut self.target else {
            return Ok(());
        };
        let opts = self.opts;
        match start.header.as_ref().map(|h| (h.mode, h)) {
            Some((Mode::Full, h)) => {
                if let Some(m) = &t.existing {
                    if m.len() > 0 && !opts.force {
                        return Err(Error::Other(format!(
                            "{}: target exists ({} bytes) and a full stream replaces it entirely; \
                             use --force to replace it",
                            t.path.display(),
                            m.len()
                        )));
                    }
                }
                t.create_temp()?;
                t.temp()?.set_len(h.volume_size).map_err(|e| t.temp_error(e))?;
            }
            Some((Mode::Incremental, h)) => {
                if t.existing.is_none() {
                    return Err(Error::Other(format!(
                        "{}: does not exist; an incremental stream needs the image of its base there",
                        t.path.display()
                    )));
                }
                if !opts.force {
                    let state = read_state(&t.path, None)?;
                    check_base(&t.path, h, state.as_ref())?;
                }
                t.create_temp()?;
                if self.progress.enabled() {
                    eprintln!(
                        "thinsend-native: copying {} to apply the incremental stream atomically",
                        t.path.display()
                    );
                }
                t.copy_existing()?;
                t.temp()?.set_len(h.volume_size).map_err(|e| t.temp_error(e))?;
            }
            None => {
                // LINBIT: applied on top of the existing image, as thin_recv applies to its LV.
                t.create_temp()?;
                if t.existing.is_some() {
                    t.copy_existing()?;
                }
            }
        }
        Ok(())
    }

    fn begin_block(&mut self, start: &Start) -> Result<()> {
        let Target::Block(t) = &mut self.target else {
            return Ok(());
        };
        if let Some(h) = &start.header {
            if h.volume_size > t.size {
                return Err(Error::Other(format!(
                    "{}: device is {} bytes, smaller than the stream's volume of {} bytes: nothing written",
                    t.path.display(),
                    t.size,
                    h.volume_size
                )));
            }
            if h.mode == Mode::Incremental && !self.opts.force {
                let state = read_state(&t.path, Some(&t.state_file))?;
                check_base(&t.path, h, state.as_ref())?;
            }
            if h.mode == Mode::Full {
                t.cursor = Some(0);
            }
            t.volume_size = h.volume_size;
        }
        t.mark = Some(state_for(start, false));
        Ok(())
    }
}

impl Sink for Receiver<'_> {
    fn start(&mut self, start: &Start) -> Result<()> {
        if let Some(h) = &start.header {
            if let Some(d) = h.data_bytes {
                self.progress.set_total(d);
            }
        }
        match self.target {
            Target::File(_) => self.begin_file(start)?,
            Target::Block(_) => self.begin_block(start)?,
        }
        self.start = Some(start.clone());
        Ok(())
    }

    fn data(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let len = bytes.len() as u64;
        match &mut self.target {
            Target::File(t) => {
                let f = t.temp()?;
                f.write_all_at(bytes, offset).map_err(|e| t.temp_error(e))?;
            }
            Target::Block(t) => {
                t.check_range(offset, len)?;
                t.fill_gap(offset)?;
                t.touch()?;
                t.file.write_all_at(bytes, offset).map_err(|e| Error::io(&t.path, e))?;
                if t.cursor.is_some() {
                    t.cursor = Some(offset + len);
                }
            }
        }
        self.progress.add(len);
        Ok(())
    }

    fn splice_target(&mut self, offset: u64, len: u64) -> Result<Option<RawFd>> {
        match &mut self.target {
            Target::File(t) => Ok(Some(t.temp()?.as_raw_fd())),
            Target::Block(t) => {
                t.check_range(offset, len)?;
                t.touch()?;
                Ok(Some(t.file.as_raw_fd()))
            }
        }
    }

    fn spliced(&mut self, _offset: u64, len: u64) {
        self.progress.add(len);
    }

    fn unmap(&mut self, offset: u64, len: u64) -> Result<()> {
        match &mut self.target {
            Target::File(t) => {
                let f = t.temp()?;
                let size = f.metadata().map_err(|e| t.temp_error(e))?.len();
                let end = offset.saturating_add(len).min(size);
                if end > offset {
                    sys::punch_hole(f.as_raw_fd(), offset, end - offset).map_err(|e| t.temp_error(e))?;
                }
            }
            Target::Block(t) => {
                t.check_range(offset, len)?;
                t.fill_gap(offset)?;
                t.unmap(offset, len)?;
                if t.cursor.is_some() {
                    t.cursor = Some(offset + len);
                }
            }
        }
        Ok(())
    }

    fn finish(&mut self, _summary: &Summary) -> Result<()> {
        let Some(start) = self.start.clone() else {
            // Empty input accepted with --allow-empty: nothing to apply.
            return Ok(());
        };
        let state = state_for(&start, true);
        match &mut self.target {
            Target::File(t) => {
                let f = t.temp()?;
                let json = serde_json::to_vec(&state).unwrap_or_default();
                // LINBIT streams carry no identity: the state says so, and a later native
                // incremental is refused rather than applied to an unknown base.
                let use_sidecar = match sys::set_xattr(f.as_raw_fd(), XATTR, &json) {
                    Ok(()) => false,
                    Err(e) if sys::is_unsupported(&e) => true,
                    Err(e) => return Err(t.temp_error(e)),
                };
                // Data and the state attribute are durable before the rename makes them visible.
                f.sync_all().map_err(|e| t.temp_error(e))?;
                let Some((tmp, _)) = &t.temp else {
                    return Err(Error::Other("internal error: no temporary file".into()));
                };
                std::fs::rename(tmp, &t.path).map_err(|e| Error::io(&t.path, e))?;
                t.committed = true;
                let _ = sys::sync_dir_of(&t.path);
                let sc = sidecar(&t.path);
                if use_sidecar {
                    write_atomically(&sc, &json).map_err(|e| Error::io(&sc, e))?;
                } else {
                    match std::fs::remove_file(&sc) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(Error::io(&sc, e)),
                        _ => {}
                    }
                }
            }
            Target::Block(t) => {
                let vs = t.volume_size;
                t.fill_gap(vs)?;
                t.touch()?;
                t.file.sync_data().map_err(|e| Error::io(&t.path, e))?;
                t.write_state(&state)?;
            }
        }
        Ok(())
    }
}

/// What a receive did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub summary: Summary,
    pub state: Option<State>,
}

/// Receives the stream on `input` into `opts.to`.
pub fn recv(input: RawFd, opts: &Options) -> Result<Summary> {
    // A symlink to an image file: replace the image, keep the link. (Block devices keep the name
    // given: /dev/vg/lv is stable where /dev/dm-N is not, and it names their state file.)
    let resolved = match (std::fs::symlink_metadata(&opts.to), std::fs::metadata(&opts.to)) {
        (Ok(l), Ok(m)) if l.file_type().is_symlink() && m.is_file() => {
            std::fs::canonicalize(&opts.to).map_err(|e| Error::io(&opts.to, e))?
        }
        _ => opts.to.clone(),
    };
    let to = &resolved;
    let meta = match std::fs::metadata(to) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(to, e)),
    };
    let target = match &meta {
        Some(m) if m.file_type().is_block_device() => Target::Block(BlockTarget::open(to, opts.state_file.as_deref())?),
        Some(m) if !m.is_file() => {
            return Err(Error::Other(format!("{}: not a regular file or block device", to.display())))
        }
        _ => Target::File(FileTarget {
            path: to.clone(),
            existing: meta.clone(),
            temp: None,
            committed: false,
            cleanup: None,
        }),
    };
    let mut rx = Receiver { opts, target, start: None, progress: Progress::new(opts.progress, "received", None) };
    match stream::read(input, &opts.read, &mut rx) {
        Ok(summary) => {
            let secs = rx.progress.elapsed();
            rx.progress.finish(&format!(
                "received {} ({} records: {} DATA, {} UNMAP) into {} in {:.1}s, {}/s",
                human(summary.stream_bytes as f64),
                summary.records,
                summary.data_records,
                summary.unmap_records,
                to.display(),
                secs,
                human(summary.stream_bytes as f64 / secs.max(1e-6))
            ));
            Ok(summary)
        }
        Err(e) => {
            rx.progress.abandon();
            let note = match &rx.target {
                Target::File(t) if t.existing.is_some() => {
                    format!("{} left unchanged", to.display())
                }
                Target::File(_) => format!("{} not created", to.display()),
                Target::Block(t) if t.written => format!(
                    "{} is INCOMPLETE: it was partially written and is marked incomplete in {}",
                    to.display(),
                    t.state_file.display()
                ),
                Target::Block(_) => format!("nothing was written to {}", to.display()),
            };
            Err(Error::Other(format!("{e}; {note}")))
        }
    }
}

/// A block-device receiver usable as a [`Sink`] by a caller that picks the device itself (the LVM
/// receiver, which knows its target only once the stream's header is read).
pub struct BlockSink<'o>(Receiver<'o>);

impl<'o> BlockSink<'o> {
    pub fn open(path: &Path, opts: &'o Options) -> Result<Self> {
        let target = Target::Block(BlockTarget::open(path, opts.state_file.as_deref())?);
        Ok(BlockSink(Receiver { opts, target, start: None, progress: Progress::new(opts.progress, "received", None) }))
    }

    pub fn finish_progress(&mut self, summary: &Summary, what: &str) {
        let secs = self.0.progress.elapsed();
        self.0.progress.finish(&format!(
            "received {} ({} records: {} DATA, {} UNMAP) into {what} in {:.1}s, {}/s",
            human(summary.stream_bytes as f64),
            summary.records,
            summary.data_records,
            summary.unmap_records,
            secs,
            human(summary.stream_bytes as f64 / secs.max(1e-6))
        ));
    }
}

impl Sink for BlockSink<'_> {
    fn start(&mut self, start: &Start) -> Result<()> {
        self.0.start(start)
    }
    fn data(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        self.0.data(offset, bytes)
    }
    fn splice_target(&mut self, offset: u64, len: u64) -> Result<Option<RawFd>> {
        self.0.splice_target(offset, len)
    }
    fn spliced(&mut self, offset: u64, len: u64) {
        self.0.spliced(offset, len)
    }
    fn unmap(&mut self, offset: u64, len: u64) -> Result<()> {
        self.0.unmap(offset, len)
    }
    fn record(&mut self, rec: &stream::Located) -> Result<()> {
        self.0.record(rec)
    }
    fn finish(&mut self, summary: &Summary) -> Result<()> {
        self.0.finish(summary)
    }
    fn warn(&mut self, msg: &str) {
        self.0.warn(msg)
    }
}
