//! The in-memory transaction manager: metadata blocks holding decoded btree nodes, the reference
//! counts of both space maps, and the kernel's btree operations on top (shadowing, insert with
//! splits, remove with rebalancing, recursive delete, lookup) plus a bulk builder. Nodes are packed
//! with the library's `pack_node` only when the image is written.
//!
//! Shadowing follows `dm_tm_shadow_block` and `dm-btree`: a node is written in place if it was
//! allocated in this transaction and has one reference; otherwise it is copied, the original loses
//! a reference, and if the original is still shared (count > 1) the copy's children (internal
//! nodes) or values (leaves: data blocks, subtree roots) gain one.

mod bulk;
mod counts;
mod data_sm;
mod insert;
mod node;
mod remove;
mod store;
#[cfg(test)]
mod tests;

pub use bulk::{even_chunks, BATCH};
pub use counts::Counts;
pub use data_sm::DataSm;
pub use node::Node;

use std::path::Path;

use tempfile::NamedTempFile;
use thinsend::btree::mapping::BlockTime;
use thinsend::btree::node::Value;
use thinsend::spacemap::{INDEX_ENTRY_SIZE, REF_COUNT_SIZE};

use crate::error::Result;
use store::Store;

/// The trees of a thin pool, by what their leaf values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tree {
    /// dev id -> root of the device's mapping tree (values hold metadata references).
    Top,
    /// virtual block -> block_time (values hold data references).
    Bottom,
    /// dev id -> device details.
    Details,
    /// data space map: bitmap index -> index entry.
    Index,
    /// block -> count.
    RefCount,
}

impl Tree {
    pub fn value_size(self) -> usize {
        match self {
            Tree::Top | Tree::Bottom => 8,
            Tree::Details => 24,
            Tree::Index => INDEX_ENTRY_SIZE,
            Tree::RefCount => REF_COUNT_SIZE,
        }
    }
}

//------------------------------------------------------------------------------------------------

/// Metadata blocks and the metadata space map's counts. Blocks 0 (superblock) and the metadata
/// snapshot's copy have counts but no node; space-map blocks are added by the image writer.
/// Nodes live in memory, or (after [`Tm::spill_to`]) bulk-built ones in the image's file.
#[derive(Debug, Default)]
pub struct Tm {
    store: Store,
    pub counts: Vec<u32>,
    committed: Vec<bool>,
    hint: u64,
    pub data: DataSm,
}

impl Tm {
    pub fn new(nr_data_blocks: u64) -> Self {
        Tm { data: DataSm::new(nr_data_blocks), ..Default::default() }
    }

    /// Blocks ever used: every block number in use is below this.
    pub fn len(&self) -> u64 {
        self.counts.len() as u64
    }

    pub fn is_empty(&self) -> bool {
        self.counts.is_empty()
    }

    /// One past the highest block in use.
    pub fn high_water(&self) -> u64 {
        self.counts.iter().rposition(|&c| c > 0).map_or(0, |b| b as u64 + 1)
    }

    fn is_free(&self, b: u64) -> bool {
        self.counts[b as usize] == 0 && !self.committed[b as usize]
    }

    /// The lowest block at or after the hint that is free now and was free at the last commit;
    /// the device is treated as unbounded (the image writer checks the size at the end).
    pub fn alloc(&mut self) -> u64 {
        let b = (self.hint..self.len()).find(|&b| self.is_free(b)).unwrap_or_else(|| {
            self.store.push_empty();
            self.counts.push(0);
            self.committed.push(false);
            self.len() - 1
        });
        self.counts[b as usize] = 1;
        self.hint = b + 1;
        b
    }

    /// The block the `k`-th (0-based) allocation from block 0 would return, without allocating.
    pub fn nth_free(&self, k: u64) -> u64 {
        let mut seen = 0;
        for b in 0..self.len() {
            if self.is_free(b) {
                if seen == k {
                    return b;
                }
                seen += 1;
            }
        }
        self.len() + (k - seen)
    }

    pub fn new_node(&mut self, node: Node) -> u64 {
        let b = self.alloc();
        self.store.set(b, node);
        b
    }

    /// New nodes in blocks allocated in order, written straight to the spill file if there is one.
    pub fn new_nodes(&mut self, nodes: Vec<Node>) -> Result<Vec<u64>> {
        let blocks: Vec<u64> = nodes.iter().map(|_| self.alloc()).collect();
        self.store.put_many(blocks.iter().copied().zip(nodes).collect())?;
        Ok(blocks)
    }

    /// From now on bulk-built nodes are written to `tmp` (the image's temporary file for `out`)
    /// at once and read back only when touched, so memory stays bounded whatever the pool's size.
    pub fn spill_to(&mut self, tmp: NamedTempFile, out: &Path) -> Result<()> {
        self.store.spill_to(tmp, out)
    }

    /// Ends spilling: the temporary file, if there was one, whose frozen blocks hold their nodes.
    pub fn unspill(&mut self) -> Option<NamedTempFile> {
        self.store.unspill()
    }

    /// Block `b`'s node is in the spill file (written, unchanged since).
    pub fn is_frozen(&self, b: u64) -> bool {
        self.store.is_frozen(b)
    }

    /// The spill file holds bytes at block `b` that are not its content (a frozen node since
    /// changed or freed).
    pub fn is_stale(&self, b: u64) -> bool {
        self.store.is_stale(b)
    }

    pub fn inc(&mut self, b: u64) {
        self.counts[b as usize] += 1;
    }

