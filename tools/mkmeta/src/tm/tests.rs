use super::*;

fn bt(d: u64) -> Vec<u8> {
    BlockTime { data_block: d, time: 0 }.raw().to_le_bytes().to_vec()
}

/// Walks a tree checking fill, key order and depth; returns its keys.
fn keys_of(tm: &Tm, root: u64) -> Vec<u64> {
    fn walk(tm: &Tm, b: u64, root: bool, depth: usize, leaf_depth: &mut Option<usize>, out: &mut Vec<u64>) {
        let n = tm.node(b);
        assert!(root || n.len() >= n.max() / 3, "underfull node {b}: {}", n.len());
        assert!(n.keys.windows(2).all(|w| w[0] < w[1]));
        if n.leaf {
            assert_eq!(*leaf_depth.get_or_insert(depth), depth);
            out.extend(&n.keys);
        } else {
            for i in 0..n.len() {
                let before = out.len();
                walk(tm, n.value_u64(i), false, depth + 1, leaf_depth, out);
                assert!(out[before] >= n.keys[i]);
                if i + 1 < n.len() {
                    assert!(*out.last().unwrap() < n.keys[i + 1]);
                }
            }
        }
    }
    let mut out = Vec::new();
    walk(tm, root, true, 0, &mut None, &mut out);
    out
}

#[test]
fn even_chunks_cover_and_balance() {
    let v: Vec<_> = even_chunks(253, 252).collect();
    assert_eq!(v, vec![0..127, 127..253]);
    assert_eq!(even_chunks(0, 252).count(), 0);
    assert_eq!(even_chunks(252, 252).collect::<Vec<_>>(), vec![0..252]);
}

#[test]
fn inserts_and_removes_keep_the_tree_valid_and_counts_exact() {
    let mut tm = Tm::new(100_000);
    let mut root = tm.new_node(Node::leaf_of(Tree::Bottom));
    let mut rng = crate::rng::Rng::new(7);
    let mut present = std::collections::BTreeSet::new();
    for _ in 0..20_000 {
        let k = rng.below(30_000);
        if present.insert(k) {
            let d = tm.data.alloc().unwrap();
            root = tm.insert(root, Tree::Bottom, k, &bt(d)).0;
        }
    }
    assert_eq!(keys_of(&tm, root), present.iter().copied().collect::<Vec<_>>());
    tm.commit();
    for _ in 0..15_000 {
        let k = rng.below(30_000);
        if present.remove(&k) {
            root = tm.remove(root, Tree::Bottom, k).unwrap();
        }
    }
    assert_eq!(keys_of(&tm, root), present.iter().copied().collect::<Vec<_>>());
    let data_in_use = tm.data.counts.count_where(|c| c > 0);
    assert_eq!(data_in_use, present.len() as u64);
    let nodes = tm.nodes().count();
    let counted = tm.counts.iter().filter(|&&c| c > 0).count();
    assert_eq!(nodes, counted);
    tm.del(root, Tree::Bottom);
    assert_eq!(tm.nodes().count(), 0);
    assert_eq!(tm.data.counts.count_where(|c| c > 0), 0);
}

/// Height of the tree at `root` (1 = a lone leaf).
fn height(tm: &Tm, mut b: u64) -> usize {
    let mut h = 1;
    while !tm.node(b).leaf {
        b = tm.node(b).value_u64(0);
        h += 1;
    }
    h
}

#[test]
fn three_level_trees_shrink_back_to_a_leaf_with_every_node_a_third_full() {
    let mut tm = Tm::new(100_000);
    let mut root = tm.new_node(Node::leaf_of(Tree::Bottom));
    for k in 0..70_000u64 {
        let d = tm.data.alloc().unwrap();
        root = tm.insert(root, Tree::Bottom, k, &bt(d)).0;
    }
    assert_eq!(height(&tm, root), 3);
    tm.commit();
    // A snapshot-like second reference: removals must copy, never change the shared tree.
    tm.inc(root);
    let shared_root = root;
    let before = keys_of(&tm, shared_root);
    let mut rng = crate::rng::Rng::new(3);
    let mut present: std::collections::BTreeSet<u64> = (0..70_000).collect();
    while present.len() > 100 {
        let k = rng.below(70_000);
        if present.remove(&k) {
            root = tm.remove(root, Tree::Bottom, k).unwrap();
        }
    }
    assert_eq!(keys_of(&tm, root), present.iter().copied().collect::<Vec<_>>());
    assert_eq!(keys_of(&tm, shared_root), before);
    assert_eq!(height(&tm, root), 1);
    tm.del(root, Tree::Bottom);
    tm.del(shared_root, Tree::Bottom);
    assert_eq!(tm.nodes().count(), 0);
    assert_eq!(tm.data.counts.count_where(|c| c > 0), 0);
}

#[test]
fn nodes_for_matches_build_tree() {
    for n in [0usize, 1, 252, 253, 252 * 252 + 1] {
        let mut tm = Tm::new(0);
        let entries: Vec<(u64, Vec<u8>)> = (0..n as u64).map(|k| (k, vec![0; 4])).collect();
        tm.build_tree(Tree::RefCount, &entries).unwrap();
        assert_eq!(tm.nodes().count() as u64, Tm::nodes_for(Tree::RefCount, n), "n={n}");
    }
}
