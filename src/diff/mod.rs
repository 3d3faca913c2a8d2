//! The delta engine: two thin devices' mapping trees in, ascending ranges classified as thin_delta
//! classifies them (same / different / left_only / right_only, by data block; time ignored).

mod engine;
pub mod output;

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
    pub begin: u64,
    pub length: u64,
    pub left: Option<u64>,
    pub right: Option<u64>,
}

impl Delta {
    pub fn end(&self) -> u64 {
        self.begin + self.length
    }

    /// Whether `next` continues this piece: same kind, adjacent, and data-contiguous on both sides.
    fn extends(&self, next: &Delta) -> bool {
        let cont = |a: Option<u64>, b: Option<u64>| match (a, b) {
            (Some(a), Some(b)) => a + self.length == b,
            (None, None) => true,
            _ => false,
        };
        self.kind == next.kind
            && self.end() == next.begin
            && cont(self.left, next.left)
            && cont(self.right, next.right)
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Options {
    /// Leave out `same` ranges (and never read subtrees both devices share).
    pub changed_only: bool,
}

/// Statistics of one diff, filled in as the iterator runs.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Stats {
    pub metadata_blocks_read: u64,
    pub shared_subtrees_skipped: u64,
    pub same: u64,
    pub different: u64,
    pub left_only: u64,
    pub right_only: u64,
}

/// The delta of `right` against `left` as maximal data-contiguous pieces in ascending order.
pub fn delta<'a>(pool: &'a Pool, left: &Device, right: &Device, opts: Options) -> Result<Diff<'a>> {
    let walk = engine::Walk::new(&pool.dev, left.root, right.root, opts)?;
    Ok(Diff {
        walk,
        cur: None,
        stats: Stats::default(),
        failed: false,
    })
}

/// The pieces of a delta, in ascending order; `stats()` counts what was read and produced so far.
pub struct Diff<'a> {
    walk: engine::Walk<'a>,
    cur: Option<Delta>,
    stats: Stats,
    failed: bool,
}

impl Diff<'_> {
    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.metadata_blocks_read = self.walk.reads();
        s.shared_subtrees_skipped = self.walk.shared;
        s
    }

    fn count(&mut self, d: &Delta) {
        let c = match d.kind {
            Kind::Same => &mut self.stats.same,
            Kind::Different => &mut self.stats.different,
            Kind::LeftOnly => &mut self.stats.left_only,
            Kind::RightOnly => &mut self.stats.right_only,
        };
        *c += d.length;
    }
}

impl Iterator for Diff<'_> {
    type Item = Result<Delta>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        loop {
            match self.walk.step() {
                Ok(Some(d)) => match &mut self.cur {
                    Some(c) if c.extends(&d) => c.length += d.length,
                    _ => {
                        if let Some(done) = self.cur.replace(d) {
                            self.count(&done);
                            return Some(Ok(done));
                        }
                    }
                },
                Ok(None) => {
                    let done = self.cur.take()?;
                    self.count(&done);
                    return Some(Ok(done));
                }
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// thin_delta's simple form: adjacent pieces of one kind merged whatever their data blocks.
pub fn coalesce_simple<I: Iterator<Item = Result<Delta>>>(
    mut it: I,
) -> impl Iterator<Item = Result<Delta>> {
    let mut cur: Option<Delta> = None;
    std::iter::from_fn(move || loop {
        match it.next() {
            Some(Ok(d)) => match &mut cur {
                Some(c) if c.kind == d.kind && c.end() == d.begin => c.length += d.length,
                _ => {
                    if let Some(done) = cur.replace(d) {
                        return Some(Ok(done));
                    }
                }
            },
            Some(Err(e)) => {
                cur = None;
                return Some(Err(e));
            }
            None => return cur.take().map(Ok),
        }
    })
}