    /// Drops one reference; a block that reaches 0 loses its node (its children are not touched).
    pub fn dec(&mut self, b: u64) {
        let c = &mut self.counts[b as usize];
        debug_assert!(*c > 0, "metadata block {b} count underflow");
        *c = c.saturating_sub(1);
        if *c == 0 {
            self.store.clear(b);
        }
    }

    pub fn count(&self, b: u64) -> u32 {
        self.counts[b as usize]
    }

    pub fn node(&self, b: u64) -> &Node {
        self.store.get(b).unwrap_or_else(|| panic!("metadata block {b} holds no node"))
    }

    pub fn node_mut(&mut self, b: u64) -> &mut Node {
        self.store.get_mut(b).unwrap_or_else(|| panic!("metadata block {b} holds no node"))
    }

    /// Every block holding a node, with the node (frozen ones read back: for tests).
    pub fn nodes(&self) -> impl Iterator<Item = (u64, &Node)> {
        self.store.all()
    }

    /// Block `b`'s node if the image writer must still write it (in memory, not frozen in the
    /// spill file).
    pub fn unwritten_node(&self, b: u64) -> Option<&Node> {
        self.store.in_memory(b)
    }

    /// Ends the transaction: blocks freed in it become allocatable, and every block in use will be
    /// shadowed before the next change.
    pub fn commit(&mut self) {
        for (c, k) in self.counts.iter().zip(self.committed.iter_mut()) {
            *k = *c > 0;
        }
        self.hint = 0;
        self.data.commit();
    }

    //--------------------------------------------------------------------------------------------
    // Value references.

    fn inc_value(&mut self, tree: Tree, v: &[u8]) {
        match tree {
            Tree::Top => self.inc(u64::unpack(v)),
            Tree::Bottom => self.data.inc(BlockTime::unpack(v).data_block),
            _ => {}
        }
    }

    fn dec_value(&mut self, tree: Tree, v: &[u8]) {
        match tree {
            Tree::Top => self.del(u64::unpack(v), Tree::Bottom),
            Tree::Bottom => self.data.dec(BlockTime::unpack(v).data_block),
            _ => {}
        }
    }

    fn inc_children(&mut self, b: u64, tree: Tree) {
        let node = self.node(b);
        if node.leaf {
            let vals: Vec<u8> = node.values.clone();
            for v in vals.chunks(node.value_size) {
                self.inc_value(tree, v);
            }
        } else {
            let children: Vec<u64> = (0..node.len()).map(|i| node.value_u64(i)).collect();
            for c in children {
                self.inc(c);
            }
        }
    }

    /// `dm_tm_shadow_block` plus btree's `inc_children`: a block writable in this transaction.
    pub fn shadow(&mut self, b: u64, tree: Tree) -> u64 {
        let shared = self.count(b) > 1;
        if !self.committed[b as usize] && !shared {
            return b;
        }
        let copy = self.node(b).clone();
        let nb = self.new_node(copy);
        self.dec(b);
        if shared {
            self.inc_children(nb, tree);
        }
        nb
    }

    /// Shadows child `i` of the (writable) internal node `parent` and points the parent at the copy.
    fn shadow_child(&mut self, parent: u64, i: usize, tree: Tree) -> u64 {
        let c = self.node(parent).value_u64(i);
        let nc = self.shadow(c, tree);
        if nc != c {
            self.node_mut(parent).set_u64(i, nc);
        }
        nc
    }

    /// `dm_btree_del`: drops one reference to the tree at `b`, freeing recursively what is no longer
    /// referenced.
    pub fn del(&mut self, b: u64, tree: Tree) {
        if self.count(b) > 1 {
            self.dec(b);
            return;
        }
        let node = self.store.take(b).unwrap_or_else(|| panic!("metadata block {b} holds no node"));
        if node.leaf {
            for v in node.values.chunks(node.value_size) {
                self.dec_value(tree, v);
            }
        } else {
            for i in 0..node.len() {
                self.del(node.value_u64(i), tree);
            }
        }
        self.dec(b);
    }

    //--------------------------------------------------------------------------------------------
    // Lookup.

    pub fn lookup(&self, root: u64, key: u64) -> Option<&[u8]> {
        let mut b = root;
        loop {
            let n = self.node(b);
            let i = n.lower_bound(key)?;
            if n.leaf {
                return (n.keys[i] == key).then(|| n.value(i));
            }
            b = n.value_u64(i);
        }
    }

    /// The smallest key >= `from`.
    pub fn next_key(&self, root: u64, from: u64) -> Option<u64> {
        let n = self.node(root);
        if n.leaf {
            let i = n.keys.partition_point(|&k| k < from);
            return n.keys.get(i).copied();
        }
        let start = n.lower_bound(from).unwrap_or(0);
        (start..n.len()).find_map(|i| self.next_key(n.value_u64(i), from))
    }

    /// The highest key in the tree.
    pub fn last_key(&self, root: u64) -> Option<u64> {
        let mut b = root;
        loop {
            let n = self.node(b);
            if n.is_empty() {
                return None;
            }
            if n.leaf {
                return n.keys.last().copied();
            }
            b = n.value_u64(n.len() - 1);
        }
    }

    pub(super) fn take(&mut self, b: u64) -> Node {
        std::mem::replace(self.node_mut(b), Node::new(true, 8))
    }

    pub(super) fn put(&mut self, b: u64, n: Node) {
        *self.node_mut(b) = n;
    }
}
