//! The project's strict checker of a metadata image: the rules of dm-thin-metadata.md §5 that the
//! lenient Debian thin_check skips. It recomputes the reference count of every metadata and data
//! block from the trees (a node reached through several parents is read once but counted once per
//! parent; a data block is counted once per distinct leaf) and compares them with both space maps,
//! and checks leaks, nr_allocated, index entries, mapped_blocks, node fill, key ranges, leaf depth,
//! details keys against mapping keys, and the held metadata snapshot. It returns findings rather
//! than stopping at the first.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

use crate::block::MetadataDev;
use crate::btree::cursor::MAX_DEPTH;
use crate::btree::details::{read_details, DeviceDetails};
use crate::btree::mapping::{device_roots, BlockTime};
use crate::btree::node::{read_node, Value};
use crate::checksum::BlockKind;
use crate::error::Result;
use crate::spacemap::{
    self, nr_bitmaps, IndexEntry, MetadataIndex, ENTRIES_PER_BITMAP, INDEX_ENTRY_SIZE, MAX_METADATA_BITMAPS, OVERFLOW,
    REF_COUNT_SIZE,
};
use crate::superblock::{self, SmRoot, Superblock, SUPERBLOCK_LOCATION};

/// Findings of one kind listed in detail; the rest are only counted.
const DETAIL_LIMIT: u64 = 20;
/// The checker keeps two u32 counts per data block in memory.
pub const MAX_DATA_BLOCKS: u64 = 1 << 31;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// A block that cannot be read as what points to it, bad keys, uneven depth, cycles.
    Structure,
    /// A non-root node with fewer than max_entries/3 entries.
    Underfull,
    /// A metadata block whose count in the metadata space map differs from the references to it.
    MetadataRefCount,
    /// A metadata block counted in use that nothing references.
    MetadataLeak,
    /// A data block whose count in the data space map differs from the leaves mapping it.
    DataRefCount,
    /// A data block counted in use that no leaf maps.
    DataLeak,
    /// A space map's nr_allocated differs from the blocks it counts in use.
    NrAllocated,
    /// Index entries (nr_free, none_free_before, unused slots) and bitmap padding.
    SpaceMap,
    /// A device's mapped_blocks differs from the mappings in its tree.
    MappedBlocks,
    /// The details tree and the top-level mapping tree have different device ids.
    DeviceIds,
    /// Superblock fields, and the held metadata snapshot's copy.
    Superblock,
    /// A mapping or device time later than the pool's time.
    Time,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Structure => "structure",
            Kind::Underfull => "underfull node",
            Kind::MetadataRefCount => "metadata reference count",
            Kind::MetadataLeak => "metadata leak",
            Kind::DataRefCount => "data reference count",
            Kind::DataLeak => "data leak",
            Kind::NrAllocated => "nr_allocated",
            Kind::SpaceMap => "space map",
            Kind::MappedBlocks => "mapped_blocks",
            Kind::DeviceIds => "device ids",
            Kind::Superblock => "superblock",
            Kind::Time => "time",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub kind: Kind,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.message)
    }
}

/// What the check found: up to 20 findings of each kind in detail, and the total of each kind.
#[derive(Debug, Default)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub totals: BTreeMap<Kind, u64>,
    pub stats: Stats,
}

#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    pub devices: u64,
    pub mappings: u64,
    pub metadata_blocks_in_use: u64,
    pub data_blocks_in_use: u64,
}

impl Report {
    pub fn is_clean(&self) -> bool {
        self.totals.is_empty()
    }

    pub fn count(&self, kind: Kind) -> u64 {
        self.totals.get(&kind).copied().unwrap_or(0)
    }

    fn add(&mut self, kind: Kind, message: String) {
        let n = self.totals.entry(kind).or_insert(0);
        *n += 1;
        if *n <= DETAIL_LIMIT {
            self.findings.push(Finding { kind, message });
        }
    }

    /// One line per listed finding, then "N more" lines for the kinds that were cut short.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.findings.iter().map(|f| f.to_string()).collect();
        for (k, &n) in &self.totals {
            if n > DETAIL_LIMIT {
                out.push(format!("{}: ... {} more", k.name(), n - DETAIL_LIMIT));
            }
        }
        out
    }
}

//------------------------------------------------------------------------------------------------

/// The trees of a thin pool, by what their leaves hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tree {
    /// dev id -> bottom-level root.
    Top,
    /// virtual block -> block_time.
    Bottom,
    Details,
    /// data space map: bitmap index -> index entry.
    DataIndex,
    /// block -> count (>= 3).
    RefCount,
}

