//! Cold-aware reading. A walk learns the next block only from the one it just read, so on a cold
//! device every read waits for the previous one. The plans here go a level at a time instead: every
//! node a level will need is asked of the kernel at once (`MetadataDev::will_need`, at most
//! `IN_FLIGHT` blocks outstanding), then decoded from the cache to learn the next level. The walk
//! that follows finds its nodes in memory: its critical path is the tree's depth, not its reads.
//! Plans are hints: a block they cannot decode is left for the walk, which reports it.

use crate::block::MetadataDev;
use crate::btree::cursor::MAX_DEPTH;
use crate::btree::node::{decode, Node};

/// Blocks asked for and not yet waited on, at most.
pub const IN_FLIGHT: usize = 1024;

/// What a plan did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Prefetch {
    /// Blocks asked of the kernel (those found in the page cache are not asked for).
    pub reads_issued: u64,
    /// Levels that had to wait for reads: the critical path, in read latencies.
    pub levels_waited: u64,
    /// Nodes the plan expects the walk to read.
    pub nodes: u64,
    /// Of which leaves.
    pub leaves: u64,
}

impl Prefetch {
    /// Asks for `blocks` (sorted, unique) in slices of `IN_FLIGHT / 2`; with `wait`, waits for each
    /// slice that had reads issued once the next slice is in flight too (which bounds what is in
    /// flight). A slice found in the page cache is not touched: on a warm device a plan costs no
    /// page faults, and the walk that follows, in parallel windows, takes them itself.
    fn level(&mut self, dev: &MetadataDev, blocks: &[u64], wait: bool) {
        let chunks: Vec<&[u64]> = blocks.chunks(IN_FLIGHT / 2).collect();
        let mut issued = Vec::with_capacity(chunks.len());
        issued.extend(chunks.first().map(|c| dev.will_need(c)));
        for (i, c) in chunks.iter().enumerate() {
            if let Some(n) = chunks.get(i + 1) {
                issued.push(dev.will_need(n));
            }
            if wait && issued[i] > 0 {
                c.iter().for_each(|&b| dev.touch(b));
            }
        }
        let issued: u64 = issued.iter().sum();
        self.reads_issued += issued;
        self.levels_waited += u64::from(issued > 0);
        self.nodes += blocks.len() as u64;
    }
}

/// A node's children if it decodes as an internal node; None for a leaf; empty if unreadable.
fn children(node: &Option<Node<'_>>) -> Option<Vec<u64>> {
    match node {
        Some(n) if n.is_leaf => None,
        Some(n) => Some((0..n.len()).map(|i| n.child(i)).collect()),
        None => Some(Vec::new()),
    }
}

fn sorted(mut v: Vec<u64>) -> Vec<u64> {
    v.sort_unstable();
    v.dedup();
    v
}

/// `a` without the blocks of `b` (both sorted).
fn minus(a: &[u64], b: &[u64]) -> Vec<u64> {
    a.iter().copied().filter(|x| b.binary_search(x).is_err()).collect()
}

/// One side of a diff plan at one depth: the subtrees that differ from the other side, and the
/// leftmost path (the walk reads it to learn the leaf depth, shared or not).
struct Side {
    differing: Vec<u64>,
    leftmost: Option<u64>,
}

impl Side {
    fn blocks(&self) -> impl Iterator<Item = u64> + '_ {
        self.differing.iter().copied().chain(self.leftmost)
    }

    /// The next depth: the children of the differing nodes and the leftmost path's next node; None
    /// when this depth holds the leaves (or the leftmost node cannot be read).
    fn below(&self, dev: &MetadataDev) -> Option<(Vec<u64>, Option<u64>)> {
        let lm = decode(dev, self.leftmost?, 8).ok().filter(|n| !n.is_leaf)?;
        let leftmost = (!lm.is_empty()).then(|| lm.child(0));
        let mut all = Vec::new();
        for &b in &self.differing {
            all.extend(children(&decode(dev, b, 8).ok()).unwrap_or_default());
            if all.len() as u64 > dev.nr_blocks() {
                return None;
            }
        }
        Some((sorted(all), leftmost))
    }
}

/// Reads, a level at a time, the nodes a changed-only diff of the trees at `left` and `right` reads:
/// both leftmost paths and every subtree not shared (by block) at its depth. Stops early, leaving
/// the rest to the walk, where the trees' heights differ.
pub fn diff(dev: &MetadataDev, left: u64, right: u64) -> Prefetch {
    diff_levels(dev, left, right).0
}

