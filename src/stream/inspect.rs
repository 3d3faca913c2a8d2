//! `inspect`: the reader `recv` uses, with a sink that lists instead of applying. Every checksum and
//! count is verified exactly as on receive; nothing is written anywhere but the listing. Strings
//! from the stream are escaped (text) or JSON-escaped down to DEL and C1 controls (JSON), and a broken
//! stream still gives a complete JSON document (docs/JSON.md), `"valid": false` with the error.

use std::io::Write;

use super::{Located, Record, Sink, Start, Summary};
use crate::error::{Error, Result};
use crate::io as sys;
use crate::report;
use crate::text::{escape, json_safe};

pub struct Inspect<'w> {
    out: &'w mut dyn Write,
    json: bool,
    /// Only the summary (`--verify`).
    quiet: bool,
    first: bool,
    /// JSON: the document's object is open (after `start`) and its record list too.
    opened: bool,
    listing: bool,
}

fn w(e: std::io::Error) -> Error {
    Error::io("<stdout>", e)
}

impl<'w> Inspect<'w> {
    pub fn new(out: &'w mut dyn Write, json: bool, quiet: bool) -> Self {
        Inspect { out, json, quiet, first: true, opened: false, listing: false }
    }
}

impl Sink for Inspect<'_> {
    fn start(&mut self, start: &Start) -> Result<()> {
        if self.json {
            let header = report::to_json(&report::header(start.header.as_ref()))?;
            let open = report::open("inspect");
            write!(self.out, "{open},\"format\":\"{}\",\"header\":{header}", start.format.name()).map_err(w)?;
            self.opened = true;
            if self.quiet {
                write!(self.out, ",\"records\":null").map_err(w)?;
            } else {
                write!(self.out, ",\"records\":[").map_err(w)?;
                self.listing = true;
            }
            return Ok(());
        }
        writeln!(self.out, "format {}", start.format.name()).map_err(w)?;
        if let Some(h) = &start.header {
            writeln!(
                self.out,
                "stream {}: {:?} stream of {}, volume {} bytes, block size {} bytes, created {} by {}",
                escape(&h.stream_id),
                h.mode,
                h.source.describe(),
                h.volume_size,
                h.block_size,
                h.created,
                escape(&h.sender)
            )
            .map_err(w)?;
            if let Some(b) = &h.base {
                writeln!(self.out, "base: {}", b.describe()).map_err(w)?;
            }
            if let Some(r) = &h.resume {
                writeln!(self.out, "resumes stream {} from target offset {}", escape(&r.of), r.from_offset)
                    .map_err(w)?;
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
            return write!(self.out, "{sep}{}", record_json(rec)?).map_err(w);
        }
        let at = rec.at;
        let k = rec.record.kind_name();
        match &rec.record {
            Record::Data { offset, length } | Record::Unmap { offset, length } => {
                writeln!(self.out, "@{at} {k:<6} offset={offset} length={length}")
            }
            Record::ZData { offset, length, payload } => {
                writeln!(self.out, "@{at} {k:<6} offset={offset} length={length} compressed={payload}")
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
            self.close_json()?;
            let j = report::to_json(s)?;
            return writeln!(self.out, ",\"summary\":{j},\"valid\":true,\"error\":null}}").map_err(w);
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

impl Inspect<'_> {
    /// Closes what `start` opened (or opens an empty document), up to where the verdict goes.
    fn close_json(&mut self) -> Result<()> {
        if !self.opened {
            let open = report::open("inspect");
            write!(self.out, "{open},\"format\":null,\"header\":null,\"records\":null").map_err(w)?;
            self.opened = true;
        }
        if self.listing {
            write!(self.out, "\n]").map_err(w)?;
            self.listing = false;
        }
        Ok(())
    }

    /// The end of the JSON document of a stream that failed validation.
    fn invalid(&mut self, e: &Error) -> Result<()> {
        self.close_json()?;
        let msg = json_safe(serde_json::to_string(&e.to_string()).unwrap_or_else(|_| "\"\"".into()));
        writeln!(self.out, ",\"summary\":null,\"valid\":false,\"error\":{msg}}}").map_err(w)
    }
}

/// One record as the JSON listing gives it: its kind's fields, lengths named with their unit.
fn record_json(rec: &Located) -> Result<String> {
    let v = serde_json::to_value(rec).map_err(|e| Error::Other(format!("JSON output: {e}")))?;
    let renames = [("length", "length_bytes"), ("payload", "payload_bytes"), ("size", "volume_size_bytes")];
    report::to_json(&report::rename(v, &renames))
}

/// Reads the stream on `fd` and lists it to `out` (`quiet`: the summary only). A stream that fails
/// validation returns the error; in JSON the document is completed with `"valid": false` first.
pub fn inspect(
    fd: std::os::fd::RawFd,
    opts: &super::ReadOptions,
    json: bool,
    quiet: bool,
    out: &mut dyn Write,
) -> Result<Summary> {
    if sys::is_tty(fd) {
        return Err(Error::Usage("expecting a data stream on stdin, which is a terminal".into()));
    }
    let mut sink = Inspect::new(out, json, quiet);
    let r = super::read(fd, opts, &mut sink);
    if let (Err(e), true) = (&r, json) {
        sink.invalid(e)?;
    }
    r
}
