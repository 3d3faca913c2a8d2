//! The metadata device: opened read-only, mapped with memmap2 (pread where mapping fails), and handed
//! out as bounds-checked 4 KiB blocks, each checked by the validator of its kind before use.

use std::borrow::Cow;
use std::fs::{File, Metadata, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::checksum::{self, BlockKind};
use crate::error::{Error, Fault, Result};
use crate::ondisk::OnDisk;
use crate::sys::io::{fadvise, Advice};

pub const BLOCK_SIZE: usize = 4096;

/// The widest span of blocks whose page-cache residency is asked in one `mincore`, and the widest
/// gap inside one.
const RESIDENCY_SPAN: u64 = 1 << 15;
const RESIDENCY_GAP: u64 = 64;

fn page_size() -> usize {
    static PAGE: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *PAGE.get_or_init(|| {
        // SAFETY: sysconf takes an integer and returns one.
        let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(p).unwrap_or(0)
    })
}

enum Backing {
    Map(memmap2::Mmap),
    Pread(File),
    Mem(Vec<u8>),
}

/// Opens `path` (read-only, or read-write with `write`) only if it is a regular file or a block
/// device, with its metadata. The open itself does not block: a FIFO, a character device, a socket
/// or a directory is refused at once with an error naming it, instead of hanging in `open` waiting
/// for a writer or reading a stream that never ends.
pub fn open_file_or_block_device(path: &Path, write: bool) -> Result<(File, Metadata)> {
    let err = |e| Error::io(path, e);
    let file = OpenOptions::new()
        .read(true)
        .write(write)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY)
        .open(path)
        .map_err(err)?;
    let meta = file.metadata().map_err(err)?;
    let ft = meta.file_type();
    let what = if ft.is_file() || ft.is_block_device() {
        None
    } else if ft.is_fifo() {
        Some("a FIFO")
    } else if ft.is_char_device() {
        Some("a character device")
    } else if ft.is_dir() {
        Some("a directory")
    } else if ft.is_socket() {
        Some("a socket")
    } else {
        Some("not a regular file")
    };
    if let Some(what) = what {
        let msg = format!("is {what}, not a regular file or block device");
        return Err(err(std::io::Error::new(std::io::ErrorKind::InvalidInput, msg)));
    }
    // Reads and writes of files and block devices then behave as with a plain open.
    let flags = OFlag::from_bits_truncate(fcntl(file.as_raw_fd(), FcntlArg::F_GETFL).map_err(|e| err(e.into()))?);
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).map_err(|e| err(e.into()))?;
    Ok((file, meta))
}

/// A read-only metadata device or image file.
pub struct MetadataDev {
    path: PathBuf,
    backing: Backing,
    nr_blocks: u64,
}