impl Tree {
    fn value_size(self) -> usize {
        match self {
            Tree::Top | Tree::Bottom => 8,
            Tree::Details => DeviceDetails::SIZE,
            Tree::DataIndex => INDEX_ENTRY_SIZE,
            Tree::RefCount => REF_COUNT_SIZE,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Tree::Top => "top-level mapping tree",
            Tree::Bottom => "device mapping tree",
            Tree::Details => "device details tree",
            Tree::DataIndex => "data space map index tree",
            Tree::RefCount => "ref-count tree",
        }
    }
}

/// What a node's subtree holds, remembered so a shared subtree is read once.
#[derive(Debug, Clone, Copy)]
struct Summary {
    tree: Tree,
    /// 0 for a leaf.
    height: u32,
    /// Leaf entries in the subtree.
    entries: u64,
    first_key: Option<u64>,
    last_key: Option<u64>,
    nr: usize,
    max: usize,
}

struct Checker<'a> {
    dev: &'a MetadataDev,
    report: Report,
    /// References found to each metadata block.
    meta_refs: Vec<u32>,
    /// Leaves found mapping each data block.
    data_refs: Vec<u32>,
    pool_time: u32,
    seen: HashMap<u64, Option<Summary>>,
    /// Leaf entries of the index and ref-count trees being walked.
    index_entries: Vec<(u64, IndexEntry)>,
    overflow: Vec<(u64, u32)>,
}

/// Checks the image or device at `dev` (its live superblock, both space maps, and the held
/// metadata snapshot if any).
pub fn check(dev: &MetadataDev) -> Report {
    let mut report = Report::default();
    let sb = match superblock::read_at(dev, SUPERBLOCK_LOCATION) {
        Ok(sb) => sb,
        Err(e) => {
            report.add(Kind::Structure, format!("superblock: {e}"));
            return report;
        }
    };
    let meta_len = dev.nr_blocks().max(sb.metadata_sm.nr_blocks.min(spacemap::MAX_METADATA_BLOCKS));
    if sb.data_sm.nr_blocks > MAX_DATA_BLOCKS {
        report.add(
            Kind::Superblock,
            format!(
                "data device of {} blocks is too large for this checker (at most {MAX_DATA_BLOCKS})",
                sb.data_sm.nr_blocks
            ),
        );
        return report;
    }
    let mut c = Checker {
        dev,
        report,
        meta_refs: vec![0; meta_len as usize],
        data_refs: vec![0; sb.data_sm.nr_blocks as usize],
        pool_time: sb.time,
        seen: HashMap::new(),
        index_entries: Vec::new(),
        overflow: Vec::new(),
    };
    c.run(&sb);
    c.report
}

