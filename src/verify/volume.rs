//! One side of a comparison: a file or device to read, its length, and which of its bytes are
//! mapped (the rest reads as zeros and is never read). A thin device's mapping comes from its pool's
//! metadata; a sparse file's from SEEK_DATA/SEEK_HOLE; a block device maps everything.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use crate::btree::mapping::mappings;
use crate::error::{Error, Result};
use crate::io as sys;
use crate::pool::Pool;

/// `[start, start+len)` of the volume is stored at byte `at` of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub start: u64,
    pub len: u64,
    pub at: u64,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// Where a volume's bytes are.
#[derive(Debug, Clone)]
pub enum Mapping {
    /// Every byte is stored, at its own offset (a block device, a file without holes).
    All,
    /// Only these ranges are stored (ascending, disjoint); the rest reads as zeros.
    Extents(Vec<Extent>),
}

/// A volume to read: the file, its length, its mapping.
pub struct Volume {
    pub path: PathBuf,
    pub file: File,
    pub size: u64,
    pub mapping: Mapping,
}

impl Volume {
    /// A regular file (holes from SEEK_DATA/SEEK_HOLE) or a block device (all mapped).
    pub fn open_plain(path: &Path) -> Result<Volume> {
        let (file, meta) = crate::block::open_file_or_block_device(path, false)?;
        let (size, mapping) = if meta.file_type().is_block_device() {
            (sys::blk_size(file.as_raw_fd()).map_err(|e| Error::io(path, e))?, Mapping::All)
        } else {
            let size = meta.len();
            (size, Mapping::Extents(file_extents(&file, size).map_err(|e| Error::io(path, e))?))
        };
        Ok(Volume { path: path.to_path_buf(), file, size, mapping })
    }

    /// Thin device `thin_id` of `pool`, `size` bytes long, read from `path`: the pool's data device
    /// (`from_thin == false`: each mapping at its data block) or the thin device itself.
    pub fn open_thin(pool: &Pool, thin_id: u64, size: u64, path: &Path, from_thin: bool) -> Result<Volume> {
        let dev = pool.device(thin_id)?;
        let bs = pool.superblock().data_block_bytes();
        let mut ext: Vec<Extent> = Vec::new();
        for m in mappings(&pool.dev, dev.root) {
            let (block, bt) = m?;
            let start = block.checked_mul(bs).filter(|s| *s < size);
            let Some(start) = start else { continue };
            let at = if from_thin { start } else { bt.data_block.saturating_mul(bs) };
            let len = bs.min(size - start);
            match ext.last_mut() {
                Some(l) if l.end() == start && l.at.saturating_add(l.len) == at => l.len += len,
                _ => ext.push(Extent { start, len, at }),
            }
        }
        let (file, _) = crate::block::open_file_or_block_device(path, false)?;
        Ok(Volume { path: path.to_path_buf(), file, size, mapping: Mapping::Extents(ext) })
    }

    /// The mapped pieces of `[lo, hi)`, clipped to it.
    pub fn pieces(&self, lo: u64, hi: u64) -> Vec<Extent> {
        let hi = hi.min(self.size);
        if lo >= hi {
            return Vec::new();
        }
        match &self.mapping {
            Mapping::All => vec![Extent { start: lo, len: hi - lo, at: lo }],
            Mapping::Extents(v) => {
                let first = v.partition_point(|e| e.end() <= lo);
                v[first..]
                    .iter()
                    .take_while(|e| e.start < hi)
                    .map(|e| {
                        let s = e.start.max(lo);
                        Extent { start: s, len: e.end().min(hi) - s, at: e.at + (s - e.start) }
                    })
                    .collect()
            }
        }
    }

    /// Bytes of the volume that are mapped.
    pub fn mapped_bytes(&self) -> u64 {
        match &self.mapping {
            Mapping::All => self.size,
            Mapping::Extents(v) => v.iter().map(|e| e.len).sum(),
        }
    }

    /// Reads `buf.len()` bytes stored at file byte `at`.
    pub fn read_at(&self, buf: &mut [u8], at: u64) -> Result<()> {
        self.file.read_exact_at(buf, at).map_err(|e| Error::io(&self.path, e))
    }
}

/// The data extents of a regular file (SEEK_DATA/SEEK_HOLE); the whole file where the filesystem
/// cannot tell.
fn file_extents(f: &File, size: u64) -> std::io::Result<Vec<Extent>> {
    let fd = f.as_raw_fd();
    let mut v = Vec::new();
    let mut pos = 0;
    while pos < size {
        let start = match sys::seek_data_hole(fd, pos, true) {
            Ok(Some(s)) if s < size => s,
            Ok(_) => break,
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(vec![Extent { start: 0, len: size, at: 0 }]),
            Err(e) => return Err(e),
        };
        let end = sys::seek_data_hole(fd, start, false)?.unwrap_or(size).min(size);
        if end <= start {
            break;
        }
        v.push(Extent { start, len: end - start, at: start });
        pos = end;
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vol(ext: Vec<Extent>, size: u64) -> Volume {
        let f = tempfile::tempfile().unwrap();
        Volume { path: "t".into(), file: f, size, mapping: Mapping::Extents(ext) }
    }

    #[test]
    fn pieces_are_clipped_to_the_window_and_keep_their_file_offsets() {
        let v = vol(vec![Extent { start: 0, len: 10, at: 100 }, Extent { start: 20, len: 10, at: 500 }], 40);
        assert_eq!(v.pieces(5, 25), vec![Extent { start: 5, len: 5, at: 105 }, Extent { start: 20, len: 5, at: 500 }]);
        assert!(v.pieces(10, 20).is_empty(), "a hole maps nothing");
        assert!(v.pieces(30, 100).is_empty());
        assert_eq!(v.mapped_bytes(), 20);
    }

    #[test]
    fn sparse_file_holes_are_not_mapped() {
        let f = tempfile::NamedTempFile::new().unwrap();
        f.as_file().set_len(8 << 20).unwrap();
        f.as_file().write_all_at(&[1u8; 4096], 4 << 20).unwrap();
        let v = Volume::open_plain(f.path()).unwrap();
        assert_eq!(v.size, 8 << 20);
        // A filesystem without SEEK_HOLE reports one extent over the whole file; tmpfs, ext4 and
        // xfs report the written block alone.
        let m = v.mapped_bytes();
        assert!(m == 4096 || m == 8 << 20, "mapped {m}");
        assert_eq!(v.pieces(4 << 20, (4 << 20) + 4096).iter().map(|e| e.len).sum::<u64>(), 4096);
        if m == 4096 {
            assert!(v.pieces(0, 4 << 20).is_empty(), "the hole before the data is not mapped");
        }
    }
}
