//! Steps: the ranges a send moves (DATA from a source offset, UNMAP), from a full device's runs or a
//! delta's changed pieces, merged where they continue each other and cut into records: one DATA per
//! record size (native) or one chunk per thin_dump run / thin_delta range, tiled by pieces (LINBIT).

use crate::diff::{self, Delta, Kind};
use crate::dump;
use crate::error::{Error, Result};
use crate::pool::{Device, Pool};

use super::internal;

/// A range of the delta or of a full device, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Target `[offset, offset+len)` gets the source's bytes at `src`.
    Data {
        offset: u64,
        len: u64,
        src: u64,
    },
    Unmap {
        offset: u64,
        len: u64,
    },
}

impl Step {
    /// Extends `self` by `next` when both are DATA contiguous in target and source, or both UNMAP
    /// contiguous in target (the rule [`merged`] coalesces by).
    fn join(&mut self, next: &Step) -> bool {
        match (self, *next) {
            (Step::Data { offset, len, src }, Step::Data { offset: o2, len: l2, src: s2 })
                if *offset + *len == o2 && *src + *len == s2 =>
            {
                *len += l2;
                true
            }
            (Step::Unmap { offset, len }, Step::Unmap { offset: o2, len: l2 }) if *offset + *len == o2 => {
                *len += l2;
                true
            }
            _ => false,
        }
    }
}

/// What the planner asks a consumer to do, in stream order.
pub(crate) trait Emit {
    /// A DATA record for target `[offset, offset+len)`; its payload follows as [`Emit::piece`]s that
    /// tile it in order.
    fn data(&mut self, offset: u64, len: u64) -> Result<()>;
    /// `len` payload bytes read from source byte `src`.
    fn piece(&mut self, src: u64, len: u64) -> Result<()>;
    fn unmap(&mut self, offset: u64, len: u64) -> Result<()>;
}

pub(crate) fn bytes(block: u64, bs: u64, what: &str) -> Result<u64> {
    block.checked_mul(bs).ok_or_else(|| {
        Error::Other(format!("{what} block {block} times block size {bs} overflows a 64-bit byte offset"))
    })
}

/// Where DATA is read from: the pool data device (`src = data block`) or the thin device (`src =
/// thin block`); and the pool's data area every mapping must lie in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub bs: u64,
    pub from_thin: bool,
    pub thin_id: u64,
    pub nr_data_blocks: u64,
}

impl Geometry {
    pub fn data(&self, begin: u64, length: u64, data_block: u64) -> Result<Step> {
        if data_block.checked_add(length).map_or(true, |e| e > self.nr_data_blocks) {
            return Err(Error::Other(format!(
                "thin device {}: thin blocks {begin}..+{length} map to data blocks {data_block}..+{length}, \
                 past the pool's {} data blocks: the metadata is corrupt",
                self.thin_id, self.nr_data_blocks
            )));
        }
        let (offset, len) = self.target(begin, length)?;
        let src = if self.from_thin { offset } else { bytes(data_block, self.bs, "data")? };
        Ok(Step::Data { offset, len, src })
    }

    pub fn unmap(&self, begin: u64, length: u64) -> Result<Step> {
        let (offset, len) = self.target(begin, length)?;
        Ok(Step::Unmap { offset, len })
    }

    /// Thin blocks `[begin, begin+length)` in bytes.
    pub fn target(&self, begin: u64, length: u64) -> Result<(u64, u64)> {
        Ok((bytes(begin, self.bs, "thin")?, bytes(length, self.bs, "thin")?))
    }

    fn delta_step(&self, d: &Delta) -> Result<Option<Step>> {
        match (d.kind, d.right) {
            (Kind::Same, _) => Ok(None),
            (Kind::LeftOnly, _) => self.unmap(d.begin, d.length).map(Some),
            (Kind::Different | Kind::RightOnly, Some(r)) => self.data(d.begin, d.length, r).map(Some),
            (k, None) => {
                Err(Error::Other(format!("diff piece {} at block {} has no right data block", k.name(), d.begin)))
            }
        }
    }
}

pub(crate) type Steps<'a> = Box<dyn Iterator<Item = Result<Step>> + 'a>;

