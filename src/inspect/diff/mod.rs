//! The delta engine: two thin devices' mapping trees in, ascending ranges classified as thin_delta
//! classifies them (same / different / left_only / right_only, by data block; time ignored).

mod engine;
pub mod output;

use std::collections::VecDeque;

use rayon::prelude::*;

use crate::btree::cursor::{boundaries, leaf_depth};
use crate::btree::prefetch;
use crate::btree::runs::{coalesce, Coalescer};
use crate::error::Result;
use crate::pool::{Device, Pool};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Same,
    Different,
    LeftOnly,
    RightOnly,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Same => "same",
            Kind::Different => "different",
            Kind::LeftOnly => "left_only",
            Kind::RightOnly => "right_only",
        }
    }
}

/// A piece of the delta: `length` virtual blocks from `begin`, data-contiguous on each side that maps
/// them (a "range" of thin_delta --verbose). `left`/`right` are the first data blocks, where mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Delta {
    pub kind: Kind,
    /// First virtual block, and how many.
    pub begin: u64,
    pub length: u64,
    /// The first data block on the left (snap1) and right (snap2) side, where that side maps it.
    pub left: Option<u64>,
    pub right: Option<u64>,
}

impl Delta {
    pub fn end(&self) -> u64 {
        self.begin + self.length
    }

    /// Extends this piece by `next` if it continues it: same kind, adjacent, and data-contiguous on
    /// both sides.
    fn join(&mut self, next: &Delta) -> bool {
        let cont = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => a + self.length == b,
            (None, None) => true,
            _ => false,
        };
        let ok = self.kind == next.kind
            && self.end() == next.begin
            && cont(self.left, next.left)
            && cont(self.right, next.right);
        if ok {
            self.length += next.length;
        }
        ok
    }

    /// thin_delta's simple form: extends this piece by an adjacent one of the same kind, whatever
    /// their data blocks.
    fn join_simple(&mut self, next: &Delta) -> bool {
        let ok = self.kind == next.kind && self.end() == next.begin;
        if ok {
            self.length += next.length;
        }
        ok
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Leave out `same` ranges (and never read subtrees both devices share).
    pub changed_only: bool,
    /// One walk on this thread, even where parallel windows would pay.
    pub sequential: bool,
}

/// Differing leaves from which a changed-only diff is walked in parallel windows: below it, the
/// windows' own descents would cost more than they save.
const PARALLEL_LEAVES: u64 = 512;

/// Statistics of one diff, filled in as the iterator runs.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Stats {
    pub metadata_blocks_read: u64,
    pub shared_subtrees_skipped: u64,
    /// Metadata blocks asked of the kernel ahead of the walk (not in the page cache), and the levels
    /// that waited for such reads: the critical path in read latencies.
    pub reads_issued: u64,
    pub levels_waited: u64,
    /// Blocks by kind.
    pub same: u64,
    pub different: u64,
    pub left_only: u64,
    pub right_only: u64,
    /// Data-contiguous ranges (the --verbose pieces) by kind.
    pub same_ranges: u64,
    pub different_ranges: u64,
    pub left_only_ranges: u64,
    pub right_only_ranges: u64,
}

/// The delta of `right` against `left` as maximal data-contiguous pieces in ascending order. Walks
/// the trees in parallel key windows when all mappings are wanted (reading the shared leaves is then
/// the bulk of the work) or when many leaves differ, otherwise in one walk.
pub fn delta<'a>(pool: &'a Pool, left: &Device, right: &Device, opts: Options) -> Result<Diff<'a>> {
    let dev = &pool.dev;
    let mut stats = Stats::default();
    // A changed-only diff reads only what differs: fetched a level at a time first (the cold case),
    // and walked in parallel windows where that is many leaves (scattered changes).
    let many = if opts.changed_only {
        let p = prefetch::diff(dev, left.root, right.root);
        (stats.reads_issued, stats.levels_waited) = (p.reads_issued, p.levels_waited);
        p.leaves >= PARALLEL_LEAVES
    } else {
        // Every leaf of both trees is read, without a plan: the kernel's read-around fetches ahead.
        dev.read_around(true);
        true
    };
    let parallel = many && !(opts.sequential || rayon::current_num_threads() < 2 || left.root == right.root);
    let windows = if parallel { windows(pool, left.root, right.root)? } else { Vec::new() };
    let source = if windows.len() < 2 {
        Source::Seq(Box::new(engine::Walk::window(dev, (left.root, None), (right.root, None), opts, 0, None)))
    } else {
        let (ld, lreads) = leaf_depth(dev, left.root, 8)?;
        let (rd, rreads) = leaf_depth(dev, right.root, 8)?;
        stats.metadata_blocks_read += lreads + rreads;
        let roots = ((left.root, Some(ld)), (right.root, Some(rd)));
        Source::Par { pool, roots, opts, windows, next: 0, ready: VecDeque::new() }
    };
    Ok(Diff { source, cur: Coalescer::new(Delta::join), stats, failed: false })
}

