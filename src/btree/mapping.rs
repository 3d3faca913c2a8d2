//! The two-level mapping tree: dev id -> bottom-level root; virtual block -> (data block, time).

use crate::block::MetadataDev;
use crate::btree::cursor::last_key;
use crate::btree::node::Value;
use crate::btree::walk::LeafWalker;
use crate::error::{Fault, Result};

/// A bottom-level mapping value: `data_block << 24 | time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockTime {
    pub data_block: u64,
    pub time: u32,
}

impl BlockTime {
    pub fn from_raw(raw: u64) -> Self {
        BlockTime { data_block: raw >> 24, time: (raw & 0xFF_FFFF) as u32 }
    }

    pub fn raw(&self) -> u64 {
        (self.data_block << 24) | (self.time as u64 & 0xFF_FFFF)
    }
}

impl Value for BlockTime {
    const SIZE: usize = 8;
    fn unpack(b: &[u8]) -> Self {
        BlockTime::from_raw(u64::unpack(b))
    }
    fn pack(&self, b: &mut [u8]) {
        self.raw().pack(b)
    }
}

/// `(dev_id, bottom-level root)` for every device in the top level, in id order. A root past the end
/// of the device, or pointing back at the top-level root or the leaf holding it, is an error that
/// names that leaf.
pub fn device_roots(dev: &MetadataDev, mapping_root: u64) -> Result<Vec<(u64, u64)>> {
    let mut roots = Vec::new();
    for leaf in LeafWalker::new(dev, mapping_root, 8) {
        let leaf = leaf?;
        for i in 0..leaf.len() {
            let root = leaf.child(i);
            if root >= dev.nr_blocks() {
                return Err(dev.fault(leaf.block, Fault::PointerPastEnd { child: root, nr_blocks: dev.nr_blocks() }));
            }
            if root == leaf.block || root == mapping_root {
                return Err(dev.fault(leaf.block, Fault::Cycle { child: root }));
            }
            roots.push((leaf.key(i), root));
        }
    }
    Ok(roots)
}

/// The highest virtual block a device maps (None if it maps none), down the rightmost edge of its
/// tree through the walker: a few metadata blocks, not a walk of every mapping.
pub fn last_mapped_block(dev: &MetadataDev, root: u64) -> Result<Option<u64>> {
    last_key(dev, root, BlockTime::SIZE)
}

/// Every mapping of one device, in virtual block order (read ahead of the walk on a cold device).
pub fn mappings(dev: &MetadataDev, root: u64) -> impl Iterator<Item = Result<(u64, BlockTime)>> + '_ {
    LeafWalker::cold_aware(dev, root, 8).entries::<BlockTime>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_time_packing_matches_the_kernel() {
        assert_eq!(BlockTime::from_raw(0x0000_0001_9000_0001), BlockTime { data_block: 400, time: 1 });
        assert_eq!(BlockTime { data_block: 100, time: 0 }.raw().to_le_bytes(), [0, 0, 0, 0x64, 0, 0, 0, 0]);
    }
}
