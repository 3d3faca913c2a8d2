//! `send`: a thin volume, or the change since a base, as a stream on stdout (LVM or metadata form).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use thinsend::lvm::send::ReadFrom;
use thinsend::recv::token::Token;
use thinsend::{io as sys, lvm, send, Error};

use super::args::{flush, stdout, ProgressArgs, SnapArg, TextJson};

/// Mirrors `send::StreamFormat` (owned by the send module).
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum StreamFormatArg {
    Native,
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
    #[arg(long = "dry-run")]
    dry_run: bool,
    /// Output of --dry-run.
    #[arg(long, value_enum, default_value_t = TextJson::Text, requires = "dry_run")]
    format: TextJson,
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
        resume: a.resume.as_deref().map(Token::decode).transpose()?,
    };
    if a.dry_run {
        let mut out = stdout();
        lvm::send::dry_run(&args, a.format == TextJson::Json, &mut out)?;
        flush(&mut out)?;
    } else {
        refuse_tty(a.allow_tty)?;
        lvm::send::send(&args, 1)?;
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run(a: SendArgs) -> Result<ExitCode, Error> {
    let format = match a.stream_format {
        StreamFormatArg::Native => send::StreamFormat::Native,
        StreamFormatArg::Linbit => send::StreamFormat::Linbit,
    };
    if !a.lvs.is_empty() {
        return run_lvm(a, format);
    }
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
        send::send(&pool, &opts, 1)?;
    }
    Ok(ExitCode::SUCCESS)
}
