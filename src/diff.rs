//! The delta engine: two thin devices' mapping trees in, ascending ranges classified as thin_delta
//! classifies them (same / different / left_only / right_only, by data block; time ignored).

use crate::btree::mapping::{mappings, BlockTime};
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
pub fn delta<'a>(
    pool: &'a Pool,
    left: &Device,
    right: &Device,
    opts: Options,
) -> impl Iterator<Item = Result<Delta>> + 'a {
    let changed_only = opts.changed_only;
    let per_block = PerBlock {
        l: mappings(&pool.dev, left.root).peekable(),
        r: mappings(&pool.dev, right.root).peekable(),
    };
    coalesce_pieces(
        per_block.filter(move |d| !(changed_only && matches!(d, Ok(d) if d.kind == Kind::Same))),
    )
}

/// Per-virtual-block classification by merging two sorted mapping streams.
struct PerBlock<
    L: Iterator<Item = Result<(u64, BlockTime)>>,
    R: Iterator<Item = Result<(u64, BlockTime)>>,
> {
    l: std::iter::Peekable<L>,
    r: std::iter::Peekable<R>,
}

impl<L, R> Iterator for PerBlock<L, R>
where
    L: Iterator<Item = Result<(u64, BlockTime)>>,
    R: Iterator<Item = Result<(u64, BlockTime)>>,
{
    type Item = Result<Delta>;

    fn next(&mut self) -> Option<Self::Item> {
        let lk = match self.l.peek() {
            Some(Err(_)) => return self.l.next().map(|r| r.map(|_| unreachable!())),
            Some(Ok((k, _))) => Some(*k),
            None => None,
        };
        let rk = match self.r.peek() {
            Some(Err(_)) => return self.r.next().map(|r| r.map(|_| unreachable!())),
            Some(Ok((k, _))) => Some(*k),
            None => None,
        };
        let one = |kind, begin, left, right| {
            Some(Ok(Delta {
                kind,
                begin,
                length: 1,
                left,
                right,
            }))
        };
        match (lk, rk) {
            (None, None) => None,
            (Some(k), r) if r.is_none_or(|r| k < r) => {
                let (_, v) = self.l.next()?.ok()?;
                one(Kind::LeftOnly, k, Some(v.data_block), None)
            }
            (l, Some(k)) if l.is_none_or(|l| k < l) => {
                let (_, v) = self.r.next()?.ok()?;
                one(Kind::RightOnly, k, None, Some(v.data_block))
            }
            (Some(k), Some(_)) => {
                let (_, a) = self.l.next()?.ok()?;
                let (_, b) = self.r.next()?.ok()?;
                let kind = if a.data_block == b.data_block {
                    Kind::Same
                } else {
                    Kind::Different
                };
                one(kind, k, Some(a.data_block), Some(b.data_block))
            }
            (None, Some(_)) | (Some(_), None) => unreachable!(),
        }
    }
}

/// Joins adjacent pieces that continue each other (same kind, data-contiguous on each side).
pub fn coalesce_pieces<I: Iterator<Item = Result<Delta>>>(
    mut it: I,
) -> impl Iterator<Item = Result<Delta>> {
    let mut cur: Option<Delta> = None;
    std::iter::from_fn(move || loop {
        match it.next() {
            Some(Ok(d)) => match &mut cur {
                Some(c) if c.extends(&d) => c.length += d.length,
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