impl MetadataDev {
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let (mut file, meta) = open_file_or_block_device(&path, false)?;
        let is_blk = meta.file_type().is_block_device();
        let len = if is_blk { file.seek(SeekFrom::End(0)).map_err(|e| Error::io(&path, e))? } else { meta.len() };
        if len < BLOCK_SIZE as u64 {
            return Err(Error::Metadata {
                path,
                what: format!("too small to hold thin metadata ({len} bytes, need at least one 4096-byte block)"),
            });
        }
        if is_blk {
            // The kernel writes metadata through dm-bufio, not through this device's page cache, so
            // cached pages of a live _tmeta may be stale: drop them before mapping.
            let _ =
                nix::fcntl::posix_fadvise(file.as_raw_fd(), 0, 0, nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED);
        }
        // SAFETY: memmap2 requires that nothing modifies or truncates the file while it is mapped; we
        // never write it (read-only open, read-only shared mapping). That the metadata is quiescent is the caller's
        // contract, as for any reader of dm-thin metadata: an image file not being written, or a
        // metadata device read through the held metadata snapshot, whose blocks the kernel does not
        // change. A writer breaking it can change bytes between the checksum and the decode, and
        // truncating an image raises SIGBUS; the checksums do not guard against either.
        let backing = match unsafe { memmap2::MmapOptions::new().len(len as usize).map(&file) } {
            Ok(m) => Backing::Map(m),
            Err(_) => Backing::Pread(file),
        };
        let dev = MetadataDev { path, backing, nr_blocks: len / BLOCK_SIZE as u64 };
        dev.read_around(false);
        Ok(dev)
    }

    /// Whether a read of a block not in the page cache also reads the device's readahead window
    /// around it (8 MiB on some devices). Off from the open: the superblock and the walks that ask
    /// for what they need (`will_need`) read scattered 4 KiB nodes and never use the rest. On for a
    /// reader of whole trees (a full diff, dump, ls, check), where the neighbours are mostly its
    /// next nodes; on a mapping, off also stops the fault-around that maps a fault's cached
    /// neighbours with it (a warm dump at 2x10M took 0.87 s instead of 0.61 s without it). A hint:
    /// a refusal changes nothing else.
    pub fn read_around(&self, on: bool) {
        let _ = match (&self.backing, on) {
            (Backing::Map(m), true) => m.advise(memmap2::Advice::Normal),
            (Backing::Map(m), false) => m.advise(memmap2::Advice::Random),
            (Backing::Pread(f), true) => fadvise(f.as_raw_fd(), 0, 0, Advice::Normal),
            (Backing::Pread(f), false) => fadvise(f.as_raw_fd(), 0, 0, Advice::Random),
            (Backing::Mem(_), _) => Ok(()),
        };
    }

    /// An image held in memory (tests, fuzzing); `name` stands for the path in messages.
    pub fn from_bytes(name: impl Into<PathBuf>, bytes: Vec<u8>) -> Result<Self> {
        let path = name.into();
        let len = bytes.len();
        if len < BLOCK_SIZE {
            return Err(Error::Metadata {
                path,
                what: format!("too small to hold thin metadata ({len} bytes, need at least one 4096-byte block)"),
            });
        }
        Ok(MetadataDev { path, backing: Backing::Mem(bytes), nr_blocks: (len / BLOCK_SIZE) as u64 })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn nr_blocks(&self) -> u64 {
        self.nr_blocks
    }

    /// The raw bytes of block `b`, unvalidated.
    pub fn raw(&self, b: u64) -> Result<Cow<'_, [u8]>> {
        if b >= self.nr_blocks {
            return Err(self.fault(b, Fault::OutOfRange { nr_blocks: self.nr_blocks }));
        }
        let off = b as usize * BLOCK_SIZE;
        match &self.backing {
            Backing::Map(m) => Ok(Cow::Borrowed(&m[off..off + BLOCK_SIZE])),
            Backing::Mem(v) => Ok(Cow::Borrowed(&v[off..off + BLOCK_SIZE])),
            Backing::Pread(f) => {
                let mut buf = vec![0u8; BLOCK_SIZE];
                f.read_exact_at(&mut buf, off as u64).map_err(|e| Error::io(&self.path, e))?;
                Ok(Cow::Owned(buf))
            }
        }
    }

    /// Block `b`, its checksum verified for `kind` and the block number it records checked against `b`.
    /// Every header layout keeps the block number at offset 8.
    pub fn read(&self, b: u64, kind: BlockKind) -> Result<Cow<'_, [u8]>> {
        let data = self.raw(b)?;
        let stored = checksum::stored(&data);
        let computed = checksum::compute(&data, kind);
        if stored != computed {
            return Err(self.fault(b, Fault::Checksum { kind: kind.name(), stored, computed }));
        }
        let found = u64::unpack(&data[8..]);
        if found != b {
            return Err(self.fault(b, Fault::BlockNumber { kind: kind.name(), found, expected: b }));
        }
        Ok(data)
    }

    /// Asks the kernel to start reading those of `blocks` (ascending) that are not in the page cache,
    /// without waiting for them: neighbours go in one request, and the pages found cached cost one
    /// `mincore` per span instead of a request each. Returns how many blocks were asked for. A hint:
    /// a block past the end or a refused request only means the walk reads it itself.
    pub fn will_need(&self, blocks: &[u64]) -> u64 {
        let blocks = &blocks[..blocks.partition_point(|&b| b < self.nr_blocks)];
        let mut asked = 0;
        let mut i = 0;
        while i < blocks.len() {
            let first = blocks[i];
            // A span ends at a gap wide enough that asking about it would cost more than a call.
            let mut j = i + 1;
            while j < blocks.len() && blocks[j] - blocks[j - 1] < RESIDENCY_GAP && blocks[j] - first < RESIDENCY_SPAN {
                j += 1;
            }
            let span = &blocks[i..j];
            i = j;
            let cached = self.residency(first, span[span.len() - 1] - first + 1);
            let is_cached = |b: u64| cached.as_ref().is_some_and(|c| c[(b - first) as usize] & 1 == 1);
            asked += self.advise_runs(span.iter().copied().filter(|&b| !is_cached(b)));
        }
        asked
    }

    /// One WILLNEED request per run of adjacent blocks; returns the blocks asked for.
    fn advise_runs(&self, blocks: impl Iterator<Item = u64>) -> u64 {
        let mut asked = 0;
        let mut run: Option<(u64, u64)> = None;
        let flush = |(start, len): (u64, u64)| {
            let (off, bytes) = (start as usize * BLOCK_SIZE, len as usize * BLOCK_SIZE);
            let _ = match &self.backing {
                Backing::Map(m) => m.advise_range(memmap2::Advice::WillNeed, off, bytes),
                Backing::Pread(f) => fadvise(f.as_raw_fd(), off as u64, bytes as u64, Advice::WillNeed),
                Backing::Mem(_) => Ok(()),
            };
        };
        for b in blocks {
            asked += 1;
            run = match run {
                Some((s, n)) if s + n == b => Some((s, n + 1)),
                Some(r) => {
                    flush(r);
                    Some((b, 1))
                }
                None => Some((b, 1)),
            };
        }
        if let Some(r) = run {
            flush(r);
        }
        if let Backing::Mem(_) = self.backing {
            0
        } else {
            asked
        }
    }

    /// Which of `n` blocks from `first` are in the page cache (bit 0 of each byte), where it can
    /// tell: a mapping on 4 KiB pages; None otherwise (every block is then asked for).
    fn residency(&self, first: u64, n: u64) -> Option<Vec<u8>> {
        let Backing::Map(m) = &self.backing else {
            return None;
        };
        if page_size() != BLOCK_SIZE || (first + n) * BLOCK_SIZE as u64 > m.len() as u64 {
            return None;
        }
        let mut vec = vec![0u8; n as usize];
        let len = n as usize * BLOCK_SIZE;
        // SAFETY: `[first * 4096, +len)` lies inside the live mapping `m` (checked above), starts on a
        // page boundary (the mapping does, and pages are 4096 bytes), and `vec` has one byte per page.
        let r = unsafe { libc::mincore(m.as_ptr().add(first as usize * BLOCK_SIZE) as *mut _, len, vec.as_mut_ptr()) };
        (r == 0).then_some(vec)
    }

    /// Waits until block `b` is in memory (a page fault on the mapping; a no-op elsewhere).
    pub fn touch(&self, b: u64) {
        if let (Backing::Map(m), true) = (&self.backing, b < self.nr_blocks) {
            std::hint::black_box(m[b as usize * BLOCK_SIZE]);
        }
    }

    /// Asks the CPU to start loading block `b` into its caches, for a walk that will read it next:
    /// the load of one block then overlaps the work on the one before. A hint (x86_64 mappings only;
    /// a page not yet mapped is not loaded).
    pub fn prefetch_cpu(&self, b: u64) {
        #[cfg(target_arch = "x86_64")]
        if let (Backing::Map(m), true) = (&self.backing, b < self.nr_blocks) {
            use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
            for line in m[b as usize * BLOCK_SIZE..][..BLOCK_SIZE].chunks(64) {
                // SAFETY: SSE, which `_mm_prefetch` needs, is in every x86_64 CPU; a prefetch never
                // faults or writes, and `line` lies inside the live mapping.
                unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
            }
        }
    }

    pub fn fault(&self, block: u64, fault: Fault) -> Error {
        Error::Block { path: self.path.clone(), block, fault }
    }

    pub fn metadata_error(&self, what: impl Into<String>) -> Error {
        Error::Metadata { path: self.path.clone(), what: what.into() }
    }
}
