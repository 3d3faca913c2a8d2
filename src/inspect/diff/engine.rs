//! Both trees walked together. Whenever both fronts are the same block, the subtree holds the same
//! mappings on both sides: it is skipped unread (`changed_only`) or read once and reported as `same`.
//! Otherwise the front with the lower key bound is expanded (the taller one on a tie, both when equal),
//! which keeps the two walks aligned on the kernel's copy-on-write paths.

use crate::block::MetadataDev;
use crate::btree::cursor::{Cursor, Front};
use crate::btree::mapping::BlockTime;
use crate::btree::node::equal_words;
use crate::diff::{Delta, Kind, Options};
use crate::error::Result;
use crate::ondisk::OnDisk;

pub struct Walk<'a> {
    l: Cursor<'a>,
    r: Cursor<'a>,
    changed_only: bool,
    /// Only keys in `[lo, hi)` are compared (a window of a parallel diff; everything by default).
    lo: u64,
    hi: Option<u64>,
    /// While the left cursor is at or below this depth it is inside a shared subtree that is being
    /// reported as `same` (the right cursor has already skipped it).
    mirror: Option<usize>,
    pub shared: u64,
}

fn data(raw: u64) -> u64 {
    BlockTime::from_raw(raw).data_block
}

fn one(kind: Kind, begin: u64, left: Option<u64>, right: Option<u64>) -> Delta {
    Delta { kind, begin, length: 1, left, right }
}

impl<'a> Walk<'a> {
    /// A walk of the keys in `[lo, hi)` only, for trees whose leaf depths are known.
    pub fn window(
        dev: &'a MetadataDev,
        (left_root, left_depth): (u64, Option<usize>),
        (right_root, right_depth): (u64, Option<usize>),
        opts: Options,
        lo: u64,
        hi: Option<u64>,
    ) -> Self {
        let cursor = |root, depth: Option<usize>| match depth {
            Some(d) => Cursor::with_depth(dev, root, 8, d),
            None => Cursor::new(dev, root, 8),
        };
        let (l, r) = (cursor(left_root, left_depth), cursor(right_root, right_depth));
        Walk { l, r, changed_only: opts.changed_only, lo, hi, mirror: None, shared: 0 }
    }

    pub fn reads(&self) -> u64 {
        self.l.reads + self.r.reads
    }

    /// The next block's delta (length 1), or None at the end of both trees.
    pub fn step(&mut self) -> Result<Option<Delta>> {
        loop {
            let lf = self.l.front_within(self.lo, self.hi);
            if let Some(md) = self.mirror {
                if lf != Front::End && self.l.depth() >= md {
                    match lf {
                        Front::Entry { key } => {
                            let d = data(self.l.value_u64());
                            self.l.skip();
                            return Ok(Some(one(Kind::Same, key, Some(d), Some(d))));
                        }
                        _ => {
                            self.l.expand()?;
                            continue;
                        }
                    }
                }
                self.mirror = None;
            }
            let rf = self.r.front_within(self.lo, self.hi);
            match (lf, rf) {
                (Front::End, Front::End) => return Ok(None),
                (Front::Sub { block: a, .. }, Front::Sub { block: b, .. }) if a == b => {
                    self.shared += 1;
                    self.r.skip();
                    if self.changed_only {
                        self.l.skip();
                    } else {
                        self.l.expand()?;
                        self.mirror = Some(self.l.depth());
                    }
                }
                (Front::Sub { lo: la, depth: da, .. }, Front::Sub { lo: lb, depth: db, .. }) => {
                    let (hl, hr) = (self.l.leaf_depth()? - da, self.r.leaf_depth()? - db);
                    if la < lb || (la == lb && hl > hr) {
                        self.l.expand()?;
                    } else if lb < la || hr > hl {
                        self.r.expand()?;
                    } else {
                        self.l.expand()?;
                        self.r.expand()?;
                    }
                }
                (Front::Sub { lo, .. }, Front::Entry { key }) => {
                    if lo <= key {
                        self.l.expand()?;
                    } else {
                        return Ok(Some(self.right_only(key)));
                    }
                }
                (Front::Entry { key }, Front::Sub { lo, .. }) => {
                    if lo <= key {
                        self.r.expand()?;
                    } else {
                        return Ok(Some(self.left_only(key)));
                    }
                }
                (Front::Sub { .. }, Front::End) => self.l.expand()?,
                (Front::End, Front::Sub { .. }) => self.r.expand()?,
                (Front::Entry { key }, Front::End) => return Ok(Some(self.left_only(key))),
                (Front::End, Front::Entry { key }) => return Ok(Some(self.right_only(key))),
                (Front::Entry { key: a }, Front::Entry { key: b }) => {
                    if let Some(d) = self.entries(a, b) {
                        return Ok(Some(d));
                    }
                }
            }
        }
    }

