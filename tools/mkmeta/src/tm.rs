//! The in-memory transaction manager: metadata blocks holding decoded btree nodes, the reference
//! counts of both space maps, and the kernel's btree operations on top (shadowing, insert with
//! splits, remove with rebalancing, recursive delete, lookup) plus a bulk builder. Nodes are packed
//! with the library's `pack_node` only when the image is written.
//!
//! Shadowing follows `dm_tm_shadow_block` and `dm-btree`: a node is written in place if it was
//! allocated in this transaction and has one reference; otherwise it is copied, the original loses
//! a reference, and if the original is still shared (count > 1) the copy's children (internal
//! nodes) or values (leaves: data blocks, subtree roots) gain one.

use thinsend::btree::mapping::BlockTime;
use thinsend::btree::node::{max_entries, pack_node, Value};
use thinsend::spacemap::{INDEX_ENTRY_SIZE, REF_COUNT_SIZE};

use crate::error::{Error, Result};

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

/// A decoded btree node. `value_size` is 8 for internal nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub leaf: bool,
    pub value_size: usize,
    pub keys: Vec<u64>,
    pub values: Vec<u8>,
}

impl Node {
    pub fn new(leaf: bool, value_size: usize) -> Self {
        let max = max_entries(value_size);
        Node { leaf, value_size, keys: Vec::with_capacity(max), values: Vec::with_capacity(max * value_size) }
    }

    pub fn leaf_of(tree: Tree) -> Self {
        Node::new(true, tree.value_size())
    }

    pub fn max(&self) -> usize {
        max_entries(self.value_size)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    pub fn value(&self, i: usize) -> &[u8] {
        &self.values[i * self.value_size..(i + 1) * self.value_size]
    }

    pub fn value_u64(&self, i: usize) -> u64 {
        u64::unpack(self.value(i))
    }

    pub fn set_value(&mut self, i: usize, v: &[u8]) {
        let vs = self.value_size;
        self.values[i * vs..(i + 1) * vs].copy_from_slice(v);
    }

    pub fn set_u64(&mut self, i: usize, v: u64) {
        self.set_value(i, &v.to_le_bytes());
    }

    pub fn push(&mut self, key: u64, v: &[u8]) {
        self.keys.push(key);
        self.values.extend_from_slice(v);
    }

    pub fn insert_at(&mut self, i: usize, key: u64, v: &[u8]) {
        let vs = self.value_size;
        self.keys.insert(i, key);
        self.values.splice(i * vs..i * vs, v.iter().copied());
    }

    pub fn remove_at(&mut self, i: usize) {
        let vs = self.value_size;
        self.keys.remove(i);
        self.values.drain(i * vs..(i + 1) * vs);
    }

    /// The largest index whose key is <= `key`.
    pub fn lower_bound(&self, key: u64) -> Option<usize> {
        match self.keys.binary_search(&key) {
            Ok(i) => Some(i),
            Err(0) => None,
            Err(i) => Some(i - 1),
        }
    }

    /// Moves entries [at..] into a new node of the same kind.
    fn split_off(&mut self, at: usize) -> Node {
        let mut right = Node::new(self.leaf, self.value_size);
        right.keys.extend(self.keys.drain(at..));
        right.values.extend(self.values.drain(at * self.value_size..));
        right
    }

    fn append(&mut self, other: &mut Node) {
        self.keys.append(&mut other.keys);
        self.values.append(&mut other.values);
    }

    pub fn pack(&self, block: u64) -> Vec<u8> {
        pack_node(block, self.leaf, self.value_size, &self.keys, &self.values)
    }
}

//------------------------------------------------------------------------------------------------

/// A growable bitset.
#[derive(Debug, Clone, Default)]
struct Bits(Vec<u64>);

impl Bits {
    fn get(&self, i: u64) -> bool {
        self.0.get((i / 64) as usize).is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    fn from_counts(counts: &[u32]) -> Self {
        let mut words = vec![0u64; counts.len().div_ceil(64)];
        for (w, chunk) in words.iter_mut().zip(counts.chunks(64)) {
            for (j, &c) in chunk.iter().enumerate() {
                if c > 0 {
                    *w |= 1 << j;
                }
            }
        }
        Bits(words)
    }
}

/// The data space map: a count per data block, the counts at the last commit (a block freed in
/// this transaction is not reused before the next), and the allocation hint.
#[derive(Debug)]
pub struct DataSm {
    pub counts: Vec<u32>,
    committed: Bits,
    hint: u64,
}

impl DataSm {
    pub fn new(nr_blocks: u64) -> Self {
        DataSm { counts: vec![0; nr_blocks as usize], committed: Bits::default(), hint: 0 }
    }

