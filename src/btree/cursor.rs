//! A position in one btree, advanced either past the next subtree without reading it (`skip`) or into
//! it (`expand`). Every node read is validated (checksum, block number, header, key order) and checked
//! against the key range its parent gives it and the tree's leaf depth, so corrupt pointers (cycles,
//! pointers into other trees, out of range) end in an error rather than a loop: within one tree a
//! node can be reached at most once, since sibling ranges are disjoint and non-root nodes are
//! never empty. Every walk of the project is built on it: `LeafWalker` (dump, ls, the device lists),
//! the diff engine and its key windows, the leftmost and rightmost descents below, and the checker's
//! walk with a seen-set (`btree::seen`), which reads fill apart (`lenient_fill`) to report it.

use crate::block::MetadataDev;
use crate::btree::node::{decode, fill_fault, read_node, Node};
use crate::error::{Fault, Result};
use crate::ondisk::OnDisk;

/// No dm-thin tree can be deeper: 2^64 keys with at least 84 entries per non-root node need 11 levels.
pub const MAX_DEPTH: usize = 16;

struct Frame<'a> {
    node: Node<'a>,
    next: usize,
    hi: Option<u64>,
}

/// What comes next in key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Front {
    End,
    /// An unread subtree: its block, the key range `[lo, hi)` its parent gives it (`hi` None = no
    /// upper bound), its depth (root = 0).
    Sub {
        block: u64,
        lo: u64,
        hi: Option<u64>,
        depth: usize,
    },
    /// A leaf entry: key and raw 8-byte value (value size 8 trees only; see `Cursor::value_bytes`).
    Entry {
        key: u64,
    },
}

pub struct Cursor<'a> {
    dev: &'a MetadataDev,
    leaf_value_size: usize,
    root: Option<u64>,
    stack: Vec<Frame<'a>>,
    root_block: u64,
    /// Depth of the leaves (root = 0): known up front, learned at the first leaf, or found by a
    /// leftmost descent when a height is asked for before that.
    leaf_depth: Option<usize>,
    /// Nodes read so far (including any leftmost descent).
    pub reads: u64,
    /// Under-full nodes are entered and their fault handed back by `expand_noting`.
    lenient_fill: bool,
}

impl<'a> Cursor<'a> {
    /// A cursor before the root; reads nothing yet.
    pub fn new(dev: &'a MetadataDev, root: u64, leaf_value_size: usize) -> Self {
        Cursor {
            dev,
            leaf_value_size,
            root: Some(root),
            root_block: root,
            stack: Vec::new(),
            leaf_depth: None,
            reads: 0,
            lenient_fill: false,
        }
    }

    /// The same cursor, entering nodes that break the fill rule (`expand_noting` returns the fault).
    pub fn lenient_fill(self) -> Self {
        Cursor { lenient_fill: true, ..self }
    }

    /// A cursor before the root of a tree whose leaves are known to be at `leaf_depth`.
    pub fn with_depth(dev: &'a MetadataDev, root: u64, leaf_value_size: usize, leaf_depth: usize) -> Self {
        Cursor { leaf_depth: Some(leaf_depth), ..Self::new(dev, root, leaf_value_size) }
    }

    /// Skips what lies wholly below `lo` and ends at `hi`: the front within the window `[lo, hi)`.
    pub fn front_within(&mut self, lo: u64, hi: Option<u64>) -> Front {
        loop {
            let f = self.front();
            let (start, below) = match f {
                Front::End => return f,
                Front::Sub { lo: s, hi: h, .. } => (s, h.is_some_and(|h| h <= lo)),
                Front::Entry { key } => (key, key < lo),
            };
            if below {
                self.skip();
                continue;
            }
            return if hi.is_some_and(|h| start >= h) { Front::End } else { f };
        }
    }
}

/// The depth of a tree's leaves (0 = the root is a leaf), from its leftmost path, and blocks read.
pub fn leaf_depth(dev: &MetadataDev, root: u64, leaf_value_size: usize) -> Result<(usize, u64)> {
    let mut c = Cursor::new(dev, root, leaf_value_size);
    while let Front::Sub { .. } = c.front() {
        c.expand()?;
    }
    Ok((c.leaf_depth.unwrap_or(0), c.reads))
}

/// The highest key of a tree (None if it is empty), read down its rightmost edge: one node per
/// level, each with all the walk's checks. For `send`, the last block a thin device maps.
pub fn last_key(dev: &MetadataDev, root: u64, leaf_value_size: usize) -> Result<Option<u64>> {
    let mut c = Cursor::new(dev, root, leaf_value_size);
    let mut last = None;
    loop {
        match c.front() {
            Front::End => return Ok(last),
            // Only the rightmost child has no upper bound.
            Front::Sub { hi: None, .. } => c.expand()?,
            Front::Sub { .. } => c.skip(),
            Front::Entry { key } => {
                last = Some(key);
                c.skip();
            }
        }
    }
}