/// The changed pieces of `right` against `left` (shared subtrees are not read).
fn changed<'a>(pool: &'a Pool, left: &Device, right: &Device) -> Result<diff::Diff<'a>> {
    diff::delta(pool, left, right, diff::Options { changed_only: true, ..Default::default() })
}

/// Data-contiguous pieces in ascending order: a full device's runs, or the changed pieces of a delta.
pub(crate) fn pieces<'a>(pool: &'a Pool, left: Option<&Device>, right: &Device, g: Geometry) -> Steps<'a> {
    match left {
        None => Box::new(
            dump::runs(pool, right).map(move |r| r.and_then(|r| g.data(r.origin_begin, r.length, r.data_begin))),
        ),
        Some(left) => match changed(pool, left, right) {
            Ok(d) => Box::new(d.filter_map(move |d| d.and_then(|d| g.delta_step(&d)).transpose())),
            Err(e) => Box::new(std::iter::once(Err(e))),
        },
    }
}

/// Joins steps that continue each other (adjacent UNMAPs; DATA adjacent on target and source).
pub(crate) fn merged(it: Steps<'_>) -> Steps<'_> {
    Box::new(crate::btree::runs::coalesce(it, Step::join))
}

/// LINBIT chunks: thin_dump's runs (full) or thin_delta's simple ranges (incremental), one each.
pub(crate) fn linbit_chunks<'a>(pool: &'a Pool, left: Option<&Device>, right: &Device, g: Geometry) -> Steps<'a> {
    match left {
        None => pieces(pool, None, right, g),
        Some(left) => match changed(pool, left, right) {
            Ok(d) => Box::new(diff::coalesce_simple(d).filter_map(move |d| {
                d.and_then(|d| match d.kind {
                    Kind::Same => Ok(None),
                    Kind::LeftOnly => g.unmap(d.begin, d.length).map(Some),
                    // The data block is irrelevant for a chunk header; pieces carry the sources.
                    Kind::Different | Kind::RightOnly => {
                        g.target(d.begin, d.length).map(|(offset, len)| Some(Step::Data { offset, len, src: 0 }))
                    }
                })
                .transpose()
            })),
            Err(e) => Box::new(std::iter::once(Err(e))),
        },
    }
}

/// Cuts merged steps into records: DATA of at most `record_size` bytes with one piece each, UNMAPs
/// clipped to the volume (blocks the base maps past the volume's end are cut off by the resize).
pub(crate) fn walk_records(steps: Steps<'_>, record_size: u64, volume_size: u64, e: &mut dyn Emit) -> Result<()> {
    for step in merged(steps) {
        match step? {
            Step::Data { offset, len, src } => {
                if offset.saturating_add(len) > volume_size {
                    return Err(internal("DATA past the volume size"));
                }
                let mut done = 0;
                while done < len {
                    let n = (len - done).min(record_size);
                    e.data(offset + done, n)?;
                    e.piece(src + done, n)?;
                    done += n;
                }
            }
            Step::Unmap { offset, len } => {
                let end = offset.saturating_add(len).min(volume_size);
                if end > offset {
                    e.unmap(offset, end - offset)?;
                }
            }
        }
    }
    Ok(())
}

