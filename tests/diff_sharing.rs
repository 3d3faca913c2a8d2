//! The diff engine on trees that share nodes, as the kernel's copy-on-write leaves them: a right tree
//! made from the left one by copying only the paths to changed leaves. Checked against a per-block
//! model of the two devices, in every mode (full / changed-only, parallel / sequential), and for the
//! number of metadata blocks `--changed-only` reads.

use std::collections::BTreeMap;

use thinsend::btree::details::DeviceDetails;
use thinsend::btree::mapping::BlockTime;
use thinsend::btree::node::{max_entries, pack_node, Value};
use thinsend::diff::{self, Delta, Kind, Options};
use thinsend::pool::Pool;
use thinsend::superblock::{Source, Superblock};

use mkmeta::rng::Rng;

/// A tree as built: per level (leaves first) the nodes' first keys, blocks and items (entries for
/// leaves, (first key, child block) for internal nodes).
struct Tree {
    root: u64,
    levels: Vec<Vec<BuiltNode>>,
}

/// (first key, block, items)
type BuiltNode = (u64, u64, Vec<(u64, u64)>);

/// An image under construction: node blocks are appended; block 0 is the superblock.
struct Image {
    nodes: Vec<Vec<u8>>,
}

impl Image {
    fn new() -> Self {
        Image { nodes: vec![vec![0; 4096]] }
    }
    fn put(&mut self, leaf: bool, items: &[(u64, u64)], vs: usize) -> u64 {
        let b = self.nodes.len() as u64;
        let keys: Vec<u64> = items.iter().map(|e| e.0).collect();
        let mut vals = vec![0u8; items.len() * vs];
        for (i, e) in items.iter().enumerate() {
            if leaf && vs == 8 {
                BlockTime { data_block: e.1, time: 0 }.pack(&mut vals[i * 8..]);
            } else {
                e.1.pack(&mut vals[i * 8..]);
            }
        }
        self.nodes.push(pack_node(b, leaf, vs, &keys, &vals));
        b
    }
    /// Packs a whole tree bottom-up with nodes of about `fill` items (all non-root nodes >= 84).
    fn tree(&mut self, m: &BTreeMap<u64, u64>, fill: usize) -> Tree {
        let mut items: Vec<(u64, u64)> = m.iter().map(|(k, v)| (*k, *v)).collect();
        let mut levels = Vec::new();
        let mut leaf = true;
        loop {
            let mut level = Vec::new();
            for chunk in balanced_chunks(&items, fill) {
                let b = self.put(leaf, chunk, 8);
                level.push((chunk.first().map_or(0, |c| c.0), b, chunk.to_vec()));
            }
            items = level.iter().map(|n| (n.0, n.1)).collect();
            levels.push(level);
            leaf = false;
            if items.len() == 1 {
                return Tree { root: items[0].1, levels };
            }
        }
    }
    fn finish(mut self, devices: &[(u64, u64, u64)]) -> tempfile::NamedTempFile {
        let top: Vec<(u64, u64)> = devices.iter().map(|d| (d.0, d.1)).collect();
        let b = self.nodes.len() as u64;
        let keys: Vec<u64> = top.iter().map(|d| d.0).collect();
        let mut vals = vec![0u8; top.len() * 8];
        for (i, d) in top.iter().enumerate() {
            d.1.pack(&mut vals[i * 8..]);
        }
        self.nodes.push(pack_node(b, true, 8, &keys, &vals));
        let top_root = b;
        let mut vals = vec![0u8; devices.len() * 24];
        for (i, d) in devices.iter().enumerate() {
            DeviceDetails { mapped_blocks: d.2, ..Default::default() }.pack(&mut vals[i * 24..]);
        }
        let details_root = self.nodes.len() as u64;
        self.nodes.push(pack_node(details_root, true, 24, &keys, &vals));
        let sb = Superblock {
            flags: 0,
            blocknr: 0,
            uuid: [0; 16],
            version: 2,
            time: 1,
            trans_id: 1,
            held_root: 0,
            data_sm: Default::default(),
            metadata_sm: Default::default(),
            data_mapping_root: top_root,
            device_details_root: details_root,
            data_block_size: 128,
            metadata_block_size: 8,
            metadata_nr_blocks: self.nodes.len() as u64,
            compat_flags: 0,
            compat_ro_flags: 0,
            incompat_flags: 0,
        };
        self.nodes[0] = sb.pack();
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), self.nodes.concat()).unwrap();
        f
    }
}

