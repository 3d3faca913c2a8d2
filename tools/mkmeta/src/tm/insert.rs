//! Btree insert: dm-btree's `btree_insert_raw` with `split_beneath`, `split_sibling` and the 5.11+
//! rebalancing into siblings.

use thinsend::btree::mapping::BlockTime;
use thinsend::btree::node::Value;

use super::{Node, Tm, Tree};

impl Tm {
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
}
