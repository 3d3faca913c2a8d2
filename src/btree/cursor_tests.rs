//! The walker's rules: what it reads, what it skips, and what it refuses.

use super::*;
use crate::btree::mapping::mappings;
use crate::btree::testimg::{run, TestImg};
use crate::error::Error;

/// Root 1 over leaves 2 (keys 0..4), 3 (10..14), 4 (20..24).
fn three_leaves() -> TestImg {
    let mut t = TestImg::new(100);
    t.internal(1, &[(0, 2), (10, 3), (20, 4)]).leaf(2, &run(0..4, 100)).leaf(3, &run(10..14, 200));
    t.leaf(4, &run(20..24, 300));
    t
}

fn fault(e: Error) -> (u64, Fault) {
    match e {
        Error::Block { block, fault, .. } => (block, fault),
        e => panic!("not a block fault: {e}"),
    }
}

#[test]
fn every_entry_comes_in_key_order() {
    let dev = three_leaves().dev();
    let keys: Vec<u64> = mappings(&dev, 1).map(|m| m.unwrap().0).collect();
    assert_eq!(keys, [0, 1, 2, 3, 10, 11, 12, 13, 20, 21, 22, 23]);
}

#[test]
fn a_skipped_subtree_is_never_read() {
    // Leaf 3 is never written: reading it would fail.
    let mut t = TestImg::new(100);
    t.internal(1, &[(0, 2), (10, 3), (20, 4)]).leaf(2, &run(0..4, 100)).leaf(4, &run(20..24, 300));
    let dev = t.dev();
    let mut c = Cursor::new(&dev, 1, 8);
    let mut keys = Vec::new();
    loop {
        match c.front() {
            Front::End => break,
            Front::Sub { block: 3, .. } => c.skip(),
            Front::Sub { .. } => c.expand().unwrap(),
            Front::Entry { key } => {
                keys.push(key);
                c.skip();
            }
        }
    }
    assert_eq!(keys, [0, 1, 2, 3, 20, 21, 22, 23]);
    assert_eq!(c.reads, 3, "root and two leaves");
}

#[test]
fn a_pointer_back_to_an_ancestor_is_a_cycle_named_at_the_parent_and_the_walk_can_go_on() {
    let mut t = three_leaves();
    t.internal(1, &[(0, 2), (10, 1), (20, 4)]);
    let dev = t.dev();
    let mut c = Cursor::new(&dev, 1, 8);
    c.expand().unwrap();
    c.skip();
    assert_eq!(c.front(), Front::Sub { block: 1, lo: 10, hi: Some(20), depth: 1 });
    assert_eq!(fault(c.check_front().unwrap_err()), (1, Fault::Cycle { child: 1 }));
    assert_eq!(fault(c.expand().unwrap_err()), (1, Fault::Cycle { child: 1 }));
    assert_eq!(c.front(), Front::Sub { block: 4, lo: 20, hi: None, depth: 1 });
}

#[test]
fn a_pointer_past_the_end_is_refused_before_any_read() {
    let mut t = three_leaves();
    t.internal(1, &[(0, 2), (10, 1000), (20, 4)]);
    let dev = t.dev();
    let e = mappings(&dev, 1).find_map(|m| m.err()).unwrap();
    assert_eq!(fault(e), (1, Fault::PointerPastEnd { child: 1000, nr_blocks: 100 }));
}

#[test]
fn keys_outside_the_parents_range_are_refused() {
    let mut t = three_leaves();
    t.leaf(3, &run(25..27, 200));
    let dev = t.dev();
    let e = mappings(&dev, 1).find_map(|m| m.err()).unwrap();
    assert_eq!(fault(e), (3, Fault::KeyOutOfParentRange { key: 26, lo: 10, hi: 20 }));
}

#[test]
fn leaves_at_different_depths_are_refused() {
    // Root 1: leaf 2 at depth 1, then internal node 5 (84 children, a third full) at depth 1.
    let mut t = three_leaves();
    let kids: Vec<(u64, u64)> = (0..84).map(|i| (100 + i, 10 + i)).collect();
    for &(k, b) in &kids {
        t.leaf(b, &[(k, 0)]);
    }
    t.internal(5, &kids).internal(1, &[(0, 2), (100, 5)]);
    let dev = t.dev();
    let e = mappings(&dev, 1).find_map(|m| m.err()).unwrap();
    assert_eq!(fault(e), (5, Fault::Depth { depth: 1, leaf_depth: 1, what: "an internal node" }));
}

#[test]
fn a_window_reads_only_the_subtrees_that_overlap_it() {
    let dev = three_leaves().dev();
    let mut c = Cursor::new(&dev, 1, 8);
    let mut keys = Vec::new();
    loop {
        match c.front_within(10, Some(20)) {
            Front::End => break,
            Front::Sub { .. } => c.expand().unwrap(),
            Front::Entry { key } => {
                keys.push(key);
                c.skip();
            }
        }
    }
    assert_eq!(keys, [10, 11, 12, 13]);
    assert_eq!(c.reads, 2, "root and leaf 3 only");
}

#[test]
fn boundaries_are_the_keys_between_subtrees() {
    let dev = three_leaves().dev();
    assert_eq!(boundaries(&dev, 1, 8, 1).unwrap(), [10, 20]);
    assert_eq!(boundaries(&dev, 1, 8, 2).unwrap(), Vec::<u64>::new(), "no level below the leaves");
    assert_eq!(boundaries(&dev, 2, 8, 1).unwrap(), Vec::<u64>::new(), "a root leaf has no subtrees");
}

#[test]
fn the_last_key_is_read_down_the_rightmost_edge_only() {
    let mut t = TestImg::new(100);
    // Leaves 2 and 3 are never written: reading them would fail.
    t.internal(1, &[(0, 2), (10, 3), (20, 4)]).leaf(4, &run(20..24, 300)).leaf(6, &[]);
    let dev = t.dev();
    assert_eq!(last_key(&dev, 1, 8).unwrap(), Some(23));
    assert_eq!(last_key(&dev, 6, 8).unwrap(), None, "an empty tree");
    let mut t = three_leaves();
    t.internal(1, &[(0, 2), (10, 3), (20, 1)]);
    let e = last_key(&t.dev(), 1, 8).unwrap_err();
    assert_eq!(fault(e), (1, Fault::Cycle { child: 1 }), "the rightmost edge has every check");
}

#[test]
fn the_leaf_depth_is_read_down_the_leftmost_edge() {
    let mut t = TestImg::new(100);
    t.internal(1, &[(0, 2), (10, 3)]).leaf(2, &run(0..4, 100));
    assert_eq!(leaf_depth(&t.dev(), 1, 8).unwrap(), (1, 2));
    assert_eq!(leaf_depth(&t.dev(), 2, 8).unwrap(), (0, 1));
}
