//! `check`: the strict metadata checker; exits 1 on findings.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use thinsend::{check, Error};

use super::args::{flush, stdout};

pub const EXAMPLES: &str = "\
Examples:
  thinsend-native check pool_tmeta.img
  thinsend-native check -q pool_tmeta.img && echo clean
  lvchange -an vg/pool && thinsend-native check /dev/mapper/vg-pool_tmeta   # an inactive pool (as root)

Exit status: 0 clean, 1 findings or an unreadable image, 2 usage.";

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Metadata device or image file.
    metadata: PathBuf,
    /// No output, only the exit status.
    #[arg(short, long)]
    quiet: bool,
}

pub fn run(a: CheckArgs) -> Result<ExitCode, Error> {
    let report = check::check_path(&a.metadata)?;
    let mut out = stdout();
    if !a.quiet {
        let w = |e| Error::io("<stdout>", e);
        for line in report.lines() {
            writeln!(out, "{line}").map_err(w)?;
        }
        let s = &report.stats;
        writeln!(
            out,
            "{}: {} devices, {} mappings, {} metadata and {} data blocks in use, {} findings",
            a.metadata.display(),
            s.devices,
            s.mappings,
            s.metadata_blocks_in_use,
            s.data_blocks_in_use,
            report.totals.values().sum::<u64>()
        )
        .map_err(w)?;
    }
    flush(&mut out)?;
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