    /// Both fronts are entries: the lower key is one side's only, equal keys compare data blocks
    /// (None: the same, and only changes are wanted).
    fn entries(&mut self, a: u64, b: u64) -> Option<Delta> {
        if a < b {
            return Some(self.left_only(a));
        }
        if b < a {
            return Some(self.right_only(b));
        }
        let (dl, dr) = (data(self.l.value_u64()), data(self.r.value_u64()));
        self.l.skip();
        self.r.skip();
        if dl == dr {
            if self.changed_only {
                self.skip_same_entries();
                return None;
            }
            return Some(one(Kind::Same, a, Some(dl), Some(dr)));
        }
        Some(one(Kind::Different, a, Some(dl), Some(dr)))
    }

    /// Passes over the entries both current leaves hold alike from here on: same keys, same data
    /// blocks (alike entries past a window's end too: they report nothing). In a changed-only diff of
    /// scattered changes this is most of the work: raw keys and values are compared as bytes
    /// (`equal_words`), and only values whose bytes differ are decoded, since equal data blocks at
    /// different times are the same.
    fn skip_same_entries(&mut self) {
        let (Some((ln, li)), Some((rn, ri))) = (self.l.leaf_pos(), self.r.leaf_pos()) else {
            return;
        };
        let max = (ln.len() - li).min(rn.len() - ri);
        let keys = equal_words(ln.key_run(li, max), rn.key_run(ri, max));
        let (lv, rv) = (ln.value_run(li, keys), rn.value_run(ri, keys));
        let mut n = 0;
        loop {
            n += equal_words(&lv[8 * n..], &rv[8 * n..]);
            let word = |v: &[u8]| v.get(8 * n..8 * n + 8).map(u64::unpack);
            match (word(lv), word(rv)) {
                (Some(a), Some(b)) if data(a) == data(b) => n += 1,
                _ => break,
            }
        }
        self.l.skip_entries(n);
        self.r.skip_entries(n);
    }

    fn left_only(&mut self, key: u64) -> Delta {
        let d = data(self.l.value_u64());
        self.l.skip();
        one(Kind::LeftOnly, key, Some(d), None)
    }

