//! The project's strict checker of a metadata image: the rules of dm-thin-metadata.md §5 that the
//! lenient Debian thin_check skips. It recomputes the reference count of every metadata and data
//! block from the trees (a node reached through several parents is read once but counted once per
//! parent; a data block is counted once per distinct leaf) and compares them with both space maps,
//! and checks leaks, nr_allocated, index entries, mapped_blocks, node fill, key ranges, leaf depth,
//! details keys against mapping keys, and the held metadata snapshot. It returns findings rather
//! than stopping at the first. Every tree is read through `btree::seen`, the project's one validated
//! walk with a seen-set; memory follows the blocks the trees and space maps actually use (sparse
//! counts), never a count the superblock claims.

mod spacemaps;
mod trees;

use std::collections::BTreeMap;
use std::fmt;

use crate::block::MetadataDev;
use crate::btree::details::DeviceDetails;
use crate::btree::node::Value;
use crate::btree::seen::Seen;
use crate::error::Result;
use crate::inspect::counts::Counts;
use crate::spacemap::{self, IndexEntry, INDEX_ENTRY_SIZE, REF_COUNT_SIZE};
use crate::superblock::{self, Superblock, SUPERBLOCK_LOCATION};

/// Findings of one kind listed in detail; the rest are only counted.
const DETAIL_LIMIT: u64 = 20;

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
    /// Whether thin_check's `--ignore-non-fatal-errors` may pass over it: blocks counted in use
    /// that nothing uses (leaks), and underfull nodes. Everything else can lose or corrupt data.
    pub fn is_fatal(self) -> bool {
        !matches!(self, Kind::MetadataLeak | Kind::DataLeak | Kind::Underfull)
    }

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

    /// Whether any finding is of a fatal kind ([`Kind::is_fatal`]).
    pub fn has_fatal(&self) -> bool {
        self.totals.keys().any(|k| k.is_fatal())
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

/// What to check (thin_check's options); the default checks everything.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Options {
    /// Only the superblock (`--super-block-only`).
    pub super_block_only: bool,
    /// Not the devices' mapping trees, nor what needs them: the reference counts and leaks of the
    /// space maps (`--skip-mappings`).
    pub skip_mappings: bool,
    /// Only the held metadata snapshot's trees, not the live ones nor the space maps (`-m`).
    pub metadata_snap: bool,
}

struct Checker<'a> {
    dev: &'a MetadataDev,
    opts: Options,
    report: Report,
    /// References found to each metadata block, below `meta_len`.
    meta_refs: Counts,
    meta_len: u64,
    /// Leaves found mapping each data block, below `nr_data_blocks`.
    data_refs: Counts,
    nr_data_blocks: u64,
    pool_time: u32,
    seen: Seen<Tree>,
    /// Leaf entries of the trees being walked: top level, details, index, ref-count.
    roots: Vec<(u64, u64)>,
    details: Vec<(u64, DeviceDetails)>,
    index_entries: Vec<(u64, IndexEntry)>,
    overflow: Vec<(u64, u32)>,
    /// The top-level or details tree walked last met a subtree walked before.
    lists_partial: bool,
}

/// Checks the image or device at `dev` (its live superblock, both space maps, and the held
/// metadata snapshot if any).
pub fn check(dev: &MetadataDev) -> Report {
    check_with(dev, Options::default())
}

/// [`check`], limited as `opts` says.
pub fn check_with(dev: &MetadataDev, opts: Options) -> Report {
    // Whole trees: the kernel's read-around and fault-around fetch the next nodes too.
    dev.read_around(true);
    let mut report = Report::default();
    let sb = match superblock::read_at(dev, SUPERBLOCK_LOCATION) {
        Ok(sb) => sb,
        Err(e) => {
            report.add(Kind::Structure, format!("superblock: {e}"));
            return report;
        }
    };
    let mut c = Checker {
        dev,
        opts,
        report,
        meta_refs: Counts::default(),
        meta_len: dev.nr_blocks().max(sb.metadata_sm.nr_blocks.min(spacemap::MAX_METADATA_BLOCKS)),
        data_refs: Counts::default(),
        nr_data_blocks: sb.data_sm.nr_blocks,
        pool_time: sb.time,
        seen: Seen::default(),
        roots: Vec::new(),
        details: Vec::new(),
        index_entries: Vec::new(),
        overflow: Vec::new(),
        lists_partial: false,
    };
    c.run(&sb);
    c.report
}

impl Checker<'_> {
    fn add(&mut self, kind: Kind, message: String) {
        self.report.add(kind, message);
    }

    /// One reference to metadata block `b` from `what`; false (and a finding) if it is past the end.
    fn count_meta(&mut self, b: u64, what: &str) -> bool {
        if b >= self.meta_len {
            self.add(
                Kind::Structure,
                format!(
                    "{what} points to block {b}, past the end of the metadata device ({} blocks)",
                    self.dev.nr_blocks()
                ),
            );
            return false;
        }
        self.meta_refs.inc(b);
        true
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
        if self.opts.super_block_only {
            return;
        }
        if self.opts.metadata_snap {
            match sb.held_root {
                0 => self.add(Kind::Superblock, "no metadata snapshot is held (held_root is 0)".into()),
                _ => self.metadata_snapshot(sb),
            }
            return self.stats();
        }
        self.thin_trees(sb, SUPERBLOCK_LOCATION, "live");
        if sb.held_root != 0 {
            self.metadata_snapshot(sb);
        }
        let data_counts = self.data_space_map(&sb.data_sm);
        let meta_counts = self.metadata_space_map(&sb.metadata_sm);
        // Without the mapping trees, the references found are incomplete: nothing to compare.
        if !self.opts.skip_mappings {
            if let Some(counts) = data_counts {
                self.compare(true, &counts, sb.data_sm.nr_blocks, sb.data_sm.nr_allocated);
            }
            if let Some(counts) = meta_counts {
                self.compare(false, &counts, sb.metadata_sm.nr_blocks, sb.metadata_sm.nr_allocated);
            }
        }
        self.stats();
    }

    fn stats(&mut self) {
        self.report.stats.metadata_blocks_in_use = self.meta_refs.count_nonzero();
        self.report.stats.data_blocks_in_use = self.data_refs.count_nonzero();
    }
}

/// Opens and checks an image file; Err only if it cannot be opened.
pub fn check_path(path: impl AsRef<std::path::Path>) -> Result<Report> {
    check_path_with(path, Options::default())
}

/// [`check_path`], limited as `opts` says.
pub fn check_path_with(path: impl AsRef<std::path::Path>, opts: Options) -> Result<Report> {
    let dev = MetadataDev::open(path)?;
    Ok(check_with(&dev, opts))
}