enum Source<'a> {
    Seq(Box<engine::Walk<'a>>),
    Par {
        pool: &'a Pool,
        roots: ((u64, Option<usize>), (u64, Option<usize>)),
        opts: Options,
        windows: Vec<(u64, Option<u64>)>,
        next: usize,
        ready: VecDeque<Delta>,
    },
}

/// Key windows `[lo, hi)` along the children of both roots (and of the left root's children when the
/// roots alone give few), so that windows split the trees along subtree boundaries.
fn windows(pool: &Pool, left: u64, right: u64) -> Result<Vec<(u64, Option<u64>)>> {
    let dev = &pool.dev;
    let mut keys = boundaries(dev, left, 8, 1)?;
    keys.extend(boundaries(dev, right, 8, 1)?);
    if keys.len() < 64 {
        keys.extend(boundaries(dev, left, 8, 2)?);
    }
    keys.sort_unstable();
    keys.dedup();
    let mut w = Vec::with_capacity(keys.len() + 1);
    let mut lo = 0;
    for k in keys {
        w.push((lo, Some(k)));
        lo = k;
    }
    w.push((lo, None));
    Ok(w)
}

type JoinFn = fn(&mut Delta, &Delta) -> bool;

/// The pieces of a delta, in ascending order; `stats()` counts what was read and produced so far.
pub struct Diff<'a> {
    source: Source<'a>,
    cur: Coalescer<Delta, JoinFn>,
    stats: Stats,
    failed: bool,
}

/// One window's coalesced pieces.
fn run_window(w: &mut engine::Walk<'_>) -> Result<Vec<Delta>> {
    let mut out: Vec<Delta> = Vec::new();
    let mut c = Coalescer::new(Delta::join);
    while let Some(d) = w.step()? {
        out.extend(c.push(d));
    }
    out.extend(c.finish());
    Ok(out)
}

impl Diff<'_> {
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        if let Source::Seq(w) = &self.source {
            s.metadata_blocks_read += w.reads();
            s.shared_subtrees_skipped += w.shared;
        }
        s
    }

    fn count(&mut self, d: &Delta) {
        let s = &mut self.stats;
        let (blocks, ranges) = match d.kind {
            Kind::Same => (&mut s.same, &mut s.same_ranges),
            Kind::Different => (&mut s.different, &mut s.different_ranges),
            Kind::LeftOnly => (&mut s.left_only, &mut s.left_only_ranges),
            Kind::RightOnly => (&mut s.right_only, &mut s.right_only_ranges),
        };
        *blocks += d.length;
        *ranges += 1;
    }

    fn next_piece(&mut self) -> Result<Option<Delta>> {
        match &mut self.source {
            Source::Seq(w) => w.step(),
            Source::Par { pool, roots, opts, windows, next, ready } => loop {
                if let Some(d) = ready.pop_front() {
                    return Ok(Some(d));
                }
                if *next == windows.len() {
                    return Ok(None);
                }
                let batch = &windows[*next..windows.len().min(*next + 4 * rayon::current_num_threads())];
                *next += batch.len();
                let (pool, roots, opts) = (*pool, *roots, *opts);
                let results: Vec<Result<(Vec<Delta>, u64, u64)>> = batch
                    .par_iter()
                    .map(|&(lo, hi)| {
                        let mut w = engine::Walk::window(&pool.dev, roots.0, roots.1, opts, lo, hi);
                        let v = run_window(&mut w)?;
                        Ok((v, w.reads(), w.shared))
                    })
                    .collect();
                for r in results {
                    let (v, reads, shared) = r?;
                    self.stats.metadata_blocks_read += reads;
                    self.stats.shared_subtrees_skipped += shared;
                    ready.extend(v);
                }
            },
        }
    }
}

impl Iterator for Diff<'_> {
    type Item = Result<Delta>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            let done = match self.next_piece() {
                Ok(Some(d)) => self.cur.push(d),
                Ok(None) => Some(self.cur.finish()?),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            };
            if let Some(done) = done {
                self.count(&done);
                return Some(Ok(done));
            }
        }
    }
}

/// thin_delta's simple form: adjacent pieces of one kind merged whatever their data blocks.
pub fn coalesce_simple<I: Iterator<Item = Result<Delta>>>(it: I) -> impl Iterator<Item = Result<Delta>> {
    coalesce(it, Delta::join_simple)
}
