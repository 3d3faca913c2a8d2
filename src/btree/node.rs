//! A btree node: one 4 KiB block with a 32-byte header, `max_entries` le64 keys, then the values.
//! `decode` is the one validator every node passes through; `pack_node` packs nodes for tests and mkmeta.

use std::borrow::Cow;

use crate::block::{MetadataDev, BLOCK_SIZE};
use crate::checksum::{self, BlockKind};
use crate::error::{Fault, Result};
use crate::ondisk::on_disk;

pub const HEADER_SIZE: usize = 32;
pub const INTERNAL_NODE: u32 = 1;
pub const LEAF_NODE: u32 = 2;

/// The kernel's `calc_max_entries`: as many entries as fit, rounded down to a multiple of 3.
pub const fn max_entries(value_size: usize) -> usize {
    let n = (BLOCK_SIZE - HEADER_SIZE) / (8 + value_size);
    3 * (n / 3)
}

/// `node_header`: bytes 0..4 are the checksum (the checksum module's); 28..32 are padding.
struct NodeHeader {
    flags: u32,
    blocknr: u64,
    nr_entries: u32,
    max_entries: u32,
    value_size: u32,
}
on_disk!(NodeHeader, HEADER_SIZE, { flags @ 4, blocknr @ 8, nr_entries @ 16, max_entries @ 20, value_size @ 24 });

/// A value stored in btree leaves, with its on-disk size: any [`OnDisk`] type.
pub use crate::ondisk::OnDisk as Value;

/// A validated node. Keys and values are read straight from the block bytes.
pub struct Node<'a> {
    data: Cow<'a, [u8]>,
    pub block: u64,
    pub is_leaf: bool,
    nr: usize,
    value_base: usize,
    value_size: usize,
}

impl<'a> Node<'a> {
    pub fn len(&self) -> usize {
        self.nr
    }

    pub fn is_empty(&self) -> bool {
        self.nr == 0
    }

    /// The node's capacity as recorded in its header.
    pub fn max_entries(&self) -> usize {
        (self.value_base - HEADER_SIZE) / 8
    }

    pub fn key(&self, i: usize) -> u64 {
        u64::unpack(&self.data[HEADER_SIZE + 8 * i..])
    }

    pub fn value_bytes(&self, i: usize) -> &[u8] {
        let off = self.value_base + self.value_size * i;
        &self.data[off..off + self.value_size]
    }

    pub fn value<V: Value>(&self, i: usize) -> V {
        V::unpack(self.value_bytes(i))
    }

    /// The raw keys of entries `i..i + n` (little-endian, 8 bytes each); fewer where the node ends.
    pub fn key_run(&self, i: usize, n: usize) -> &[u8] {
        let end = (i + n).min(self.nr);
        &self.data[HEADER_SIZE + 8 * i.min(end)..HEADER_SIZE + 8 * end]
    }

    /// The raw values of entries `i..i + n`, `value_size` bytes each; fewer where the node ends.
    pub fn value_run(&self, i: usize, n: usize) -> &[u8] {
        let end = (i + n).min(self.nr);
        &self.data[self.value_base + self.value_size * i.min(end)..self.value_base + self.value_size * end]
    }

    /// Child block of an internal node.
    pub fn child(&self, i: usize) -> u64 {
        u64::unpack(self.value_bytes(i))
    }

    pub fn first_key(&self) -> Option<u64> {
        (self.nr > 0).then(|| self.key(0))
    }
}

/// Reads block `b` as a btree node whose leaves hold `leaf_value_size`-byte values, checking the
/// checksum, block number, flags, value size, capacity, entry count, the fill rule ([`fill_fault`],
/// for a node at the root or not) and key order. Walks go through `btree::cursor`.
pub fn read_node(dev: &MetadataDev, b: u64, leaf_value_size: usize, is_root: bool) -> Result<Node<'_>> {
    decode_checked(dev, b, leaf_value_size, Some(is_root))
}

