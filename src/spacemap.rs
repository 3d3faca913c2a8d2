//! Space-map on-disk types, shared by the reader, the strict checker and tools/mkmeta: the bitmap
//! block (2 bits per block, kernel bit order), the index entry, the metadata space map's index block
//! and the overflow ref-count tree's value. Counts of 3 or more live in the ref-count btree.

use crate::block::BLOCK_SIZE;
use crate::btree::node::Value;
use crate::checksum::{self, BlockKind};
use crate::error::Fault;
use crate::ondisk::on_disk;

/// Bytes before a bitmap's payload: `csum u32, not_used u32, blocknr u64`.
pub const BITMAP_HEADER_SIZE: usize = 16;
/// Where bitmap and index blocks keep their own block number (after `csum u32, padding u32`).
const BLOCKNR_OFFSET: usize = 8;
/// Entries (blocks) described by one bitmap block: (4096 - 16) * 4.
pub const ENTRIES_PER_BITMAP: u64 = ((BLOCK_SIZE - BITMAP_HEADER_SIZE) * 4) as u64;
/// Index entries in the metadata space map's index block.
pub const MAX_METADATA_BITMAPS: usize = 255;
/// The largest metadata device the metadata space map can describe, in blocks.
pub const MAX_METADATA_BLOCKS: u64 = MAX_METADATA_BITMAPS as u64 * ENTRIES_PER_BITMAP;
/// A bitmap entry of 3 means "look the count up in the ref-count tree".
pub const OVERFLOW: u8 = 3;
/// Value size of the ref-count (overflow) tree: a le32 count.
pub const REF_COUNT_SIZE: usize = 4;
/// Value size of the data space map's index tree.
pub const INDEX_ENTRY_SIZE: usize = 16;

/// Number of bitmap blocks a space map of `nr_blocks` entries needs.
pub fn nr_bitmaps(nr_blocks: u64) -> u64 {
    nr_blocks.div_ceil(ENTRIES_PER_BITMAP)
}

/// The bitmap entry stored for a reference count.
pub fn bitmap_value(count: u32) -> u8 {
    count.min(OVERFLOW as u32) as u8
}

//------------------------------------------------------------------------------------------------

/// `disk_index_entry`: where a bitmap lives and a summary of its free entries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexEntry {
    pub blocknr: u64,
    /// Free entries among all 16320 of the bitmap (the kernel counts slots past the map's end too).
    pub nr_free: u32,
    /// Index of the first free entry: a search hint, never past the real first free entry.
    pub none_free_before: u32,
}

impl IndexEntry {
    /// The accurate entry for a bitmap at `blocknr` holding `entries` (bitmap values, 0..=3; slots
    /// past the slice are free).
    pub fn describe(blocknr: u64, entries: &[u8]) -> Self {
        let used = entries.iter().filter(|&&e| e != 0).count() as u32;
        let first_free = entries.iter().position(|&e| e == 0).unwrap_or(entries.len()) as u32;
        IndexEntry { blocknr, nr_free: ENTRIES_PER_BITMAP as u32 - used, none_free_before: first_free }
    }
}

on_disk!(IndexEntry, INDEX_ENTRY_SIZE, { blocknr @ 0, nr_free @ 8, none_free_before @ 12 });

//------------------------------------------------------------------------------------------------

/// Entry `i` of a bitmap block (0..=3). The kernel stores entry i in bits 2i and 2i+1 of the
/// little-endian payload with bit 2i as the *high* bit of the value.
pub fn bitmap_get(block: &[u8], i: usize) -> u8 {
    let bit = 2 * i;
    let byte = block[BITMAP_HEADER_SIZE + bit / 8];
    let hi = (byte >> (bit % 8)) & 1;
    let lo = (byte >> (bit % 8 + 1)) & 1;
    (hi << 1) | lo
}

pub fn bitmap_set(block: &mut [u8], i: usize, v: u8) {
    let bit = 2 * i;
    let byte = &mut block[BITMAP_HEADER_SIZE + bit / 8];
    let shift = bit % 8;
    *byte &= !(3 << shift);
    *byte |= ((v >> 1) & 1) << shift;
    *byte |= (v & 1) << (shift + 1);
}

/// All 16320 entries of a bitmap block whose checksum was already verified.
pub fn unpack_bitmap(block: &[u8]) -> Vec<u8> {
    (0..ENTRIES_PER_BITMAP as usize).map(|i| bitmap_get(block, i)).collect()
}

/// A bitmap block at `blocknr` holding `entries` (values 0..=3, at most 16320; the rest free), with
/// its checksum.
pub fn pack_bitmap(blocknr: u64, entries: &[u8]) -> Vec<u8> {
    assert!(entries.len() as u64 <= ENTRIES_PER_BITMAP);
    let mut b = vec![0u8; BLOCK_SIZE];
    blocknr.pack(&mut b[BLOCKNR_OFFSET..]);
    for (i, &e) in entries.iter().enumerate() {
        if e != 0 {
            bitmap_set(&mut b, i, e.min(OVERFLOW));
        }
    }
    checksum::stamp(&mut b, BlockKind::Bitmap);
    b
}

