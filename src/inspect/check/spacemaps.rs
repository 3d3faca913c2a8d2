//! The checker's space maps: both maps read into sparse per-block counts (bitmaps, index entries,
//! the ref-count tree), checked against themselves, then compared with the references the trees
//! hold.

use std::borrow::Cow;
use std::collections::HashSet;

use super::{Checker, Kind, Tree};
use crate::btree::prefetch::IN_FLIGHT;
use crate::checksum::BlockKind;
use crate::inspect::counts::Counts;
use crate::spacemap::{
    self, nr_bitmaps, IndexEntry, MetadataIndex, ENTRIES_PER_BITMAP, MAX_METADATA_BITMAPS, OVERFLOW,
};
use crate::superblock::{SmRoot, SUPERBLOCK_LOCATION};

impl<'a> Checker<'a> {
    /// Walks the data space map: counts its blocks, returns its per-block counts.
    pub(super) fn data_space_map(&mut self, root: &SmRoot) -> Option<Counts> {
        let n = nr_bitmaps(root.nr_blocks);
        self.index_entries.clear();
        self.walk(root.bitmap_root, Tree::DataIndex, SUPERBLOCK_LOCATION);
        let entries = std::mem::take(&mut self.index_entries);
        let keys_ok = entries.len() as u64 == n && entries.iter().enumerate().all(|(i, e)| e.0 == i as u64);
        if !keys_ok {
            self.add(
                Kind::SpaceMap,
                format!(
                    "data space map index has keys {:?}, expected 0..{n}",
                    entries.iter().map(|e| e.0).take(20).collect::<Vec<_>>()
                ),
            );
            return None;
        }
        let entries: Vec<IndexEntry> = entries.into_iter().map(|e| e.1).collect();
        self.space_map_counts("data", root, &entries)
    }

    pub(super) fn metadata_space_map(&mut self, root: &SmRoot) -> Option<Counts> {
        let n = nr_bitmaps(root.nr_blocks) as usize;
        if n > MAX_METADATA_BITMAPS {
            self.add(
                Kind::SpaceMap,
                format!(
                    "metadata space map of {} blocks needs {n} bitmaps, more than {MAX_METADATA_BITMAPS}",
                    root.nr_blocks
                ),
            );
            return None;
        }
        let b = self.space_map_block(root.bitmap_root, "metadata space map", BlockKind::Index, || {
            "metadata space map index".to_string()
        })?;
        let index = match MetadataIndex::unpack(&b, n) {
            Ok(i) => i,
            Err(e) => {
                self.add(Kind::SpaceMap, format!("metadata space map index: {e}"));
                return None;
            }
        };
        let stray = MetadataIndex::stray_entries(&b, n);
        if stray > 0 {
            self.add(
                Kind::SpaceMap,
                format!("metadata space map index block has {stray} non-zero entries past the {n} it uses"),
            );
        }
        self.space_map_counts("metadata", root, &index.entries)
    }