/// `read_node` without the fill rule, for a checker that reports fill apart.
pub fn decode(dev: &MetadataDev, b: u64, leaf_value_size: usize) -> Result<Node<'_>> {
    decode_checked(dev, b, leaf_value_size, None)
}

fn decode_checked(dev: &MetadataDev, b: u64, leaf_value_size: usize, is_root: Option<bool>) -> Result<Node<'_>> {
    let data = dev.read(b, BlockKind::Node)?;
    let (is_leaf, nr, value_base, value_size) = check_header(&data, leaf_value_size).map_err(|f| dev.fault(b, f))?;
    let node = Node { data, block: b, is_leaf, nr, value_base, value_size };
    if let Some(f) = is_root.and_then(|r| fill_fault(&node, r)) {
        return Err(dev.fault(b, f));
    }
    if let Some((index, prev, key)) = unsorted(node.key_run(0, nr)) {
        return Err(dev.fault(b, Fault::KeysUnsorted { index: index as u32, prev, key }));
    }
    Ok(node)
}

/// The first key of `keys` (raw little-endian words) not above its predecessor: its index, the
/// predecessor and the key. One pass over the slice, for every node read.
fn unsorted(keys: &[u8]) -> Option<(usize, u64, u64)> {
    let word = |c: &[u8]| u64::from_le_bytes(c.try_into().unwrap_or([0; 8]));
    let mut words = keys.chunks_exact(8).map(word);
    let mut prev = words.next()?;
    for (i, k) in words.enumerate() {
        if k <= prev {
            return Some((i + 1, prev, k));
        }
        prev = k;
    }
    None
}

/// How many leading 8-byte words `a` and `b` have alike (up to the shorter one's whole words):
/// long equal runs are compared a block of words at a time.
pub fn equal_words(a: &[u8], b: &[u8]) -> usize {
    const BLOCK: usize = 16;
    let n = a.len().min(b.len()) / 8;
    let (a, b) = (&a[..8 * n], &b[..8 * n]);
    let mut i = 0;
    while i + BLOCK <= n && a[8 * i..8 * (i + BLOCK)] == b[8 * i..8 * (i + BLOCK)] {
        i += BLOCK;
    }
    while i < n && a[8 * i..8 * i + 8] == b[8 * i..8 * i + 8] {
        i += 1;
    }
    i
}

/// The fill rule: a non-root internal node holds at least max_entries / 3 entries, and only a root
/// leaf may be empty. Under-full leaves are accepted: both thin_dumps read them and Rust thin_check
/// allows them in device trees (kernels have left them after removals). Empty ones are not
/// (thin_dump refuses them).
pub fn fill_fault(node: &Node<'_>, is_root: bool) -> Option<Fault> {
    fill_rule(node.is_leaf, node.len(), node.max_entries(), is_root)
}

/// [`fill_fault`] for a node of `nr` entries out of `max`.
pub fn fill_rule(is_leaf: bool, nr: usize, max: usize, is_root: bool) -> Option<Fault> {
    let (nr, max) = (nr as u32, max as u32);
    if !is_root && !is_leaf && nr < max / 3 {
        return Some(Fault::Underfull { nr, min: max / 3 });
    }
    if nr == 0 && !(is_root && is_leaf) {
        return Some(Fault::EmptyInternal);
    }
    None
}

fn check_header(d: &[u8], leaf_value_size: usize) -> Result<(bool, usize, usize, usize), Fault> {
    let NodeHeader { flags, nr_entries: nr, max_entries: max, value_size: vs, .. } = NodeHeader::unpack(d);
    let is_leaf = match flags {
        LEAF_NODE => true,
        INTERNAL_NODE => false,
        f => return Err(Fault::NodeFlags(f)),
    };
    let expected = if is_leaf { leaf_value_size } else { 8 };
    if vs as usize != expected {
        return Err(Fault::ValueSize { found: vs, expected: expected as u32 });
    }
    if HEADER_SIZE as u64 + (8 + vs as u64) * max as u64 > BLOCK_SIZE as u64 {
        return Err(Fault::MaxEntries { max, value_size: vs });
    }
    if max % 3 != 0 {
        return Err(Fault::MaxEntriesNotMultipleOf3 { max });
    }
    if nr > max {
        return Err(Fault::NrEntries { nr, max });
    }
    Ok((is_leaf, nr as usize, HEADER_SIZE + 8 * max as usize, vs as usize))
}

