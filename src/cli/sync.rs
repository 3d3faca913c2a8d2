//! `sync SRC DST` (and `-r SRC... DST`), and the hidden `sync-agent` that sync runs on each side.

use std::io::Write;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Subcommand};
use thinsend::remote::Ssh;
use thinsend::sync::snapshots::Features;
use thinsend::sync::{self, agent, report, Keep};
use thinsend::Error;

use super::args::{flush, stdout, ProgressArgs, TextJson};

#[derive(Args, Debug)]
#[command(after_help = "Examples:
  thinsend-native sync vg0/data backup:vg1/data                 push (the first run is a full send)
  thinsend-native sync --keep 7 backup:vg1/data vg0/data        pull, keeping 7 sync snapshots per side
  thinsend-native sync -r --keep hourly=24,daily=7 vg0/pool backup:vg1
  thinsend-native sync --dry-run --format json vg0/data backup:vg1/data")]
pub struct SyncArgs {
    /// SRC DST, each `vg/lv` or `[user@]host:vg/lv` (one of them on this host). With -r: SRC... DST,
    /// each SRC a VG, a thin pool (`vg/pool`) or an LV, and DST a VG (`[user@]host:vg`).
    #[arg(value_name = "SPEC", num_args = 2.., required = true)]
    specs: Vec<String>,
    /// Sync every thin LV of the SRC VGs or pools (or the SRC LVs listed) into DST's VG.
    #[arg(short = 'r', long)]
    recursive: bool,
    /// With -r: leave out LVs whose name (or VG/LV) matches this glob pattern. Repeatable.
    #[arg(long, value_name = "PATTERN", requires = "recursive")]
    exclude: Vec<String>,
    /// Prune the snapshots sync made, on each side: keep the newest N, or a policy
    /// `hourly=24,daily=7,weekly=4` (also `last=N`, `monthly=N`). Default: prune nothing. The
    /// newest common snapshot is always kept; snapshots sync did not make are never touched.
    #[arg(long, value_name = "N|POLICY", value_parser = Keep::parse)]
    keep: Option<Keep>,
    /// Name the new snapshot (on both sides) instead of `<lv>_ts_<UTC time>`.
    #[arg(long = "snapshot-name", value_name = "NAME")]
    snapshot_name: Option<String>,
    /// Send everything where the two sides share no snapshot, replacing DST if it exists.
    #[arg(long = "allow-full")]
    allow_full: bool,
    /// Discard changes made to DST since its last receive (else such a DST is refused).
    #[arg(long)]
    rollback: bool,
    /// Discard the partial state of an interrupted receive instead of resuming it.
    #[arg(long = "no-resume")]
    no_resume: bool,
    /// Say what would be done (snapshots, base, exact bytes, what would be pruned); change nothing.
    #[arg(short = 'n', long = "dry-run")]
    dry_run: bool,
    /// Result as text lines or one JSON document.
    #[arg(long, value_enum, default_value_t = TextJson::Text)]
    format: TextJson,
    /// An ssh option (`-o KEY=VALUE`) for the remote side. Repeatable.
    #[arg(long = "ssh-option", value_name = "KEY=VALUE")]
    ssh_option: Vec<String>,
    /// The ssh command, split like a shell would (e.g. "ssh -p 2222 -i /root/.ssh/backup").
    #[arg(long = "ssh-cmd", value_name = "CMD")]
    ssh_cmd: Option<String>,
    /// The thinsend-native binary on the remote side.
    #[arg(long = "remote-bin", value_name = "PATH", default_value = "thinsend-native")]
    remote_bin: String,
    /// Passed to `send --compress` (e.g. zstd:3).
    #[arg(long, value_name = "ALGO[:LEVEL]")]
    compress: Option<String>,
    /// Passed to `send --bwlimit`: bytes per second (50M, 1G).
    #[arg(long, value_name = "RATE", value_parser = crate::cli::size::parse_nonzero)]
    bwlimit: Option<u64>,
    /// The thin pool (in DST's VG) a missing DST LV is created in; default: SRC's pool name.
    #[arg(long = "dst-pool", value_name = "POOL")]
    dst_pool: Option<String>,
    #[command(flatten)]
    progress: ProgressArgs,
}

