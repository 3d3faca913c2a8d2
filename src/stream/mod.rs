//! Send/receive stream formats and the one reader loop that `recv` and `inspect` share: the native
//! checksummed format ([`native`], specified in docs/STREAM.md) and LINBIT thin-send-recv 1.0/1.1
//! ([`linbit`]), told apart by the magic in their first eight bytes.
//!
//! The reader validates every record and hands the validated ones to a [`Sink`]; a sink applies them
//! (recv) or lists them (inspect), so what is inspected is exactly what would be applied.
//!
//! [`record`] is the table of record kinds; `reader` picks the format; each format's `read` does
//! the framing and a one-case-per-kind dispatch; [`writer::RecordWriter`] is the framing both formats
//! write, so the sender knows no wire layout.

pub mod inspect;
pub mod linbit;
pub mod native;
mod reader;
pub mod record;
pub mod writer;

use std::os::fd::RawFd;

use serde::Serialize;

pub use reader::read;
pub(crate) use reader::{sink_error, stream_error, Input};
pub use record::RecordKind;
pub use writer::{writer, RecordWriter};

use crate::error::Result;

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
    /// Native ZDATA: `length` target bytes at `offset`, `payload` bytes on the wire.
    #[serde(rename = "zdata")]
    ZData {
        offset: u64,
        length: u64,
        payload: u64,
    },
    Unmap {
        offset: u64,
        length: u64,
    },
    /// LINBIT VOLUME_SIZE chunk.
    VolumeSize {
        size: u64,
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
    /// The record's kind in the record table (`None`: an unknown optional record).
    pub fn kind(&self) -> Option<RecordKind> {
        match self {
            Record::Header { .. } => Some(RecordKind::Header),
            Record::Begin => Some(RecordKind::Begin),
            Record::Data { .. } => Some(RecordKind::Data),
            Record::ZData { .. } => Some(RecordKind::ZData),
            Record::Unmap { .. } => Some(RecordKind::Unmap),
            Record::VolumeSize { .. } => Some(RecordKind::VolumeSize),
            Record::Optional { .. } => None,
            Record::End { .. } => Some(RecordKind::End),
        }
    }

    pub fn kind_name(&self) -> &'static str {
        self.kind().map_or("OPTIONAL", RecordKind::name)
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
    /// A LINBIT stream's VOLUME_SIZE chunk (native streams: in the HEADER).
    linbit_volume_size: Option<u64>,
}

impl Start {
    pub fn new(format: Format, header: Option<native::Header>, linbit_volume_size: Option<u64>) -> Self {
        Start { format, header, linbit_volume_size }
    }

    /// The size of the volume the stream carries, when the stream says it: always for native
    /// streams, for LINBIT streams when the sender added a VOLUME_SIZE chunk (thinsend-native does
    /// whenever it knows the size; thin_send never does).
    pub fn volume_size(&self) -> Option<u64> {
        self.header.as_ref().map(|h| h.volume_size).or(self.linbit_volume_size)
    }
}

/// Record counts and byte totals: what a native END carries, what a send wrote (`send::Totals`) and,
/// with the reader's extra fields, what a read found ([`Summary::counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Every record, the opening and closing ones included.
    pub records: u64,
    pub data_records: u64,
    pub unmap_records: u64,
    pub data_bytes: u64,
    pub unmap_bytes: u64,
}

impl Counts {
    pub fn add_data(&mut self, len: u64) {
        self.records += 1;
        self.data_records += 1;
        self.data_bytes += len;
    }

    pub fn add_unmap(&mut self, len: u64) {
        self.records += 1;
        self.unmap_records += 1;
        self.unmap_bytes += len;
    }
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
    /// The native HEADER the stream carried (for the receiver's result; not part of the counts).
    #[serde(skip)]
    pub header: Option<native::Header>,
}

impl Summary {
    /// The counts a native END carries (optional records are in `records` only).
    pub fn counts(&self) -> Counts {
        Counts {
            records: self.records,
            data_records: self.data_records,
            unmap_records: self.unmap_records,
            data_bytes: self.data_bytes,
            unmap_bytes: self.unmap_bytes,
        }
    }
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
