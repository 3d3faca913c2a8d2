//! Building a restored device's tree bottom-up from its units: own mappings packed into evenly
//! filled leaves, shared leaves referenced once more, too-small neighbours merged or copied.

use super::*;

impl Restorer {
    pub(super) fn unit_len(&self, u: &Unit) -> usize {
        match u {
            Unit::Own(v) => v.len(),
            Unit::Shared { def, leaf } => self.defs[*def].leaves[*leaf].len(),
        }
    }

    /// Copies a shared leaf's mappings into an own unit.
    pub(super) fn unshare(&self, u: &mut Unit) {
        if let Unit::Shared { def, leaf } = *u {
            *u = Unit::Own(self.defs[def].leaves[leaf].clone());
        }
    }

    /// Builds a device's tree; returns (root, number of mappings).
    pub(super) fn build_device(&mut self, mut units: Vec<Unit>) -> Result<(u64, u64)> {
        loop {
            // Merge neighbouring own units.
            let mut merged: Vec<Unit> = Vec::with_capacity(units.len());
            for u in units {
                match (merged.last_mut(), u) {
                    (Some(Unit::Own(a)), Unit::Own(mut b)) => a.append(&mut b),
                    (_, u) => merged.push(u),
                }
            }
            units = merged;
            if units.len() <= 1 {
                break;
            }
            // The first leaf that would be under a third full, and the shared unit to copy.
            let bad = (0..units.len()).find(|&i| self.unit_len(&units[i]) < LEAF_MIN);
            let Some(i) = bad else { break };
            let victim = match units[i] {
                Unit::Shared { .. } => i,
                Unit::Own(_) => {
                    if i > 0 {
                        i - 1
                    } else {
                        i + 1
                    }
                }
            };
            let mut u = std::mem::replace(&mut units[victim], Unit::Own(Vec::new()));
            self.unshare(&mut u);
            units[victim] = u;
        }
        let mut leaves = Vec::new();
        let mut count = 0u64;
        for u in units {
            match u {
                Unit::Own(v) => {
                    count += v.len() as u64;
                    for r in even_chunks(v.len(), LEAF_MAX) {
                        let b = self.new_leaf(&v[r.clone()]);
                        leaves.push((v[r.start].0, b));
                    }
                }
                Unit::Shared { def, leaf } => {
                    let entries = &self.defs[def].leaves[leaf];
                    count += entries.len() as u64;
                    let k0 = entries[0].0;
                    let b = match self.defs[def].blocks[leaf] {
                        Some(b) => {
                            self.tm.inc(b);
                            b
                        }
                        None => {
                            let entries = entries.clone();
                            let b = self.new_leaf(&entries);
                            self.defs[def].blocks[leaf] = Some(b);
                            b
                        }
                    };
                    leaves.push((k0, b));
                }
            }
        }
        Ok((self.tm.build_over(Tree::Bottom, leaves)?, count))
    }

    /// A new mapping leaf; its data blocks gain a reference.
    pub(super) fn new_leaf(&mut self, entries: &[(u64, u64)]) -> u64 {
        let mut n = Node::leaf_of(Tree::Bottom);
        for &(k, raw) in entries {
            n.push(k, &raw.to_le_bytes());
            self.tm.data.inc(BlockTime::from_raw(raw).data_block);
        }
        self.tm.new_node(n)
    }
}
