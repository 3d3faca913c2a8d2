//! The `thinsend-native` command line: argument parsing and exit codes only; the work is in the library.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use thinsend::diff::{self, output};
use thinsend::superblock::Source;
use thinsend::{check, dump, ls, pool::Pool, Error};

#[derive(Parser)]
#[command(
    name = "thinsend-native",
    version,
    about = "Send and receive LVM thin volumes and their differences, reading dm-thin metadata natively"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Args, Clone)]
struct MetaArgs {
    /// Read the held metadata snapshot (superblock copy at held_root) instead of the live superblock.
    /// With a block number, insist the snapshot is at that block.
    #[arg(short = 'm', long = "metadata-snap", num_args = 0..=1, require_equals = true, default_missing_value = "0", value_name = "BLOCK")]
    metadata_snap: Option<u64>,
    /// Metadata device (e.g. /dev/mapper/vg-pool_tmeta) or image file.
    metadata: PathBuf,
}

impl MetaArgs {
    fn source(&self) -> Source {
        match self.metadata_snap {
            None => Source::Live,
            Some(0) => Source::Snapshot(None),
            Some(b) => Source::Snapshot(Some(b)),
        }
    }

    fn open(&self) -> Result<Pool, Error> {
        Pool::open(&self.metadata, self.source())
    }
}

#[derive(Subcommand)]
enum Cmd {
    /// Print the pool's devices and mappings, as thin_dump's XML (byte-identical to
    /// thin-provisioning-tools 0.9.0) or as JSON.
    Dump {
        #[command(flatten)]
        meta: MetaArgs,
        /// Only this device (repeatable).
        #[arg(long = "dev-id", value_name = "N")]
        dev_id: Vec<u64>,
        /// Devices only, no mappings.
        #[arg(long)]
        skip_mappings: bool,
        #[arg(long, value_enum, default_value_t = DumpFormat::Xml)]
        format: DumpFormat,
    },
    /// List thin devices with mapped, exclusive and shared sizes (thin_ls's fields and layout).
    Ls {
        #[command(flatten)]
        meta: MetaArgs,
        /// Comma-separated fields: DEV, MAPPED_BLOCKS, EXCLUSIVE_BLOCKS, SHARED_BLOCKS, MAPPED_SECTORS,
        /// EXCLUSIVE_SECTORS, SHARED_SECTORS, MAPPED_BYTES, EXCLUSIVE_BYTES, SHARED_BYTES, MAPPED,
        /// EXCLUSIVE, SHARED, TRANSACTION, CREATE_TIME, SNAP_TIME.
        #[arg(short = 'o', long = "format-fields", alias = "fields", default_value = ls::DEFAULT_FIELDS)]
        fields: String,
        #[arg(long)]
        no_headers: bool,
        #[arg(long, value_enum, default_value_t = LsFormat::Table)]
        format: LsFormat,
    },
    /// What changed between two thin devices: thin_delta's XML (byte-identical to 0.9.0), JSON, or one
    /// line per range. Both trees are walked together; subtrees they share are read once (or, with
    /// --changed-only, not at all).
    Diff {
        #[command(flatten)]
        meta: MetaArgs,
        /// The older device (left).
        #[arg(long = "snap1", alias = "thin1", value_name = "DEV_ID")]
        snap1: u64,
        /// The newer device (right).
        #[arg(long = "snap2", alias = "thin2", value_name = "DEV_ID")]
        snap2: u64,
        /// One range per data-contiguous piece, with data blocks (thin_delta 0.9.0 --verbose).
        #[arg(long)]
        verbose: bool,
        #[arg(long, value_enum, default_value_t = DiffFormat::Xml)]
        format: DiffFormat,
        /// Only different, left_only and right_only ranges; shared subtrees are not read.
        #[arg(long)]
        changed_only: bool,
        /// Metadata blocks read, shared subtrees skipped and blocks by kind: to stderr (in the JSON
        /// output with --format json).
        #[arg(long)]
        stats: bool,
    },
    /// Strictly check a metadata image: exact reference counts of every metadata and data block,
    /// leaks, nr_allocated, mapped_blocks, node fill, details against mapping keys, the held
    /// metadata snapshot. Prints the findings; exits 1 if there are any.
    Check {
        /// Metadata device or image file.
        metadata: PathBuf,
        /// No output, only the exit status.
        #[arg(short, long)]
        quiet: bool,
    },
}