    fn right_only(&mut self, key: u64) -> Delta {
        let d = data(self.r.value_u64());
        self.r.skip();
        one(Kind::RightOnly, key, None, Some(d))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::testimg::{bt, run, TestImg};

    /// Left: root 1 over leaves 3 (keys 0..4) and 2 (10..14). Right: root 5 over leaf 4, which keeps
    /// 0 and 1, remaps 2, drops 3 and adds 4, and the same leaf 2.
    fn pair() -> TestImg {
        let mut t = TestImg::new(20);
        t.internal(1, &[(0, 3), (10, 2)]).leaf(3, &run(0..4, 200)).leaf(2, &run(10..14, 100));
        t.internal(5, &[(0, 4), (10, 2)]).leaf(4, &[(0, bt(200)), (1, bt(201)), (2, bt(900)), (4, bt(901))]);
        t
    }

    fn steps(dev: &MetadataDev, (left, right): (u64, u64), changed_only: bool) -> (Vec<(Kind, u64)>, u64, u64) {
        let opts = Options { changed_only, sequential: true };
        let mut w = Walk::window(dev, (left, None), (right, None), opts, 0, None);
        let mut out = Vec::new();
        while let Some(d) = w.step().unwrap() {
            assert_eq!(d.length, 1);
            out.push((d.kind, d.begin));
        }
        (out, w.shared, w.reads())
    }

    const CHANGES: [(Kind, u64); 3] = [(Kind::Different, 2), (Kind::LeftOnly, 3), (Kind::RightOnly, 4)];

    #[test]
    fn changed_only_skips_a_shared_subtree_unread() {
        let mut t = pair();
        // The shared leaf 2 made unreadable: the walk must not touch it.
        t.internal(2, &[]);
        let (s, shared, _) = steps(&t.dev(), (1, 5), true);
        assert_eq!(s, CHANGES);
        assert_eq!(shared, 1);
    }

    #[test]
    fn a_full_diff_reads_a_shared_subtree_once_and_reports_it_same() {
        let (s, shared, reads) = steps(&pair().dev(), (1, 5), false);
        let same = |k| (Kind::Same, k);
        let mut want = vec![same(0), same(1)];
        want.extend(CHANGES);
        want.extend([same(10), same(11), same(12), same(13)]);
        assert_eq!(s, want);
        // Two leftmost descents for the leaf depths (4 nodes), then roots 1 and 5, leaves 3 and 4,
        // and leaf 2 once.
        assert_eq!((shared, reads), (1, 9));
    }

    #[test]
    fn a_window_compares_only_its_keys() {
        let dev = pair().dev();
        let opts = Options { changed_only: false, sequential: true };
        let mut w = Walk::window(&dev, (1, Some(1)), (5, Some(1)), opts, 1, Some(4));
        let mut got = Vec::new();
        while let Some(d) = w.step().unwrap() {
            got.push((d.kind, d.begin, d.left, d.right));
        }
        let want = [
            (Kind::Same, 1, Some(201), Some(201)),
            (Kind::Different, 2, Some(202), Some(900)),
            (Kind::LeftOnly, 3, Some(203), None),
        ];
        assert_eq!(got, want);
    }

    /// Left: leaf 1, keys 0..40. Right: leaf 2, the same but for key 20's data block, keys 3 and 37
    /// at other times (raw bytes differ, mappings do not) and no key 25.
    fn leaves_with_times() -> TestImg {
        let mut t = TestImg::new(4);
        let left = run(0..40, 200);
        let mut right: Vec<(u64, u64)> = left.iter().copied().filter(|e| e.0 != 25).collect();
        for e in right.iter_mut() {
            match e.0 {
                3 => e.1 |= 7,
                37 => e.1 |= 0xFF_FFFF,
                20 => e.1 = bt(999),
                _ => {}
            }
        }
        t.leaf(1, &left).leaf(2, &right);
        t
    }

    fn window(dev: &MetadataDev, lo: u64, hi: Option<u64>) -> Vec<(Kind, u64)> {
        let opts = Options { changed_only: true, sequential: true };
        let mut w = Walk::window(dev, (1, Some(0)), (2, Some(0)), opts, lo, hi);
        std::iter::from_fn(|| w.step().unwrap()).map(|d| (d.kind, d.begin)).collect()
    }

    #[test]
    fn equal_data_blocks_at_other_times_are_the_same() {
        let dev = leaves_with_times().dev();
        let want = [(Kind::Different, 20), (Kind::LeftOnly, 25)];
        assert_eq!(steps(&dev, (1, 2), true).0, want);
        assert_eq!(steps(&dev, (2, 1), true).0, [(Kind::Different, 20), (Kind::RightOnly, 25)]);
        // The full diff reports the entries at other times as same, not different.
        let full = steps(&dev, (1, 2), false).0;
        assert!(full.contains(&(Kind::Same, 3)) && full.contains(&(Kind::Same, 37)));
        assert_eq!(full.len(), 40);
    }

    #[test]
    fn skipping_alike_entries_stops_at_the_window_end() {
        let dev = leaves_with_times().dev();
        assert_eq!(window(&dev, 0, Some(20)), []);
        assert_eq!(window(&dev, 0, Some(21)), [(Kind::Different, 20)]);
        assert_eq!(window(&dev, 4, Some(26)), [(Kind::Different, 20), (Kind::LeftOnly, 25)]);
        assert_eq!(window(&dev, 21, None), [(Kind::LeftOnly, 25)]);
        assert_eq!(window(&dev, 26, Some(38)), []);
    }

    #[test]
    fn trees_of_different_heights_stay_aligned() {
        // Right is one leaf holding what left holds in two: all the same, nothing shared.
        let mut t = pair();
        let mut all = run(0..4, 200);
        all.extend(run(10..14, 100));
        t.leaf(6, &all);
        let dev = t.dev();
        assert_eq!(steps(&dev, (1, 6), true).0, []);
        let (s, shared, _) = steps(&dev, (6, 1), false);
        assert_eq!(s, all.iter().map(|e| (Kind::Same, e.0)).collect::<Vec<_>>());
        assert_eq!(shared, 0);
    }
}
