//! The writer both formats implement: the sender hands it records and gets their framing bytes back,
//! without knowing which format it writes. The stream size `--dry-run` reports is measured with the
//! same writers, so framing sizes live only in the formats' codecs.

use super::native::{self, Header};
use super::{linbit, Format};

/// Framing of one stream, record by record. DATA payloads are written by the caller after the bytes
/// [`RecordWriter::data`] returns.
pub trait RecordWriter {
    /// The bytes that open the stream (magic and HEADER, or BEGIN and what follows it).
    fn start(&mut self) -> Vec<u8>;
    /// Whether a DATA header carries its payload's crc32c (the payload is read before its header).
    fn checksummed(&self) -> bool;
    /// The header of a DATA record of `len` payload bytes for target `[offset, offset+len)`.
    fn data(&mut self, offset: u64, len: u64, payload_crc: u32) -> Vec<u8>;
    fn unmap(&mut self, offset: u64, len: u64) -> Vec<u8>;
    /// The closing record; the writer is done.
    fn end(&mut self) -> Vec<u8>;
    /// Records written so far.
    fn records(&self) -> u64;
}

/// The writer for `format`: native streams open with `header`; LINBIT 1.1 streams carry
/// `volume_size` in an optional chunk when it is known.
pub fn writer(format: Format, header: &Header, stream_id: [u8; 16], volume_size: Option<u64>) -> Box<dyn RecordWriter> {
    match format {
        Format::Native => Box::new(native::Encoder::new(header.clone(), stream_id)),
        Format::Linbit11 | Format::Linbit10 => Box::new(linbit::Writer::new(volume_size)),
    }
}