impl Checker<'_> {
    fn add(&mut self, kind: Kind, message: String) {
        self.report.add(kind, message);
    }

    fn count_meta(&mut self, b: u64, what: &str) -> bool {
        match self.meta_refs.get_mut(b as usize) {
            Some(r) => {
                *r += 1;
                true
            }
            None => {
                self.add(
                    Kind::Structure,
                    format!(
                        "{what} points to block {b}, past the end of the metadata device ({} blocks)",
                        self.dev.nr_blocks()
                    ),
                );
                false
            }
        }
    }

    fn run(&mut self, sb: &Superblock) {
        self.count_meta(SUPERBLOCK_LOCATION, "superblock");
        if sb.blocknr != SUPERBLOCK_LOCATION {
            self.add(Kind::Superblock, format!("superblock records block number {}", sb.blocknr));
        }
        if sb.metadata_nr_blocks > self.dev.nr_blocks() {
            self.add(
                Kind::Superblock,
                format!(
                    "superblock says the metadata device has {} blocks, the image has {}",
                    sb.metadata_nr_blocks,
                    self.dev.nr_blocks()
                ),
            );
        }
        if sb.metadata_sm.nr_blocks != sb.metadata_nr_blocks.min(spacemap::MAX_METADATA_BLOCKS) {
            self.add(
                Kind::Superblock,
                format!(
                    "metadata space map describes {} blocks, superblock metadata_nr_blocks is {}",
                    sb.metadata_sm.nr_blocks, sb.metadata_nr_blocks
                ),
            );
        }
        self.thin_trees(sb, "live");
        if sb.held_root != 0 {
            self.metadata_snapshot(sb);
        }
        let data_counts = self.data_space_map(&sb.data_sm);
        let meta_counts = self.metadata_space_map(&sb.metadata_sm);
        if let Some(counts) = data_counts {
            self.compare(true, &counts, sb.data_sm.nr_allocated);
        }
        if let Some(counts) = meta_counts {
            self.compare(false, &counts, sb.metadata_sm.nr_allocated);
        }
        self.report.stats.metadata_blocks_in_use = self.meta_refs.iter().filter(|&&r| r > 0).count() as u64;
        self.report.stats.data_blocks_in_use = self.data_refs.iter().filter(|&&r| r > 0).count() as u64;
    }

    /// The mapping and details trees of one superblock (`which`: "live" or "metadata snapshot").
    fn thin_trees(&mut self, sb: &Superblock, which: &str) {
        if self.count_meta(sb.data_mapping_root, "data_mapping_root") {
            self.visit(sb.data_mapping_root, Tree::Top, true, 0, None);
        }
        if self.count_meta(sb.device_details_root, "device_details_root") {
            self.visit(sb.device_details_root, Tree::Details, true, 0, None);
        }
        // Structural errors were reported by the walk; the lists below only pair things up.
        let roots = device_roots(self.dev, sb.data_mapping_root).unwrap_or_default();
        let details = read_details(self.dev, sb.device_details_root).unwrap_or_default();
        let root_ids: Vec<u64> = roots.iter().map(|r| r.0).collect();
        let detail_ids: Vec<u64> = details.iter().map(|d| d.0).collect();
        if root_ids != detail_ids {
            self.add(
                Kind::DeviceIds,
                format!("{which}: mapping tree has devices {root_ids:?}, details tree has {detail_ids:?}"),
            );
        }
        let details: HashMap<u64, DeviceDetails> = details.into_iter().collect();
        for (id, root) in roots {
            let Some(d) = details.get(&id) else { continue };
            let Some(Some(s)) = self.seen.get(&root).copied() else {
                continue;
            };
            if which == "live" {
                self.report.stats.devices += 1;
                self.report.stats.mappings += s.entries;
            }
            if d.mapped_blocks != s.entries {
                self.add(
                    Kind::MappedBlocks,
                    format!("{which}: device {id} has mapped_blocks {} but {} mappings", d.mapped_blocks, s.entries),
                );
            }
            if d.creation_time > sb.time || d.snapshotted_time > sb.time {
                self.add(
                    Kind::Time,
                    format!(
                        "{which}: device {id} creation_time {} / snapshotted_time {} later than pool time {}",
                        d.creation_time, d.snapshotted_time, sb.time
                    ),
                );
            }
        }
    }

    fn metadata_snapshot(&mut self, live: &Superblock) {
        let s = live.held_root;
        if !self.count_meta(s, "held_root") {
            return;
        }
        let snap = match superblock::read_at(self.dev, s) {
            Ok(snap) => snap,
            Err(e) => {
                self.add(Kind::Superblock, format!("metadata snapshot: {e}"));
                return;
            }
        };
        if snap.held_root != 0 {
            self.add(
                Kind::Superblock,
                format!("metadata snapshot at {s} has held_root {} (must be 0)", snap.held_root),
            );
        }
        if snap.data_sm != SmRoot::default() || snap.metadata_sm != SmRoot::default() {
            self.add(
                Kind::Superblock,
                format!("metadata snapshot at {s} has non-zero space map roots (the kernel clears them)"),
            );
        }
        if snap.time > live.time {
            self.add(
                Kind::Superblock,
                format!(
                    "metadata snapshot at {s} has time {}, later than the live superblock's {}",
                    snap.time, live.time
                ),
            );
        }
        self.thin_trees(&snap, "metadata snapshot");
    }

    /// Visits the node `b` (already counted by the caller) as part of `tree`, checking it lies in
    /// [lo, hi). Returns its subtree's summary, or None if it is unusable.
    fn visit(&mut self, b: u64, tree: Tree, is_root: bool, lo: u64, hi: Option<u64>) -> Option<Summary> {
        self.visit_at(b, tree, is_root, lo, hi, 0)
    }

    fn visit_at(
        &mut self,
        b: u64,
        tree: Tree,
        is_root: bool,
        lo: u64,
        hi: Option<u64>,
        depth: usize,
    ) -> Option<Summary> {
        if depth > MAX_DEPTH {
            self.add(Kind::Structure, format!("{}: node {b} is deeper than {MAX_DEPTH} levels", tree.name()));
            return None;
        }
        if let Some(prev) = self.seen.get(&b).copied() {
            let s = match prev {
                Some(s) => s,
                None => {
                    // Either unreadable (already reported) or still being visited: a cycle.
                    return None;
                }
            };
            if s.tree != tree {
                self.add(
                    Kind::Structure,
                    format!("block {b} is used both in the {} and in the {}", s.tree.name(), tree.name()),
                );
                return None;
            }
            self.check_fill(b, &s, tree, is_root);
            self.check_range(b, &s, tree, lo, hi);
            return Some(s);
        }
        self.seen.insert(b, None);
        let node = match read_node(self.dev, b, tree.value_size(), true) {
            Ok(n) => n,
            Err(e) => {
                self.add(Kind::Structure, format!("{}: {e}", tree.name()));
                return None;
            }
        };
        let nr = node.len();
        let mut s = Summary {
            tree,
            height: 0,
            entries: 0,
            first_key: node.first_key(),
            last_key: (nr > 0).then(|| node.key(nr - 1)),
            nr,
            max: node.max_entries(),
        };
        self.check_fill(b, &s, tree, is_root);
        self.check_range(b, &s, tree, lo, hi);
        if node.is_leaf {
            s.entries = nr as u64;
            for i in 0..nr {
                let key = node.key(i);
                match tree {
                    Tree::Top => {
                        let root: u64 = node.value(i);
                        if self.count_meta(root, "top-level mapping tree") {
                            self.visit(root, Tree::Bottom, true, 0, None);
                        }
                    }
                    Tree::Bottom => {
                        let bt: BlockTime = node.value(i);
                        self.count_data(b, key, bt);
                    }
                    Tree::Details => {}
                    Tree::DataIndex => self.index_entries.push((key, node.value(i))),
                    Tree::RefCount => self.overflow.push((key, node.value(i))),
                }
            }
        } else {
            let mut height = None;
            for i in 0..nr {
                let child = node.child(i);
                let clo = node.key(i);
                let chi = if i + 1 < nr { Some(node.key(i + 1)) } else { hi };
                if !self.count_meta(child, tree.name()) {
                    continue;
                }
                let Some(cs) = self.visit_at(child, tree, false, clo, chi, depth + 1) else {
                    continue;
                };
                s.entries += cs.entries;
                match height {
                    None => height = Some(cs.height),
                    Some(h) if h != cs.height => self.add(
                        Kind::Structure,
                        format!("{}: children of node {b} have leaves at different depths", tree.name()),
                    ),
                    _ => {}
                }
            }
            s.height = height.unwrap_or(0) + 1;
        }
        self.seen.insert(b, Some(s));
        Some(s)
    }

    fn check_fill(&mut self, b: u64, s: &Summary, tree: Tree, is_root: bool) {
        if !is_root && s.nr < s.max / 3 {
            self.add(
                Kind::Underfull,
                format!(
                    "{}: non-root node {b} has {} entries, fewer than {} (max_entries {} / 3)",
                    tree.name(),
                    s.nr,
                    s.max / 3,
                    s.max
                ),
            );
        }
    }

    fn check_range(&mut self, b: u64, s: &Summary, tree: Tree, lo: u64, hi: Option<u64>) {
        let (Some(first), Some(last)) = (s.first_key, s.last_key) else {
            return;
        };
        if first < lo || hi.is_some_and(|h| last >= h) {
            self.add(
                Kind::Structure,
                format!(
                    "{}: node {b} has keys {first}..={last} outside [{lo}, {}) given by its parent",
                    tree.name(),
                    hi.map_or("end".to_string(), |h| h.to_string())
                ),
            );
        }
    }

    fn count_data(&mut self, leaf: u64, key: u64, bt: BlockTime) {
        if bt.time > self.pool_time {
            self.add(
                Kind::Time,
                format!(
                    "leaf {leaf}: mapping of block {key} has time {}, later than pool time {}",
                    bt.time, self.pool_time
                ),
            );
        }
        let n = self.data_refs.len();
        match self.data_refs.get_mut(bt.data_block as usize) {
            Some(r) => *r += 1,
            None => self.add(
                Kind::Structure,
                format!(
                    "leaf {leaf}: block {key} maps to data block {}, past the end of the data device ({n} blocks)",
                    bt.data_block
                ),
            ),
        }
    }

    //--------------------------------------------------------------------------------------------

    /// Walks the data space map: counts its blocks, returns its per-block counts.
    fn data_space_map(&mut self, root: &SmRoot) -> Option<Vec<u32>> {
        let n = nr_bitmaps(root.nr_blocks);
        self.index_entries.clear();
        if self.count_meta(root.bitmap_root, "data space map") {
            self.visit(root.bitmap_root, Tree::DataIndex, true, 0, None);
        }
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

    fn metadata_space_map(&mut self, root: &SmRoot) -> Option<Vec<u32>> {
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
        if !self.count_meta(root.bitmap_root, "metadata space map") {
            return None;
        }
        let b = match self.dev.read(root.bitmap_root, BlockKind::Index) {
            Ok(b) => b,
            Err(e) => {
                self.add(Kind::Structure, format!("metadata space map index: {e}"));
                return None;
            }
        };
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

    /// Reads the bitmaps and the ref-count tree of a space map (counting their blocks) into one
    /// count per block, checking the index entries against the bitmaps.
    fn space_map_counts(&mut self, which: &str, root: &SmRoot, entries: &[IndexEntry]) -> Option<Vec<u32>> {
        let nr_blocks = root.nr_blocks;
        let mut counts = vec![0u32; nr_blocks as usize];
        let mut ok = true;
        for (i, e) in entries.iter().enumerate() {
            if !self.count_meta(e.blocknr, "space map index") {
                ok = false;
                continue;
            }
            let b = match self.dev.read(e.blocknr, BlockKind::Bitmap) {
                Ok(b) => b,
                Err(e) => {
                    self.add(Kind::Structure, format!("{which} space map bitmap {i}: {e}"));
                    ok = false;
                    continue;
                }
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
                            format!(
                                "{which} space map: entry for block {blk} past the end ({nr_blocks} blocks) is {v}"
                            ),
                        );
                    }
                    continue;
                }
                counts[blk as usize] = v as u32;
            }
        }
        self.overflow.clear();
        if self.count_meta(root.ref_count_root, "ref_count_root") {
            self.visit(root.ref_count_root, Tree::RefCount, true, 0, None);
        }
        let overflow = std::mem::take(&mut self.overflow);
        let mut has_overflow = HashSet::new();
        for (blk, c) in overflow {
            let Some(slot) = counts.get_mut(blk as usize) else {
                self.add(
                    Kind::SpaceMap,
                    format!("{which} ref-count tree has an entry for block {blk}, past the end ({nr_blocks} blocks)"),
                );
                continue;
            };
            if *slot != OVERFLOW as u32 {
                self.add(
                    Kind::SpaceMap,
                    format!("{which} ref-count tree has count {c} for block {blk} whose bitmap entry is {slot}"),
                );
                continue;
            }
            if c < OVERFLOW as u32 {
                self.add(Kind::SpaceMap, format!("{which} ref-count tree holds count {c} (< 3) for block {blk}"));
            }
            *slot = c;
            has_overflow.insert(blk);
        }
        for (blk, &c) in counts.iter().enumerate() {
            if c == OVERFLOW as u32 && !has_overflow.contains(&(blk as u64)) {
                self.add(
                    Kind::SpaceMap,
                    format!("{which} block {blk}: bitmap says count >= 3 but the ref-count tree has no entry"),
                );
            }
        }
        ok.then_some(counts)
    }

    /// Compares a space map's counts with the references found.
    fn compare(&mut self, data: bool, on_disk: &[u32], nr_allocated: u64) {
        let which = if data { "data" } else { "metadata" };
        let expected = if data { std::mem::take(&mut self.data_refs) } else { std::mem::take(&mut self.meta_refs) };
        let (count_kind, leak_kind) =
            if data { (Kind::DataRefCount, Kind::DataLeak) } else { (Kind::MetadataRefCount, Kind::MetadataLeak) };
        for (b, &want) in expected.iter().enumerate() {
            let have = on_disk.get(b).copied();
            match have {
                None if want > 0 => self.add(
                    count_kind,
                    format!(
                        "{which} block {b} is referenced {want} times but lies past the space map's {} blocks",
                        on_disk.len()
                    ),
                ),
                None => {}
                Some(have) if have == want => {}
                Some(have) if want == 0 => {
                    self.add(leak_kind, format!("{which} block {b} has count {have} but nothing references it"))
                }
                Some(have) => {
                    self.add(count_kind, format!("{which} block {b}: space map count {have}, expected {want}"))
                }
            }
        }
        let allocated = on_disk.iter().filter(|&&c| c > 0).count() as u64;
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

/// Opens and checks an image file; Err only if it cannot be opened.
pub fn check_path(path: impl AsRef<std::path::Path>) -> Result<Report> {
    let dev = MetadataDev::open(path)?;
    Ok(check(&dev))
}
