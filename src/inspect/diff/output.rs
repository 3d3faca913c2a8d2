//! Writers for a delta: thin_delta 0.9.0's XML (simple and --verbose, byte-identical), JSON, and one
//! line per range for shell scripts. All stream: nothing is held but the current range.

use std::io::Write;

use crate::diff::{coalesce_simple, Delta, Kind, Stats};
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::report::{self, PoolFacts};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
    Ranges,
}

pub struct Header {
    pub left: u64,
    pub right: u64,
}

fn io(e: std::io::Error) -> Error {
    Error::io("<stdout>", e)
}

/// Writes `deltas` (pieces from `diff::delta`) in `format`; `verbose` keeps the pieces and their data
/// blocks, otherwise adjacent ranges of one kind are merged as thin_delta does.
pub fn write<I>(pool: &Pool, h: &Header, deltas: I, format: Format, verbose: bool, out: &mut dyn Write) -> Result<()>
where
    I: Iterator<Item = Result<Delta>>,
{
    let mut ranges: Box<dyn Iterator<Item = Result<Delta>>> =
        if verbose { Box::new(deltas) } else { Box::new(coalesce_simple(deltas)) };
    let ranges = &mut *ranges;
    match format {
        Format::Xml => xml(pool, h, ranges, verbose, out),
        Format::Json => json(pool, h, ranges, verbose, out),
        Format::Ranges => lines(ranges, verbose, out),
    }
}

/// The superblock fields both documents open with, in thin_delta's order.
fn pool_fields(pool: &Pool) -> [(&'static str, u64); 4] {
    let sb = pool.superblock();
    [
        ("time", sb.time.into()),
        ("transaction", sb.trans_id),
        ("data_block_size", sb.data_block_size.into()),
        ("nr_data_blocks", pool.nr_data_blocks()),
    ]
}

type Ranges<'a> = &'a mut dyn Iterator<Item = Result<Delta>>;

fn xml(pool: &Pool, h: &Header, ranges: Ranges, verbose: bool, out: &mut dyn Write) -> Result<()> {
    let sb = pool.superblock();
    out.write_all(b"<superblock uuid=\"\"").map_err(io)?;
    for (name, v) in pool_fields(pool) {
        write!(out, " {name}=\"{v}\"").map_err(io)?;
    }
    if sb.held_root != 0 {
        write!(out, " metadata_snap=\"{}\"", sb.held_root).map_err(io)?;
    }
    write!(out, ">\n  <diff left=\"{}\" right=\"{}\">\n", h.left, h.right).map_err(io)?;
    let mut open: Option<Kind> = None;
    let mut n = itoa::Buffer::new();
    let mut line = String::with_capacity(128);
    for d in ranges {
        let d = d?;
        line.clear();
        if verbose {
            if open != Some(d.kind) {
                if let Some(k) = open {
                    line.push_str(&format!("    </{}>\n", k.name()));
                }
                line.push_str(&format!("    <{}>\n", d.kind.name()));
                open = Some(d.kind);
            }
            line.push_str("      <range begin=\"");
            line.push_str(n.format(d.begin));
            match d.kind {
                Kind::Different => {
                    line.push_str("\" left_data_begin=\"");
                    line.push_str(n.format(d.left.unwrap_or(0)));
                    line.push_str("\" right_data_begin=\"");
                    line.push_str(n.format(d.right.unwrap_or(0)));
                }
                _ => {
                    line.push_str("\" data_begin=\"");
                    line.push_str(n.format(d.left.or(d.right).unwrap_or(0)));
                }
            }
        } else {
            line.push_str("    <");
            line.push_str(d.kind.name());
            line.push_str(" begin=\"");
            line.push_str(n.format(d.begin));
        }
        line.push_str("\" length=\"");
        line.push_str(n.format(d.length));
        line.push_str("\"/>\n");
        out.write_all(line.as_bytes()).map_err(io)?;
    }
    if let Some(k) = open {
        writeln!(out, "    </{}>", k.name()).map_err(io)?;
    }
    out.write_all(b"  </diff>\n</superblock>\n").map_err(io)
}

/// The JSON document (docs/JSON.md, `"type": "diff"`), closed by [`finish`].
fn json(pool: &Pool, h: &Header, ranges: Ranges, verbose: bool, out: &mut dyn Write) -> Result<()> {
    let facts = report::to_json(&PoolFacts::of(pool))?;
    write!(
        out,
        "{},\"superblock\":{facts},\n\"left_dev_id\":{},\"right_dev_id\":{},\"verbose\":{verbose},\"ranges\":[",
        report::open("diff"),
        h.left,
        h.right
    )
    .map_err(io)?;
    let opt = |v: Option<u64>| v.map_or("null".to_string(), |v| v.to_string());
    for (i, d) in ranges.enumerate() {
        let d = d?;
        let sep = if i == 0 { "\n" } else { ",\n" };
        // Merged (not verbose) ranges have no one data block per side.
        let (l, r) = if verbose { (d.left, d.right) } else { (None, None) };
        write!(
            out,
            "{sep}{{\"kind\":\"{}\",\"begin\":{},\"length_blocks\":{},\"left_data_begin\":{},\"right_data_begin\":{}}}",
            d.kind.name(),
            d.begin,
            d.length,
            opt(l),
            opt(r)
        )
        .map_err(io)?;
    }
    out.write_all(b"]").map_err(io)
}

/// The statistics as the JSON output names them (block counts end in `_blocks`).
pub fn stats_json(s: &Stats) -> Result<String> {
    let v = serde_json::to_value(s).map_err(|e| Error::Other(format!("JSON output: {e}")))?;
    let renames = [
        ("same", "same_blocks"),
        ("different", "different_blocks"),
        ("left_only", "left_only_blocks"),
        ("right_only", "right_only_blocks"),
    ];
    report::to_json(&report::rename(v, &renames))
}

/// Ends the output: closes the JSON object (with the statistics, or `null`); nothing for the others.
pub fn finish(format: Format, stats: Option<&Stats>, out: &mut dyn Write) -> Result<()> {
    if format != Format::Json {
        return Ok(());
    }
    let s = match stats {
        Some(s) => stats_json(s)?,
        None => "null".into(),
    };
    writeln!(out, ",\n\"stats\":{s}}}").map_err(io)
}

fn lines(ranges: Ranges, verbose: bool, out: &mut dyn Write) -> Result<()> {
    let opt = |v: Option<u64>| v.map_or("-".to_string(), |v| v.to_string());
    for d in ranges {
        let d = d?;
        if verbose {
            writeln!(out, "{} {} {} {} {}", d.kind.name(), d.begin, d.length, opt(d.left), opt(d.right)).map_err(io)?;
        } else {
            writeln!(out, "{} {} {}", d.kind.name(), d.begin, d.length).map_err(io)?;
        }
    }
    Ok(())
}
