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
    #[command(flatten)]
    progress: ProgressArgs,
}

pub fn run(a: RecvArgs) -> Result<ExitCode, Error> {
    if sys::is_tty(0) {
        return Err(Error::Usage("expecting a data stream on stdin, which is a terminal".into()));
    }
    let read = stream::ReadOptions { accept: a.accept.accept.accept(), allow_empty: a.allow_empty };
    if let Some(target) = a.lv {
        let args = lvm::recv::Args {
            heal: false,
            target,
            pool: a.pool,
            snapshot: a.snapshot,
            force: a.force,
            rollback: a.rollback,
            stats: a.stats,
            read,
            progress: a.progress.mode(),
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
    };
    recv::recv(0, &opts)?;
    Ok(ExitCode::SUCCESS)
}
