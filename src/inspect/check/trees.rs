//! The checker's tree walks: the mapping and details trees of a superblock (live or metadata
//! snapshot), each through `btree::seen`, counting a reference per pointer and a data reference per
//! mapping, and pairing devices with their details.

use std::collections::HashMap;

use super::{Checker, Kind, Tree};
use crate::btree::details::{read_details, DeviceDetails};
use crate::btree::mapping::{device_roots, BlockTime};
use crate::btree::node::Value;
use crate::btree::prefetch::{self, Prefetch, Readahead};
use crate::btree::seen::{Event, SeenWalk};
use crate::error::{Error, Fault};
use crate::spacemap::IndexEntry;
use crate::superblock::{self, SmRoot, Superblock};

impl Checker<'_> {
    /// Walks the tree of kind `tree` at `root`, whose pointer is held by block `parent`.
    pub(super) fn walk(&mut self, root: u64, tree: Tree, parent: u64) {
        let dev = self.dev;
        // A mapping tree not walked before: its internal nodes read a level at a time, its leaves
        // asked for ahead of the walk (a reference at a time; shared subtrees only slow it).
        let mut ahead = (tree == Tree::Bottom && root < dev.nr_blocks() && self.seen.summary(root, tree).is_none())
            .then(|| {
                let mut stats = Prefetch::default();
                let leaves = prefetch::tree(dev, root, tree.value_size(), &mut stats);
                Readahead::new(leaves, stats)
            });
        let mut w = SeenWalk::new(dev, root, tree.value_size(), tree, parent);
        while let Some(ev) = w.next(&mut self.seen) {
            match ev {
                // Pointers that pass the walk's checks lie inside the device, below `meta_len`.
                Event::Ref { block } => {
                    self.meta_refs.inc(block);
                    if let Some(a) = &mut ahead {
                        a.advance(dev);
                    }
                }
                // The top-level and details lists are then gathered whole (`thin_trees`).
                Event::Shared { .. } => self.lists_partial |= matches!(tree, Tree::Top | Tree::Details),
                Event::Foreign { block, tag } => self.add(
                    Kind::Structure,
                    format!("block {block} is used both in the {} and in the {}", tag.name(), tree.name()),
                ),
                Event::Underfull(e) => {
                    let kind = match &e {
                        Error::Block { fault: Fault::Underfull { .. }, .. } => Kind::Underfull,
                        _ => Kind::Structure,
                    };
                    self.add(kind, format!("{}: {e}", tree.name()));
                }
                Event::Fault(e) => self.add(Kind::Structure, format!("{}: {e}", tree.name())),
                Event::Entry { key } => {
                    let leaf = w.leaf();
                    self.entry(tree, leaf, key, w.value_bytes());
                }
            }
        }
    }

    fn entry(&mut self, tree: Tree, leaf: u64, key: u64, v: &[u8]) {
        match tree {
            Tree::Top => {
                let root = u64::unpack(v);
                self.roots.push((key, root));
                if !self.opts.skip_mappings {
                    self.walk(root, Tree::Bottom, leaf);
                }
            }
            Tree::Bottom => self.count_data(leaf, key, BlockTime::unpack(v)),
            Tree::Details => self.details.push((key, DeviceDetails::unpack(v))),
            Tree::DataIndex => self.index_entries.push((key, IndexEntry::unpack(v))),
            Tree::RefCount => self.overflow.push((key, u32::unpack(v))),
        }
    }

    /// The mapping and details trees of the superblock at block `at` (`which`: "live" or "metadata
    /// snapshot").
    pub(super) fn thin_trees(&mut self, sb: &Superblock, at: u64, which: &str) {
        self.roots.clear();
        self.details.clear();
        self.lists_partial = false;
        self.walk(sb.data_mapping_root, Tree::Top, at);
        self.walk(sb.device_details_root, Tree::Details, at);
        let mut roots = std::mem::take(&mut self.roots);
        let mut details = std::mem::take(&mut self.details);
        if self.lists_partial {
            // A metadata snapshot shares parts of these trees with the live ones, which the walk
            // does not read twice: the lists are read whole (their faults were reported already).
            roots = device_roots(self.dev, sb.data_mapping_root).unwrap_or(roots);
            details = read_details(self.dev, sb.device_details_root).unwrap_or(details);
        }
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
            // The tree the counts describe: the live one, or the snapshot's with -m.
            let counted = (which == "live") != self.opts.metadata_snap;
            // With --skip-mappings no device tree is walked: count the devices all the same.
            self.report.stats.devices += (counted && self.opts.skip_mappings) as u64;
            let Some(s) = self.seen.summary(root, Tree::Bottom) else {
                continue;
            };
            if counted {
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

    pub(super) fn metadata_snapshot(&mut self, live: &Superblock) {
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
        self.thin_trees(&snap, s, "metadata snapshot");
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
        if bt.data_block < self.nr_data_blocks {
            self.data_refs.inc(bt.data_block);
        } else {
            self.add(
                Kind::Structure,
                format!(
                    "leaf {leaf}: block {key} maps to data block {}, past the end of the data device ({} blocks)",
                    bt.data_block, self.nr_data_blocks
                ),
            );
        }
    }
}
