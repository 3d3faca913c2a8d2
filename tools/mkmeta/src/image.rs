//! Turning the in-memory pool into an image: the data space map (bitmaps, index btree, ref-count
//! tree), the metadata space map (reserved first and counted, then filled: index block, bitmaps,
//! ref-count tree), the superblock and the metadata snapshot's copy; then the blocks not yet in the
//! image's temporary file (in the target directory; nodes the bulk builder spilled there are) are
//! written in large runs, and the file is renamed into place only when complete. Data bitmaps are
//! packed as they are written, so nothing the size of the pool is held in memory.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::Path;

use thinsend::block::BLOCK_SIZE;
use thinsend::btree::node::Value;
use thinsend::spacemap::{
    bitmap_value, nr_bitmaps, pack_bitmap, IndexEntry, MetadataIndex, ENTRIES_PER_BITMAP, MAX_METADATA_BLOCKS,
};
use thinsend::superblock::{SmRoot, Superblock, METADATA_BLOCK_SECTORS};

use crate::error::{Error, Result};
use crate::tm::{Tm, Tree};

/// The held metadata snapshot: where its superblock copy lives and what it recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeldSb {
    pub block: u64,
    pub flags: u32,
    pub time: u32,
    pub trans_id: u64,
    pub top_root: u64,
    pub details_root: u64,
}

/// A block the image writer makes that is not a btree node.
enum Special {
    Bytes(Vec<u8>),
    /// Data space map bitmap number `i` (packed from the final counts when written).
    DataBitmap(u64),
}

/// The live superblock's fields that the pool decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SbState {
    pub flags: u32,
    pub version: u32,
    pub time: u32,
    pub trans_id: u64,
    pub data_block_size: u32,
    pub top_root: u64,
    pub details_root: u64,
    pub held: Option<HeldSb>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageInfo {
    pub nr_blocks: u64,
    pub metadata_blocks_in_use: u64,
    pub data_blocks_in_use: u64,
}

/// Smallest metadata device below which no image is made.
const AUTO_MIN_BLOCKS: u64 = 1024;

/// Completes the space maps and superblocks in `tm` and writes the image to `out`. With
/// `nr_blocks` None the image is sized automatically (25% free, at least 1024 blocks).
pub fn write_image(tm: &mut Tm, sb: &SbState, nr_blocks: Option<u64>, out: &Path) -> Result<ImageInfo> {
    let (info, special) = finish(tm, sb, nr_blocks)?;
    let tmp = match tm.unspill() {
        Some(tmp) => tmp,
        None => temp_file(out)?,
    };
    write_file(tm, &special, info.nr_blocks, tmp, out)?;
    Ok(info)
}

/// A new temporary file in `out`'s directory, to be renamed to `out` when complete.
pub fn temp_file(out: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new().prefix(".mkmeta-").tempfile_in(dir).map_err(|e| Error::io(dir, e))
}

/// Allocates and fills both space maps and the superblocks; returns the non-node blocks.
fn finish(tm: &mut Tm, sb: &SbState, nr_blocks: Option<u64>) -> Result<(ImageInfo, HashMap<u64, Special>)> {
    if let Some(n) = nr_blocks {
        if n > MAX_METADATA_BLOCKS {
            return Err(Error::Pool(format!(
                "--metadata-blocks {n} is larger than the metadata space map can describe ({MAX_METADATA_BLOCKS} blocks)"
            )));
        }
    }
    tm.commit();
    let mut special = HashMap::new();
    let data_sm = data_space_map(tm, &mut special)?;
    let metadata_sm = metadata_space_map(tm, nr_blocks, &mut special)?;
    let n = metadata_sm.nr_blocks;
    superblocks(sb, data_sm, metadata_sm, &mut special);
    let info = ImageInfo {
        nr_blocks: n,
        metadata_blocks_in_use: metadata_sm.nr_allocated,
        data_blocks_in_use: data_sm.nr_allocated,
    };
    Ok((info, special))
}