/// The keys that separate the subtrees at `depth` (1 = the root's children) of a tree: each such
/// subtree's lower bound, except for the first child of each node. Nothing below `depth` is read.
pub fn boundaries(dev: &MetadataDev, root: u64, leaf_value_size: usize, depth: usize) -> Result<Vec<u64>> {
    let mut c = Cursor::new(dev, root, leaf_value_size);
    let mut keys = Vec::new();
    loop {
        match c.front() {
            Front::End => return Ok(keys),
            Front::Sub { depth: d, .. } if d < depth => c.expand()?,
            Front::Sub { lo, .. } => {
                if c.position() > 0 {
                    keys.push(lo);
                }
                c.skip();
            }
            Front::Entry { .. } => {
                c.take_leaf();
            }
        }
    }
}

impl<'a> Cursor<'a> {
    /// The depth of the leaves, reading the leftmost path if no leaf has been reached yet.
    pub fn leaf_depth(&mut self) -> Result<usize> {
        if let Some(d) = self.leaf_depth {
            return Ok(d);
        }
        let (d, reads) = leaf_depth(self.dev, self.root_block, self.leaf_value_size)?;
        self.reads += reads;
        self.leaf_depth = Some(d);
        Ok(d)
    }

    /// Depth of the node the cursor is inside (0 before the root is entered).
    pub fn depth(&self) -> usize {
        self.stack.len()
    }

    /// The leaf depth if a leaf has been reached (or it was given).
    pub fn known_leaf_depth(&self) -> Option<usize> {
        self.leaf_depth
    }

    /// Records that leaves lie at depth `d` (a shared subtree seen in another walk says so); false
    /// if a leaf was already found at another depth.
    pub fn learn_leaf_depth(&mut self, d: usize) -> bool {
        *self.leaf_depth.get_or_insert(d) == d
    }

