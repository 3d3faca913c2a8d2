//! `inspect`: the reader `recv` uses, with a sink that lists instead of applying. Every checksum and
//! count is verified exactly as on receive; nothing is written anywhere but the listing.

use std::io::Write;

use super::{Located, Record, Sink, Start, Summary};
use crate::error::{Error, Result};

pub struct Inspect<'w> {
    out: &'w mut dyn Write,
    json: bool,
    /// Only the summary (`--verify`).
    quiet: bool,
    first: bool,
}

fn w(e: std::io::Error) -> Error {
    Error::io("<stdout>", e)
}

impl<'w> Inspect<'w> {
    pub fn new(out: &'w mut dyn Write, json: bool, quiet: bool) -> Self {
        Inspect { out, json, quiet, first: true }
    }
}

impl Sink for Inspect<'_> {
    fn start(&mut self, start: &Start) -> Result<()> {
        if self.json {
            let header = serde_json::to_string(&start.header).unwrap_or_else(|_| "null".into());
            write!(self.out, "{{\"format\":\"{}\",\"header\":{header}", start.format.name()).map_err(w)?;
            if !self.quiet {
                write!(self.out, ",\"records\":[").map_err(w)?;
            }
            return Ok(());
        }
        writeln!(self.out, "format {}", start.format.name()).map_err(w)?;
        if let Some(h) = &start.header {
            writeln!(
                self.out,
                "stream {}: {:?} stream of {}, volume {} bytes, block size {} bytes, created {} by {}",
                h.stream_id,
                h.mode,
                h.source.describe(),
                h.volume_size,
                h.block_size,
                h.created,
                h.sender
            )
            .map_err(w)?;
            if let Some(b) = &h.base {
                writeln!(self.out, "base: {}", b.describe()).map_err(w)?;
            }
        }
        Ok(())
    }

    fn data(&mut self, _: u64, _: &[u8]) -> Result<()> {
        Ok(())
    }

    fn unmap(&mut self, _: u64, _: u64) -> Result<()> {
        Ok(())
    }

    fn record(&mut self, rec: &Located) -> Result<()> {
        if self.quiet {
            return Ok(());
        }
        if self.json {
            let sep = if self.first { "\n" } else { ",\n" };
            self.first = false;
            let j = serde_json::to_string(rec).unwrap_or_default();
            return write!(self.out, "{sep}{j}").map_err(w);
        }
        let at = rec.at;
        let k = rec.record.kind_name();
        match &rec.record {
            Record::Data { offset, length } | Record::Unmap { offset, length } => {
                writeln!(self.out, "@{at} {k:<6} offset={offset} length={length}")
            }
            Record::Header { payload } => writeln!(self.out, "@{at} {k:<6} payload={payload}"),
            Record::Optional { code, length } => {
                writeln!(self.out, "@{at} {k:<6} code={code:#x} length={length} (skipped)")
            }
            Record::VolumeSize { size } => writeln!(self.out, "@{at} {k} size={size}"),
            Record::End { records } => writeln!(self.out, "@{at} {k:<6} records={records}"),
            Record::Begin => writeln!(self.out, "@{at} {k}"),
        }
        .map_err(w)
    }

    fn finish(&mut self, s: &Summary) -> Result<()> {
        if self.json {
            if s.format.is_none() {
                write!(self.out, "{{\"format\":null,\"header\":null").map_err(w)?;
            } else if !self.quiet {
                write!(self.out, "\n]").map_err(w)?;
            }
            let j = serde_json::to_string(s).unwrap_or_default();
            return writeln!(self.out, ",\"summary\":{j},\"valid\":true}}").map_err(w);
        }
        writeln!(
            self.out,
            "valid: {} records, {} DATA ({} bytes), {} UNMAP ({} bytes), {} optional; {} stream bytes{}",
            s.records,
            s.data_records,
            s.data_bytes,
            s.unmap_records,
            s.unmap_bytes,
            s.optional_records,
            s.stream_bytes,
            if s.format == Some(super::Format::Native) {
                "; all checksums match"
            } else {
                " (this format has no checksums)"
            }
        )
        .map_err(w)
    }
}

/// Reads the stream on `fd` and lists it to `out` (`quiet`: the summary only).
pub fn inspect(
    fd: std::os::fd::RawFd,
    opts: &super::ReadOptions,
    json: bool,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<Summary> {
    let mut sink = Inspect::new(out, json, quiet);
    super::read(fd, opts, &mut sink)
}