//------------------------------------------------------------------------------------------------

/// The metadata space map's index block: `csum u32, padding u32, blocknr u64, index[255]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MetadataIndex {
    pub blocknr: u64,
    /// The used entries (at most 255); the rest of the block is zero.
    pub entries: Vec<IndexEntry>,
}

impl MetadataIndex {
    const ENTRIES_OFFSET: usize = 16;

    /// Decodes an index block whose checksum and location were verified, keeping the first
    /// `nr_bitmaps` entries.
    pub fn unpack(b: &[u8], nr_bitmaps: usize) -> Result<Self, Fault> {
        if nr_bitmaps > MAX_METADATA_BITMAPS {
            return Err(Fault::Other(format!(
                "metadata space map needs {nr_bitmaps} bitmaps, the index block holds {MAX_METADATA_BITMAPS}"
            )));
        }
        let entries = (0..nr_bitmaps)
            .map(|i| {
                let off = Self::ENTRIES_OFFSET + i * INDEX_ENTRY_SIZE;
                IndexEntry::unpack(&b[off..off + INDEX_ENTRY_SIZE])
            })
            .collect();
        Ok(MetadataIndex { blocknr: u64::unpack(&b[BLOCKNR_OFFSET..]), entries })
    }

    /// The unused entries past `nr_bitmaps` that are not zero (they should all be).
    pub fn stray_entries(b: &[u8], nr_bitmaps: usize) -> usize {
        (nr_bitmaps..MAX_METADATA_BITMAPS)
            .filter(|i| {
                let off = Self::ENTRIES_OFFSET + i * INDEX_ENTRY_SIZE;
                b[off..off + INDEX_ENTRY_SIZE].iter().any(|&x| x != 0)
            })
            .count()
    }

    /// A complete 4 KiB block with checksum.
    pub fn pack(&self) -> Vec<u8> {
        assert!(self.entries.len() <= MAX_METADATA_BITMAPS);
        let mut b = vec![0u8; BLOCK_SIZE];
        self.blocknr.pack(&mut b[BLOCKNR_OFFSET..]);
        for (i, e) in self.entries.iter().enumerate() {
            let off = Self::ENTRIES_OFFSET + i * INDEX_ENTRY_SIZE;
            e.pack(&mut b[off..off + INDEX_ENTRY_SIZE]);
        }
        checksum::stamp(&mut b, BlockKind::Index);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitmap_uses_the_kernels_bit_order() {
        let mut b = vec![0u8; BLOCK_SIZE];
        bitmap_set(&mut b, 0, 1);
        // value 1 is stored as bit 1 of the pair (r=2 in the word).
        assert_eq!(b[BITMAP_HEADER_SIZE], 0b10);
        bitmap_set(&mut b, 1, 2);
        assert_eq!(b[BITMAP_HEADER_SIZE], 0b0110);
        bitmap_set(&mut b, 3, 3);
        assert_eq!(b[BITMAP_HEADER_SIZE], 0b1100_0110);
        assert_eq!((0..4).map(|i| bitmap_get(&b, i)).collect::<Vec<_>>(), [1, 2, 0, 3]);
        bitmap_set(&mut b, 3, 0);
        assert_eq!(bitmap_get(&b, 3), 0);
    }

    #[test]
    fn bitmap_round_trips_and_checksums() {
        let entries: Vec<u8> = (0..ENTRIES_PER_BITMAP as usize).map(|i| (i % 4) as u8).collect();
        let b = pack_bitmap(7, &entries);
        assert_eq!(checksum::detect(&b), Some(BlockKind::Bitmap));
        assert_eq!(unpack_bitmap(&b), entries);
        assert_eq!(u64::unpack(&b[BLOCKNR_OFFSET..]), 7);
    }

    #[test]
    fn index_entry_counts_every_slot_as_the_kernel_does() {
        let e = IndexEntry::describe(4, &[1, 1, 0, 2]);
        assert_eq!(e.nr_free, 16320 - 3);
        assert_eq!(e.none_free_before, 2);
        let full = vec![1u8; 16320];
        assert_eq!(IndexEntry::describe(4, &full).none_free_before, 16320);
    }

    #[test]
    fn metadata_index_round_trips() {
        let idx = MetadataIndex {
            blocknr: 1,
            entries: vec![
                IndexEntry { blocknr: 2, nr_free: 100, none_free_before: 9 },
                IndexEntry { blocknr: 3, nr_free: 16320, none_free_before: 0 },
            ],
        };
        let b = idx.pack();
        assert_eq!(checksum::detect(&b), Some(BlockKind::Index));
        assert_eq!(MetadataIndex::unpack(&b, 2).unwrap(), idx);
        assert_eq!(MetadataIndex::stray_entries(&b, 2), 0);
        assert_eq!(MetadataIndex::stray_entries(&b, 1), 1);
    }
}
