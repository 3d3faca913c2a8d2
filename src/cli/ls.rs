//! `ls`: thin devices with mapped, exclusive and shared sizes.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use thinsend::{ls, Error};

use super::args::{flush, stdout, MetaArgs};

pub const EXAMPLES: &str = "\
Examples:
  thinsend-native ls -m /dev/mapper/vg-pool_tmeta            # a live pool: under a held metadata snapshot
  thinsend-native ls -o DEV,MAPPED,EXCLUSIVE,SHARED pool_tmeta.img
  thinsend-native ls --no-headers -o DEV,MAPPED_BYTES pool_tmeta.img
  thinsend-native ls --format json pool_tmeta.img

Reading a _tmeta device needs root (or the disk group); an image file, read access.";

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum LsFormat {
    /// thin_ls's columns.
    Table,
    /// JSON for programs.
    Json,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    meta: MetaArgs,
    /// Comma-separated fields: DEV, MAPPED_BLOCKS, EXCLUSIVE_BLOCKS, SHARED_BLOCKS, MAPPED_SECTORS,
    /// EXCLUSIVE_SECTORS, SHARED_SECTORS, MAPPED_BYTES, EXCLUSIVE_BYTES, SHARED_BYTES, MAPPED,
    /// EXCLUSIVE, SHARED, TRANSACTION, CREATE_TIME, SNAP_TIME.
    #[arg(short = 'o', long = "format-fields", alias = "fields", default_value = ls::DEFAULT_FIELDS)]
    fields: String,
    /// Leave out the header line of the table.
    #[arg(long)]
    no_headers: bool,
    /// Output format: thin_ls's table or JSON (all fields).
    #[arg(long, value_enum, default_value_t = LsFormat::Table)]
    format: LsFormat,
}

pub fn run(a: LsArgs) -> Result<ExitCode, Error> {
    let fields = ls::parse_fields(&a.fields)?;
    let pool = a.meta.open()?;
    let rows = ls::rows(&pool)?;
    let mut out = stdout();
    match a.format {
        LsFormat::Table => ls::write_table(&pool, &rows, &fields, !a.no_headers, &mut out)?,
        LsFormat::Json => ls::write_json(&pool, &rows, &mut out)?,
    }
    flush(&mut out)?;
    Ok(ExitCode::SUCCESS)
}
