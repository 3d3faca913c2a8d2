//! The metadata device: opened read-only, mapped with memmap2 (pread where mapping fails), and handed
//! out as bounds-checked 4 KiB blocks, each checked by the validator of its kind before use.

use std::borrow::Cow;
use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use crate::checksum::{self, BlockKind};
use crate::error::{Error, Fault, Result};

pub const BLOCK_SIZE: usize = 4096;

enum Backing {
    Map(memmap2::Mmap),
    Pread(File),
    Mem(Vec<u8>),
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
        let mut file = File::open(&path).map_err(|e| Error::io(&path, e))?;
        let meta = file.metadata().map_err(|e| Error::io(&path, e))?;
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
            let _ = nix::fcntl::posix_fadvise(
                std::os::fd::AsRawFd::as_raw_fd(&file),
                0,
                0,
                nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
            );
        }
        // SAFETY: the mapping is read-only and private to this process. The file is metadata we only
        // read; a concurrent writer could change bytes under us, which the per-block checksums then
        // report as corruption rather than causing undefined behaviour in safe code that copies or
        // compares bytes.
        let backing = match unsafe { memmap2::MmapOptions::new().len(len as usize).map(&file) } {
            Ok(m) => Backing::Map(m),
            Err(_) => Backing::Pread(file),
        };
        Ok(MetadataDev { path, backing, nr_blocks: len / BLOCK_SIZE as u64 })
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
        let found = u64::from_le_bytes(data[8..16].try_into().expect("8 bytes"));
        if found != b {
            return Err(self.fault(b, Fault::BlockNumber { kind: kind.name(), found, expected: b }));
        }
        Ok(data)
    }

    /// Hint that these blocks will be read soon (no-op for pread).
    pub fn will_need(&self) {
        if let Backing::Map(m) = &self.backing {
            let _ = m.advise(memmap2::Advice::WillNeed);
        }
    }

    pub fn fault(&self, block: u64, fault: Fault) -> Error {
        Error::Block { path: self.path.clone(), block, fault }
    }

    pub fn metadata_error(&self, what: impl Into<String>) -> Error {
        Error::Metadata { path: self.path.clone(), what: what.into() }
    }
}
