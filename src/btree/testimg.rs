//! Small metadata images built in memory for unit tests of the walker and of what is built on it.

use crate::block::{MetadataDev, BLOCK_SIZE};
use crate::btree::node::pack_node;

pub struct TestImg {
    bytes: Vec<u8>,
}

impl TestImg {
    /// `n` zero blocks (invalid as anything).
    pub fn new(n: usize) -> Self {
        TestImg { bytes: vec![0; n * BLOCK_SIZE] }
    }

    fn put(&mut self, b: u64, block: Vec<u8>) -> &mut Self {
        let at = b as usize * BLOCK_SIZE;
        self.bytes[at..at + BLOCK_SIZE].copy_from_slice(&block);
        self
    }

    /// A leaf at `b` with 8-byte values.
    pub fn leaf(&mut self, b: u64, entries: &[(u64, u64)]) -> &mut Self {
        let keys: Vec<u64> = entries.iter().map(|e| e.0).collect();
        let vals: Vec<u8> = entries.iter().flat_map(|e| e.1.to_le_bytes()).collect();
        self.put(b, pack_node(b, true, 8, &keys, &vals))
    }

    /// An internal node at `b`: `(key, child)` pairs.
    pub fn internal(&mut self, b: u64, children: &[(u64, u64)]) -> &mut Self {
        let keys: Vec<u64> = children.iter().map(|e| e.0).collect();
        let vals: Vec<u8> = children.iter().flat_map(|e| e.1.to_le_bytes()).collect();
        self.put(b, pack_node(b, false, 8, &keys, &vals))
    }

    pub fn dev(&self) -> MetadataDev {
        MetadataDev::from_bytes("test.img", self.bytes.clone()).expect("image")
    }
}

/// A mapping value for data block `d` (time 0).
pub fn bt(d: u64) -> u64 {
    d << 24
}

/// Entries `(k, bt(data + k - first))` for keys `keys`.
pub fn run(keys: std::ops::Range<u64>, data: u64) -> Vec<(u64, u64)> {
    let first = keys.start;
    keys.map(|k| (k, bt(data + k - first))).collect()
}