/// The data space map: its blocks are metadata blocks like any other.
fn data_space_map(tm: &mut Tm, special: &mut HashMap<u64, Special>) -> Result<SmRoot> {
    let nr_data = tm.data.nr_blocks();
    let bitmaps: Vec<u64> = (0..nr_bitmaps(nr_data)).map(|_| tm.alloc()).collect();
    let overflow: Vec<_> = tm.data.counts.at_least(3).map(|(b, c)| (b, c.to_le_bytes().to_vec())).collect();
    let ref_count_root = tm.build_tree(Tree::RefCount, &overflow)?;
    let mut index = Vec::with_capacity(bitmaps.len());
    for (i, &b) in bitmaps.iter().enumerate() {
        let vals = data_bitmap_values(tm, i as u64);
        let mut v = vec![0u8; IndexEntry::SIZE];
        IndexEntry::describe(b, &vals).pack(&mut v);
        index.push((i as u64, v));
        special.insert(b, Special::DataBitmap(i as u64));
    }
    let bitmap_root = tm.build_tree(Tree::Index, &index)?;
    let nr_allocated = tm.data.counts.count_where(|c| c > 0);
    Ok(SmRoot { nr_blocks: nr_data, nr_allocated, bitmap_root, ref_count_root })
}

/// The metadata space map: how many blocks it needs depends on the device size, and the device
/// must hold them too.
fn metadata_space_map(tm: &mut Tm, nr_blocks: Option<u64>, special: &mut HashMap<u64, Special>) -> Result<SmRoot> {
    let overflow = overflow_entries(&tm.counts);
    let ref_nodes = Tm::nodes_for(Tree::RefCount, overflow.len());
    let need = |n: u64| 1 + nr_bitmaps(n) + ref_nodes;
    let mut min = tm.high_water().max(1);
    loop {
        let last = tm.nth_free(need(min) - 1);
        if last < min {
            break;
        }
        min = last + 1;
    }
    let n = match nr_blocks {
        Some(n) if n < min => return Err(Error::TooSmall { have: n, need: min }),
        Some(n) => n,
        None => {
            let mut n = (min + min / 4).max(AUTO_MIN_BLOCKS).div_ceil(1024) * 1024;
            while tm.nth_free(need(n) - 1) >= n {
                n += 1024;
            }
            n.min(MAX_METADATA_BLOCKS)
        }
    };
    if n < min {
        return Err(Error::TooSmall { have: n, need: min });
    }
    let index_block = tm.alloc();
    let meta_bitmaps: Vec<u64> = (0..nr_bitmaps(n)).map(|_| tm.alloc()).collect();
    let ref_count_root = tm.build_tree(Tree::RefCount, &overflow)?;
    if tm.high_water() > n {
        return Err(Error::TooSmall { have: n, need: tm.high_water() });
    }
    // Every count is final now.
    let mut entries = Vec::with_capacity(meta_bitmaps.len());
    for (i, &b) in meta_bitmaps.iter().enumerate() {
        let vals = bitmap_values(&tm.counts, i as u64);
        entries.push(IndexEntry::describe(b, &vals));
        special.insert(b, Special::Bytes(pack_bitmap(b, &vals)));
    }
    special.insert(index_block, Special::Bytes(MetadataIndex { blocknr: index_block, entries }.pack()));
    let nr_allocated = tm.counts.iter().filter(|&&c| c > 0).count() as u64;
    Ok(SmRoot { nr_blocks: n, nr_allocated, bitmap_root: index_block, ref_count_root })
}