    /// Counts block `b` (named `counted` if it lies past the device) and reads it as `kind`; an
    /// unreadable block is a structure finding named by `what`. None if either fails.
    fn space_map_block(
        &mut self,
        b: u64,
        counted: &str,
        kind: BlockKind,
        what: impl FnOnce() -> String,
    ) -> Option<Cow<'a, [u8]>> {
        if !self.count_meta(b, counted) {
            return None;
        }
        let dev = self.dev;
        match dev.read(b, kind) {
            Ok(b) => Some(b),
            Err(e) => {
                self.add(Kind::Structure, format!("{}: {e}", what()));
                None
            }
        }
    }

    /// Reads the bitmaps and the ref-count tree of a space map (counting their blocks) into one
    /// count per block, checking the index entries against the bitmaps.
    fn space_map_counts(&mut self, which: &str, root: &SmRoot, entries: &[IndexEntry]) -> Option<Counts> {
        let mut counts = Counts::default();
        let mut ok = true;
        // The bitmaps are known up front: on a cold device they are asked for a slice ahead of the
        // reads, instead of each waiting for the one before.
        let step = IN_FLIGHT / 2;
        let ask = |from: usize| {
            let mut slice: Vec<u64> = entries.iter().skip(from).take(step).map(|e| e.blocknr).collect();
            slice.sort_unstable();
            self.dev.will_need(&slice);
        };
        ask(0);
        for (i, e) in entries.iter().enumerate() {
            if i % step == 0 {
                ask(i + step);
            }
            ok &= self.bitmap(which, root.nr_blocks, i, e, &mut counts);
        }
        self.overflow.clear();
        self.walk(root.ref_count_root, Tree::RefCount, SUPERBLOCK_LOCATION);
        self.overflow_counts(which, root.nr_blocks, &mut counts);
        ok.then_some(counts)
    }

    /// Bitmap `i` of a space map, described by index entry `e`, into `counts`; false if unreadable.
    fn bitmap(&mut self, which: &str, nr_blocks: u64, i: usize, e: &IndexEntry, counts: &mut Counts) -> bool {
        let Some(b) = self.space_map_block(e.blocknr, "space map index", BlockKind::Bitmap, || {
            format!("{which} space map bitmap {i}")
        }) else {
            return false;
        };
        let vals = spacemap::unpack_bitmap(&b);
        let base = i as u64 * ENTRIES_PER_BITMAP;
        let want = IndexEntry::describe(e.blocknr, &vals);
        // thin_restore 0.9.0 leaves the slots past the end of the map out of nr_free.
        let past_end = (base + ENTRIES_PER_BITMAP).saturating_sub(nr_blocks) as u32;
        let nr_free_ok = e.nr_free == want.nr_free || e.nr_free + past_end == want.nr_free;
        if !nr_free_ok || e.none_free_before > want.none_free_before {
            self.add(
                Kind::SpaceMap,
                format!(
                    "{which} space map bitmap {i} (block {}): index says nr_free {} none_free_before {}, bitmap has nr_free {} first free {}",
                    e.blocknr, e.nr_free, e.none_free_before, want.nr_free, want.none_free_before
                ),
            );
        }
        for (j, &v) in vals.iter().enumerate() {
            let blk = base + j as u64;
            if blk >= nr_blocks {
                if v != 0 {
                    self.add(
                        Kind::SpaceMap,
                        format!("{which} space map: entry for block {blk} past the end ({nr_blocks} blocks) is {v}"),
                    );
                }
                continue;
            }
            counts.set(blk, v as u32);
        }
        true
    }

    /// The counts of 3 and more, from the ref-count tree just walked, into `counts`.
    fn overflow_counts(&mut self, which: &str, nr_blocks: u64, counts: &mut Counts) {
        let overflow = std::mem::take(&mut self.overflow);
        let mut has_overflow = HashSet::new();
        for (blk, c) in overflow {
            if blk >= nr_blocks {
                self.add(
                    Kind::SpaceMap,
                    format!("{which} ref-count tree has an entry for block {blk}, past the end ({nr_blocks} blocks)"),
                );
                continue;
            }
            let slot = counts.get(blk);
            if slot != OVERFLOW as u32 {
                self.add(
                    Kind::SpaceMap,
                    format!("{which} ref-count tree has count {c} for block {blk} whose bitmap entry is {slot}"),
                );
                continue;
            }
            if c < OVERFLOW as u32 {
                self.add(Kind::SpaceMap, format!("{which} ref-count tree holds count {c} (< 3) for block {blk}"));
            }
            counts.set(blk, c);
            has_overflow.insert(blk);
        }
        counts.for_each_nonzero(|blk, c| {
            if c == OVERFLOW as u32 && !has_overflow.contains(&blk) {
                self.add(
                    Kind::SpaceMap,
                    format!("{which} block {blk}: bitmap says count >= 3 but the ref-count tree has no entry"),
                );
            }
        });
    }

    /// Compares a space map's counts (of `sm_blocks` blocks) with the references found.
    pub(super) fn compare(&mut self, data: bool, on_disk: &Counts, sm_blocks: u64, nr_allocated: u64) {
        let which = if data { "data" } else { "metadata" };
        let expected = if data { std::mem::take(&mut self.data_refs) } else { std::mem::take(&mut self.meta_refs) };
        let (count_kind, leak_kind) =
            if data { (Kind::DataRefCount, Kind::DataLeak) } else { (Kind::MetadataRefCount, Kind::MetadataLeak) };
        Counts::zip(&expected, on_disk, |b, want, have| {
            if b >= sm_blocks {
                if want > 0 {
                    let m = format!(
                        "{which} block {b} is referenced {want} times but lies past the space map's {sm_blocks} blocks"
                    );
                    self.add(count_kind, m);
                }
            } else if want == 0 && have != 0 {
                self.add(leak_kind, format!("{which} block {b} has count {have} but nothing references it"));
            } else if have != want {
                self.add(count_kind, format!("{which} block {b}: space map count {have}, expected {want}"));
            }
        });
        let allocated = on_disk.count_nonzero();
        if allocated != nr_allocated {
            self.add(
                Kind::NrAllocated,
                format!("{which} space map nr_allocated is {nr_allocated}, but {allocated} blocks have a count"),
            );
        }
        if data {
            self.data_refs = expected;
        } else {
            self.meta_refs = expected;
        }
    }
}
