//! `mkmeta generate`: plays a spec (see [`crate::spec`]) against [`Pool`] and writes the image and,
//! optionally, the pool data device.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::data::{Both, DataFile, Fill, NoData, Record, Sink};
use crate::error::{Error, Result};
use crate::image::{self, ImageInfo};
use crate::pool::Pool;
use crate::rng::Rng;
use crate::spec::{self, Blocks, Dist, Extent, Op, Spec};

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Overrides the spec's `seed=`; default 0.
    pub seed: Option<u64>,
    /// Overrides the spec's `metadata_blocks=`; default: sized automatically.
    pub metadata_blocks: Option<u64>,
    /// Also write the pool data device here (sparse, nr_data_blocks * block size).
    pub data: Option<PathBuf>,
    /// Keep the last fill of every data block in the outcome (for tests that rebuild the
    /// expected content of thin devices).
    pub record_fills: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub image: ImageInfo,
    pub seed: u64,
    pub devices: usize,
    pub mappings: u64,
    /// With `record_fills`: data block -> the write that last filled it.
    pub fills: Option<HashMap<u64, Fill>>,
}

/// Plays `spec` (from `file`, for messages) and returns the pool in its final, committed state.
/// With `spill` (the image's temporary file and the image's path), bulk-built nodes go to that
/// file at once and memory stays bounded (see [`crate::tm::Tm::spill_to`]).
pub fn play(
    spec: &Spec,
    file: &str,
    seed: u64,
    sink: &mut dyn Sink,
    spill: Option<(tempfile::NamedTempFile, &Path)>,
) -> Result<Pool> {
    let mut pool = Pool::format(spec.pool.data_block_size, spec.pool.nr_data_blocks);
    if let Some((tmp, out)) = spill {
        pool.tm.spill_to(tmp, out)?;
    }
    let mut rng = Rng::new(seed);
    for (line, op) in &spec.ops {
        let at = |e: Error| match e {
            Error::Pool(msg) => Error::Spec { file: file.to_string(), line: *line, msg },
            e => e,
        };
        apply(&mut pool, op, *line as u64, &mut rng, sink).map_err(at)?;
    }
    pool.commit();
    Ok(pool)
}

fn apply(pool: &mut Pool, op: &Op, line: u64, rng: &mut Rng, sink: &mut dyn Sink) -> Result<()> {
    match op {
        Op::Create(id) => pool.create_thin(*id),
        Op::Snap { id, origin } => pool.create_snap(*id, *origin),
        Op::Delete(id) => pool.delete(*id),
        Op::Write { dev, blocks } => {
            for_each_extent(pool, *dev, blocks, rng, |pool, e| pool.write_extent(*dev, e.start, e.len, line, sink))
        }
        Op::Discard { dev, blocks } => {
            for_each_extent(pool, *dev, blocks, rng, |pool, e| pool.discard_extent(*dev, e.start, e.end()).map(|_| ()))
        }
        Op::Commit => {
            pool.commit();
            Ok(())
        }
        Op::ReserveMetadataSnap => pool.reserve_metadata_snap(),
        Op::ReleaseMetadataSnap => pool.release_metadata_snap(),
        Op::Transaction(t) => {
            pool.set_transaction_id(*t);
            Ok(())
        }
        Op::NeedsCheck => {
            pool.set_needs_check();
            Ok(())
        }
    }
}

/// Calls `f` for each run a write or discard covers, in order; random runs are drawn as they go.
fn for_each_extent(
    pool: &mut Pool,
    dev: u64,
    blocks: &Blocks,
    rng: &mut Rng,
    mut f: impl FnMut(&mut Pool, Extent) -> Result<()>,
) -> Result<()> {
    match *blocks {
        Blocks::Extent(e) => {
            pool.device_root(dev)?;
            f(pool, e)
        }
        Blocks::Random { count, run_min, run_max, within, dist } => {
            let within = match within {
                Some(w) => w,
                None => Extent { start: 0, len: pool.mapped_end(dev)? },
            };
            if within.len < run_max {
                return Err(Error::Pool(format!(
                    "random runs of up to {run_max} blocks need a range of at least that many blocks \
                     (device {dev} maps {} blocks; give within=START+LEN)",
                    within.len
                )));
            }
            let mut done = 0;
            while done < count {
                let len = rng.between(run_min, run_max).min(count - done);
                let span = within.len - len + 1;
                let off = match dist {
                    Dist::Uniform => rng.below(span),
                    Dist::Hot if rng.chance(90) => rng.below((span / 10).max(1)),
                    Dist::Hot => rng.below(span),
                };
                f(pool, Extent { start: within.start + off, len })?;
                done += len;
            }
            Ok(())
        }
    }
}