/// The live superblock at block 0 and, with a held root, the kernel's copy at its block.
fn superblocks(sb: &SbState, data_sm: SmRoot, metadata_sm: SmRoot, special: &mut HashMap<u64, Special>) {
    let n = metadata_sm.nr_blocks;
    let live = Superblock {
        flags: sb.flags,
        blocknr: 0,
        uuid: [0; 16],
        version: sb.version,
        time: sb.time,
        trans_id: sb.trans_id,
        held_root: sb.held.map_or(0, |h| h.block),
        data_sm,
        metadata_sm,
        data_mapping_root: sb.top_root,
        device_details_root: sb.details_root,
        data_block_size: sb.data_block_size,
        metadata_block_size: METADATA_BLOCK_SECTORS,
        metadata_nr_blocks: n,
        compat_flags: 0,
        compat_ro_flags: 0,
        incompat_flags: 0,
    };
    if let Some(h) = sb.held {
        // The kernel's copy: the committed superblock at that moment with both space-map roots
        // cleared and no held root of its own.
        let copy = Superblock {
            flags: h.flags,
            blocknr: h.block,
            time: h.time,
            trans_id: h.trans_id,
            held_root: 0,
            data_sm: SmRoot::default(),
            metadata_sm: SmRoot::default(),
            data_mapping_root: h.top_root,
            device_details_root: h.details_root,
            ..live.clone()
        };
        special.insert(h.block, Special::Bytes(copy.pack()));
    }
    special.insert(0, Special::Bytes(live.pack()));
}

/// `(block, le32 count)` for every count of 3 or more.
fn overflow_entries(counts: &[u32]) -> Vec<(u64, Vec<u8>)> {
    counts.iter().enumerate().filter(|(_, &c)| c >= 3).map(|(b, &c)| (b as u64, c.to_le_bytes().to_vec())).collect()
}

/// The bitmap values of data bitmap `i`.
fn data_bitmap_values(tm: &Tm, i: u64) -> Vec<u8> {
    tm.data.counts.bitmap(i).map(bitmap_value).collect()
}

/// The bitmap values of bitmap `i` (entries past the end of `counts` are free).
fn bitmap_values(counts: &[u32], i: u64) -> Vec<u8> {
    let start = (i * ENTRIES_PER_BITMAP) as usize;
    let end = (start + ENTRIES_PER_BITMAP as usize).min(counts.len());
    counts.get(start..end).unwrap_or(&[]).iter().map(|&c| bitmap_value(c)).collect()
}

/// Writes every block in use that the file does not hold yet, coalescing neighbours into large
/// writes, and zeroes blocks holding stale spilled nodes; the file replaces `out` when complete.
fn write_file(
    tm: &Tm,
    special: &HashMap<u64, Special>,
    nr_blocks: u64,
    mut tmp: tempfile::NamedTempFile,
    out: &Path,
) -> Result<()> {
    let io = |e| Error::io(out, e);
    let mut w = RunWriter { file: tmp.as_file(), buf: Vec::with_capacity(RUN * BLOCK_SIZE), start: 0 };
    for b in 0..tm.len().min(nr_blocks) {
        let block = match special.get(&b) {
            Some(Special::Bytes(s)) => Some(s.clone()),
            Some(Special::DataBitmap(i)) => Some(pack_bitmap(b, &data_bitmap_values(tm, *i))),
            None if tm.is_frozen(b) => None,
            None => match tm.unwritten_node(b) {
                Some(n) => Some(n.pack(b)),
                None if tm.is_stale(b) => Some(vec![0; BLOCK_SIZE]),
                None => None,
            },
        };
        match block {
            Some(data) => w.push(b, &data).map_err(io)?,
            None => w.flush().map_err(io)?,
        }
    }
    w.flush().map_err(io)?;
    tmp.as_file().set_len(nr_blocks * BLOCK_SIZE as u64).map_err(io)?;
    tmp.flush().map_err(io)?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o644)).map_err(io)?;
    tmp.persist(out).map_err(|e| Error::io(out, e.error))?;
    Ok(())
}

/// Blocks per write.
const RUN: usize = 256;

/// Consecutive blocks gathered into one write.
struct RunWriter<'a> {
    file: &'a std::fs::File,
    buf: Vec<u8>,
    start: u64,
}

impl RunWriter<'_> {
    fn push(&mut self, b: u64, data: &[u8]) -> std::io::Result<()> {
        if !self.buf.is_empty() && b != self.start + (self.buf.len() / BLOCK_SIZE) as u64 {
            self.flush()?;
        }
        if self.buf.is_empty() {
            self.start = b;
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= RUN * BLOCK_SIZE {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if !self.buf.is_empty() {
            self.file.write_all_at(&self.buf, self.start * BLOCK_SIZE as u64)?;
            self.buf.clear();
        }
        Ok(())
    }
}
