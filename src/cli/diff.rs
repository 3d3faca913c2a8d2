//! `diff`: what changed between two thin devices, from a metadata image or two LVs of one pool.

use std::path::Path;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use thinsend::diff::{self, output};
use thinsend::{lvm, Error};

use super::args::{flush, stdout, SnapArg};

pub const EXAMPLES: &str = "\
Examples:
  thinsend-native diff vg/snap1 vg/snap2                        # LVM form (root), metadata snapshot held
  thinsend-native diff --changed-only --format ranges vg/snap1 vg/snap2
  thinsend-native diff -m --snap1 1 --snap2 2 /dev/mapper/vg-pool_tmeta
  thinsend-native diff --snap1 1 --snap2 2 --format json --stats pool_tmeta.img
  thinsend-native diff --snap1 1 --snap2 2 --verbose pool_tmeta.img      # as thin_delta --verbose";

/// Mirrors `diff::output::Format` (owned by the diff module).
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum DiffFormat {
    /// thin_delta's XML, byte for byte.
    Xml,
    /// JSON for programs.
    Json,
    /// `KIND BEGIN LENGTH`, one range per line.
    Ranges,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    #[command(flatten)]
    snap: SnapArg,
    /// The older device (left).
    #[arg(long = "snap1", alias = "thin1", value_name = "DEV_ID", requires = "snap2")]
    snap1: Option<u64>,
    /// The newer device (right).
    #[arg(long = "snap2", alias = "thin2", value_name = "DEV_ID", requires = "snap1")]
    snap2: Option<u64>,
    /// METADATA (a metadata device or image, with --snap1/--snap2), or the LVM form VG/A VG/B
    /// (two thin LVs of one pool, read under a metadata snapshot held while the diff runs).
    #[arg(value_name = "METADATA | VG/A VG/B", num_args = 1..=2, required = true)]
    args: Vec<String>,
    /// One range per data-contiguous piece, with data blocks (thin_delta 0.9.0 --verbose).
    #[arg(long)]
    verbose: bool,
    /// Output format: thin_delta's XML, JSON, or `KIND BEGIN LENGTH` per line.
    #[arg(long, value_enum, default_value_t = DiffFormat::Xml)]
    format: DiffFormat,
    /// Only different, left_only and right_only ranges; shared subtrees are not read.
    #[arg(long)]
    changed_only: bool,
    /// Metadata blocks read, shared subtrees skipped and blocks by kind: to stderr (in the JSON
    /// output with --format json).
    #[arg(long)]
    stats: bool,
}

fn stats_line(s: &diff::Stats) -> String {
    format!(
        "metadata_blocks_read={} shared_subtrees_skipped={} reads_issued={} levels_waited={} same={} different={} left_only={} right_only={} \
         ranges: same={} different={} left_only={} right_only={}",
        s.metadata_blocks_read,
        s.shared_subtrees_skipped,
        s.reads_issued,
        s.levels_waited,
        s.same,
        s.different,
        s.left_only,
        s.right_only,
        s.same_ranges,
        s.different_ranges,
        s.left_only_ranges,
        s.right_only_ranges
    )
}

pub fn run(a: DiffArgs) -> Result<ExitCode, Error> {
    // The LVM form holds a metadata snapshot (released on drop, on error and on signals).
    let (pool, left, right, _held) = match (a.snap1, a.snap2, a.args.as_slice()) {
        (Some(l), Some(r), [metadata]) => (a.snap.open(Path::new(metadata))?, l, r, None),
        (None, None, [l, r]) => {
            let pair = lvm::HeldPair::open(l, r)?;
            (pair.pool, pair.left, pair.right, Some(pair.held))
        }
        _ => return Err(Error::Usage("diff takes --snap1 A --snap2 B METADATA, or the LVM form VG/A VG/B".into())),
    };
    let (l, r) = (pool.device(left)?, pool.device(right)?);
    let mut deltas = diff::delta(&pool, l, r, diff::Options { changed_only: a.changed_only, ..Default::default() })?;
    let format = match a.format {
        DiffFormat::Xml => output::Format::Xml,
        DiffFormat::Json => output::Format::Json,
        DiffFormat::Ranges => output::Format::Ranges,
    };
    let mut out = stdout();
    let header = output::Header { left, right };
    output::write(&pool, &header, deltas.by_ref(), format, a.verbose, &mut out)?;
    let s = deltas.stats();
    output::finish(format, a.stats.then_some(&s), &mut out)?;
    if a.stats && format != output::Format::Json {
        eprintln!("{}", stats_line(&s));
    }
    flush(&mut out)?;
    Ok(ExitCode::SUCCESS)
}