pub fn run(a: SyncArgs) -> Result<ExitCode, Error> {
    let mut ssh = Ssh { remote_bin: a.remote_bin.clone(), options: a.ssh_option.clone(), ..Ssh::default() };
    if let Some(c) = &a.ssh_cmd {
        ssh = ssh.with_program(c).map_err(Error::Usage)?;
    }
    let exclude = a
        .exclude
        .iter()
        .map(|p| glob::Pattern::new(p).map_err(|e| Error::Usage(format!("--exclude {p:?}: {e}"))))
        .collect::<Result<Vec<_>, _>>()?;
    let progress = match a.progress.mode() {
        thinsend::progress::Mode::Always | thinsend::progress::Mode::Json => true,
        thinsend::progress::Mode::Never => false,
        thinsend::progress::Mode::Auto => thinsend::io::is_tty(2),
    };
    let o = sync::Options {
        ssh,
        keep: a.keep,
        snapshot_name: a.snapshot_name,
        allow_full: a.allow_full,
        rollback: a.rollback,
        no_resume: a.no_resume,
        dry_run: a.dry_run,
        compress: a.compress,
        bwlimit: a.bwlimit.map(|b| b.to_string()),
        dst_pool: a.dst_pool,
        progress,
    };
    let (dst, srcs) = a.specs.split_last().ok_or_else(|| Error::Usage("sync needs SRC and DST".into()))?;
    let jobs = sync::jobs(&o, srcs, dst, a.recursive, &exclude)?;
    let results = sync::run(&o, &jobs);
    let mut out = stdout();
    let w = |e| Error::io("<stdout>", e);
    if a.format == TextJson::Json {
        writeln!(out, "{}", report::json(&results)).map_err(w)?;
    } else {
        for r in &results {
            writeln!(out, "{}", r.line()).map_err(w)?;
        }
    }
    flush(&mut out)?;
    Ok(if results.iter().all(|r| r.ok) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// What sync runs on each side (internal; the interface between two thinsend-native binaries).
#[derive(Args, Debug)]
pub struct AgentArgs {
    #[command(subcommand)]
    op: AgentOp,
}

#[derive(Subcommand, Debug)]
enum AgentOp {
    /// JSON: the LV, its received state, the sync snapshots, pool free space, features.
    State {
        /// VG/LV
        lv: String,
        /// The pool (in the LV's VG) a missing LV would be created in.
        #[arg(long)]
        pool: Option<String>,
        /// This is the receiving side: check for changes since the last receive, partial state.
        #[arg(long)]
        dst: bool,
    },
    /// Take the source snapshot NAME of VG/LV, marked, taken at AT (µs since the epoch).
    Snapshot {
        /// VG/LV
        lv: String,
        /// The snapshot's LV name.
        name: String,
        /// When it was taken (µs since the epoch).
        at: i64,
    },
    /// Mark the received snapshot NAME of VG/LV as made by sync.
    Mark {
        /// VG/LV
        lv: String,
        /// The snapshot's LV name.
        name: String,
        /// When its source snapshot was taken (µs since the epoch).
        at: i64,
    },
    /// Remove snapshots sync made for VG/LV (refuses any other).
    Prune {
        /// VG/LV
        lv: String,
        /// Snapshot LV names.
        names: Vec<String>,
    },
    /// Make VG/LV's kept base a copy of its sync snapshot NAME (for `recv --rollback`).
    Rewind {
        /// VG/LV
        lv: String,
        /// The snapshot's LV name.
        name: String,
        /// Do not refuse an LV modified since its last receive.
        #[arg(long)]
        rollback: bool,
    },
    /// JSON: the thin LVs -r syncs for VG, VG/POOL or VG/LV.
    List {
        /// VG, VG/POOL or VG/LV
        name: String,
    },
}

/// Which optional send/recv flags this binary has (the resume and data-path contracts).
fn features() -> Features {
    let cli = super::Cli::command();
    let has = |sub: &str, long: &str| {
        cli.find_subcommand(sub).is_some_and(|s| s.get_arguments().any(|a| a.get_long() == Some(long)))
    };
    Features {
        resume: has("recv", "resumable")
            && has("recv", "resume-token")
            && has("recv", "abort")
            && has("send", "resume"),
        compress: has("send", "compress"),
        bwlimit: has("send", "bwlimit"),
    }
}

pub fn run_agent(a: AgentArgs) -> Result<ExitCode, Error> {
    let json = |v: &dyn erased::Json| -> Result<ExitCode, Error> {
        let mut out = stdout();
        writeln!(out, "{}", v.to_json()).map_err(|e| Error::io("<stdout>", e))?;
        flush(&mut out)?;
        Ok(ExitCode::SUCCESS)
    };
    match a.op {
        AgentOp::State { lv, pool, dst } => json(&agent::state(&lv, pool.as_deref(), dst, features())?),
        AgentOp::Snapshot { lv, name, at } => agent::snapshot(&lv, &name, at).map(|_| ExitCode::SUCCESS),
        AgentOp::Mark { lv, name, at } => agent::mark(&lv, &name, at).map(|_| ExitCode::SUCCESS),
        AgentOp::Prune { lv, names } => agent::prune(&lv, &names).map(|_| ExitCode::SUCCESS),
        AgentOp::Rewind { lv, name, rollback } => agent::rewind(&lv, &name, rollback).map(|_| ExitCode::SUCCESS),
        AgentOp::List { name } => json(&agent::list(&name)?),
    }
}

mod erased {
    /// Anything printed as one JSON line.
    pub trait Json {
        fn to_json(&self) -> String;
    }
    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> String {
            serde_json::to_string(self).unwrap_or_else(|_| "null".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_binarys_features_are_read_from_its_own_command_line() {
        let f = features();
        // Without the resume and data-path branches this binary has none; with them, all.
        let cli = super::super::Cli::command();
        let send = cli.find_subcommand("send").unwrap();
        assert_eq!(f.compress, send.get_arguments().any(|a| a.get_long() == Some("compress")));
        assert_eq!(f.bwlimit, send.get_arguments().any(|a| a.get_long() == Some("bwlimit")));
    }
}
