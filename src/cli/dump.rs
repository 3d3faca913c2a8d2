//! `dump`: the pool's devices and mappings as thin_dump's XML or JSON.

use std::process::ExitCode;

use clap::{Args, ValueEnum};
use thinsend::{dump, Error};

use super::args::{flush, stdout, MetaArgs};

pub const EXAMPLES: &str = "\
Examples:
  thinsend-native dump -m /dev/mapper/vg-pool_tmeta > pool.xml     # a live pool, held snapshot
  thinsend-native dump pool_tmeta.img | thin_restore -i /dev/stdin -o new_tmeta.img
  thinsend-native dump --dev-id 1 --dev-id 3 --skip-mappings pool_tmeta.img
  thinsend-native dump --format json pool_tmeta.img

Reading a _tmeta device needs root (or the disk group); an image file, read access.";

/// Mirrors `dump::Format` (owned by the dump module).
#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum DumpFormat {
    /// thin_dump's XML, byte for byte (thin_restore reads it).
    Xml,
    /// The same facts as JSON.
    Json,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    #[command(flatten)]
    meta: MetaArgs,
    /// Only this device (repeatable). Devices are printed in id order whatever the order of the
    /// flags; an id the pool doesn't have selects nothing and is not an error (as in thin_dump).
    #[arg(long = "dev-id", value_name = "N")]
    dev_id: Vec<u64>,
    /// Devices only, no mappings.
    #[arg(long)]
    skip_mappings: bool,
    /// Output format: thin_dump's XML or JSON.
    #[arg(long, value_enum, default_value_t = DumpFormat::Xml)]
    format: DumpFormat,
}

pub fn run(a: DumpArgs) -> Result<ExitCode, Error> {
    let pool = a.meta.open()?;
    let format = match a.format {
        DumpFormat::Xml => dump::Format::Xml,
        DumpFormat::Json => dump::Format::Json,
    };
    let mut out = stdout();
    dump::dump(&pool, &dump::Options { format, dev_ids: a.dev_id, skip_mappings: a.skip_mappings }, &mut out)?;
    flush(&mut out)?;
    Ok(ExitCode::SUCCESS)
}
