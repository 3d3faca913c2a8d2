//! A decoded btree node of the transaction manager, packed with the library's `pack_node` only when
//! the image is written.

use thinsend::btree::node::{max_entries, pack_node, Value, HEADER_SIZE, LEAF_NODE};

use super::Tree;

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
    pub(super) fn split_off(&mut self, at: usize) -> Node {
        let mut right = Node::new(self.leaf, self.value_size);
        right.keys.extend(self.keys.drain(at..));
        right.values.extend(self.values.drain(at * self.value_size..));
        right
    }

    pub(super) fn append(&mut self, other: &mut Node) {
        self.keys.append(&mut other.keys);
        self.values.append(&mut other.values);
    }

    pub fn pack(&self, block: u64) -> Vec<u8> {
        pack_node(block, self.leaf, self.value_size, &self.keys, &self.values)
    }

    /// The node `pack` made of these bytes (mkmeta's own spilled blocks, not untrusted input).
    pub fn unpack(b: &[u8]) -> Node {
        let le32 = |at: usize| u32::unpack(&b[at..]) as usize;
        let leaf = le32(4) as u32 & LEAF_NODE != 0;
        let (nr, value_size) = (le32(16), le32(24));
        let mut n = Node::new(leaf, value_size);
        let base = HEADER_SIZE + 8 * n.max();
        n.keys.extend((0..nr).map(|i| u64::unpack(&b[HEADER_SIZE + 8 * i..])));
        n.values.extend_from_slice(&b[base..base + nr * value_size]);
        n
    }
}