/// Packs `keys` and their concatenated `values` into a node block at location `block`.
pub fn pack_node(block: u64, is_leaf: bool, value_size: usize, keys: &[u64], values: &[u8]) -> Vec<u8> {
    let max = max_entries(value_size);
    assert!(keys.len() <= max, "node overfull");
    assert_eq!(values.len(), keys.len() * value_size);
    let mut b = vec![0u8; BLOCK_SIZE];
    NodeHeader {
        flags: if is_leaf { LEAF_NODE } else { INTERNAL_NODE },
        blocknr: block,
        nr_entries: keys.len() as u32,
        max_entries: max as u32,
        value_size: value_size as u32,
    }
    .pack(&mut b);
    for (i, k) in keys.iter().enumerate() {
        k.pack(&mut b[HEADER_SIZE + 8 * i..]);
    }
    let base = HEADER_SIZE + 8 * max;
    b[base..base + values.len()].copy_from_slice(values);
    checksum::stamp(&mut b, BlockKind::Node);
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(w: &[u64]) -> Vec<u8> {
        w.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn unsorted_finds_the_first_key_not_above_its_predecessor() {
        assert_eq!(unsorted(&words(&[])), None);
        assert_eq!(unsorted(&words(&[5])), None);
        assert_eq!(unsorted(&words(&[1, 2, 3, 1 << 40])), None);
        assert_eq!(unsorted(&words(&[1, 2, 2, 1])), Some((2, 2, 2)));
        assert_eq!(unsorted(&words(&[1, 9, 3])), Some((2, 9, 3)));
        // Compared as little-endian numbers, not as bytes: 256 > 1 though its first byte is 0.
        assert_eq!(unsorted(&words(&[1, 256])), None);
    }

    #[test]
    fn equal_words_counts_the_common_prefix_across_blocks() {
        let a: Vec<u64> = (0..40).collect();
        assert_eq!(equal_words(&words(&a), &words(&a)), 40);
        for at in [0, 1, 15, 16, 17, 33, 39] {
            let mut b = a.clone();
            b[at] ^= 1 << 60;
            assert_eq!(equal_words(&words(&a), &words(&b)), at, "first difference at {at}");
        }
        // The shorter side ends the count; a trailing partial word is never compared.
        assert_eq!(equal_words(&words(&a[..20]), &words(&a)), 20);
        assert_eq!(equal_words(&[1, 2, 3], &[1, 2, 3]), 0);
    }

    #[test]
    fn runs_of_keys_and_values_end_at_the_node() {
        let keys = [10u64, 20, 30];
        let vals = words(&[100, 200, 300]);
        let block = pack_node(7, true, 8, &keys, &vals);
        let dev = MetadataDev::from_bytes("t.img", [vec![0; 7 * BLOCK_SIZE], block].concat()).unwrap();
        let n = decode(&dev, 7, 8).unwrap();
        assert_eq!(n.key_run(1, 5), &words(&[20, 30])[..]);
        assert_eq!(n.value_run(0, 2), &words(&[100, 200])[..]);
        assert_eq!(n.value_run(3, 2), &[] as &[u8]);
        assert_eq!(n.key_run(9, 1), &[] as &[u8]);
    }

    #[test]
    fn max_entries_match_the_kernel() {
        assert_eq!(max_entries(8), 252);
        assert_eq!(max_entries(24), 126);
        assert_eq!(max_entries(16), 168);
        assert_eq!(max_entries(4), 336);
    }
}
