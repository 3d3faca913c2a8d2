//! The plan of a send: which thin ranges become which records, in stream order. One planner
//! ([`Plan::walk`]) drives the totals pass, `--dry-run` and the real send, so all three see the same
//! records. The planner speaks to an [`Emit`] in format-neutral terms (a DATA record, the source
//! pieces of its payload, an UNMAP); the formats differ only in how ranges are cut into records.

use crate::btree::cursor::MAX_DEPTH;
use crate::btree::node::{read_node, Value};
use crate::btree::BlockTime;
use crate::diff::{self, Delta, Kind};
use crate::dump;
use crate::error::{Error, Result};
use crate::pool::{Device, Pool};
use crate::stream::native;

use super::{internal, Options, StreamFormat};

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

/// What the planner asks a consumer to do, in stream order.
pub(crate) trait Emit {
    /// A DATA record for target `[offset, offset+len)`; its payload follows as [`Emit::piece`]s that
    /// tile it in order.
    fn data(&mut self, offset: u64, len: u64) -> Result<()>;
    /// `len` payload bytes read from source byte `src`.
    fn piece(&mut self, src: u64, len: u64) -> Result<()>;
    fn unmap(&mut self, offset: u64, len: u64) -> Result<()>;
}

fn bytes(block: u64, bs: u64, what: &str) -> Result<u64> {
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
    fn target(&self, begin: u64, length: u64) -> Result<(u64, u64)> {
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
fn pieces<'a>(pool: &'a Pool, left: Option<&Device>, right: &Device, g: Geometry) -> Steps<'a> {
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
pub(crate) fn merged(mut it: Steps<'_>) -> Steps<'_> {
    let mut cur: Option<Step> = None;
    Box::new(std::iter::from_fn(move || loop {
        match it.next() {
            Some(Ok(s)) => {
                let joined = match (&mut cur, s) {
                    (Some(Step::Data { offset, len, src }), Step::Data { offset: o2, len: l2, src: s2 })
                        if *offset + *len == o2 && *src + *len == s2 =>
                    {
                        *len += l2;
                        true
                    }
                    (Some(Step::Unmap { offset, len }), Step::Unmap { offset: o2, len: l2 })
                        if *offset + *len == o2 =>
                    {
                        *len += l2;
                        true
                    }
                    _ => false,
                };
                if !joined {
                    if let Some(done) = cur.replace(s) {
                        return Some(Ok(done));
                    }
                }
            }
            Some(Err(e)) => return Some(Err(e)),
            None => return cur.take().map(Ok),
        }
    }))
}

/// LINBIT chunks: thin_dump's runs (full) or thin_delta's simple ranges (incremental), one each.
fn linbit_chunks<'a>(pool: &'a Pool, left: Option<&Device>, right: &Device, g: Geometry) -> Steps<'a> {
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

/// The planned send: devices, geometry and volume size.
pub struct Plan<'a> {
    pub(crate) pool: &'a Pool,
    pub(crate) left: Option<Device>,
    pub(crate) right: Device,
    pub(crate) g: Geometry,
    pub(crate) format: StreamFormat,
    record_size: u64,
    /// Known for native streams always; for LINBIT streams when `--size` or `--source` gave it.
    volume_size: Option<u64>,
    /// The steps, walked once by [`Plan::record`] so that later passes need no metadata.
    recorded: Option<Recorded>,
}

/// A plan's steps held in memory: the data-contiguous pieces and (LINBIT) the chunks over them.
struct Recorded {
    pieces: Vec<Step>,
    chunks: Vec<Step>,
}

/// The highest thin block `d` maps, found by following the last child down the mapping tree (a few
/// metadata blocks, not a walk of every mapping).
fn last_mapped_block(pool: &Pool, d: &Device) -> Result<Option<u64>> {
    let mut node = read_node(&pool.dev, d.root, BlockTime::SIZE, true)?;
    for _ in 0..MAX_DEPTH {
        let Some(last) = node.len().checked_sub(1) else {
            return Ok(None);
        };
        if node.is_leaf {
            return Ok(Some(node.key(last)));
        }
        let child = node.child(last);
        node = read_node(&pool.dev, child, BlockTime::SIZE, false)?;
    }
    Err(Error::Metadata {
        path: pool.dev.path().to_path_buf(),
        what: format!("mapping tree of thin device {} is deeper than {MAX_DEPTH} levels", d.id),
    })
}

