//! `send`: a thin volume, or the change since a base, as a stream on stdout (LVM or metadata form).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use thinsend::lvm::send::ReadFrom;
use thinsend::recv::token::Token;
use thinsend::{io as sys, lvm, report, send, Error};

use super::args::{flush, stdout, ProgressArgs, SnapArg, TextJson};

pub const EXAMPLES: &str = "\
Examples:
  thinsend-native send vg/snap1 > snap1.stream                 # full
  thinsend-native send vg/snap1 vg/snap2 | ssh backup thinsend-native recv vg/replica
  thinsend-native send --compress zstd:3 --bwlimit 50M vg/snap1 vg/snap2 | ssh backup thinsend-native recv -s vg/replica
  thinsend-native send --resume \"$(ssh backup thinsend-native recv --resume-token vg/replica)\" vg/snap1 vg/snap2 | ssh backup thinsend-native recv -s vg/replica
  thinsend-native send -n vg/snap1 vg/snap2                    # records and stream size, nothing sent
  thinsend-native send -n --format json vg/snap1 vg/snap2
  thinsend-native send --stream-format linbit vg/snap1 vg/snap2 | ssh host thin_recv vg/replica
  thinsend-native send --metadata pool_tmeta.img -m --source /dev/vg/snap2 --thin-id 2 --base-id 1 > s