#[derive(ValueEnum, Clone, Copy)]
enum DiffFormat {
    Xml,
    Json,
    Ranges,
}

#[derive(ValueEnum, Clone, Copy)]
enum DumpFormat {
    Xml,
    Json,
}

#[derive(ValueEnum, Clone, Copy)]
enum LsFormat {
    Table,
    Json,
}

fn run(cli: Cli) -> Result<ExitCode, Error> {
    let stdout = std::io::stdout();
    let mut out = BufWriter::with_capacity(1 << 20, stdout.lock());
    match cli.cmd {
        Cmd::Dump { meta, dev_id, skip_mappings, format } => {
            let pool = meta.open()?;
            let format = match format {
                DumpFormat::Xml => dump::Format::Xml,
                DumpFormat::Json => dump::Format::Json,
            };
            dump::dump(&pool, &dump::Options { format, dev_ids: dev_id, skip_mappings }, &mut out)?;
        }
        Cmd::Ls { meta, fields, no_headers, format } => {
            let fields = ls::parse_fields(&fields)?;
            let pool = meta.open()?;
            let rows = ls::rows(&pool)?;
            match format {
                LsFormat::Table => ls::write_table(&pool, &rows, &fields, !no_headers, &mut out)?,
                LsFormat::Json => ls::write_json(&pool, &rows, &mut out)?,
            }
        }
        Cmd::Diff { meta, snap1, snap2, verbose, format, changed_only, stats } => {
            let pool = meta.open()?;
            let (left, right) = (pool.device(snap1)?, pool.device(snap2)?);
            let mut deltas = diff::delta(&pool, left, right, diff::Options { changed_only, ..Default::default() })?;
            let format = match format {
                DiffFormat::Xml => output::Format::Xml,
                DiffFormat::Json => output::Format::Json,
                DiffFormat::Ranges => output::Format::Ranges,
            };
            let header = output::Header { left: snap1, right: snap2 };
            output::write(&pool, &header, deltas.by_ref(), format, verbose, &mut out)?;
            let s = deltas.stats();
            output::finish(format, stats.then_some(&s), &mut out)?;
            if stats && format != output::Format::Json {
                eprintln!(
                    "metadata_blocks_read={} shared_subtrees_skipped={} same={} different={} left_only={} right_only={}",
                    s.metadata_blocks_read, s.shared_subtrees_skipped, s.same, s.different, s.left_only, s.right_only
                );
            }
        }
        Cmd::Check { metadata, quiet } => {
            let report = check::check_path(&metadata)?;
            if !quiet {
                for line in report.lines() {
                    writeln!(out, "{line}").map_err(|e| Error::io("<stdout>", e))?;
                }
                let s = &report.stats;
                writeln!(
                    out,
                    "{}: {} devices, {} mappings, {} metadata and {} data blocks in use, {} findings",
                    metadata.display(),
                    s.devices,
                    s.mappings,
                    s.metadata_blocks_in_use,
                    s.data_blocks_in_use,
                    report.totals.values().sum::<u64>()
                )
                .map_err(|e| Error::io("<stdout>", e))?;
            }
            out.flush().map_err(|e| Error::io("<stdout>", e))?;
            return Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
        }
    }
    out.flush().map_err(|e| Error::io("<stdout>", e))?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::from(141),
        Err(e) => {
            eprintln!("thinsend-native: {e}");
            ExitCode::FAILURE
        }
    }
}