    pub fn nr_blocks(&self) -> u64 {
        self.counts.len() as u64
    }

    fn is_free(&self, b: u64) -> bool {
        self.counts[b as usize] == 0 && !self.committed.get(b)
    }

    /// The kernel's `sm_disk_new_block`: the lowest block free in both the committed and the
    /// current map, searching from the hint and then from the start.
    pub fn alloc(&mut self) -> Result<u64> {
        let n = self.nr_blocks();
        let found =
            (self.hint..n).find(|&b| self.is_free(b)).or_else(|| (0..self.hint.min(n)).find(|&b| self.is_free(b)));
        match found {
            Some(b) => {
                self.counts[b as usize] = 1;
                self.hint = b + 1;
                Ok(b)
            }
            None => Err(Error::Pool(format!("data device full: all {n} data blocks are in use"))),
        }
    }

    pub fn inc(&mut self, b: u64) {
        self.counts[b as usize] += 1;
    }

    pub fn dec(&mut self, b: u64) {
        let c = &mut self.counts[b as usize];
        debug_assert!(*c > 0, "data block {b} count underflow");
        *c = c.saturating_sub(1);
    }

    fn commit(&mut self) {
        self.committed = Bits::from_counts(&self.counts);
    }
}

//------------------------------------------------------------------------------------------------

/// Metadata blocks and the metadata space map's counts. Blocks 0 (superblock) and the metadata
/// snapshot's copy have counts but no node; space-map blocks are added by the image writer.
#[derive(Debug, Default)]
pub struct Tm {
    nodes: Vec<Option<Box<Node>>>,
    pub counts: Vec<u32>,
    committed: Vec<bool>,
    hint: u64,
    pub data: DataSm,
}

impl Default for DataSm {
    fn default() -> Self {
        DataSm::new(0)
    }
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
            self.nodes.push(None);
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
        self.nodes[b as usize] = Some(Box::new(node));
        b
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
            self.nodes[b as usize] = None;
        }
    }

    pub fn count(&self, b: u64) -> u32 {
        self.counts[b as usize]
    }

    pub fn node(&self, b: u64) -> &Node {
        self.nodes[b as usize].as_deref().unwrap_or_else(|| panic!("metadata block {b} holds no node"))
    }

    pub fn node_mut(&mut self, b: u64) -> &mut Node {
        self.nodes[b as usize].as_deref_mut().unwrap_or_else(|| panic!("metadata block {b} holds no node"))
    }

