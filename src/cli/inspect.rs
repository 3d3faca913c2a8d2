//! `inspect`: list and verify a stream from stdin with the receiver's own reader.

use std::process::ExitCode;

use clap::Args;
use thinsend::{stream, Error};

use super::args::{flush, stdout, AcceptArgs, TextJson};

pub const EXAMPLES: &str = "\
Examples:
  thinsend-native inspect < snap2.stream                       # every record, verified
  thinsend-native inspect --verify < snap2.stream && echo intact
  thinsend-native send vg/snap1 vg/snap2 | thinsend-native inspect --format json

Needs no privileges: it reads stdin only.";

#[derive(Args, Debug)]
pub struct InspectArgs {
    /// Only verify, and print the summary.
    #[arg(long)]
    verify: bool,
    /// Output format of the listing.
    #[arg(long, value_enum, default_value_t = TextJson::Text)]
    format: TextJson,
    #[command(flatten)]
    accept: AcceptArgs,
}

pub fn run(a: InspectArgs) -> Result<ExitCode, Error> {
    let opts = stream::ReadOptions { accept: a.accept.accept.accept(), allow_empty: false };
    let mut out = stdout();
    let r = stream::inspect::inspect(0, &opts, a.format == TextJson::Json, a.verify, &mut out);
    flush(&mut out)?;
    r?;
    Ok(ExitCode::SUCCESS)
}
