//! `heal SRC DST` (also `verify --repair`): compare, then send exactly the differing blocks as one
//! atomic receive that records the source as the replica's new base. The hidden
//! `heal --serve-recv` is the receiving end on the replica's host.

use std::process::ExitCode;

use clap::Args;
use thinsend::verify;
use thinsend::Error;

use super::args::{flush, stdout};
use super::verify::{errors_exit_3, print_report, stats_line, CompareArgs};

#[derive(Args, Debug)]
pub struct HealArgs {
    #[command(flatten)]
    c: CompareArgs,
    /// Apply a heal stream from stdin to the replica (run through ssh by `heal`).
    #[arg(long = "serve-recv", hide = true)]
    serve_recv: bool,
}

/// Compares, heals, reports; exit 0 when the replica now equals the source.
pub fn heal(c: &CompareArgs) -> Result<ExitCode, Error> {
    let (src, dst, ssh) = c.sides()?;
    let src = verify::open_source(&src)?;
    let h = verify::heal(&src, &dst, &ssh, c.how())?;
    if c.stats() {
        stats_line(&h.before);
    }
    let mut out = stdout();
    if c.json() {
        thinsend::report::write_line(&mut out, &super::verify::document("heal", &h)?)?;
    } else {
        print_report(&h.before, false, &mut out)?;
        let line = format!(
            "healed: sent {} stream bytes ({} records: {} bytes of data, {} bytes unmapped) after {} bytes of \
             digests; the replica now records the source as its base\n",
            h.stream_bytes, h.records, h.data_bytes, h.unmap_bytes, h.before.hash_bytes
        );
        std::io::Write::write_all(&mut out, line.as_bytes()).map_err(|e| Error::io("<stdout>", e))?;
    }
    flush(&mut out)?;
    Ok(ExitCode::SUCCESS)
}

fn run_inner(a: HealArgs) -> Result<ExitCode, Error> {
    if a.serve_recv {
        if thinsend::io::is_tty(0) {
            return Err(Error::Usage("expecting a heal stream on stdin, which is a terminal".into()));
        }
        verify::receive(&a.c.local_replica()?, 0)?;
        return Ok(ExitCode::SUCCESS);
    }
    heal(&a.c)
}

pub fn run(a: HealArgs) -> Result<ExitCode, Error> {
    errors_exit_3(run_inner(a))
}

pub const EXAMPLES: &str = "\
Examples:
  thinsend-native heal vg/snap2 vg/replica                     # then: send vg/snap2 vg/snap3 | recv vg/replica
  thinsend-native heal vg/snap2 root@backup:vg/replica
  thinsend-native heal --metadata pool_tmeta.img -m --data pool_tdata.img --thin-id 2 --size 1G --to replica.img

Only the differing blocks travel; the replica changes atomically and records the source as its new
base. Exit status: 0 healed or already equal, 2 usage, 3 other errors.";
