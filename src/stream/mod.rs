//! Send/receive stream formats and the one reader loop that `recv` and `inspect` share: the native
//! checksummed format ([`native`], specified in docs/STREAM.md) and LINBIT thin-send-recv 1.0/1.1
//! ([`linbit`]), told apart by the magic in their first eight bytes.
//!
//! The reader validates every record and hands the validated ones to a [`Sink`]; a sink applies them
//! (recv) or lists them (inspect), so what is inspected is exactly what would be applied.

pub mod inspect;
pub mod linbit;
pub mod native;

use std::io;
use std::os::fd::RawFd;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::io as sys;

/// A stream's wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Format {
    #[serde(rename = "native")]
    Native,
    #[serde(rename = "linbit-1.1")]
    Linbit11,
    #[serde(rename = "linbit-1.0")]
    Linbit10,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Native => "native",
            Format::Linbit11 => "linbit-1.1",
            Format::Linbit10 => "linbit-1.0",
        }
    }
}

/// Which formats a reader accepts (`--accept-stream-format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Accept {
    #[default]
    Auto,
    Native,
    Linbit11,
    Linbit10,
}

impl Accept {
    fn allows(self, f: Format) -> bool {
        match self {
            Accept::Auto => true,
            Accept::Native => f == Format::Native,
            Accept::Linbit11 => f == Format::Linbit11,
            Accept::Linbit10 => f == Format::Linbit10,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Accept::Auto => "auto",
            Accept::Native => "native",
            Accept::Linbit11 => "1.1",
            Accept::Linbit10 => "1.0",
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    pub accept: Accept,
    /// Treat empty input as an empty, successful stream (thin_recv's `auto` behaviour) instead of an
    /// error.
    pub allow_empty: bool,
}

/// One validated record, for listing.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Record {
    /// Native HEADER (its content is in [`Start::header`]).
    Header {
        payload: u64,
    },
    /// LINBIT 1.1 BEGIN_STREAM.
    Begin,
    Data {
        offset: u64,
        length: u64,
    },
    Unmap {
        offset: u64,
        length: u64,
    },
    /// A record of an unknown optional kind, skipped.
    Optional {
        code: u32,
        length: u64,
    },
    End {
        records: u64,
    },
}

impl Record {
    pub fn kind_name(&self) -> &'static str {
        match self {
            Record::Header { .. } => "HEADER",
            Record::Begin => "BEGIN",
            Record::Data { .. } => "DATA",
            Record::Unmap { .. } => "UNMAP",
            Record::Optional { .. } => "OPTIONAL",
            Record::End { .. } => "END",
        }
    }
}

/// Where a record starts in the stream and what it is.
#[derive(Debug, Clone, Serialize)]
pub struct Located {
    /// Stream byte offset of the record's header.
    pub at: u64,
    #[serde(flatten)]
    pub record: Record,
}

/// What a sink learns before the first DATA or UNMAP.
#[derive(Debug, Clone)]
pub struct Start {
    pub format: Format,
    /// The native HEADER; LINBIT streams carry none.
    pub header: Option<native::Header>,
}

/// Totals of a stream that was read to its end and validated.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Summary {
    pub format: Option<Format>,
    /// Every record (chunk) read, including header/BEGIN, END and optional ones.
    pub records: u64,
    pub data_records: u64,
    pub unmap_records: u64,
    pub optional_records: u64,
    pub data_bytes: u64,
    pub unmap_bytes: u64,
    pub stream_bytes: u64,
}

/// Receives validated records in stream order.
pub trait Sink {
    /// The format is known (and for native streams the HEADER validated); nothing applied yet.
    fn start(&mut self, start: &Start) -> Result<()>;
    /// `bytes` belong at target offset `offset`. Native DATA arrives whole and checksum-verified;
    /// LINBIT DATA (no checksums) arrives in pieces as it is read.
    fn data(&mut self, offset: u64, bytes: &[u8]) -> Result<()>;
    /// A descriptor LINBIT DATA for `[offset, offset+len)` may be spliced into directly, skipping
    /// user space (`None`: pass the bytes to [`Sink::data`]).
    fn splice_target(&mut self, _offset: u64, _len: u64) -> Result<Option<RawFd>> {
        Ok(None)
    }
    /// Called after bytes were spliced into [`Sink::splice_target`].
    fn spliced(&mut self, _offset: u64, _len: u64) {}
    /// `[offset, offset+len)` must read as zeros afterwards.
    fn unmap(&mut self, offset: u64, len: u64) -> Result<()>;
    /// A record was read, validated and (for DATA/UNMAP) applied.
    fn record(&mut self, _rec: &Located) -> Result<()> {
        Ok(())
    }
    /// The stream ended, complete and valid. Called at most once, after the last record.
    fn finish(&mut self, summary: &Summary) -> Result<()>;
    /// A warning the reader does not treat as fatal (e.g. a skipped optional LINBIT chunk).
    fn warn(&mut self, msg: &str) {
        eprintln!("thinsend-native: {msg}");
    }
}