/// One record per chunk, its payload the data-contiguous pieces that tile it.
pub(crate) fn walk_chunks(chunks: Steps<'_>, mut pieces: Steps<'_>, e: &mut dyn Emit) -> Result<()> {
    for c in chunks {
        let (offset, len, data) = match c? {
            Step::Data { offset, len, .. } => (offset, len, true),
            Step::Unmap { offset, len } => (offset, len, false),
        };
        if data {
            e.data(offset, len)?;
        } else {
            e.unmap(offset, len)?;
        }
        let mut at = offset;
        while at < offset + len {
            let p = pieces.next().ok_or_else(|| internal("LINBIT chunk not covered by pieces"))??;
            match (p, data) {
                (Step::Data { offset: po, len: pl, src }, true) if po == at => {
                    e.piece(src, pl)?;
                    at += pl;
                }
                (Step::Unmap { offset: po, len: pl }, false) if po == at => at += pl,
                _ => return Err(internal("LINBIT chunk and pieces disagree")),
            }
        }
        if at != offset + len {
            return Err(internal("LINBIT chunk and pieces disagree on length"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the planner asked for, as short strings.
    #[derive(Default)]
    struct Rec(Vec<String>);

    impl Emit for Rec {
        fn data(&mut self, offset: u64, len: u64) -> Result<()> {
            self.0.push(format!("D {offset}+{len}"));
            Ok(())
        }
        fn piece(&mut self, src: u64, len: u64) -> Result<()> {
            self.0.push(format!("P {src}+{len}"));
            Ok(())
        }
        fn unmap(&mut self, offset: u64, len: u64) -> Result<()> {
            self.0.push(format!("U {offset}+{len}"));
            Ok(())
        }
    }

    fn steps(v: Vec<Step>) -> Steps<'static> {
        Box::new(v.into_iter().map(Ok))
    }

    fn d(offset: u64, len: u64, src: u64) -> Step {
        Step::Data { offset, len, src }
    }

    fn u(offset: u64, len: u64) -> Step {
        Step::Unmap { offset, len }
    }

    #[test]
    fn merge_joins_only_steps_that_continue_on_target_and_source() {
        let got: Vec<Step> = merged(steps(vec![
            d(0, 10, 100),
            d(10, 5, 110), // continues both: joined
            d(15, 5, 200), // continues the target only: new step
            u(20, 4),
            u(24, 4), // joined
            d(30, 2, 202),
        ]))
        .collect::<Result<_>>()
        .unwrap();
        assert_eq!(got, vec![d(0, 15, 100), d(15, 5, 200), u(20, 8), d(30, 2, 202)]);
    }

    #[test]
    fn native_records_are_cut_at_the_record_size_one_piece_each_and_unmaps_clipped_to_the_volume() {
        let mut r = Rec::default();
        walk_records(steps(vec![d(0, 10, 100), u(10, 20)]), 4, 20, &mut r).unwrap();
        assert_eq!(r.0, ["D 0+4", "P 100+4", "D 4+4", "P 104+4", "D 8+2", "P 108+2", "U 10+10"]);
        // An UNMAP wholly past the volume (the base was larger) is dropped.
        let mut r = Rec::default();
        walk_records(steps(vec![u(30, 5)]), 4, 20, &mut r).unwrap();
        assert!(r.0.is_empty(), "{:?}", r.0);
        // DATA past the volume is a planning error, never a record.
        let mut r = Rec::default();
        assert!(walk_records(steps(vec![d(18, 4, 0)]), 4, 20, &mut r).is_err());
        assert!(r.0.is_empty());
    }

    #[test]
    fn linbit_chunks_are_tiled_by_their_pieces_and_disagreement_is_refused() {
        let mut r = Rec::default();
        let chunks = steps(vec![d(0, 8, 0), u(8, 4)]);
        let pieces = steps(vec![d(0, 3, 50), d(3, 5, 90), u(8, 4)]);
        walk_chunks(chunks, pieces, &mut r).unwrap();
        assert_eq!(r.0, ["D 0+8", "P 50+3", "P 90+5", "U 8+4"]);
        let mut r = Rec::default();
        assert!(walk_chunks(steps(vec![d(0, 8, 0)]), steps(vec![d(0, 3, 50), d(4, 4, 90)]), &mut r).is_err());
        assert!(walk_chunks(steps(vec![d(0, 8, 0)]), steps(vec![d(0, 3, 50)]), &mut Rec::default()).is_err());
    }

    #[test]
    fn a_mapping_past_the_pools_data_area_is_refused_naming_device_blocks_and_limit() {
        let g = Geometry { bs: 65536, from_thin: false, thin_id: 7, nr_data_blocks: 100 };
        assert_eq!(g.data(3, 2, 98).unwrap(), d(3 * 65536, 2 * 65536, 98 * 65536));
        let e = g.data(3, 2, 99).unwrap_err().to_string();
        assert!(
            e.contains("thin device 7") && e.contains("data blocks 99..+2") && e.contains("100 data blocks"),
            "{e}"
        );
        assert!(g.data(0, 1, u64::MAX).is_err());
        // Read from the thin device itself, the source offset is the target offset.
        let g = Geometry { from_thin: true, ..g };
        assert_eq!(g.data(3, 1, 5).unwrap(), d(3 * 65536, 65536, 3 * 65536));
    }
}
