//! The `thinsend-native` command line: argument parsing and exit codes only; the work is in the library.

use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use thinsend::diff::{self, output};
use thinsend::superblock::Source;
use thinsend::{check, dump, io as sys, ls, lvm, pool::Pool, progress, recv, send, stream, Error};

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
        /// Only this device (repeatable). Devices are printed in id order whatever the order of the
        /// flags; an id the pool doesn't have selects nothing and is not an error (as in thin_dump).
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
        /// Read the held metadata snapshot instead of the live superblock (optionally at BLOCK).
        #[arg(short = 'm', long = "metadata-snap", num_args = 0..=1, require_equals = true, default_missing_value = "0", value_name = "BLOCK")]
        metadata_snap: Option<u64>,
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
    /// Write a thin volume (full) or only what changed since a base snapshot (incremental) as a
    /// stream on stdout. LVM form: `send [VG/BASE] VG/SNAP` (holds a metadata snapshot of the pool
    /// only while planning). Metadata form: `--metadata META --thin-id N [--base-id B]` with data from
    /// the pool's data device (--data) or the thin device itself (--source).
    Send {
        /// LVM form: `[VG/BASE] VG/SNAP` (the snapshot to send, and the base the receiver holds for
        /// an incremental). Both must be thin LVs of one pool.
        #[arg(value_name = "LV", num_args = 0..=2, conflicts_with_all = ["metadata", "thin_id", "base_id", "data", "source"])]
        lvs: Vec<String>,
        /// LVM form: read data from the snapshot LV (default; activated with -K if needed and
        /// deactivated again) or from the pool's data device (no activation).
        #[arg(long = "read-from", value_enum, default_value_t = ReadFromArg::Lv)]
        read_from: ReadFromArg,
        /// Metadata device (e.g. /dev/mapper/vg-pool_tmeta) or image file.
        #[arg(long, value_name = "META", required_unless_present = "lvs")]
        metadata: Option<PathBuf>,
        /// Read the held metadata snapshot instead of the live superblock (optionally at BLOCK).
        #[arg(short = 'm', long = "metadata-snap", num_args = 0..=1, require_equals = true, default_missing_value = "0", value_name = "BLOCK")]
        metadata_snap: Option<u64>,
        /// The pool's data device or file.
        #[arg(long, value_name = "POOL_DATA")]
        data: Option<PathBuf>,
        /// The thin device to send.
        #[arg(long = "thin-id", value_name = "N", required_unless_present = "lvs")]
        thin_id: Option<u64>,
        /// Send only the change from this thin device (the base the receiver holds).
        #[arg(long = "base-id", value_name = "B")]
        base_id: Option<u64>,
        /// native: checksummed, with identity (default); linbit: thin-send-recv 1.1 exactly.
        #[arg(long = "stream-format", value_enum, default_value_t = StreamFormatArg::Native)]
        stream_format: StreamFormatArg,
        /// Read data from the thin device itself (e.g. /dev/vg/snap) instead of --data.
        #[arg(long, value_name = "DEV")]
        source: Option<PathBuf>,
        /// Volume size in bytes (the metadata does not record it). Default: the size of --source;
        /// a native send with --data needs it.
        #[arg(long, value_name = "BYTES")]
        size: Option<u64>,
        /// Send an incremental whose base is newer than the device sent (a backward incremental).
        #[arg(long)]
        force: bool,
        /// Print the records that would be sent and the exact stream size; send nothing.
        #[arg(long = "dry-run")]
        dry_run: bool,
        /// Output of --dry-run.
        #[arg(long, value_enum, default_value_t = TextJson::Text, requires = "dry_run")]
        format: TextJson,
        /// Write the stream even when stdout is a terminal.
        #[arg(long = "allow-tty")]
        allow_tty: bool,
        #[command(flatten)]
        progress: ProgressArgs,
    },
    /// Apply a stream from stdin to a thin LV (`recv VG/LV`), a file or a block device (`--to PATH`).
    /// LVs and files are replaced atomically; an incremental stream is refused unless the target
    /// records its base.
    Recv {
        /// LVM form: the thin LV to receive into (VG/LV), replaced atomically.
        #[arg(value_name = "VG/LV", conflicts_with_all = ["to", "state_file"], required_unless_present = "to")]
        lv: Option<String>,
        /// LVM form: create a missing target in this thin pool (VG/POOL), sized from the stream.
        #[arg(long, value_name = "VG/POOL", requires = "lv")]
        pool: Option<String>,
        /// LVM form: also keep the received state as this snapshot of the target.
        #[arg(long, value_name = "NAME", requires = "lv")]
        snapshot: Option<String>,
        /// Target: a regular file (created if missing) or a block device.
        #[arg(long, value_name = "PATH")]
        to: Option<PathBuf>,
        /// Apply an incremental stream to a target that does not record its base, or replace an
        /// existing file with a full stream.
        #[arg(long)]
        force: bool,
        #[arg(long = "accept-stream-format", value_enum, default_value_t = AcceptArg::Auto)]
        accept: AcceptArg,
        /// Accept empty input as an empty stream, as thin_recv does (default: an error).
        #[arg(long = "allow-empty")]
        allow_empty: bool,
        /// Where a block device's received state is recorded (default:
        /// $THINSEND_STATE_DIR or /var/lib/thinsend-native, one JSON file per target).
        #[arg(long = "state-file", value_name = "FILE")]
        state_file: Option<PathBuf>,
        /// A file target changed since the last receive: return it to the received state (kept as a
        /// reflink copy where the filesystem has reflink), then apply the incremental stream.
        #[arg(long)]
        rollback: bool,
        /// Volume size in bytes for a stream that does not carry it (LINBIT); default: the existing
        /// target's size.
        #[arg(long, value_name = "BYTES", conflicts_with = "lv")]
        size: Option<u64>,
        #[command(flatten)]
        progress: ProgressArgs,
    },
    /// List a stream from stdin record by record, verifying every checksum and count; applies
    /// nothing.
    Inspect {
        /// Only verify, and print the summary.
        #[arg(long)]
        verify: bool,
        #[arg(long, value_enum, default_value_t = TextJson::Text)]
        format: TextJson,
        #[arg(long = "accept-stream-format", value_enum, default_value_t = AcceptArg::Auto)]
        accept: AcceptArg,
    },
}