Needs root (or the disk group and LVM's rights) for the LVM form: it runs lvs and dmsetup and reads
the pool's _tmeta. The metadata form needs read access to the metadata and data only.";

/// Mirrors `send::StreamFormat` (owned by the send module).
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum StreamFormatArg {
    /// thinsend-native's own format: checksummed records, the source's identity and base.
    Native,
    /// LINBIT thin-send-recv 1.1, byte for byte (what thin_recv reads).
    Linbit,
}

#[derive(Args, Debug)]
pub struct SendArgs {
    /// LVM form: `[VG/BASE] VG/SNAP` (the snapshot to send, and the base the receiver holds for
    /// an incremental). Both must be thin LVs of one pool.
    #[arg(value_name = "LV", num_args = 0..=2, conflicts_with_all = ["metadata", "thin_id", "base_id", "data", "source"])]
    lvs: Vec<String>,
    /// LVM form: read data from the snapshot LV (default; activated with -K if needed and
    /// deactivated again) or from the pool's data device (no activation).
    #[arg(long = "read-from", value_enum, default_value_t = ReadFrom::Lv)]
    read_from: ReadFrom,
    /// Metadata device (e.g. /dev/mapper/vg-pool_tmeta) or image file.
    #[arg(long, value_name = "META", required_unless_present = "lvs")]
    metadata: Option<PathBuf>,
    #[command(flatten)]
    snap: SnapArg,
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
    /// Volume size (the metadata does not record it): bytes, or with a suffix (48M, 1.5G, binary
    /// units). Default: the size of --source; a native send with --data needs it.
    #[arg(long, value_name = "SIZE", value_parser = crate::cli::size::parse_nonzero)]
    size: Option<u64>,
    /// Send an incremental whose base is newer than the device sent (a backward incremental).
    #[arg(long)]
    force: bool,
    /// Print the records that would be sent and the exact stream size; send nothing.
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// json: --dry-run prints its plan as JSON on stdout, and a real send prints its result as
    /// one JSON line on stderr (stdout is the stream), after any --progress=json lines.
    #[arg(long, value_enum, default_value_t = TextJson::Text)]
    format: TextJson,
    /// Compress DATA with zstd (LEVEL 1-19, default 3) on all cores, as ZDATA records; records that
    /// do not shrink go raw. Native format only; recv and inspect decompress.
    #[arg(long, value_name = "zstd[:LEVEL]", value_parser = send::compress::parse)]
    compress: Option<i32>,
    /// Send mapped blocks that read as zeros as DATA (by default a full stream leaves them out and
    /// an incremental sends them as UNMAP).
    #[arg(long = "no-zero-detect")]
    no_zero_detect: bool,
    /// Limit the stream to RATE bytes a second (50M, 1G: binary units), smooth within a second.
    #[arg(long, value_name = "RATE", value_parser = crate::cli::size::parse_nonzero)]
    bwlimit: Option<u64>,
    /// Continue an interrupted `recv -s`: send only what follows its checkpoint. The sources must
    /// be the same as the original send's (their identities are checked against the token).
    #[arg(long, value_name = "TOKEN")]
    resume: Option<String>,
    /// Write the stream even when stdout is a terminal.
    #[arg(long = "allow-tty")]
    allow_tty: bool,
    #[command(flatten)]
    progress: ProgressArgs,
}

fn refuse_tty(allow_tty: bool) -> Result<(), Error> {
    if sys::is_tty(1) && !allow_tty {
        return Err(Error::Usage("not writing a data stream to a terminal: redirect stdout (or --allow-tty)".into()));
    }
    Ok(())
}

fn data_path(a: &SendArgs) -> send::DataPath {
    send::DataPath { zero_detect: !a.no_zero_detect, compress: a.compress, bwlimit: a.bwlimit }
}

fn run_lvm(a: SendArgs, format: send::StreamFormat) -> Result<ExitCode, Error> {
    let (base, snap) = match a.lvs.as_slice() {
        [snap] => (None, snap.clone()),
        [base, snap] => (Some(base.clone()), snap.clone()),
        _ => return Err(Error::Usage("send takes [VG/BASE] VG/SNAP".into())),
    };
    let args = lvm::send::Args {
        base,
        snap,
        format,
        read_from: a.read_from,
        progress: a.progress.mode(),
        allow_backward: a.force,
        data_path: data_path(&a),
        resume: a.resume.as_deref().map(Token::decode).transpose()?,
    };
    if a.dry_run {
        let mut out = stdout();
        lvm::send::dry_run(&args, a.format == TextJson::Json, &mut out)?;
        flush(&mut out)?;
    } else {
        refuse_tty(a.allow_tty)?;
        let t = std::time::Instant::now();
        let totals = lvm::send::send(&args, 1)?;
        if a.format == TextJson::Json {
            let (lv, base) = (Some(args.snap.clone()), args.base.clone());
            let secs = t.elapsed().as_secs_f64();
            result(&report::Sent { format, lv, base, thin_id: None, base_id: None, totals, secs })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `"type": "send"` result of a real send with `--format json`, on stderr (stdout is the stream).
fn result(sent: &report::Sent) -> Result<(), Error> {
    report::write_line(&mut std::io::stderr().lock(), &report::send_result(sent))
}

pub fn run(a: SendArgs) -> Result<ExitCode, Error> {
    let format = match a.stream_format {
        StreamFormatArg::Native => send::StreamFormat::Native,
        StreamFormatArg::Linbit => send::StreamFormat::Linbit,
    };
    if !a.lvs.is_empty() {
        return run_lvm(a, format);
    }
    let data_path = data_path(&a);
    let metadata = a.metadata.ok_or_else(|| Error::Usage("--metadata is required".into()))?;
    let thin_id = a.thin_id.ok_or_else(|| Error::Usage("--thin-id is required".into()))?;
    let opts = send::Options {
        thin_id,
        base_id: a.base_id,
        format,
        data: a.data,
        source: a.source,
        size: a.size,
        progress: a.progress.mode(),
        copy: send::CopyMode::from_env(),
        allow_backward: a.force,
        data_path,
        resume: a.resume.as_deref().map(Token::decode).transpose()?,
        ..send::Options::default()
    };
    let pool = a.snap.open(&metadata)?;
    if a.dry_run {
        let mut out = stdout();
        send::dry_run(&pool, &opts, a.format == TextJson::Json, &mut out)?;
        flush(&mut out)?;
    } else {
        refuse_tty(a.allow_tty)?;
        let t = std::time::Instant::now();
        let totals = send::send(&pool, &opts, 1)?;
        if a.format == TextJson::Json {
            let secs = t.elapsed().as_secs_f64();
            let ids = (Some(thin_id), a.base_id);
            result(&report::Sent { format, lv: None, base: None, thin_id: ids.0, base_id: ids.1, totals, secs })?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
