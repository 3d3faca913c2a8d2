//! The plan of a send: which thin ranges become which records, in stream order. One planner
//! ([`Plan::walk`]) drives the totals pass, `--dry-run` and the real send, so all three see the same
//! records. The planner speaks to an [`Emit`] in format-neutral terms (a DATA record, the source
//! pieces of its payload, an UNMAP); the formats differ only in how ranges are cut into records.

use crate::btree;
use crate::error::{Error, Result};
use crate::pool::{Device, Pool};
use crate::stream::native;

use super::steps::{bytes, linbit_chunks, pieces, walk_chunks, walk_records};
pub(crate) use super::steps::{Emit, Geometry, Step, Steps};
use super::{Options, StreamFormat};

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
    /// `send --resume`: the target offset the stream starts at (steps before it are not sent).
    from: u64,
}

/// A plan's steps held in memory: the data-contiguous pieces and (LINBIT) the chunks over them.
struct Recorded {
    pieces: Vec<Step>,
    chunks: Vec<Step>,
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
            // the live superblock's: a metadata snapshot's copy has 0 (the kernel clears its space maps)
            nr_data_blocks: pool.sb.live.data_sm.nr_blocks,
        };
        let record_size = (opts.record_size.clamp(4096, native::MAX_PAYLOAD) / 4096) * 4096;
        // The highest byte the device maps: every DATA must fit in the volume.
        let mapped_end = match btree::mapping::last_mapped_block(&pool.dev, right.root)? {
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
        let from = super::resume::start_offset(opts);
        Ok(Plan { pool, left, right, g, format: opts.format, record_size, volume_size, recorded: None, from })
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
        let steps: Steps<'_> = match &self.recorded {
            Some(r) => Box::new(r.pieces.iter().copied().map(Ok)),
            None => pieces(self.pool, self.left.as_ref(), &self.right, self.g),
        };
        super::resume::clip(steps, self.from)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::btree::details::DeviceDetails;

    fn dev(id: u64, creation_time: u32, transaction_id: u64) -> Device {
        let details = DeviceDetails { mapped_blocks: 0, transaction_id, creation_time, snapshotted_time: 0 };
        Device { id, root: 0, details }
    }

    #[test]
    fn a_base_newer_than_the_device_is_a_backward_incremental() {
        assert!(check_direction(&dev(1, 0, 0), &dev(2, 1, 1)).is_ok());
        assert!(check_direction(&dev(1, 1, 1), &dev(2, 1, 1)).is_ok(), "same time and transaction");
        let e = check_direction(&dev(2, 1, 1), &dev(1, 0, 0)).unwrap_err();
        assert!(matches!(e, Error::Usage(_)), "{e}");
        assert!(e.to_string().contains("backward incremental: base thin 2"), "{e}");
        assert!(check_direction(&dev(2, 1, 3), &dev(1, 1, 2)).is_err(), "same time, later transaction");
    }
}