/// The input stream: a descriptor and how many bytes were consumed from it.
pub(crate) struct Input {
    pub fd: RawFd,
    pub pos: u64,
    pub pipe: bool,
}

impl Input {
    pub fn new(fd: RawFd) -> Self {
        let pipe = sys::is_pipe(fd);
        if pipe {
            sys::grow_pipe(fd, 1 << 20);
        }
        Input { fd, pos: 0, pipe }
    }

    /// Reads until `buf` is full or end of input; returns the bytes read.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            let n = sys::read(self.fd, &mut buf[got..]).map_err(|e| self.io_error(e))?;
            if n == 0 {
                break;
            }
            got += n;
            self.pos += n as u64;
        }
        Ok(got)
    }

    pub fn io_error(&self, e: io::Error) -> Error {
        stream_error(self.pos, format!("reading the stream: {e}"))
    }

    /// Splices `len` bytes into `out` at `offset`; returns the bytes moved (fewer only at end of input).
    pub fn splice_to(&mut self, out: RawFd, offset: u64, len: u64) -> io::Result<u64> {
        let mut off = offset as i64;
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(1 << 30) as usize;
            let n = sys::splice(self.fd, None, out, Some(&mut off), want)?;
            if n == 0 {
                break;
            }
            done += n as u64;
            self.pos += n as u64;
        }
        Ok(done)
    }
}

pub(crate) fn stream_error(offset: u64, what: impl Into<String>) -> Error {
    Error::Stream { offset, what: what.into() }
}

/// Wraps an error the sink raised while applying the record at `at`, so it names the stream position.
pub(crate) fn sink_error(at: u64, kind: &str, e: Error) -> Error {
    match e {
        Error::Stream { .. } => e,
        e => stream_error(at, format!("{kind} record: {e}")),
    }
}

/// Reads a whole stream from `fd`, validating every record and handing it to `sink`; returns the
/// totals once the stream proved complete. Any error leaves the sink without a `finish` call.
pub fn read(fd: RawFd, opts: &ReadOptions, sink: &mut dyn Sink) -> Result<Summary> {
    let mut input = Input::new(fd);
    let mut magic = [0u8; 8];
    let n = input.fill(&mut magic)?;
    if n == 0 {
        if opts.allow_empty && opts.accept != Accept::Linbit11 && opts.accept != Accept::Native {
            sink.warn("Empty input.");
            let summary = Summary::default();
            sink.finish(&summary)?;
            return Ok(summary);
        }
        return Err(stream_error(0, "Empty input: no stream arrived (did the sender fail before writing anything?)"));
    }
    if n < 8 {
        return Err(stream_error(
            n as u64,
            format!("Truncated input: the stream is only {n} bytes long, too short for any format's first record"),
        ));
    }
    let format = if magic == native::MAGIC {
        Format::Native
    } else if magic[..7] == native::MAGIC[..7] {
        return Err(stream_error(
            7,
            format!(
                "native stream format version {} is not supported by this receiver (it reads version {})",
                magic[7],
                native::MAGIC[7]
            ),
        ));
    } else {
        match linbit::format_of(&magic) {
            Ok(f) => f,
            Err(what) => return Err(stream_error(0, what)),
        }
    };
    if !opts.accept.allows(format) {
        return Err(stream_error(
            0,
            format!("{} stream not accepted (--accept-stream-format {})", format.name(), opts.accept.name()),
        ));
    }
    match format {
        Format::Native => native::read_records(&mut input, sink),
        Format::Linbit11 | Format::Linbit10 => linbit::read_chunks(&mut input, format, magic, sink),
    }
}