    /// Every block holding a node, with the node.
    pub fn nodes(&self) -> impl Iterator<Item = (u64, &Node)> {
        self.nodes.iter().enumerate().filter_map(|(b, n)| n.as_deref().map(|n| (b as u64, n)))
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
        let node = self.nodes[b as usize].take().unwrap_or_else(|| panic!("metadata block {b} holds no node"));
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

    //--------------------------------------------------------------------------------------------
    // Insert (dm-btree's btree_insert_raw with split_beneath / split_sibling).

    /// Shadows the path from `root` to the leaf where `key` belongs, splitting full nodes on the
    /// way. Returns (new root, leaf block, index of `key` or where it goes).
    pub fn insert_raw(&mut self, root: u64, tree: Tree, key: u64) -> (u64, u64, usize) {
        let new_root = self.shadow(root, tree);
        let mut b = new_root;
        let mut parent: Option<(u64, usize)> = None;
        loop {
            if self.node(b).len() == self.node(b).max() {
                match parent {
                    None => self.split_beneath(b),
                    Some((p, pi)) => b = self.rebalance_or_split(p, pi, b, tree, key),
                }
            }
            let n = self.node_mut(b);
            let i = n.lower_bound(key);
            if n.leaf {
                let idx = match i {
                    Some(i) if n.keys[i] == key => i,
                    Some(i) => i + 1,
                    None => 0,
                };
                return (new_root, b, idx);
            }
            let i = i.unwrap_or_else(|| {
                n.keys[0] = key;
                0
            });
            let c = self.shadow_child(b, i, tree);
            parent = Some((b, i));
            b = c;
        }
    }

    /// Splits the full root `b` into two new children; `b` stays the root.
    fn split_beneath(&mut self, b: u64) {
        let mut left = std::mem::replace(self.node_mut(b), Node::new(false, 8));
        let right = left.split_off(left.len() / 2);
        let (lk, rk) = (left.keys[0], right.keys[0]);
        let lb = self.new_node(left);
        let rb = self.new_node(right);
        let root = self.node_mut(b);
        root.push(lk, &lb.to_le_bytes());
        root.push(rk, &rb.to_le_bytes());
    }

    /// A full non-root node `b` (entry `pi` of `p`) about to take `key`, as Linux 5.11+ does it
    /// ("dm btree: improve btree residency"): move entries to an unshared sibling with room, else
    /// split one node into two at either end of the parent (sequential inserts), else two into
    /// three. Returns the node `key` belongs in.
    fn rebalance_or_split(&mut self, p: u64, pi: usize, b: u64, tree: Tree, key: u64) -> u64 {
        /// Free entries a sibling needs to take some of a full node's.
        const SPACE_THRESHOLD: usize = 8;
        let nr_parent = self.node(p).len();
        let free = |tm: &Tm, c: u64| tm.node(c).max() - tm.node(c).len();
        let mut left_shared = false;
        let mut right_shared = false;
        if pi > 0 {
            let lb = self.node(p).value_u64(pi - 1);
            left_shared = self.count(lb) > 1;
            if !left_shared && free(self, lb) >= SPACE_THRESHOLD {
                let lb = self.shadow_child(p, pi - 1, tree);
                let rk = self.redistribute2(lb, b);
                self.node_mut(p).keys[pi] = rk;
                return if key < rk { lb } else { b };
            }
        }
        if pi + 1 < nr_parent {
            let rb = self.node(p).value_u64(pi + 1);
            right_shared = self.count(rb) > 1;
            if !right_shared && free(self, rb) >= SPACE_THRESHOLD {
                let rb = self.shadow_child(p, pi + 1, tree);
                let rk = self.redistribute2(b, rb);
                self.node_mut(p).keys[pi + 1] = rk;
                return if key < rk { b } else { rb };
            }
        }
        if left_shared || right_shared || nr_parent <= 2 || pi == 0 || pi + 1 == nr_parent {
            return self.split_sibling(p, pi, b, key);
        }
        // split_two_into_three with the left neighbour: left, a new middle node, and `b`.
        let lb = self.shadow_child(p, pi - 1, tree);
        let mut all = self.take(lb);
        let mut right = self.take(b);
        let total = all.len() + right.len();
        let target_left = total / 3;
        let target_middle = (total - target_left) / 2;
        all.append(&mut right);
        let right = all.split_off(target_left + target_middle);
        let middle = all.split_off(target_left);
        let (mk, rk) = (middle.keys[0], right.keys[0]);
        self.put(lb, all);
        self.put(b, right);
        let mb = self.new_node(middle);
        let pn = self.node_mut(p);
        pn.keys[pi] = rk;
        pn.insert_at(pi, mk, &mb.to_le_bytes());
        if key < mk {
            lb
        } else if key < rk {
            mb
        } else {
            b
        }
    }

    /// Shares the entries of two neighbours evenly (left gets the smaller half); returns the right
    /// node's first key.
    fn redistribute2(&mut self, lb: u64, rb: u64) -> u64 {
        let mut all = self.take(lb);
        let mut right = self.take(rb);
        let total = all.len() + right.len();
        all.append(&mut right);
        let right = all.split_off(total / 2);
        let rk = right.keys[0];
        self.put(lb, all);
        self.put(rb, right);
        rk
    }

    /// Splits the full child `b` (entry `pi` of `parent`) into two siblings; returns the half that
    /// `key` belongs in.
    fn split_sibling(&mut self, parent: u64, pi: usize, b: u64, key: u64) -> u64 {
        let n = self.node_mut(b);
        let at = n.len() / 2;
        let right = n.split_off(at);
        let rk = right.keys[0];
        let rb = self.new_node(right);
        self.node_mut(parent).insert_at(pi + 1, rk, &rb.to_le_bytes());
        if key < rk {
            b
        } else {
            rb
        }
    }

    /// Inserts or replaces `key`; a replaced value loses its reference (for mappings only when the
    /// data block changes, as the kernel's `equal` says). Returns (new root, inserted).
    pub fn insert(&mut self, root: u64, tree: Tree, key: u64, value: &[u8]) -> (u64, bool) {
        let (new_root, leaf, idx) = self.insert_raw(root, tree, key);
        let n = self.node(leaf);
        if idx < n.len() && n.keys[idx] == key {
            let old = n.value(idx).to_vec();
            let same = match tree {
                Tree::Bottom => BlockTime::unpack(&old).data_block == BlockTime::unpack(value).data_block,
                _ => old == value,
            };
            if !same {
                self.dec_value(tree, &old);
            }
            self.node_mut(leaf).set_value(idx, value);
            (new_root, false)
        } else {
            self.node_mut(leaf).insert_at(idx, key, value);
            (new_root, true)
        }
    }

    //--------------------------------------------------------------------------------------------
    // Remove (dm-btree-remove: rebalance children on the way down so a non-root node never drops
    // below max/3 entries).

    /// Shadows and rebalances the path to the leaf holding `key`. Returns (new root, leaf, index of
    /// `key` in it if present).
    pub fn remove_raw(&mut self, root: u64, tree: Tree, key: u64) -> (u64, u64, Option<usize>) {
        let new_root = self.shadow(root, tree);
        let mut b = new_root;
        loop {
            if self.node(b).leaf {
                let n = self.node(b);
                let i = n.lower_bound(key).filter(|&i| n.keys[i] == key);
                return (new_root, b, i);
            }
            self.rebalance_children(b, tree, key);
            let n = self.node(b);
            if n.leaf {
                continue;
            }
            let Some(i) = n.lower_bound(key) else {
                return (new_root, b, None);
            };
            b = self.shadow_child(b, i, tree);
        }
    }

    /// Removes `key` (which must be present); its value loses its reference. Returns the new root.
    pub fn remove(&mut self, root: u64, tree: Tree, key: u64) -> Result<u64> {
        let (new_root, leaf, i) = self.remove_raw(root, tree, key);
        let Some(i) = i else {
            return Err(Error::Pool(format!("key {key} not found for removal")));
        };
        let old = self.node(leaf).value(i).to_vec();
        self.node_mut(leaf).remove_at(i);
        self.dec_value(tree, &old);
        Ok(new_root)
    }

    fn rebalance_children(&mut self, b: u64, tree: Tree, key: u64) {
        let n = self.node(b);
        if n.len() == 1 {
            // A root with one child takes the child's place.
            let child = n.value_u64(0);
            let copy = self.node(child).clone();
            *self.node_mut(b) = copy;
            if self.count(child) > 1 {
                self.inc_children(b, tree);
            }
            self.dec(child);
            return;
        }
        let Some(i) = n.lower_bound(key) else { return };
        let last = n.len() - 1;
        if i == 0 {
            self.rebalance2(b, 0, tree);
        } else if i == last {
            self.rebalance2(b, i - 1, tree);
        } else {
            self.rebalance3(b, i - 1, tree);
        }
    }

    fn take(&mut self, b: u64) -> Node {
        std::mem::replace(self.node_mut(b), Node::new(true, 8))
    }

    fn put(&mut self, b: u64, n: Node) {
        *self.node_mut(b) = n;
    }

    /// Merges children `li` and `li + 1` of `p`, or shares their entries evenly.
    fn rebalance2(&mut self, p: u64, li: usize, tree: Tree) {
        let lb = self.shadow_child(p, li, tree);
        let rb = self.shadow_child(p, li + 1, tree);
        let mut left = self.take(lb);
        let mut right = self.take(rb);
        let threshold = 2 * (left.max() / 3 + 1);
        if left.len() + right.len() < threshold {
            left.append(&mut right);
            self.put(lb, left);
            self.put(rb, right);
            self.node_mut(p).remove_at(li + 1);
            self.dec(rb);
        } else {
            let total = left.len() + right.len();
            let mut all = left;
            all.append(&mut right);
            let right = all.split_off(total / 2);
            let rk = right.keys[0];
            self.put(lb, all);
            self.put(rb, right);
            self.node_mut(p).keys[li + 1] = rk;
        }
    }

    /// Children `li`, `li + 1`, `li + 2` of `p`: drop the centre if the three fit in two, else
    /// share the entries evenly between the three.
    fn rebalance3(&mut self, p: u64, li: usize, tree: Tree) {
        let lb = self.shadow_child(p, li, tree);
        let cb = self.shadow_child(p, li + 1, tree);
        let rb = self.shadow_child(p, li + 2, tree);
        let mut left = self.take(lb);
        let mut centre = self.take(cb);
        let mut right = self.take(rb);
        let max = left.max();
        let total = left.len() + centre.len() + right.len();
        if total < (max / 3) * 4 + 1 {
            // delete_center_node: the centre's entries fill the left, the rest go to the right.
            let to_left = (max - left.len()).min(centre.len());
            let mut rest = centre.split_off(to_left);
            left.append(&mut centre);
            rest.append(&mut right);
            let rk = rest.keys[0];
            self.put(lb, left);
            self.put(cb, centre);
            self.put(rb, rest);
            let pn = self.node_mut(p);
            pn.keys[li + 2] = rk;
            pn.remove_at(li + 1);
            self.dec(cb);
            self.rebalance2(p, li, tree);
        } else {
            // redistribute3
            let target_right = total / 3;
            let target_left = target_right + usize::from(target_right * 3 != total);
            let mut all = left;
            all.append(&mut centre);
            all.append(&mut right);
            let right = all.split_off(total - target_right);
            let centre = all.split_off(target_left);
            let (ck, rk) = (centre.keys[0], right.keys[0]);
            self.put(lb, all);
            self.put(cb, centre);
            self.put(rb, right);
            let pn = self.node_mut(p);
            pn.keys[li + 1] = ck;
            pn.keys[li + 2] = rk;
        }
    }

    //--------------------------------------------------------------------------------------------
    // Bulk building.

    /// Builds internal levels over `children` ((first key, block), in key order) and returns the
    /// root; an empty list gives an empty leaf of `tree`. Nodes are filled evenly, so every node
    /// is at least half full when a level has more than one.
    pub fn build_over(&mut self, tree: Tree, mut children: Vec<(u64, u64)>) -> u64 {
        if children.is_empty() {
            return self.new_node(Node::leaf_of(tree));
        }
        while children.len() > 1 {
            let mut next = Vec::new();
            for group in even_chunks(children.len(), max_entries(8)) {
                let mut n = Node::new(false, 8);
                for &(k, b) in &children[group] {
                    n.push(k, &b.to_le_bytes());
                }
                let k0 = n.keys[0];
                next.push((k0, self.new_node(n)));
            }
            children = next;
        }
        children[0].1
    }

    /// Builds a tree from sorted `(key, value)` pairs with leaves filled evenly.
    pub fn build_tree(&mut self, tree: Tree, entries: &[(u64, Vec<u8>)]) -> u64 {
        let vs = tree.value_size();
        let mut leaves = Vec::new();
        for group in even_chunks(entries.len(), max_entries(vs)) {
            let mut n = Node::leaf_of(tree);
            for (k, v) in &entries[group] {
                n.push(*k, v);
            }
            let k0 = n.keys[0];
            leaves.push((k0, self.new_node(n)));
        }
        self.build_over(tree, leaves)
    }

    /// Number of nodes `build_tree` makes for `n` entries.
    pub fn nodes_for(tree: Tree, n: usize) -> u64 {
        let mut level = n.div_ceil(max_entries(tree.value_size()));
        if level == 0 {
            return 1;
        }
        let mut total = level;
        while level > 1 {
            level = level.div_ceil(max_entries(8));
            total += level;
        }
        total as u64
    }
}

/// Splits `n` items into `ceil(n / max)` consecutive groups whose sizes differ by at most one.
pub fn even_chunks(n: usize, max: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let k = n.div_ceil(max);
    let (base, extra) = n.checked_div(k).map_or((0, 0), |b| (b, n % k));
    let mut start = 0;
    (0..k).map(move |i| {
        let len = base + usize::from(i < extra);
        let r = start..start + len;
        start += len;
        r
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bt(d: u64) -> Vec<u8> {
        BlockTime { data_block: d, time: 0 }.raw().to_le_bytes().to_vec()
    }

    /// Walks a tree checking fill, key order and depth; returns its keys.
    fn keys_of(tm: &Tm, root: u64) -> Vec<u64> {
        fn walk(tm: &Tm, b: u64, root: bool, depth: usize, leaf_depth: &mut Option<usize>, out: &mut Vec<u64>) {
            let n = tm.node(b);
            assert!(root || n.len() >= n.max() / 3, "underfull node {b}: {}", n.len());
            assert!(n.keys.windows(2).all(|w| w[0] < w[1]));
            if n.leaf {
                assert_eq!(*leaf_depth.get_or_insert(depth), depth);
                out.extend(&n.keys);
            } else {
                for i in 0..n.len() {
                    let before = out.len();
                    walk(tm, n.value_u64(i), false, depth + 1, leaf_depth, out);
                    assert!(out[before] >= n.keys[i]);
                    if i + 1 < n.len() {
                        assert!(*out.last().unwrap() < n.keys[i + 1]);
                    }
                }
            }
        }
        let mut out = Vec::new();
        walk(tm, root, true, 0, &mut None, &mut out);
        out
    }

    #[test]
    fn even_chunks_cover_and_balance() {
        let v: Vec<_> = even_chunks(253, 252).collect();
        assert_eq!(v, vec![0..127, 127..253]);
        assert_eq!(even_chunks(0, 252).count(), 0);
        assert_eq!(even_chunks(252, 252).collect::<Vec<_>>(), vec![0..252]);
    }

    #[test]
    fn inserts_and_removes_keep_the_tree_valid_and_counts_exact() {
        let mut tm = Tm::new(100_000);
        let mut root = tm.new_node(Node::leaf_of(Tree::Bottom));
        let mut rng = crate::rng::Rng::new(7);
        let mut present = std::collections::BTreeSet::new();
        for _ in 0..20_000 {
            let k = rng.below(30_000);
            if present.insert(k) {
                let d = tm.data.alloc().unwrap();
                root = tm.insert(root, Tree::Bottom, k, &bt(d)).0;
            }
        }
        assert_eq!(keys_of(&tm, root), present.iter().copied().collect::<Vec<_>>());
        tm.commit();
        for _ in 0..15_000 {
            let k = rng.below(30_000);
            if present.remove(&k) {
                root = tm.remove(root, Tree::Bottom, k).unwrap();
            }
        }
        assert_eq!(keys_of(&tm, root), present.iter().copied().collect::<Vec<_>>());
        let data_in_use = tm.data.counts.iter().filter(|&&c| c > 0).count();
        assert_eq!(data_in_use, present.len());
        let nodes = tm.nodes().count();
        let counted = tm.counts.iter().filter(|&&c| c > 0).count();
        assert_eq!(nodes, counted);
        tm.del(root, Tree::Bottom);
        assert_eq!(tm.nodes().count(), 0);
        assert!(tm.data.counts.iter().all(|&c| c == 0));
    }

    /// Height of the tree at `root` (1 = a lone leaf).
    fn height(tm: &Tm, mut b: u64) -> usize {
        let mut h = 1;
        while !tm.node(b).leaf {
            b = tm.node(b).value_u64(0);
            h += 1;
        }
        h
    }

    #[test]
    fn three_level_trees_shrink_back_to_a_leaf_with_every_node_a_third_full() {
        let mut tm = Tm::new(100_000);
        let mut root = tm.new_node(Node::leaf_of(Tree::Bottom));
        for k in 0..70_000u64 {
            let d = tm.data.alloc().unwrap();
            root = tm.insert(root, Tree::Bottom, k, &bt(d)).0;
        }
        assert_eq!(height(&tm, root), 3);
        tm.commit();
        // A snapshot-like second reference: removals must copy, never change the shared tree.
        tm.inc(root);
        let shared_root = root;
        let before = keys_of(&tm, shared_root);
        let mut rng = crate::rng::Rng::new(3);
        let mut present: std::collections::BTreeSet<u64> = (0..70_000).collect();
        while present.len() > 100 {
            let k = rng.below(70_000);
            if present.remove(&k) {
                root = tm.remove(root, Tree::Bottom, k).unwrap();
            }
        }
        assert_eq!(keys_of(&tm, root), present.iter().copied().collect::<Vec<_>>());
        assert_eq!(keys_of(&tm, shared_root), before);
        assert_eq!(height(&tm, root), 1);
        tm.del(root, Tree::Bottom);
        tm.del(shared_root, Tree::Bottom);
        assert_eq!(tm.nodes().count(), 0);
        assert!(tm.data.counts.iter().all(|&c| c == 0));
    }

    #[test]
    fn nodes_for_matches_build_tree() {
        for n in [0usize, 1, 252, 253, 252 * 252 + 1] {
            let mut tm = Tm::new(0);
            let entries: Vec<(u64, Vec<u8>)> = (0..n as u64).map(|k| (k, vec![0; 4])).collect();
            tm.build_tree(Tree::RefCount, &entries);
            assert_eq!(tm.nodes().count() as u64, Tm::nodes_for(Tree::RefCount, n), "n={n}");
        }
    }
}
