//! Argument groups several subcommands share, the value enums that mirror library types owned
//! elsewhere, and the buffered stdout every report is written to.

use std::io::{BufWriter, StdoutLock, Write};
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use thinsend::pool::Pool;
use thinsend::superblock::Source;
use thinsend::{progress, stream, Error};

/// `-m[BLOCK]`, `-m=BLOCK`, `--metadata-snap[=BLOCK]`: which superblock to read.
#[derive(Args, Clone, Copy, Debug, Default)]
pub struct SnapArg {
    /// Read the held metadata snapshot (superblock copy at held_root) instead of the live
    /// superblock. With a block number, insist the snapshot is at that block.
    #[arg(short = 'm', long = "metadata-snap", num_args = 0..=1, require_equals = true, default_missing_value = "0", value_name = "BLOCK")]
    pub metadata_snap: Option<u64>,
}

impl SnapArg {
    pub fn source(self) -> Source {
        match self.metadata_snap {
            None => Source::Live,
            Some(0) => Source::Snapshot(None),
            Some(b) => Source::Snapshot(Some(b)),
        }
    }

    pub fn open(self, metadata: &std::path::Path) -> Result<Pool, Error> {
        Pool::open(metadata, self.source())
    }
}

/// getopt's optional argument for `-m`, as thin_dump and thin_delta 0.9.0 parse it: `-m200` is
/// `-m` with block 200 (clap would refuse it, since `-m 200` must stay `-m` without a block, 200
/// then being the next argument, as in getopt). Rewrites `-mDIGITS` to `-m=DIGITS` before `--` in
/// the subcommands that take `-m`.
pub fn getopt_compat(mut argv: Vec<String>) -> Vec<String> {
    if !matches!(argv.get(1).map(String::as_str), Some("dump" | "ls" | "diff" | "send")) {
        return argv;
    }
    for a in argv.iter_mut().skip(2) {
        if a == "--" {
            break;
        }
        if let Some(n) = a.strip_prefix("-m").filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) {
            *a = format!("-m={n}");
        }
    }
    argv
}

/// `[-m[=BLOCK]] METADATA`
#[derive(Args, Clone, Debug)]
pub struct MetaArgs {
    #[command(flatten)]
    pub snap: SnapArg,
    /// Metadata device (e.g. /dev/mapper/vg-pool_tmeta) or image file.
    pub metadata: PathBuf,
}

impl MetaArgs {
    pub fn open(&self) -> Result<Pool, Error> {
        self.snap.open(&self.metadata)
    }
}

/// `--progress[=text|json]`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressArg {
    /// Human progress lines.
    Text,
    /// One JSON line per update (docs/JSON.md).
    Json,
}

#[derive(Args, Clone, Copy, Debug)]
pub struct ProgressArgs {
    /// Show progress on stderr even when it is not a terminal (-v/--verbose as in zfs send/recv);
    /// `--progress=json` prints one JSON line per second instead (docs/JSON.md).
    #[arg(long, short = 'v', visible_alias = "verbose", conflicts_with = "quiet", value_enum,
          num_args = 0..=1, require_equals = true, default_missing_value = "text", value_name = "text|json")]
    pub progress: Option<ProgressArg>,
    /// No progress and no summary.
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

impl ProgressArgs {
    pub fn mode(self) -> progress::Mode {
        match (self.progress, self.quiet) {
            (Some(ProgressArg::Json), _) => progress::Mode::Json,
            (Some(ProgressArg::Text), _) => progress::Mode::Always,
            (_, true) => progress::Mode::Never,
            _ => progress::Mode::Auto,
        }
    }
}

/// `--accept-stream-format`, mirroring `stream::Accept` (owned by the stream module).
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum AcceptArg {
    /// Whatever the first bytes say: native, LINBIT 1.1 or 1.0.
    Auto,
    /// Only thinsend-native's own format.
    Native,
    /// Only LINBIT thin-send-recv 1.1.
    #[value(name = "1.1")]
    V11,
    /// Only LINBIT thin-send-recv 1.0.
    #[value(name = "1.0")]
    V10,
}

impl AcceptArg {
    pub fn accept(self) -> stream::Accept {
        match self {
            AcceptArg::Auto => stream::Accept::Auto,
            AcceptArg::Native => stream::Accept::Native,
            AcceptArg::V11 => stream::Accept::Linbit11,
            AcceptArg::V10 => stream::Accept::Linbit10,
        }
    }
}

/// `--accept-stream-format` with its help, for `recv` and `inspect`.
#[derive(Args, Clone, Copy, Debug)]
pub struct AcceptArgs {
    /// Which stream formats to accept on stdin.
    #[arg(long = "accept-stream-format", value_enum, default_value_t = AcceptArg::Auto)]
    pub accept: AcceptArg,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextJson {
    /// Lines for people.
    Text,
    /// JSON for programs.
    Json,
}

pub type Out = BufWriter<StdoutLock<'static>>;

/// Stdout, buffered for reports.
pub fn stdout() -> Out {
    BufWriter::with_capacity(1 << 20, std::io::stdout().lock())
}

pub fn flush(out: &mut dyn Write) -> Result<(), Error> {
    out.flush().map_err(|e| Error::io("<stdout>", e))
}