/// Refuses a base that is newer than the device sent from it: the stream would take the target back
/// in time (and the diff would run backwards).
fn check_direction(left: &Device, right: &Device) -> Result<()> {
    let (l, r) = (&left.details, &right.details);
    if (l.creation_time, l.transaction_id) > (r.creation_time, r.transaction_id) {
        return Err(Error::Usage(format!(
            "backward incremental: base thin {} (creation time {}, transaction {}) is newer than thin {} \
             (creation time {}, transaction {}); swap --base-id and --thin-id, or send thin {} in full",
            left.id, l.creation_time, l.transaction_id, right.id, r.creation_time, r.transaction_id, right.id
        )));
    }
    Ok(())
}

impl<'a> Plan<'a> {
    /// Resolves the devices and the volume size. `source_size` is the size of `--source` if given.
    pub fn new(pool: &'a Pool, opts: &Options, source_size: Option<u64>) -> Result<Self> {
        let right = *pool.device(opts.thin_id)?;
        let left = opts.base_id.map(|b| pool.device(b).copied()).transpose()?;
        if opts.base_id == Some(opts.thin_id) {
            return Err(Error::Usage(format!("--base-id {} is the device being sent", opts.thin_id)));
        }
        if let Some(l) = &left {
            if !opts.allow_backward {
                check_direction(l, &right)?;
            }
        }
        let sb = pool.superblock();
        let g = Geometry {
            bs: sb.data_block_bytes(),
            from_thin: opts.source.is_some(),
            thin_id: right.id,
            nr_data_blocks: sb.data_sm.nr_blocks,
        };
        let record_size = (opts.record_size.clamp(4096, native::MAX_PAYLOAD) / 4096) * 4096;
        // The highest byte the device maps: every DATA must fit in the volume.
        let mapped_end = match last_mapped_block(pool, &right)? {
            Some(b) => bytes(b.saturating_add(1), g.bs, "thin")?,
            None => 0,
        };
        let volume_size = opts.size.or(source_size);
        if volume_size.is_none() && opts.format == StreamFormat::Native {
            return Err(Error::Usage(format!(
                "the size of thin device {} is unknown: dm-thin metadata does not record device sizes \
                 (it maps {mapped_end} bytes); give --size BYTES, or --source DEV to read the device itself",
                opts.thin_id
            )));
        }
        if let Some(vs) = volume_size.filter(|vs| mapped_end > *vs) {
            return Err(Error::Usage(format!(
                "volume size {vs} is smaller than the {mapped_end} bytes thin device {} maps{}",
                opts.thin_id,
                if opts.size.is_some() { " (--size too small)" } else { " (is --source the right device?)" }
            )));
        }
        Ok(Plan { pool, left, right, g, format: opts.format, record_size, volume_size, recorded: None })
    }

    /// The volume size the stream carries (0: unknown, a LINBIT stream without one).
    pub fn volume_size(&self) -> u64 {
        self.volume_size.unwrap_or(0)
    }

    /// The volume size, when the sender knows it.
    pub fn known_volume_size(&self) -> Option<u64> {
        self.volume_size
    }

    pub fn incremental(&self) -> bool {
        self.left.is_some()
    }

    /// Walks the metadata once and keeps the steps, so the metadata (a held metadata snapshot) can be
    /// released before any data moves. Memory grows with the number of ranges, not of mappings.
    pub fn record(&mut self) -> Result<()> {
        let pieces = self.piece_steps().collect::<Result<Vec<_>>>()?;
        let chunks = match self.format {
            StreamFormat::Linbit => self.chunk_steps().collect::<Result<Vec<_>>>()?,
            StreamFormat::Native => Vec::new(),
        };
        self.recorded = Some(Recorded { pieces, chunks });
        Ok(())
    }

    pub(crate) fn piece_steps(&self) -> Steps<'_> {
        match &self.recorded {
            Some(r) => Box::new(r.pieces.iter().copied().map(Ok)),
            None => pieces(self.pool, self.left.as_ref(), &self.right, self.g),
        }
    }

    fn chunk_steps(&self) -> Steps<'_> {
        match &self.recorded {
            Some(r) => Box::new(r.chunks.iter().copied().map(Ok)),
            None => linbit_chunks(self.pool, self.left.as_ref(), &self.right, self.g),
        }
    }

    /// Every record of the stream, in order.
    pub(crate) fn walk(&self, e: &mut dyn Emit) -> Result<()> {
        match self.format {
            StreamFormat::Native => walk_records(self.piece_steps(), self.record_size, self.volume_size(), e),
            StreamFormat::Linbit => walk_chunks(self.chunk_steps(), self.piece_steps(), e),
        }
    }
}
