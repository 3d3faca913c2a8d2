//! Btree remove: dm-btree-remove, rebalancing children on the way down so a non-root node never
//! drops below max/3 entries.

use super::{Tm, Tree};
use crate::error::{Error, Result};

impl Tm {
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
}
