//! Whole-tree walks on top of `Cursor`: every leaf, in key order.

use crate::block::MetadataDev;
use crate::btree::cursor::{Cursor, Front};
use crate::btree::node::{Node, Value};
use crate::btree::prefetch::{self, Prefetch, Readahead};
use crate::error::Result;

/// Iterates the leaves of the tree rooted at `root`, in key order.
pub struct LeafWalker<'a> {
    dev: &'a MetadataDev,
    /// None once the walk ended in an error.
    cursor: Option<Cursor<'a>>,
    ahead: Option<Readahead>,
}

impl<'a> LeafWalker<'a> {
    pub fn new(dev: &'a MetadataDev, root: u64, leaf_value_size: usize) -> Self {
        LeafWalker { dev, cursor: Some(Cursor::new(dev, root, leaf_value_size)), ahead: None }
    }

    /// A walk for a device that may be cold: the internal nodes are read a level at a time first,
    /// then the leaves are asked for a window ahead of the walk (`prefetch`).
    pub fn cold_aware(dev: &'a MetadataDev, root: u64, leaf_value_size: usize) -> Self {
        let mut stats = Prefetch::default();
        let leaves = prefetch::tree(dev, root, leaf_value_size, &mut stats);
        LeafWalker { ahead: Some(Readahead::new(leaves, stats)), ..Self::new(dev, root, leaf_value_size) }
    }

    /// What the readahead of a `cold_aware` walk did so far.
    pub fn prefetch(&self) -> Option<Prefetch> {
        self.ahead.as_ref().map(|a| a.stats)
    }

    /// The leaf entries, decoded as `V`.
    pub fn entries<V: Value>(self) -> Entries<'a, V> {
        Entries { leaves: self, leaf: None, next: 0, _v: std::marker::PhantomData }
    }

    fn step(c: &mut Cursor<'a>) -> Result<Option<Node<'a>>> {
        loop {
            match c.front() {
                Front::End => return Ok(None),
                Front::Sub { .. } => c.expand()?,
                Front::Entry { .. } => return Ok(c.take_leaf()),
            }
        }
    }
}

impl<'a> Iterator for LeafWalker<'a> {
    type Item = Result<Node<'a>>;

    fn next(&mut self) -> Option<Self::Item> {
        let c = self.cursor.as_mut()?;
        if let Some(a) = &mut self.ahead {
            a.advance(self.dev);
        }
        match Self::step(c) {
            Ok(n) => n.map(Ok),
            Err(e) => {
                self.cursor = None;
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
