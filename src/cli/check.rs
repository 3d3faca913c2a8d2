//! `check`: the strict metadata checker; exits 1 on findings (thin_check's options narrow it).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use thinsend::{check, report, Error};

use super::args::{flush, stdout, TextJson};

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
    /// Check only the superblock.
    #[arg(long = "super-block-only")]
    super_block_only: bool,
    /// Do not walk the devices' mapping trees (the bulk of the metadata); the space maps'
    /// reference counts, which need them, are then not compared.
    #[arg(long = "skip-mappings")]
    skip_mappings: bool,
    /// Exit 0 when every finding is non-fatal: leaked metadata or data blocks, underfull nodes.
    #[arg(long = "ignore-non-fatal-errors")]
    ignore_non_fatal_errors: bool,
    /// Check the held metadata snapshot's device and mapping trees instead of the live ones (it
    /// has no space maps of its own).
    #[arg(short = 'm', long = "metadata-snap", alias = "metadata-snapshot")]
    metadata_snap: bool,
    /// Output format: text, or the JSON document of docs/JSON.md.
    #[arg(long, value_enum, default_value_t = TextJson::Text)]
    format: TextJson,
}

fn text(a: &CheckArgs, r: &check::Report, out: &mut dyn Write) -> std::io::Result<()> {
    for line in r.lines() {
        writeln!(out, "{line}")?;
    }
    let s = &r.stats;
    writeln!(
        out,
        "{}: {} devices, {} mappings, {} metadata and {} data blocks in use, {} findings",
        a.metadata.display(),
        s.devices,
        s.mappings,
        s.metadata_blocks_in_use,
        s.data_blocks_in_use,
        r.totals.values().sum::<u64>()
    )
}

/// The `"type": "check"` document.
fn json(a: &CheckArgs, r: &check::Report, passed: bool) -> serde_json::Value {
    let findings: Vec<serde_json::Value> = r
        .findings
        .iter()
        .map(|f| serde_json::json!({"kind": f.kind.name(), "fatal": f.kind.is_fatal(), "message": f.message}))
        .collect();
    let totals: serde_json::Map<String, serde_json::Value> =
        r.totals.iter().map(|(k, n)| (k.name().to_string(), (*n).into())).collect();
    let s = &r.stats;
    let mut m = serde_json::Map::new();
    m.insert("metadata".into(), a.metadata.display().to_string().into());
    m.insert("clean".into(), r.is_clean().into());
    m.insert("passed".into(), passed.into());
    m.insert("findings".into(), findings.into());
    m.insert("totals".into(), totals.into());
    m.insert(
        "stats".into(),
        serde_json::json!({
            "devices": s.devices,
            "mappings": s.mappings,
            "metadata_blocks_in_use": s.metadata_blocks_in_use,
            "data_blocks_in_use": s.data_blocks_in_use,
        }),
    );
    report::document("check", m)
}

pub fn run(a: CheckArgs) -> Result<ExitCode, Error> {
    let opts = check::Options {
        super_block_only: a.super_block_only,
        skip_mappings: a.skip_mappings,
        metadata_snap: a.metadata_snap,
    };
    let report = check::check_path_with(&a.metadata, opts)?;
    let passed = report.is_clean() || (a.ignore_non_fatal_errors && !report.has_fatal());
    let mut out = stdout();
    if !a.quiet {
        match a.format {
            TextJson::Text => text(&a, &report, &mut out).map_err(|e| Error::io("<stdout>", e))?,
            TextJson::Json => report::write_line(&mut out, &json(&a, &report, passed))?,
        }
    }
    flush(&mut out)?;
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