/// `diff`, with the blocks of each level.
fn diff_levels(dev: &MetadataDev, left: u64, right: u64) -> (Prefetch, Vec<Vec<u64>>) {
    let mut p = Prefetch::default();
    let mut levels = Vec::new();
    if left == right {
        return (p, levels);
    }
    let mut l = Side { differing: vec![left], leftmost: Some(left) };
    let mut r = Side { differing: vec![right], leftmost: Some(right) };
    for _ in 0..=MAX_DEPTH {
        let level = sorted(l.blocks().chain(r.blocks()).collect());
        p.level(dev, &level, true);
        let (below_l, below_r) = (l.below(dev), r.below(dev));
        let n = level.len() as u64;
        levels.push(level);
        let (Some((cl, lml)), Some((cr, lmr))) = (below_l, below_r) else {
            // Both at their leaves, or heights that differ (left to the walk).
            p.leaves += n;
            return (p, levels);
        };
        if (cl.len() + cr.len()) as u64 > 2 * dev.nr_blocks() {
            break;
        }
        l = Side { differing: minus(&cl, &cr), leftmost: lml };
        r = Side { differing: minus(&cr, &cl), leftmost: lmr };
    }
    (p, levels)
}

/// Reads every internal node of the tree at `root` a level at a time and returns its leaves in key
/// order, for a [`Readahead`] to keep ahead of a walk over them.
pub fn tree(dev: &MetadataDev, root: u64, leaf_value_size: usize, stats: &mut Prefetch) -> Vec<u64> {
    let mut level = vec![root];
    // A damaged tree (a cycle, pointers shared between parents) must not make the plan grow without
    // end: no valid level is deeper than MAX_DEPTH or has more nodes than the device has blocks.
    for _ in 0..=MAX_DEPTH {
        // A level is all leaves or all internal nodes (the walk checks): its first node says which,
        // and leaves are left to the readahead.
        let first = level.first().and_then(|&b| decode(dev, b, leaf_value_size).ok());
        if first.as_ref().map_or(true, |n| n.is_leaf) {
            stats.leaves += level.len() as u64;
            return if first.is_some() { level } else { Vec::new() };
        }
        let mut asked = sorted(level.clone());
        asked.truncate(IN_FLIGHT * 64);
        stats.level(dev, &asked, false);
        let mut next = Vec::new();
        for &b in &level {
            next.extend(children(&decode(dev, b, leaf_value_size).ok()).unwrap_or_default());
            if next.len() as u64 > dev.nr_blocks() {
                return Vec::new();
            }
        }
        level = next;
    }
    Vec::new()
}

/// Keeps reads a window ahead of a walk over known leaves: `advance` once per leaf the walk takes.
pub struct Readahead {
    leaves: Vec<u64>,
    taken: usize,
    asked: usize,
    pub stats: Prefetch,
}

impl Readahead {
    pub fn new(leaves: Vec<u64>, stats: Prefetch) -> Self {
        Readahead { leaves, taken: 0, asked: 0, stats }
    }

    pub fn advance(&mut self, dev: &MetadataDev) {
        if self.asked < self.taken + IN_FLIGHT / 2 && self.asked < self.leaves.len() {
            let end = (self.asked + IN_FLIGHT / 2).min(self.leaves.len());
            let next = sorted(self.leaves[self.asked..end].to_vec());
            let n = dev.will_need(&next);
            self.stats.reads_issued += n;
            self.asked = end;
        }
        self.taken += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::testimg::{run, TestImg};

    /// Two trees of height 2 sharing one subtree (block 10, with leaves 11, 12) and the leftmost leaf.
    fn trees() -> TestImg {
        let mut t = TestImg::new(40);
        t.leaf(11, &run(100..104, 1)).leaf(12, &run(200..204, 2)).internal(10, &[(100, 11), (200, 12)]);
        t.leaf(21, &run(0..4, 3)).leaf(22, &run(10..14, 4)).internal(20, &[(0, 21), (10, 22)]);
        t.leaf(31, &run(10..14, 5)).internal(30, &[(0, 21), (10, 31)]);
        t.internal(1, &[(0, 20), (100, 10)]).internal(2, &[(0, 30), (100, 10)]);
        t
    }

    #[test]
    fn a_diff_plan_names_the_nodes_the_changed_only_walk_reads() {
        let dev = trees().dev();
        let (p, levels) = diff_levels(&dev, 1, 2);
        // Roots 1 and 2, then 20 and 30 (10 is shared), then the leaves: 21 (the leftmost, shared:
        // the walk reads it for the leaf depth), 22 and 31.
        assert_eq!(levels, [vec![1, 2], vec![20, 30], vec![21, 22, 31]]);
        assert_eq!((p.nodes, p.leaves), (7, 3));
        assert_eq!(diff_levels(&dev, 1, 1).1, Vec::<Vec<u64>>::new());
    }

    #[test]
    fn a_tree_plan_lists_the_leaves_in_key_order() {
        let dev = trees().dev();
        let mut s = Prefetch::default();
        assert_eq!(tree(&dev, 1, 8, &mut s), [21, 22, 11, 12]);
        assert_eq!(tree(&dev, 21, 8, &mut s), [21]);
        assert_eq!(s.leaves, 5);
    }

    #[test]
    fn plans_of_a_tree_with_a_cycle_end() {
        let mut t = trees();
        // Node 20's first child points back at the root.
        t.internal(20, &[(0, 1), (10, 22)]);
        let dev = t.dev();
        assert_eq!(tree(&dev, 1, 8, &mut Prefetch::default()), Vec::<u64>::new());
        assert!(diff_levels(&dev, 1, 2).1.len() <= MAX_DEPTH + 1);
    }
}