/// Generates the image `out` (and the data device, if asked) from the spec file `spec_path`.
pub fn generate(spec_path: &Path, out: &Path, opts: &Options) -> Result<Outcome> {
    let text = std::fs::read_to_string(spec_path).map_err(|e| Error::io(spec_path, e))?;
    generate_str(&text, &spec_path.display().to_string(), out, opts)
}

pub fn generate_str(text: &str, file: &str, out: &Path, opts: &Options) -> Result<Outcome> {
    let spec = spec::parse(text, file)?;
    let seed = opts.seed.or(spec.pool.seed).unwrap_or(0);
    let nr_blocks = opts.metadata_blocks.or(spec.pool.metadata_blocks);
    let mut data = match &opts.data {
        Some(path) => Some(create_data(path, &spec)?),
        None => None,
    };
    let mut record = Record::default();
    let mut none = NoData;
    let recorder: &mut dyn Sink = if opts.record_fills { &mut record } else { &mut none };
    let spill = Some((image::temp_file(out)?, out));
    let mut pool = match data.as_mut() {
        Some((_, sink)) => play(&spec, file, seed, &mut Both(sink, recorder), spill)?,
        None => play(&spec, file, seed, recorder, spill)?,
    };
    let sb = pool.sb_state();
    let image = image::write_image(&mut pool.tm, &sb, nr_blocks, out)?;
    if let (Some((tmp, _)), Some(path)) = (data, &opts.data) {
        tmp.persist(path).map_err(|e| Error::io(path, e.error))?;
    }
    let ids = pool.device_ids();
    let mappings = ids.iter().filter_map(|&id| pool.details(id)).map(|d| d.mapped_blocks).sum();
    Ok(Outcome { image, seed, devices: ids.len(), mappings, fills: opts.record_fills.then_some(record.0) })
}

/// A sparse temporary data file next to `path`, renamed into place when the image is done.
fn create_data(path: &Path, spec: &Spec) -> Result<(tempfile::NamedTempFile, DataFile)> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let tmp = tempfile::Builder::new().prefix(".mkmeta-data-").tempfile_in(dir).map_err(|e| Error::io(dir, e))?;
    let block_bytes = spec.pool.data_block_size as u64 * 512;
    tmp.as_file().set_len(spec.pool.nr_data_blocks * block_bytes).map_err(|e| Error::io(path, e))?;
    let file = tmp.reopen().map_err(|e| Error::io(path, e))?;
    let sink = DataFile::new(file, path.to_path_buf(), block_bytes as usize);
    Ok((tmp, sink))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bulk-built trees that later change, shrink, are deleted (their blocks stale in the spill
    /// file, some reused, some left free: zeroed) and a held metadata snapshot.
    const CHURN: &str = "pool data_block_size=128 nr_data_blocks=200000 seed=3\n\
        create 1\nwrite 1 0+60000\nsnap 2 of 1\nwrite 1 random count=500 run=1..16\n\
        discard 1 random count=3000 run=1..64\ncreate 3\nwrite 3 0+40000\nreserve_metadata_snap\n\
        delete 2\ncreate 4\nwrite 4 0+20000\nwrite 3 random count=300 run=1..4\ndelete 3\n\
        release_metadata_snap\ncreate 5\nwrite 5 0+3000\ndelete 1\n";

    #[test]
    fn a_spilled_build_writes_the_same_image_as_one_in_memory() {
        let dir = tempfile::tempdir().unwrap();
        let (spilled, in_memory) = (dir.path().join("spilled.img"), dir.path().join("mem.img"));
        let spilled_info = generate_str(CHURN, "churn.spec", &spilled, &Options::default()).unwrap();
        let spec = spec::parse(CHURN, "churn.spec").unwrap();
        let mut pool = play(&spec, "churn.spec", 3, &mut NoData, None).unwrap();
        let sb = pool.sb_state();
        let info = image::write_image(&mut pool.tm, &sb, None, &in_memory).unwrap();
        assert_eq!(spilled_info.image, info);
        let (a, b) = (std::fs::read(&spilled).unwrap(), std::fs::read(&in_memory).unwrap());
        assert_eq!(a.len(), b.len());
        let first_diff = a.chunks(4096).zip(b.chunks(4096)).position(|(x, y)| x != y);
        assert_eq!(first_diff, None, "first differing block");
        // Nothing but the image is left in the directory.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    }
}