#[derive(Args, Clone)]
struct ProgressArgs {
    /// Show progress on stderr even when it is not a terminal.
    #[arg(long, conflicts_with = "quiet")]
    progress: bool,
    /// No progress and no summary.
    #[arg(long)]
    quiet: bool,
}

impl ProgressArgs {
    fn mode(&self) -> progress::Mode {
        match (self.progress, self.quiet) {
            (true, _) => progress::Mode::Always,
            (_, true) => progress::Mode::Never,
            _ => progress::Mode::Auto,
        }
    }
}

#[derive(ValueEnum, Clone, Copy)]
enum StreamFormatArg {
    Native,
    Linbit,
}

#[derive(ValueEnum, Clone, Copy)]
enum AcceptArg {
    Auto,
    Native,
    #[value(name = "1.1")]
    V11,
    #[value(name = "1.0")]
    V10,
}

impl AcceptArg {
    fn accept(self) -> stream::Accept {
        match self {
            AcceptArg::Auto => stream::Accept::Auto,
            AcceptArg::Native => stream::Accept::Native,
            AcceptArg::V11 => stream::Accept::Linbit11,
            AcceptArg::V10 => stream::Accept::Linbit10,
        }
    }
}

#[derive(ValueEnum, Clone, Copy)]
enum TextJson {
    Text,
    Json,
}

