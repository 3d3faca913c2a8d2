//! The cursor with a seen-set, for the strict checker: a node reached through several parents (or
//! from several trees) is read once, and a summary of its subtree answers for it at every later
//! reference, checked against that reference's key range, fill rule and leaf depth. Each reference
//! that passes the pointer checks is reported (`Event::Ref`), so reference counts can be recomputed,
//! and faults are reported without ending the walk: a bad subtree is passed over.

use std::collections::{HashMap, VecDeque};

use crate::block::MetadataDev;
use crate::btree::cursor::{check_keys, Cursor, Front};
use crate::btree::node::fill_rule;
use crate::error::{Error, Fault};

/// What a subtree holds, remembered so a shared subtree is read once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Levels below the node (0 for a leaf).
    pub height: usize,
    /// Leaf entries in the subtree.
    pub entries: u64,
    /// The node's first and last keys.
    pub keys: Option<(u64, u64)>,
    pub is_leaf: bool,
    pub nr: usize,
    pub max: usize,
}

#[derive(Debug, Clone, Copy)]
enum Mark<T> {
    /// On the path of a walk in progress.
    Open(T),
    /// Unreadable (reported once) or with no leaf below.
    Bad,
    Done(T, Summary),
}

/// The nodes walked so far, each with the tree (`T`) it was first reached in. Shared by all walks of
/// one check; it grows with the nodes read, never with what the image claims.
pub struct Seen<T> {
    map: HashMap<u64, Mark<T>>,
}

impl<T: Copy + PartialEq> Default for Seen<T> {
    fn default() -> Self {
        Seen { map: HashMap::new() }
    }
}

impl<T: Copy + PartialEq> Seen<T> {
    /// The summary of a fully walked subtree of tree `tag`.
    pub fn summary(&self, block: u64, tag: T) -> Option<Summary> {
        match self.map.get(&block) {
            Some(Mark::Done(t, s)) if *t == tag => Some(*s),
            _ => None,
        }
    }
}

#[derive(Debug)]
pub enum Event<T> {
    /// A pointer to `block` passed the pointer checks: one reference to it.
    Ref { block: u64 },
    /// The subtree at `block` was walked before; it is not read again.
    Shared { block: u64, summary: Summary },
    /// `block` was first reached in tree `tag`.
    Foreign { block: u64, tag: T },
    /// A node breaking the fill rule (it is walked all the same).
    Underfull(Error),
    /// A leaf entry: its value is `SeenWalk::value_bytes` until the next call.
    Entry { key: u64 },
    /// A fault; the subtree where it was found is passed over.
    Fault(Error),
}

struct Open {
    block: u64,
    entries: u64,
    summary: Summary,
}

/// A walk of one tree (`tag`) whose root pointer is held by block `parent`.
pub struct SeenWalk<'a, T> {
    dev: &'a MetadataDev,
    cur: Cursor<'a>,
    tag: T,
    parent: u64,
    open: Vec<Open>,
    pending: VecDeque<Event<T>>,
    at_entry: bool,
}

impl<'a, T: Copy + PartialEq> SeenWalk<'a, T> {
    pub fn new(dev: &'a MetadataDev, root: u64, leaf_value_size: usize, tag: T, parent: u64) -> Self {
        let cur = Cursor::new(dev, root, leaf_value_size).lenient_fill();
        SeenWalk { dev, cur, tag, parent, open: Vec::new(), pending: VecDeque::new(), at_entry: false }
    }

    /// The leaf holding the entry last returned.
    pub fn leaf(&self) -> u64 {
        self.cur.node().map_or(self.parent, |n| n.block)
    }

    /// The value of the entry last returned.
    pub fn value_bytes(&self) -> &[u8] {
        self.cur.value_bytes()
    }

