//! The one btree walk: leaves in key order, every node validated, every child's keys checked against
//! the range its parent gives it, and all leaves at one depth. A pointer cycle or a corrupt child
//! pointer therefore ends in an error, never a loop: a node can be reached at most once per tree,
//! because sibling key ranges are disjoint and non-root nodes are never empty.

use crate::block::MetadataDev;
use crate::btree::node::{read_node, Node, Value};
use crate::error::{Fault, Result};

/// No dm-thin tree can be deeper: 2^64 keys with at least 84 entries per non-root node need 11 levels.
pub const MAX_DEPTH: usize = 16;

struct Frame<'a> {
    node: Node<'a>,
    next: usize,
    hi: Option<u64>,
}

/// Iterates the leaves of the tree rooted at `root`, in key order.
pub struct LeafWalker<'a> {
    dev: &'a MetadataDev,
    leaf_value_size: usize,
    root: Option<u64>,
    stack: Vec<Frame<'a>>,
    leaf_depth: Option<usize>,
}

impl<'a> LeafWalker<'a> {
    pub fn new(dev: &'a MetadataDev, root: u64, leaf_value_size: usize) -> Self {
        LeafWalker {
            dev,
            leaf_value_size,
            root: Some(root),
            stack: Vec::new(),
            leaf_depth: None,
        }
    }

    /// The leaf entries, decoded as `V`.
    pub fn entries<V: Value>(self) -> Entries<'a, V> {
        Entries {
            leaves: self,
            leaf: None,
            next: 0,
            _v: std::marker::PhantomData,
        }
    }

    fn step(&mut self) -> Result<Option<Node<'a>>> {
        if let Some(root) = self.root.take() {
            let node = read_node(self.dev, root, self.leaf_value_size, true)?;
            if node.is_leaf {
                self.leaf_depth = Some(0);
                return Ok(Some(node));
            }
            self.stack.push(Frame {
                node,
                next: 0,
                hi: None,
            });
        }
        loop {
            let depth = self.stack.len();
            let Some(top) = self.stack.last_mut() else {
                return Ok(None);
            };
            if top.next == top.node.len() {
                self.stack.pop();
                continue;
            }
            let i = top.next;
            top.next += 1;
            let child = top.node.child(i);
            let lo = top.node.key(i);
            let hi = if i + 1 < top.node.len() {
                Some(top.node.key(i + 1))
            } else {
                top.hi
            };
            if depth > MAX_DEPTH {
                return Err(self.dev.fault(child, Fault::TooDeep(MAX_DEPTH as u32)));
            }
            let node = read_node(self.dev, child, self.leaf_value_size, false)?;
            check_range(self.dev, &node, lo, hi)?;
            match (node.is_leaf, self.leaf_depth) {
                (true, None) => self.leaf_depth = Some(depth),
                (true, Some(d)) if d != depth => {
                    return Err(self.dev.fault(
                        child,
                        Fault::Depth {
                            depth: depth as u32,
                            leaf_depth: d as u32,
                            what: "a leaf",
                        },
                    ))
                }
                (false, Some(d)) if depth >= d => {
                    return Err(self.dev.fault(
                        child,
                        Fault::Depth {
                            depth: depth as u32,
                            leaf_depth: d as u32,
                            what: "an internal node",
                        },
                    ))
                }
                _ => {}
            }
            if node.is_leaf {
                return Ok(Some(node));
            }
            self.stack.push(Frame { node, next: 0, hi });
        }
    }
}

/// Checks that a child's keys lie in `[lo, hi)`, the range its parent assigns it.
pub fn check_range(dev: &MetadataDev, node: &Node<'_>, lo: u64, hi: Option<u64>) -> Result<()> {
    if node.is_empty() {
        return Ok(());
    }
    let (first, last) = (node.key(0), node.key(node.len() - 1));
    let bad = if first < lo {
        Some(first)
    } else {
        hi.filter(|&h| last >= h).map(|_| last)
    };
    match bad {
        Some(key) => Err(dev.fault(
            node.block,
            Fault::KeyOutOfParentRange {
                key,
                lo,
                hi: hi.unwrap_or(u64::MAX),
            },
        )),
        None => Ok(()),
    }
}

impl<'a> Iterator for LeafWalker<'a> {
    type Item = Result<Node<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.step() {
            Ok(n) => n.map(Ok),
            Err(e) => {
                self.stack.clear();
                self.root = None;
                Some(Err(e))
            }
        }
    }
}

/// Leaf entries `(key, value)` in key order.
pub struct Entries<'a, V> {
    leaves: LeafWalker<'a>,
    leaf: Option<Node<'a>>,
    next: usize,
    _v: std::marker::PhantomData<V>,
}

impl<V: Value> Iterator for Entries<'_, V> {
    type Item = Result<(u64, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(leaf) = &self.leaf {
                if self.next < leaf.len() {
                    let i = self.next;
                    self.next += 1;
                    return Some(Ok((leaf.key(i), leaf.value(i))));
                }
            }
            match self.leaves.next()? {
                Ok(n) => {
                    self.leaf = Some(n);
                    self.next = 0;
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
