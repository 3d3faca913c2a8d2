//! `--dry-run`: every record that would be sent, and the totals, as text or JSON (docs/JSON.md),
//! from the same planner and the same writers as a real send.

use std::io::Write;

use super::plan::{Emit, Plan};
use super::{size_of, source_of, Options, StreamFormat, Totals};
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::report;
use crate::stream::native;

fn w(e: std::io::Error) -> Error {
    Error::io("<stdout>", e)
}

/// `--dry-run`: every record that would be sent, and the totals, as text or JSON.
pub fn dry_run(pool: &Pool, opts: &Options, json: bool, out: &mut dyn Write) -> Result<Totals> {
    if opts.source.is_some() && opts.data.is_some() {
        source_of(opts)?;
    }
    let source_size = match &opts.source {
        Some(p) => Some(size_of(p)?),
        None => None,
    };
    let plan = Plan::new(pool, opts, source_size)?;
    let id = [0u8; 16];
    let mut header = plan.header(opts, &id);
    super::resume::bind(opts, &mut header)?;
    let totals = plan.totals(&mut header, opts)?;
    let format = match opts.format {
        StreamFormat::Native => "native",
        StreamFormat::Linbit => "linbit-1.1",
    };
    // Native records carry their one source piece inline; LINBIT chunks list their pieces.
    let inline = opts.format == StreamFormat::Native;
    let size = plan.known_volume_size();
    let zeros = plan.elides_zeros(opts);
    if json {
        let head = json_head(&plan, opts, &header, format, zeros)?;
        // Print the header fields, then stream the records, then the totals.
        write!(out, "{},\"records\":[", head.strip_suffix('}').unwrap_or(&head)).map_err(w)?;
        let mut p = Print { out, json: true, first: true, inline, pending: None };
        plan.walk(&mut p)?;
        let totals_json = report::to_json(&totals)?;
        writeln!(p.out, "\n],\"totals\":{totals_json}}}").map_err(w)?;
    } else {
        writeln!(
            out,
            "# {format} stream, {}, thin {}{}, {}block size {} bytes",
            if plan.incremental() { "incremental" } else { "full" },
            opts.thin_id,
            opts.base_id.map(|b| format!(" from base {b}")).unwrap_or_default(),
            size.map(|vs| format!("volume {vs} bytes, ")).unwrap_or_default(),
            plan.g.bs
        )
        .map_err(w)?;
        let mut p = Print { out, json: false, first: true, inline, pending: None };
        plan.walk(&mut p)?;
        writeln!(
            p.out,
            "# {} records: {} DATA ({} bytes), {} UNMAP ({} bytes); {} stream bytes",
            totals.counts.records,
            totals.counts.data_records,
            totals.counts.data_bytes,
            totals.counts.unmap_records,
            totals.counts.unmap_bytes,
            totals.stream_bytes
        )
        .map_err(w)?;
        if zeros {
            let how = if plan.incremental() { "sent as UNMAP" } else { "left out" };
            writeln!(
                p.out,
                "# mapped blocks that read as zeros are {how} while sending (--no-zero-detect: as DATA): \
                 the stream is at most this"
            )
            .map_err(w)?;
        }
        if let Some(l) = opts.data_path.compress {
            writeln!(
                p.out,
                "# DATA bytes before compression: the size compressed with zstd:{l} is not known in advance"
            )
            .map_err(w)?;
        }
    }
    Ok(totals)
}

/// The JSON document's fields before its records (docs/JSON.md, `dry_run`).
fn json_head(plan: &Plan, opts: &Options, header: &native::Header, format: &str, zeros: bool) -> Result<String> {
    let inline = opts.format == StreamFormat::Native;
    let mut head = serde_json::Map::new();
    head.insert("format".into(), format.into());
    head.insert("mode".into(), (if plan.incremental() { "incremental" } else { "full" }).into());
    head.insert("block_size_bytes".into(), plan.g.bs.into());
    head.insert("volume_size_bytes".into(), plan.known_volume_size().into());
    head.insert("source".into(), report::identity(Some(&header.source)));
    head.insert("base".into(), report::identity(header.base.as_ref()));
    head.insert(
        "data_path".into(),
        serde_json::json!({
            "zero_detect": zeros,
            "compression": opts.data_path.compress.filter(|_| inline).map(|l| format!("zstd:{l}")),
            "stream_bytes": if zeros || opts.data_path.compress.is_some() { "at most" } else { "exact" },
        }),
    );
    report::to_json(&report::document("dry_run", head))
}

struct Print<'w> {
    out: &'w mut dyn Write,
    json: bool,
    first: bool,
    /// DATA lines name their source (one piece per record) instead of listing pieces.
    inline: bool,
    pending: Option<(u64, u64)>,
}

impl Print<'_> {
    fn line(&mut self, kind: &str, offset: u64, len: u64, src: Option<u64>) -> Result<()> {
        let r = if self.json {
            let sep = if self.first { "\n" } else { ",\n" };
            let s = src.map_or("null".to_string(), |s| s.to_string());
            write!(
                self.out,
                "{sep}{{\"kind\":\"{kind}\",\"offset\":{offset},\"length_bytes\":{len},\"source_offset\":{s}}}"
            )
        } else {
            match src {
                Some(s) => writeln!(self.out, "{:<5} offset={offset} length={len} source={s}", kind.to_uppercase()),
                None => writeln!(self.out, "{:<5} offset={offset} length={len}", kind.to_uppercase()),
            }
        };
        self.first = false;
        r.map_err(w)
    }
}

impl Emit for Print<'_> {
    fn data(&mut self, offset: u64, len: u64) -> Result<()> {
        if self.inline {
            self.pending = Some((offset, len));
            return Ok(());
        }
        self.line("data", offset, len, None)
    }
    fn piece(&mut self, src: u64, len: u64) -> Result<()> {
        if let Some((offset, rlen)) = self.pending.take() {
            return self.line("data", offset, rlen, Some(src));
        }
        if self.json {
            return Ok(());
        }
        writeln!(self.out, "        source={src} length={len}").map_err(w)
    }
    fn unmap(&mut self, offset: u64, len: u64) -> Result<()> {
        self.line("unmap", offset, len, None)
    }
}
