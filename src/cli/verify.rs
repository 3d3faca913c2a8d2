//! `verify SRC DST`: is the replica equal to the source snapshot? Exit 0 equal, 1 different, 2 usage,
//! 3 any other error. Also the arguments `heal` shares, and the hidden `verify --serve` that answers
//! a verifying host over ssh.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, ValueEnum};
use thinsend::remote::{Spec, Ssh};
use thinsend::text::escape_controls;
use thinsend::verify::hash::Algorithm;
use thinsend::verify::{self, How, Replica, Report, Source};
use thinsend::Error;

use super::args::{flush, stdout, SnapArg, TextJson};

/// Exit status of an error that is not a usage error.
pub const EXIT_ERROR: u8 = 3;

/// Mirrors `verify::hash::Algorithm` (owned by the verify module).
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum HashArg {
    /// xxh3-128: fast; finds accidental differences.
    Xxh3,
    /// BLAKE3: cryptographic; also a replica crafted to pass.
    Blake3,
}

pub const EXAMPLES: &str = "\
Examples:
  thinsend-native verify vg/snap2 vg/replica                   # both LVs on this host
  thinsend-native verify vg/snap2 root@backup:vg/replica       # the replica's side runs over ssh
  thinsend-native verify --metadata pool_tmeta.img -m --data pool_tdata.img --thin-id 2 --size 1G --to replica.img
  thinsend-native verify --format json --stats vg/snap2 vg/replica
  thinsend-native verify --repair vg/snap2 vg/replica          # as heal

Exit status: 0 equal, 1 different, 2 usage, 3 other errors. The LVM form needs root (lvs, dmsetup,
the pool's _tmeta); a remote replica needs thinsend-native on that host.";

/// What `verify` and `heal` take: the source, the replica, how to compare and report.
#[derive(Args, Debug)]
pub struct CompareArgs {
    /// `VG/SNAP [DST]`: the source snapshot LV, then the replica LV (`VG/LV` or
    /// `[USER@]HOST:VG/LV`). With --metadata only the replica; with --to no replica here.
    #[arg(value_name = "LV", num_args = 0..=2)]
    lvs: Vec<String>,
    /// Source, metadata form: the pool's metadata device or image.
    #[arg(long, value_name = "META", requires = "thin_id")]
    metadata: Option<PathBuf>,
    #[command(flatten)]
    snap: SnapArg,
    /// Source, metadata form: the pool's data device or file.
    #[arg(long, value_name = "POOL_DATA", requires = "metadata", conflicts_with = "source")]
    data: Option<PathBuf>,
    /// Source, metadata form: the thin device itself (instead of --data).
    #[arg(long, value_name = "DEV", requires = "metadata")]
    source: Option<PathBuf>,
    /// Source, metadata form: the thin device's id.
    #[arg(long = "thin-id", value_name = "N", requires = "metadata")]
    thin_id: Option<u64>,
    /// Source, metadata form: the volume size (default: the size of --source; needed with --data).
    #[arg(long, value_name = "SIZE", value_parser = crate::cli::size::parse_nonzero, requires = "metadata")]
    size: Option<u64>,
    /// Replica: a file or block device, `[USER@]HOST:PATH` for one on another host.
    #[arg(long, value_name = "PATH")]
    to: Option<String>,
    /// Compare in blocks of this size (a multiple of 4096; default: the source pool's block size).
    #[arg(long = "block-size", value_name = "SIZE", value_parser = crate::cli::size::parse_nonzero)]
    block_size: Option<u64>,
    /// The hash: xxh3 (xxh3-128, fast: accidental differences) or blake3 (cryptographic: also a
    /// replica someone crafted to pass).
    #[arg(long, value_enum, default_value_t = HashArg::Xxh3)]
    hash: HashArg,
    /// Report format on stdout.
    #[arg(long, value_enum, default_value_t = TextJson::Text)]
    format: TextJson,
    /// Print the bytes read on each side and the bytes exchanged on stderr.
    #[arg(long)]
    stats: bool,
    /// The ssh command for a remote replica (split like a shell would), default `ssh`.
    #[arg(long = "ssh-cmd", value_name = "CMD")]
    ssh_cmd: Option<String>,
    /// thinsend-native on the replica's host (default: found on its PATH).
    #[arg(long = "remote-bin", value_name = "PATH")]
    remote_bin: Option<String>,
}

impl CompareArgs {
    fn source(&self) -> Result<(Source, &[String]), Error> {
        if let Some(metadata) = &self.metadata {
            let thin_id = self.thin_id.ok_or_else(|| Error::Usage("--metadata needs --thin-id".into()))?;
            let src = Source::Meta {
                metadata: metadata.clone(),
                snap: self.snap.source(),
                thin_id,
                data: self.data.clone(),
                source: self.source.clone(),
                size: self.size,
            };
            return Ok((src, &self.lvs));
        }
        match self.lvs.split_first() {
            Some((src, rest)) => Ok((Source::Lv(src.clone()), rest)),
            None => Err(Error::Usage("give the source: VG/SNAP, or --metadata M --thin-id N ...".into())),
        }
    }

    fn replica(&self, rest: &[String]) -> Result<Replica, Error> {
        let spec = |s: &str| Spec::parse(s).map_err(|e| Error::Usage(e.to_string()));
        match (rest, &self.to) {
            ([lv], None) => Ok(Replica::Lv(spec(lv)?)),
            ([], Some(p)) => Ok(Replica::Path(spec(p)?)),
            ([], None) => Err(Error::Usage("give the replica: VG/LV, [USER@]HOST:VG/LV or --to PATH".into())),
            _ => Err(Error::Usage("one replica: VG/LV or --to PATH, not both (or more)".into())),
        }
    }

    /// The source, the replica and the ssh command.
    pub fn sides(&self) -> Result<(Source, Replica, Ssh), Error> {
        if let Some(b) = self.block_size {
            verify::hash::Layout::new(Algorithm::Xxh3, b, 0).map_err(|e| Error::Usage(format!("--block-size: {e}")))?;
        }
        let (src, rest) = self.source()?;
        let dst = self.replica(rest)?;
        let mut ssh = Ssh::default();
        if let Some(c) = &self.ssh_cmd {
            ssh = ssh.with_program(c).map_err(Error::Usage)?;
        }
        if let Some(b) = &self.remote_bin {
            ssh.remote_bin = b.clone();
        }
        Ok((src, dst, ssh))
    }

    /// The replica named for a `--serve` side: `VG/LV` or `--to PATH`, on this host.
    pub fn local_replica(&self) -> Result<Replica, Error> {
        let local = |s: &str| Spec { host: None, path: s.to_string() };
        match (self.lvs.as_slice(), &self.to) {
            ([lv], None) => Ok(Replica::Lv(local(lv))),
            ([], Some(p)) => Ok(Replica::Path(local(p))),
            _ => Err(Error::Usage("--serve takes one replica: VG/LV or --to PATH".into())),
        }
    }

    /// The hash and block size to compare with.
    pub fn how(&self) -> How {
        let hash = match self.hash {
            HashArg::Xxh3 => Algorithm::Xxh3,
            HashArg::Blake3 => Algorithm::Blake3,
        };
        How { hash, block: self.block_size }
    }

    pub fn json(&self) -> bool {
        self.format == TextJson::Json
    }

    pub fn stats(&self) -> bool {
        self.stats
    }
}

#[derive(Args, Debug)]
pub struct VerifyArgs {
    #[command(flatten)]
    c: CompareArgs,
    /// Repair the differences found, as `heal` does.
    #[arg(long)]
    repair: bool,
    /// Answer a verifying host on stdin/stdout (run through ssh by `verify`).
    #[arg(long, hide = true)]
    serve: bool,
}

/// An error other than a usage error (or a vanished stdout reader) is printed here and exits 3.
pub fn errors_exit_3(r: Result<ExitCode, Error>) -> Result<ExitCode, Error> {
    match r {
        Err(Error::Usage(m)) => Err(Error::Usage(m)),
        Err(Error::Io { source, path }) if source.kind() == std::io::ErrorKind::BrokenPipe => {
            Err(Error::Io { source, path })
        }
        Err(e) => {
            eprintln!("thinsend-native: {}", escape_controls(&e.to_string()));
            Ok(ExitCode::from(EXIT_ERROR))
        }
        ok => ok,
    }
}

pub fn stats_line(r: &Report) {
    eprintln!(
        "thinsend-native: read {} bytes of the source, {} bytes of the replica; {} bytes of digests \
         exchanged; {} of {} regions differ",
        r.source_bytes_read, r.replica_bytes_read, r.hash_bytes, r.regions_differing, r.regions
    );
}

/// `v` as a `thinsend/1` document of type `kind` (docs/JSON.md): its fields after `schema` and `type`.
pub fn document(kind: &str, v: &impl serde::Serialize) -> Result<serde_json::Value, Error> {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::Object(m)) => Ok(thinsend::report::document(kind, m)),
        Ok(_) => Err(Error::Other(format!("{kind} report is not a JSON object"))),
        Err(e) => Err(Error::Other(format!("JSON output: {e}"))),
    }
}