    /// The node the cursor is inside.
    pub fn node(&self) -> Option<&Node<'a>> {
        self.stack.last().map(|f| &f.node)
    }

    /// Index of the front within the node the cursor is inside (0 at the root).
    pub fn position(&self) -> usize {
        self.stack.last().map_or(0, |f| f.next)
    }

    /// The block of the node holding the front (None at the root).
    pub fn parent(&self) -> Option<u64> {
        self.stack.last().map(|f| f.node.block)
    }

    pub fn front(&mut self) -> Front {
        if let Some(block) = self.root {
            return Front::Sub { block, lo: 0, hi: None, depth: 0 };
        }
        loop {
            let depth = self.stack.len();
            let Some(top) = self.stack.last() else {
                return Front::End;
            };
            if top.next == top.node.len() {
                self.stack.pop();
                continue;
            }
            let i = top.next;
            return if top.node.is_leaf {
                Front::Entry { key: top.node.key(i) }
            } else {
                let hi = if i + 1 < top.node.len() { Some(top.node.key(i + 1)) } else { top.hi };
                Front::Sub { block: top.node.child(i), lo: top.node.key(i), hi, depth }
            };
        }
    }

    /// The value of the current entry (only valid when `front()` is an `Entry`).
    pub fn value_bytes(&self) -> &[u8] {
        let top = self.stack.last().expect("front is an entry");
        top.node.value_bytes(top.next)
    }

    pub fn value_u64(&self) -> u64 {
        u64::unpack(self.value_bytes())
    }

    /// Passes over the front subtree or entry.
    pub fn skip(&mut self) {
        if self.root.take().is_some() {
            return;
        }
        if let Some(top) = self.stack.last_mut() {
            top.next += 1;
        }
    }

    /// Reads the front subtree's node and moves into it.
    pub fn expand(&mut self) -> Result<()> {
        self.expand_noting().map(|_| ())
    }

    /// Checks the front subtree's pointer without reading it: inside the device, and not back to a
    /// node on the path from the root. The error names the parent.
    pub fn check_front(&self) -> Result<()> {
        match (self.root, self.stack.last()) {
            (None, Some(top)) => {
                let child = top.node.child(top.next);
                check_pointer(self.dev, top.node.block, self.stack.iter().map(|f| f.node.block), child)
            }
            _ => Ok(()),
        }
    }

    /// `expand`; with `lenient_fill`, a node breaking the fill rule is entered and its fault returned.
    /// On an error the cursor has passed over the subtree, so a walk can go on with its siblings.
    pub fn expand_noting(&mut self) -> Result<Option<Fault>> {
        let checked = self.check_front();
        let (block, lo, hi, depth) = if let Some(root) = self.root.take() {
            (root, 0, None, 0)
        } else {
            let depth = self.stack.len();
            let top = self.stack.last_mut().expect("front is a subtree");
            let i = top.next;
            top.next += 1;
            let hi = if i + 1 < top.node.len() { Some(top.node.key(i + 1)) } else { top.hi };
            (top.node.child(i), top.node.key(i), hi, depth)
        };
        checked?;
        let (node, noted) = if self.lenient_fill {
            let node = decode(self.dev, block, self.leaf_value_size)?;
            let f = fill_fault(&node, depth == 0);
            (node, f)
        } else {
            (read_node(self.dev, block, self.leaf_value_size, depth == 0)?, None)
        };
        self.reads += 1;
        if depth > 0 {
            check_range(self.dev, &node, lo, hi)?;
        }
        self.check_depth(&node, depth)?;
        if node.is_leaf {
            // Walks take sibling leaves in turn: the next one is loaded while this one is read.
            if let Some(p) = self.stack.last().filter(|p| p.next < p.node.len()) {
                self.dev.prefetch_cpu(p.node.child(p.next));
            }
        }
        self.stack.push(Frame { node, next: 0, hi });
        Ok(noted)
    }

    fn check_depth(&mut self, node: &Node<'_>, depth: usize) -> Result<()> {
        let bad = match self.leaf_depth {
            None if node.is_leaf => {
                self.leaf_depth = Some(depth);
                None
            }
            None => None,
            Some(d) => (node.is_leaf != (depth == d) || depth > d).then_some(d),
        };
        if depth > MAX_DEPTH {
            return Err(self.dev.fault(node.block, Fault::TooDeep(MAX_DEPTH as u32)));
        }
        if let Some(d) = bad {
            let what = if node.is_leaf { "a leaf" } else { "an internal node" };
            return Err(self.dev.fault(node.block, Fault::Depth { depth: depth as u32, leaf_depth: d as u32, what }));
        }
        Ok(())
    }

    /// Advances to the next leaf entry, expanding every subtree on the way.
    pub fn next_entry(&mut self) -> Result<Option<u64>> {
        loop {
            match self.front() {
                Front::End => return Ok(None),
                Front::Entry { key } => return Ok(Some(key)),
                Front::Sub { .. } => self.expand()?,
            }
        }
    }

    /// The leaf holding the front entry and the entry's index in it (None unless the front is an entry).
    pub fn leaf_pos(&self) -> Option<(&Node<'a>, usize)> {
        self.stack.last().filter(|f| f.node.is_leaf && f.next < f.node.len()).map(|f| (&f.node, f.next))
    }

    /// Passes over `n` entries of the current leaf (at most those left in it).
    pub fn skip_entries(&mut self, n: usize) {
        if let Some(top) = self.stack.last_mut() {
            top.next = (top.next + n).min(top.node.len());
        }
    }

    /// Takes the whole current leaf (front must be the first entry of a leaf), for leaf-at-a-time users.
    pub fn take_leaf(&mut self) -> Option<Node<'a>> {
        let top = self.stack.pop()?;
        Some(top.node)
    }
}

/// Checks a child pointer of `parent` before it is followed: it must be inside the device and must not
/// lead back to a node on the path from the root (`ancestors`, `parent` included). The error names
/// the parent, where the bad pointer is.
fn check_pointer(dev: &MetadataDev, parent: u64, mut ancestors: impl Iterator<Item = u64>, child: u64) -> Result<()> {
    if child >= dev.nr_blocks() {
        return Err(dev.fault(parent, Fault::PointerPastEnd { child, nr_blocks: dev.nr_blocks() }));
    }
    if ancestors.any(|a| a == child) {
        return Err(dev.fault(parent, Fault::Cycle { child }));
    }
    Ok(())
}

/// Checks that a child's keys lie in `[lo, hi)`, the range its parent assigns it.
pub fn check_range(dev: &MetadataDev, node: &Node<'_>, lo: u64, hi: Option<u64>) -> Result<()> {
    if node.is_empty() {
        return Ok(());
    }
    check_keys(dev, node.block, (node.key(0), node.key(node.len() - 1)), lo, hi)
}

/// Checks that the keys `first..=last` of the subtree at `block` lie in `[lo, hi)`.
pub fn check_keys(dev: &MetadataDev, block: u64, (first, last): (u64, u64), lo: u64, hi: Option<u64>) -> Result<()> {
    let bad = if first < lo { Some(first) } else { hi.filter(|&h| last >= h).map(|_| last) };
    match bad {
        Some(key) => Err(dev.fault(block, Fault::KeyOutOfParentRange { key, lo, hi: hi.unwrap_or(u64::MAX) })),
        None => Ok(()),
    }
}

#[cfg(test)]
#[path = "cursor_tests.rs"]
mod tests;
