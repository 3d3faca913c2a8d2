//! `--dry-run`: every record that would be sent, and the totals, as text or JSON, from the same
//! planner and the same writers as a real send.

use std::io::Write;

use super::plan::{Emit, Plan};
use super::{size_of, source_of, Options, StreamFormat, Totals};
use crate::error::{Error, Result};
use crate::pool::Pool;

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
    let totals = plan.totals(&mut header)?;
    let format = match opts.format {
        StreamFormat::Native => "native",
        StreamFormat::Linbit => "linbit-1.1",
    };
    // Native records carry their one source piece inline; LINBIT chunks list their pieces.
    let inline = opts.format == StreamFormat::Native;
    let size = plan.known_volume_size();
    if json {
        let mut head = serde_json::json!({
            "format": format,
            "mode": if plan.incremental() { "incremental" } else { "full" },
            "block_size": plan.g.bs,
            "source": header.source,
            "base": header.base,
        });
        if let Some(vs) = size {
            head["volume_size"] = vs.into();
        }
        let head = head.to_string();
        // Print the header fields, then stream the records, then the totals.
        write!(out, "{},\"records\":[", head.strip_suffix('}').unwrap_or(&head)).map_err(w)?;
        let mut p = Print { out, json: true, first: true, inline, pending: None };
        plan.walk(&mut p)?;
        let totals_json = serde_json::to_string(&totals).map_err(|e| Error::Other(format!("totals: {e}")))?;
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
    }
    Ok(totals)
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
            match src {
                Some(s) => write!(
                    self.out,
                    "{sep}{{\"kind\":\"{kind}\",\"offset\":{offset},\"length\":{len},\"source_offset\":{s}}}"
                ),
                None => write!(self.out, "{sep}{{\"kind\":\"{kind}\",\"offset\":{offset},\"length\":{len}}}"),
            }
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