    pub fn next(&mut self, seen: &mut Seen<T>) -> Option<Event<T>> {
        if std::mem::take(&mut self.at_entry) {
            self.cur.skip();
        }
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            let front = self.cur.front();
            self.close(seen);
            match front {
                Front::End => return None,
                Front::Entry { key } => {
                    self.at_entry = true;
                    return Some(Event::Entry { key });
                }
                Front::Sub { block, lo, hi, depth } => self.sub(seen, block, lo, hi, depth),
            }
        }
    }

    /// Records the nodes the cursor has left, innermost first.
    fn close(&mut self, seen: &mut Seen<T>) {
        while self.open.len() > self.cur.depth() {
            let o = self.open.pop().expect("open node");
            let depth = self.open.len();
            let mark = match self.cur.known_leaf_depth() {
                Some(d) if d >= depth => {
                    Mark::Done(self.tag, Summary { height: d - depth, entries: o.entries, ..o.summary })
                }
                _ => Mark::Bad,
            };
            seen.map.insert(o.block, mark);
            if let Some(p) = self.open.last_mut() {
                p.entries += o.entries;
            }
        }
    }

    fn sub(&mut self, seen: &mut Seen<T>, block: u64, lo: u64, hi: Option<u64>, depth: usize) {
        let parent = self.cur.parent().unwrap_or(self.parent);
        let checked = if depth == 0 && block >= self.dev.nr_blocks() {
            Err(self.dev.fault(parent, Fault::PointerPastEnd { child: block, nr_blocks: self.dev.nr_blocks() }))
        } else {
            self.cur.check_front()
        };
        if let Err(e) = checked {
            self.cur.skip();
            return self.pending.push_back(Event::Fault(e));
        }
        let mark = seen.map.get(&block).copied();
        if let Some(Mark::Open(_)) = mark {
            // Not a reference: a pointer back into the path being walked.
            self.cur.skip();
            return self.pending.push_back(Event::Fault(self.dev.fault(parent, Fault::Cycle { child: block })));
        }
        self.pending.push_back(Event::Ref { block });
        match mark {
            Some(Mark::Open(_) | Mark::Bad) => self.cur.skip(),
            Some(Mark::Done(tag, _)) if tag != self.tag => {
                self.cur.skip();
                self.pending.push_back(Event::Foreign { block, tag });
            }
            Some(Mark::Done(_, s)) => {
                self.cur.skip();
                self.shared(block, s, lo, hi, depth);
            }
            None => match self.cur.expand_noting() {
                Err(e) => {
                    seen.map.insert(block, Mark::Bad);
                    self.pending.push_back(Event::Fault(e));
                }
                Ok(_) => {
                    seen.map.insert(block, Mark::Open(self.tag));
                    let node = self.cur.node().expect("entered");
                    let (nr, is_leaf, max) = (node.len(), node.is_leaf, node.max_entries());
                    if let Some(f) = strict_fill(is_leaf, nr, max, depth == 0) {
                        self.pending.push_back(Event::Underfull(self.dev.fault(block, f)));
                    }
                    let keys = (nr > 0).then(|| (node.key(0), node.key(nr - 1)));
                    let summary = Summary { height: 0, entries: 0, keys, is_leaf, nr, max };
                    let entries = if is_leaf { nr as u64 } else { 0 };
                    self.open.push(Open { block, entries, summary });
                }
            },
        }
    }

    /// A second reference to a walked subtree: the checks a first reference gets, from its summary.
    fn shared(&mut self, block: u64, s: Summary, lo: u64, hi: Option<u64>, depth: usize) {
        let dev = self.dev;
        let mut fault = |f| self.pending.push_back(Event::Fault(dev.fault(block, f)));
        if let (true, Some(keys)) = (depth > 0, s.keys) {
            if let Err(e) = check_keys(dev, block, keys, lo, hi) {
                self.pending.push_back(Event::Fault(e));
                return;
            }
        }
        if !self.cur.learn_leaf_depth(depth + s.height) {
            let leaf_depth = self.cur.known_leaf_depth().unwrap_or(0) as u32;
            let what = if s.is_leaf { "a leaf" } else { "an internal node" };
            return fault(Fault::Depth { depth: depth as u32, leaf_depth, what });
        }
        if let Some(f) = strict_fill(s.is_leaf, s.nr, s.max, depth == 0) {
            self.pending.push_back(Event::Underfull(dev.fault(block, f)));
        }
        if let Some(p) = self.open.last_mut() {
            p.entries += s.entries;
        }
        self.pending.push_back(Event::Shared { block, summary: s });
    }
}