/// Chunks of at most `fill` items, as even as possible.
fn balanced_chunks<T>(v: &[T], fill: usize) -> Vec<&[T]> {
    if v.is_empty() {
        return vec![v];
    }
    let n = v.len().div_ceil(fill);
    let (base, extra) = (v.len() / n, v.len() % n);
    let mut out = Vec::with_capacity(n);
    let mut at = 0;
    for i in 0..n {
        let len = base + usize::from(i < extra);
        out.push(&v[at..at + len]);
        at += len;
    }
    out
}

/// Copy-on-write of `t`: each leaf in `changed` gets new content within its key range (some data
/// blocks remapped, some keys dropped, some added, staying between 84 and 252 entries), and the path
/// to it is copied; every other node stays the left's own block. Returns the new root and mappings.
fn cow(img: &mut Image, t: &Tree, changed: &[usize], rng: &mut Rng) -> (u64, BTreeMap<u64, u64>) {
    let leaves = &t.levels[0];
    let mut next_data = 1u64 << 32;
    let mut new_blocks: Vec<u64> = Vec::new();
    let mut mappings = BTreeMap::new();
    for (i, (first, block, entries)) in leaves.iter().enumerate() {
        if !changed.contains(&i) || entries.is_empty() {
            new_blocks.push(*block);
            mappings.extend(entries.iter().copied());
            continue;
        }
        let hi = leaves.get(i + 1).map_or(first + 100_000, |l| l.0);
        let mut m: BTreeMap<u64, u64> = entries.iter().copied().collect();
        for _ in 0..1 + rng.below(6) {
            let at = first + rng.below(hi - first);
            let len = 1 + rng.below(8);
            match rng.below(3) {
                0 if m.len() > 84 + 8 => (at..at + len).for_each(|k| {
                    m.remove(&k);
                }),
                1 if m.len() < 252 - 8 => (at..(at + len).min(hi)).for_each(|k| {
                    m.insert(k, next_data);
                    next_data += 1;
                }),
                _ => (at..at + len).for_each(|k| {
                    if let Some(v) = m.get_mut(&k) {
                        *v = next_data;
                        next_data += 1;
                    }
                }),
            }
        }
        let items: Vec<(u64, u64)> = m.iter().map(|(k, v)| (*k, *v)).collect();
        mappings.extend(items.iter().copied());
        new_blocks.push(img.put(true, &items, 8));
    }
    // Internal levels: a node whose children are all unchanged is reused.
    for level in &t.levels[1..] {
        let mut next = Vec::new();
        let mut at = 0;
        for (_, block, kids) in level {
            let now = &new_blocks[at..at + kids.len()];
            at += kids.len();
            if kids.iter().map(|k| k.1).eq(now.iter().copied()) {
                next.push(*block);
            } else {
                let items: Vec<(u64, u64)> = kids.iter().zip(now).map(|(k, b)| (k.0, *b)).collect();
                next.push(img.put(false, &items, 8));
            }
        }
        new_blocks = next;
    }
    (new_blocks[0], mappings)
}

fn model(l: &BTreeMap<u64, u64>, r: &BTreeMap<u64, u64>, changed_only: bool) -> Vec<Delta> {
    let keys: std::collections::BTreeSet<u64> = l.keys().chain(r.keys()).copied().collect();
    let mut out: Vec<Delta> = Vec::new();
    for k in keys {
        let (a, b) = (l.get(&k).copied(), r.get(&k).copied());
        let kind = match (a, b) {
            (Some(x), Some(y)) if x == y => Kind::Same,
            (Some(_), Some(_)) => Kind::Different,
            (Some(_), None) => Kind::LeftOnly,
            _ => Kind::RightOnly,
        };
        if changed_only && kind == Kind::Same {
            continue;
        }
        let d = Delta { kind, begin: k, length: 1, left: a, right: b };
        match out.last_mut() {
            Some(c)
                if c.kind == d.kind
                    && c.begin + c.length == k
                    && c.left.map(|x| x + c.length) == a
                    && c.right.map(|x| x + c.length) == b =>
            {
                c.length += 1
            }
            _ => out.push(d),
        }
    }
    out
}