/// The report on stdout: `equal`, or `differ` and one `OFFSET LENGTH` line per range.
pub fn print_report(r: &Report, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let w = |e| Error::io("<stdout>", e);
    if json {
        return thinsend::report::write_line(out, &document("verify", r)?);
    }
    if r.equal {
        return writeln!(out, "equal: {} bytes", r.source_size).map_err(w);
    }
    writeln!(
        out,
        "differ: {} range(s), {} bytes (source {} bytes, replica {} bytes)",
        r.ranges.len(),
        r.differing_bytes,
        r.source_size,
        r.replica_size
    )
    .map_err(w)?;
    for x in &r.ranges {
        writeln!(out, "{} {}", x.offset, x.length).map_err(w)?;
    }
    Ok(())
}

fn serve(c: &CompareArgs) -> Result<ExitCode, Error> {
    let dst = c.local_replica()?;
    let (vol, guard) = verify::open_local_replica(&dst)?;
    let mut peer = verify::LocalPeer::new(vol);
    let out = std::io::BufWriter::new(std::io::stdout().lock());
    verify::protocol::serve(&mut peer, std::io::stdin().lock(), out)?;
    drop(peer);
    drop(guard);
    Ok(ExitCode::SUCCESS)
}

fn run_inner(a: VerifyArgs) -> Result<ExitCode, Error> {
    if a.serve {
        return serve(&a.c);
    }
    if a.repair {
        return super::heal::heal(&a.c);
    }
    let (src, dst, ssh) = a.c.sides()?;
    let src = verify::open_source(&src)?;
    let r = verify::verify(&src, &dst, &ssh, a.c.how())?;
    if a.c.stats() {
        stats_line(&r);
    }
    let mut out = stdout();
    print_report(&r, a.c.json(), &mut out)?;
    flush(&mut out)?;
    Ok(if r.equal { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

pub fn run(a: VerifyArgs) -> Result<ExitCode, Error> {
    errors_exit_3(run_inner(a))
}
