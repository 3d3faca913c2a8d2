//! `dump`: the pool's devices and mappings as thin_dump's XML or human_readable text, or JSON.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
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
    /// thin_dump's human_readable text.
    #[value(name = "human_readable", alias = "human-readable")]
    HumanReadable,
    /// The JSON document of docs/JSON.md.
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
    /// Output format: thin_dump's XML or human_readable, or JSON.
    #[arg(short = 'f', long, value_enum, default_value_t = DumpFormat::Xml)]
    format: DumpFormat,
    /// Write to this file instead of stdout. It is created (never overwritten, never followed
    /// through a symlink) and removed again if the dump fails.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: Option<PathBuf>,
    /// Print this transaction id instead of the superblock's (as thin_dump's option).
    #[arg(long = "transaction-id", value_name = "N")]
    transaction_id: Option<u64>,
    /// Print this data block size (in 512-byte sectors) instead of the superblock's.
    #[arg(long = "data-block-size", value_name = "SECTORS")]
    data_block_size: Option<u64>,
    /// Print this number of data blocks instead of the pool's.
    #[arg(long = "nr-data-blocks", value_name = "N")]
    nr_data_blocks: Option<u64>,
}

/// Creates `path` for the dump: exclusively, so an existing file or a symlink is refused.
fn create(path: &Path) -> Result<File, Error> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .mode(0o644)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                Error::Other(format!("{}: already exists; dump -o does not overwrite a file", path.display()))
            }
            _ => Error::io(path, e),
        })
}

pub fn run(a: DumpArgs) -> Result<ExitCode, Error> {
    let pool = a.meta.open()?;
    let format = match a.format {
        DumpFormat::Xml => dump::Format::Xml,
        DumpFormat::HumanReadable => dump::Format::HumanReadable,
        DumpFormat::Json => dump::Format::Json,
    };
    let overrides = dump::Overrides {
        transaction: a.transaction_id,
        data_block_size: a.data_block_size,
        nr_data_blocks: a.nr_data_blocks,
    };
    let opts = dump::Options { format, dev_ids: a.dev_id, skip_mappings: a.skip_mappings, overrides };
    let Some(path) = a.output else {
        let mut out = stdout();
        dump::dump(&pool, &opts, &mut out)?;
        flush(&mut out)?;
        return Ok(ExitCode::SUCCESS);
    };
    let mut out = BufWriter::with_capacity(1 << 20, create(&path)?);
    // The dump names its output <stdout>; here it is the file.
    let r = dump::dump(&pool, &opts, &mut out)
        .map_err(|e| match e {
            Error::Io { path: p, source } if p.as_os_str() == "<stdout>" => Error::io(&path, source),
            e => e,
        })
        .and_then(|()| out.flush().map_err(|e| Error::io(&path, e)))
        .and_then(|()| out.get_ref().sync_all().map_err(|e| Error::io(&path, e)));
    if r.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    r?;
    Ok(ExitCode::SUCCESS)
}