/// The kernel's fill rule, stricter than the readers' (`node::fill_rule`): leaves too must be a third
/// full unless they are the root. The checker reports it; readers accept such leaves.
fn strict_fill(is_leaf: bool, nr: usize, max: usize, is_root: bool) -> Option<Fault> {
    fill_rule(is_leaf, nr, max, is_root)
        .or_else(|| (!is_root && nr < max / 3).then_some(Fault::Underfull { nr: nr as u32, min: (max / 3) as u32 }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::testimg::{run, TestImg};

    /// Tree A: root 1 over leaves 2 (keys 0..4) and 3 (10..14); tree B: root 5 over leaf 2 and leaf 4
    /// (10..12).
    fn shared() -> TestImg {
        let mut t = TestImg::new(20);
        t.internal(1, &[(0, 2), (10, 3)]).leaf(2, &run(0..4, 100)).leaf(3, &run(10..14, 200));
        t.internal(5, &[(0, 2), (10, 4)]).leaf(4, &run(10..12, 300));
        t
    }

    /// Every event of a walk from a root held by block `parent`, as short strings.
    fn events_from(dev: &MetadataDev, seen: &mut Seen<u8>, root: u64, tag: u8, parent: u64) -> Vec<String> {
        let mut w = SeenWalk::new(dev, root, 8, tag, parent);
        let mut out = Vec::new();
        while let Some(e) = w.next(seen) {
            out.push(match e {
                Event::Ref { block } => format!("ref {block}"),
                Event::Shared { block, summary } => format!("shared {block} ({} entries)", summary.entries),
                Event::Foreign { block, tag } => format!("foreign {block} of {tag}"),
                Event::Underfull(e) => format!("underfull {e}"),
                Event::Entry { key } => format!("key {key}"),
                Event::Fault(e) => format!("fault {e}"),
            });
        }
        out
    }

    /// The events of a walk from the superblock, leaving out the small leaves' fill.
    fn events(dev: &MetadataDev, seen: &mut Seen<u8>, root: u64, tag: u8) -> Vec<String> {
        let mut e = events_from(dev, seen, root, tag, 0);
        e.retain(|e| !e.starts_with("underfull"));
        e
    }

    #[test]
    fn a_subtree_reached_twice_is_read_once_and_answers_from_its_summary() {
        let dev = shared().dev();
        let mut seen = Seen::default();
        let a = events(&dev, &mut seen, 1, 0);
        assert_eq!(a.iter().filter(|e| e.starts_with("key")).count(), 8);
        let b = events(&dev, &mut seen, 5, 0);
        assert_eq!(b, ["ref 5", "ref 2", "shared 2 (4 entries)", "ref 4", "key 10", "key 11"]);
        assert_eq!(seen.summary(5, 0).map(|s| (s.entries, s.height)), Some((6, 1)));
        assert_eq!(seen.summary(1, 0).map(|s| s.entries), Some(8));
        assert_eq!(seen.summary(1, 9), None, "summaries answer for their own tree only");
    }

    #[test]
    fn a_pointer_into_the_walk_in_progress_is_a_cycle_and_not_a_reference() {
        let dev = shared().dev();
        let mut seen = Seen::default();
        let mut w = SeenWalk::new(&dev, 1, 8, 0u8, 0);
        while let Some(e) = w.next(&mut seen) {
            if let Event::Entry { .. } = e {
                // As if a leaf entry of tree A pointed at A's root: a nested walk from leaf 2.
                let inner = events_from(&dev, &mut seen, 1, 0, w.leaf());
                assert_eq!(inner.len(), 1, "{inner:?}");
                assert!(inner[0].contains("metadata block 2: child pointer 1 points back"), "{inner:?}");
                return;
            }
        }
        panic!("no entry");
    }

    #[test]
    fn a_shared_subtree_is_checked_against_each_parents_range() {
        let mut t = shared();
        t.internal(5, &[(0, 4), (10, 2)]).leaf(4, &run(0..2, 300));
        let dev = t.dev();
        let mut seen = Seen::default();
        events(&dev, &mut seen, 1, 0);
        let b = events(&dev, &mut seen, 5, 0);
        assert!(b.iter().any(|e| e.contains("metadata block 2: btree key 0 outside the range [10,")), "{b:?}");
    }

    #[test]
    fn a_node_of_another_tree_is_named() {
        let dev = shared().dev();
        let mut seen = Seen::default();
        events(&dev, &mut seen, 1, 0);
        let b = events(&dev, &mut seen, 5, 7);
        assert_eq!(&b[..3], ["ref 5", "ref 2", "foreign 2 of 0"]);
    }

    #[test]
    fn an_underfull_non_root_leaf_is_reported_and_walked() {
        let mut t = TestImg::new(20);
        let full: Vec<(u64, u64)> = (0..100).map(|k| (k, 0)).collect();
        t.internal(1, &[(0, 2), (100, 3)]).leaf(2, &full).leaf(3, &run(100..102, 0));
        let dev = t.dev();
        let e = events_from(&dev, &mut Seen::default(), 1, 0, 0);
        let under: Vec<&String> = e.iter().filter(|e| e.starts_with("underfull")).collect();
        assert_eq!(under.len(), 1, "{e:?}");
        assert!(under[0].contains("metadata block 3: btree node has 2 entries, fewer than the minimum 84"));
        assert_eq!(e.iter().filter(|e| e.starts_with("key")).count(), 102);
    }
}
