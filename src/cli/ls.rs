//! `ls`: thin devices with mapped, exclusive and shared sizes.
//!
//! `--format` is thin_ls's long form of `-o` as well as the output format: `table` and `json`
//! choose the output, anything else is a field list (thin_ls's `--format DEV,MAPPED` works as
//! written). It may be given twice: `--format json --format DEV,MAPPED` (or `-o`).

use std::process::ExitCode;

use clap::Args;
use thinsend::{ls, Error};

use super::args::{flush, stdout, MetaArgs};

pub const EXAMPLES: &str = "\
Examples:
  thinsend-native ls -m /dev/mapper/vg-pool_tmeta            # a live pool: under a held metadata snapshot
  thinsend-native ls -o DEV,MAPPED,EXCLUSIVE,SHARED pool_tmeta.img
  thinsend-native ls --no-headers -o DEV,MAPPED_BYTES pool_tmeta.img
  thinsend-native ls --format json pool_tmeta.img
  thinsend-native ls --format DEV,MAPPED pool_tmeta.img       # thin_ls's long form of -o

Reading a _tmeta device needs root (or the disk group); an image file, read access.";

#[derive(Args, Debug)]
pub struct LsArgs {
    #[command(flatten)]
    meta: MetaArgs,
    /// Comma-separated fields: DEV, MAPPED_BLOCKS, EXCLUSIVE_BLOCKS, SHARED_BLOCKS, MAPPED_SECTORS,
    /// EXCLUSIVE_SECTORS, SHARED_SECTORS, MAPPED_BYTES, EXCLUSIVE_BYTES, SHARED_BYTES, MAPPED,
    /// EXCLUSIVE, SHARED, TRANSACTION, CREATE_TIME, SNAP_TIME. Default: DEV,MAPPED,CREATE_TIME,SNAP_TIME
    /// in the table, every field in JSON.
    #[arg(short = 'o', long = "format-fields", alias = "fields", value_name = "FIELDS")]
    fields: Option<String>,
    /// Leave out the header line of the table.
    #[arg(long)]
    no_headers: bool,
    /// `table` (thin_ls's layout, the default) or `json`; any other value is a field list, as
    /// thin_ls's `--format FIELDS` (the long form of -o). May be given twice (output and fields).
    #[arg(long, value_name = "table|json|FIELDS", action = clap::ArgAction::Append)]
    format: Vec<String>,
}

/// What `--format` and `-o` ask for: JSON or not, and the fields (None: the default).
fn resolve(a: &LsArgs) -> Result<(bool, Option<String>), Error> {
    let mut json = None;
    let mut fields = a.fields.clone();
    for f in &a.format {
        match f.as_str() {
            "table" | "json" if json.is_some() => {
                return Err(Error::Usage("ls: --format table|json given twice".into()));
            }
            "table" => json = Some(false),
            "json" => json = Some(true),
            list if fields.is_some() => {
                return Err(Error::Usage(format!("ls: fields given twice (-o and --format {list})")));
            }
            list => fields = Some(list.to_string()),
        }
    }
    Ok((json.unwrap_or(false), fields))
}

pub fn run(a: LsArgs) -> Result<ExitCode, Error> {
    let (json, fields) = resolve(&a)?;
    let fields = match fields {
        Some(f) => ls::parse_fields(&f)?,
        None if json => ls::ALL_FIELDS.iter().map(|(_, f)| *f).collect(),
        None => ls::parse_fields(ls::DEFAULT_FIELDS)?,
    };
    let pool = a.meta.open()?;
    let rows = ls::rows(&pool)?;
    let mut out = stdout();
    if json {
        ls::write_json(&pool, &rows, &fields, &mut out)?;
    } else {
        ls::write_table(&pool, &rows, &fields, !a.no_headers, &mut out)?;
    }
    flush(&mut out)?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct T {
        #[command(flatten)]
        a: LsArgs,
    }

    fn parse(args: &[&str]) -> Result<(bool, Option<String>), Error> {
        let t = T::try_parse_from([&["ls"][..], args, &["meta"]].concat()).unwrap();
        resolve(&t.a)
    }

    #[test]
    fn format_is_the_output_or_thin_ls_fields() {
        assert_eq!(parse(&[]).unwrap(), (false, None));
        assert_eq!(parse(&["--format", "json"]).unwrap(), (true, None));
        assert_eq!(parse(&["--format", "DEV,MAPPED"]).unwrap(), (false, Some("DEV,MAPPED".into())));
        assert_eq!(parse(&["--format", "json", "--format", "DEV"]).unwrap(), (true, Some("DEV".into())));
        assert_eq!(parse(&["-o", "DEV", "--format", "json"]).unwrap(), (true, Some("DEV".into())));
        assert!(parse(&["-o", "DEV", "--format", "MAPPED"]).is_err());
        assert!(parse(&["--format", "json", "--format", "table"]).is_err());
    }
}