fn run(img: &std::path::Path, l: u64, r: u64, opts: Options) -> (Vec<Delta>, diff::Stats) {
    let pool = Pool::open(img, Source::Live).unwrap();
    let mut it = diff::delta(&pool, pool.device(l).unwrap(), pool.device(r).unwrap(), opts).unwrap();
    let v: Vec<Delta> = it.by_ref().collect::<Result<_, _>>().unwrap();
    (v, it.stats())
}

fn random_left(rng: &mut Rng, n: u64) -> BTreeMap<u64, u64> {
    let mut m = BTreeMap::new();
    let mut k = 0;
    let mut d = 1000;
    while (m.len() as u64) < n {
        let run = 1 + rng.below(64);
        for i in 0..run {
            m.insert(k + i, d + i);
        }
        k += run + rng.below(3);
        d += run + rng.below(5);
    }
    m
}

#[test]
fn diff_matches_model_on_shared_trees_in_every_mode() {
    let base: u64 = std::env::var("THINSEND_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    for seed in base..base + 60 {
        let mut rng = Rng::new(seed);
        let fill = [168usize, 200, 252][rng.below(3) as usize].min(max_entries(8));
        let n = [0u64, 5, 300, 5000, 60_000][rng.below(5) as usize];
        let left = random_left(&mut rng, n);
        let mut img = Image::new();
        let lt = img.tree(&left, fill);
        let nleaves = lt.levels[0].len() as u64;
        let changed: Vec<usize> = (0..rng.below(6)).map(|_| rng.below(nleaves) as usize).collect();
        let (rroot, right) = cow(&mut img, &lt, &changed, &mut rng);
        let unrelated = img.tree(&right, 168).root;
        let f = img.finish(&[
            (1, lt.root, left.len() as u64),
            (2, rroot, right.len() as u64),
            (3, unrelated, right.len() as u64),
        ]);
        let pairs = [
            (1, 2, &left, &right),
            (2, 1, &right, &left),
            (1, 1, &left, &left),
            (1, 3, &left, &right),
            (3, 2, &right, &right),
        ];
        for (a, b, lm, rm) in pairs {
            for changed_only in [false, true] {
                let want = model(lm, rm, changed_only);
                for sequential in [false, true] {
                    let (got, stats) = run(f.path(), a, b, Options { changed_only, sequential });
                    assert!(
                        got == want,
                        "seed {seed} fill {fill} n {n}: diff {a} {b} changed_only={changed_only} sequential={sequential}\n got {got:?}\nwant {want:?}"
                    );
                    if a == b && changed_only {
                        assert!(stats.metadata_blocks_read <= 2, "seed {seed}: a device against itself read {stats:?}");
                    }
                }
            }
        }
    }
}

#[test]
fn changed_only_reads_follow_the_change_not_the_volume() {
    let mut reads = Vec::new();
    for n in [10_000u64, 10_000_000] {
        let mut rng = Rng::new(42);
        let left: BTreeMap<u64, u64> = (0..n).map(|k| (k, 5000 + k)).collect();
        let mut img = Image::new();
        let lt = img.tree(&left, 252);
        // About 100 changed blocks, in the same 10 leaves at the start of both volumes.
        let changed: Vec<usize> = (0..10).map(|i| i * 3).collect();
        let (rroot, right) = cow(&mut img, &lt, &changed, &mut rng);
        let f = img.finish(&[(1, lt.root, n), (2, rroot, right.len() as u64)]);
        let (got, stats) = run(f.path(), 1, 2, Options { changed_only: true, sequential: false });
        assert_eq!(got, model(&left, &right, true));
        reads.push((n, stats.metadata_blocks_read, stats.shared_subtrees_skipped, got.len()));
    }
    eprintln!("changed-only (mappings, metadata blocks read, shared subtrees skipped, ranges): {reads:?}");
    let (small, large) = (reads[0].1, reads[1].1);
    assert!(large <= small + 12, "reads grew with the volume: {reads:?}");
}