#[derive(ValueEnum, Clone, Copy)]
enum ReadFromArg {
    Lv,
    PoolData,
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
        Cmd::Diff { metadata_snap, snap1, snap2, args, verbose, format, changed_only, stats } => {
            // The LVM form holds a metadata snapshot (released on drop, on error and on signals).
            let (pool, snap1, snap2, _held) = match (snap1, snap2, args.as_slice()) {
                (Some(a), Some(b), [metadata]) => {
                    let meta = MetaArgs { metadata_snap, metadata: PathBuf::from(metadata) };
                    (meta.open()?, a, b, None)
                }
                (None, None, [a, b]) => {
                    let (Some(left), right) = lvm::send::resolve(Some(a), b)? else { unreachable!() };
                    let devs = lvm::pool_devs(&right.vg, &right.pool)?;
                    let held = lvm::MetadataSnapshot::reserve(&devs)?;
                    let pool = Pool::open(&devs.tmeta, Source::Snapshot(None))?;
                    (pool, left.thin_id, right.thin_id, Some(held))
                }
                _ => {
                    return Err(Error::Usage(
                        "diff takes --snap1 A --snap2 B METADATA, or the LVM form VG/A VG/B".into(),
                    ))
                }
            };
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
                    "metadata_blocks_read={} shared_subtrees_skipped={} same={} different={} left_only={} right_only={} \
                     ranges: same={} different={} left_only={} right_only={}",
                    s.metadata_blocks_read,
                    s.shared_subtrees_skipped,
                    s.same,
                    s.different,
                    s.left_only,
                    s.right_only,
                    s.same_ranges,
                    s.different_ranges,
                    s.left_only_ranges,
                    s.right_only_ranges
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
        Cmd::Send {
            lvs,
            read_from,
            metadata,
            metadata_snap,
            data,
            thin_id,
            base_id,
            stream_format,
            source,
            size,
            force,
            dry_run,
            format,
            allow_tty,
            progress,
        } => {
            let format_ = match stream_format {
                StreamFormatArg::Native => send::StreamFormat::Native,
                StreamFormatArg::Linbit => send::StreamFormat::Linbit,
            };
            if !lvs.is_empty() {
                let (base, snap) = match lvs.as_slice() {
                    [snap] => (None, snap.clone()),
                    [base, snap] => (Some(base.clone()), snap.clone()),
                    _ => return Err(Error::Usage("send takes [VG/BASE] VG/SNAP".into())),
                };
                let args = lvm::send::Args {
                    base,
                    snap,
                    format: format_,
                    read_from: match read_from {
                        ReadFromArg::Lv => lvm::send::ReadFrom::Lv,
                        ReadFromArg::PoolData => lvm::send::ReadFrom::PoolData,
                    },
                    progress: progress.mode(),
                };
                if dry_run {
                    lvm::send::dry_run(&args, matches!(format, TextJson::Json), &mut out)?;
                } else {
                    if sys::is_tty(1) && !allow_tty {
                        return Err(Error::Usage(
                            "not writing a data stream to a terminal: redirect stdout (or --allow-tty)".into(),
                        ));
                    }
                    drop(out);
                    lvm::send::send(&args, 1)?;
                    return Ok(ExitCode::SUCCESS);
                }
                out.flush().map_err(|e| Error::io("<stdout>", e))?;
                return Ok(ExitCode::SUCCESS);
            }
            let metadata = metadata.ok_or_else(|| Error::Usage("--metadata is required".into()))?;
            let thin_id = thin_id.ok_or_else(|| Error::Usage("--thin-id is required".into()))?;
            let meta = MetaArgs { metadata_snap, metadata };
            let opts = send::Options {
                thin_id,
                base_id,
                format: format_,
                data,
                source,
                size,
                progress: progress.mode(),
                copy: send::CopyMode::from_env(),
                allow_backward: force,
                ..send::Options::default()
            };
            let pool = meta.open()?;
            if dry_run {
                send::dry_run(&pool, &opts, matches!(format, TextJson::Json), &mut out)?;
            } else {
                if sys::is_tty(1) && !allow_tty {
                    return Err(Error::Usage(
                        "not writing a data stream to a terminal: redirect stdout (or --allow-tty)".into(),
                    ));
                }
                drop(out);
                send::send(&pool, &opts, 1)?;
                return Ok(ExitCode::SUCCESS);
            }
        }
        Cmd::Recv { lv, pool, snapshot, to, force, accept, allow_empty, state_file, rollback, size, progress } => {
            if sys::is_tty(0) {
                return Err(Error::Usage("expecting a data stream on stdin, which is a terminal".into()));
            }
            let read = stream::ReadOptions { accept: accept.accept(), allow_empty };
            if let Some(target) = lv {
                let args = lvm::recv::Args { target, pool, snapshot, force, read, progress: progress.mode() };
                lvm::recv::recv(&args, 0)?;
                return Ok(ExitCode::SUCCESS);
            }
            let to = to.ok_or_else(|| Error::Usage("recv needs VG/LV or --to PATH".into()))?;
            let opts = recv::Options {
                to,
                force,
                read: stream::ReadOptions { accept: accept.accept(), allow_empty },
                progress: progress.mode(),
                state_file,
                rollback,
                size,
            };
            recv::recv(0, &opts)?;
        }
        Cmd::Inspect { verify, format, accept } => {
            let opts = stream::ReadOptions { accept: accept.accept(), allow_empty: false };
            let r = stream::inspect::inspect(0, &opts, matches!(format, TextJson::Json), verify, &mut out);
            out.flush().map_err(|e| Error::io("<stdout>", e))?;
            r?;
        }
    }
    out.flush().map_err(|e| Error::io("<stdout>", e))?;
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some(thinsend::cleanup::DEFERRED) {
        return ExitCode::from(thinsend::cleanup::deferred_main(&argv[2..]));
    }
    if argv.first().is_some_and(|a| thinsend::compat::is_compat_name(a)) {
        return ExitCode::from(thinsend::compat::main(argv));
    }
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
