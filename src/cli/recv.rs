//! `recv`: apply a stream from stdin to a thin LV, a file or a block device.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use thinsend::{io as sys, lvm, recv, stream, Error};

use super::args::{AcceptArgs, ProgressArgs};

#[derive(Args, Debug)]
pub struct RecvArgs {
    /// LVM form: the thin LV to receive into (VG/LV), replaced atomically.
    #[arg(value_name = "VG/LV", conflicts_with_all = ["to", "state_file"], required_unless_present = "to")]
    lv: Option<String>,
    /// LVM form: create a missing target in this thin pool (VG/POOL), sized from the stream.
    #[arg(long, value_name = "VG/POOL", requires = "lv")]
    pool: Option<String>,
    /// LVM form: also keep the received state as this snapshot of the target.
    #[arg(long, value_name = "NAME", requires = "lv")]
    snapshot: Option<String>,
    /// Discard changes made to the target since the last receive, then apply the stream (as
    /// `zfs recv -F`): an LV returns to its kept read-only snapshot VG/LV_thinsend_base, a file to
    /// the received state kept as a reflink copy where the filesystem has reflink.
    #[arg(long)]
    rollback: bool,
    /// LVM form: report what the check for changes since the last receive cost (metadata
    /// blocks read) on stderr.
    #[arg(long, requires = "lv", conflicts_with = "to")]
    stats: bool,
    /// Target: a regular file (created if missing) or a block device.
    #[arg(long, value_name = "PATH")]
    to: Option<PathBuf>,
    /// Apply an incremental stream to a target that does not record its base, or replace an
    /// existing file with a full stream.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    accept: AcceptArgs,
    /// Accept empty input as an empty stream, as thin_recv does (default: an error).
    #[arg(long = "allow-empty")]
    allow_empty: bool,
    /// Where a block device's received state is recorded (default:
    /// $THINSEND_STATE_DIR or /var/lib/thinsend-native, one JSON file per target).
    #[arg(long = "state-file", value_name = "FILE")]
    state_file: Option<PathBuf>,
    /// Volume size in bytes for a stream that does not carry it (LINBIT); default: the existing
    /// target's size.
    #[arg(long, value_name = "BYTES", conflicts_with = "lv")]
    size: Option<u64>,
    /// Keep the partial state of an interrupted stream (EOF or error mid-stream, a signal) and
    /// print a token to resume it with `send --resume TOKEN` (native streams; docs/STREAM.md §7).
    #[arg(short = 's', long)]
    resumable: bool,
    /// Print the token of the partial receive kept for the target (one line); exit 1 if none.
    #[arg(long = "resume-token", conflicts_with_all = ["resumable", "abort"])]
    resume_token: bool,
    /// Discard the partial receive kept for the target (the target stays as before it).
    #[arg(long, conflicts_with = "resumable")]
    abort: bool,
    #[command(flatten)]
    progress: ProgressArgs,
}

/// `--resume-token` and `--abort`: they read no stream.
fn partial_state(a: &RecvArgs) -> Result<Option<ExitCode>, Error> {
    if !(a.resume_token || a.abort) {
        return Ok(None);
    }
    match (&a.to, &a.lv) {
        (Some(to), _) if a.resume_token => println!("{}", recv::resume_token(to)?),
        (Some(to), _) => eprintln!("thinsend-native: {}", recv::abort(to)?),
        (None, Some(lv)) if a.resume_token => println!("{}", lvm::recv::resume_token(lv)?),
        (None, Some(lv)) => eprintln!("thinsend-native: {}", lvm::recv::abort(lv)?),
        (None, None) => return Err(Error::Usage("--resume-token and --abort take --to PATH or VG/LV".into())),
    }
    Ok(Some(ExitCode::SUCCESS))
}

pub fn run(a: RecvArgs) -> Result<ExitCode, Error> {
    if let Some(code) = partial_state(&a)? {
        return Ok(code);
    }
    if sys::is_tty(0) {
        return Err(Error::Usage("expecting a data stream on stdin, which is a terminal".into()));
    }
    let read = stream::ReadOptions { accept: a.accept.accept.accept(), allow_empty: a.allow_empty };
    if let Some(target) = a.lv {
        let args = lvm::recv::Args {
            target,
            pool: a.pool,
            snapshot: a.snapshot,
            force: a.force,
            rollback: a.rollback,
            stats: a.stats,
            read,
            progress: a.progress.mode(),
            resumable: a.resumable,
        };
        lvm::recv::recv(&args, 0)?;
        return Ok(ExitCode::SUCCESS);
    }
    let to = a.to.ok_or_else(|| Error::Usage("recv needs VG/LV or --to PATH".into()))?;
    let opts = recv::Options {
        to,
        force: a.force,
        read,
        progress: a.progress.mode(),
        state_file: a.state_file,
        rollback: a.rollback,
        size: a.size,
        resumable: a.resumable,
    };
    recv::recv(0, &opts)?;
    Ok(ExitCode::SUCCESS)
}
