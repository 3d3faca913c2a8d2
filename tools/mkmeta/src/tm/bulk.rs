//! The bulk builder: whole trees from sorted entries, every node filled evenly.

use thinsend::btree::node::max_entries;

use super::{Node, Tm, Tree};
use crate::error::Result;

/// Nodes made by the bulk builder between two stores (to the spill file, in one write).
pub const BATCH: usize = 256;

impl Tm {
    /// Builds internal levels over `children` ((first key, block), in key order) and returns the
    /// root; an empty list gives an empty leaf of `tree`. Nodes are filled evenly, so every node
    /// is at least half full when a level has more than one.
    pub fn build_over(&mut self, tree: Tree, mut children: Vec<(u64, u64)>) -> Result<u64> {
        if children.is_empty() {
            return Ok(self.new_node(Node::leaf_of(tree)));
        }
        while children.len() > 1 {
            let mut next = Vec::new();
            let mut batch = Vec::new();
            for group in even_chunks(children.len(), max_entries(8)) {
                let mut n = Node::new(false, 8);
                for &(k, b) in &children[group] {
                    n.push(k, &b.to_le_bytes());
                }
                batch.push(n);
                if batch.len() == BATCH {
                    self.store_batch(&mut batch, &mut next)?;
                }
            }
            self.store_batch(&mut batch, &mut next)?;
            children = next;
        }
        Ok(children[0].1)
    }

    /// Builds a tree from sorted `(key, value)` pairs with leaves filled evenly.
    pub fn build_tree(&mut self, tree: Tree, entries: &[(u64, Vec<u8>)]) -> Result<u64> {
        let mut leaves = Vec::new();
        let mut batch = Vec::new();
        for group in even_chunks(entries.len(), max_entries(tree.value_size())) {
            let mut n = Node::leaf_of(tree);
            for (k, v) in &entries[group] {
                n.push(*k, v);
            }
            batch.push(n);
            if batch.len() == BATCH {
                self.store_batch(&mut batch, &mut leaves)?;
            }
        }
        self.store_batch(&mut batch, &mut leaves)?;
        self.build_over(tree, leaves)
    }

    /// Stores the (non-empty) nodes of `batch` in new blocks and appends `(first key, block)` of
    /// each to `out`.
    pub fn store_batch(&mut self, batch: &mut Vec<Node>, out: &mut Vec<(u64, u64)>) -> Result<()> {
        let keys: Vec<u64> = batch.iter().map(|n| n.keys[0]).collect();
        let blocks = self.new_nodes(std::mem::take(batch))?;
        out.extend(keys.into_iter().zip(blocks));
        Ok(())
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
