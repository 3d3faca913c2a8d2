//! LINBIT thin-send-recv wire formats 1.1 and 1.0 (docs/linbit-thin-send-recv.md §2): 28-byte
//! big-endian chunk headers `magic, offset, length, cmd`, raw DATA payloads, no checksums. Reading
//! follows thin_recv 1.1.3's rules and messages; writing produces what thin_send 1.1.3 produces, plus
//! an optional VOLUME_SIZE chunk after BEGIN when the sender knows the volume size (docs/STREAM.md).

mod read;

pub(crate) use read::read_chunks;

use super::record::{self, RecordKind};
use super::writer::RecordWriter;
use super::Format;

pub const MAGIC_11: u64 = 0x24C4_F02A_AE2E_4FA9;
pub const MAGIC_10: u64 = 0xCA7F_00D5_DE7E_C7ED;
/// Streams of thin-send-recv before 1.0.1 (24-byte headers, 32-bit lengths).
pub const MAGIC_OLD: u64 = 0xE85B_C563_6CC7_2A05;
pub const CHUNK_LEN: usize = 28;
pub const STATS_LEN: u64 = record::LINBIT_STATS_LEN;

// The record kinds' chunk commands, from the record table.
pub const CMD_DATA: u32 = cmd(RecordKind::Data);
pub const CMD_UNMAP: u32 = cmd(RecordKind::Unmap);
pub const CMD_BEGIN: u32 = cmd(RecordKind::Begin);
pub const CMD_END: u32 = cmd(RecordKind::End);
pub const CMD_VOLUME_SIZE: u32 = cmd(RecordKind::VolumeSize);
pub const CMD_OPTIONAL: u32 = record::OPTIONAL;

const fn cmd(k: RecordKind) -> u32 {
    match record::linbit_cmd_const(k) {
        Some(c) => c,
        None => panic!("record kind without a LINBIT command"),
    }
}

/// The format a stream's first eight bytes announce, or the message refusing it.
pub fn format_of(first: &[u8]) -> std::result::Result<Format, String> {
    let Some(m) = first.get(..8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes) else {
        return Err(format!("Truncated input, bytes expected: {CHUNK_LEN}, got: {}", first.len()));
    };
    match m {
        MAGIC_11 => Ok(Format::Linbit11),
        MAGIC_10 => Ok(Format::Linbit10),
        MAGIC_OLD => Err(format!(
            "Stream magic {MAGIC_OLD:#018X} is the format of thin-send-recv before 1.0.1, whose 32-bit \
             lengths corrupted ranges of 4 GiB and more; it is not accepted. Re-send with a current \
             sender (thin-send-recv >= 1.0.1 or thinsend-native)"
        )),
        m => Err(format!(
            "Magic value mismatch, encountered unknown value {m:#018X} (not a thinsend-native or \
             thin-send-recv stream)"
        )),
    }
}

/// One chunk header.
pub fn chunk(magic: u64, offset: u64, length: u64, cmd: u32) -> [u8; CHUNK_LEN] {
    let mut b = [0u8; CHUNK_LEN];
    b[0..8].copy_from_slice(&magic.to_be_bytes());
    b[8..16].copy_from_slice(&offset.to_be_bytes());
    b[16..24].copy_from_slice(&length.to_be_bytes());
    b[24..28].copy_from_slice(&cmd.to_be_bytes());
    b
}

/// Builds a 1.1 stream the way thin_send 1.1.3 does: BEGIN, one chunk per range, END with counts;
/// with a known volume size, a VOLUME_SIZE chunk right after BEGIN (thin_recv skips it).
#[derive(Debug, Default)]
pub struct Writer {
    pub n_data: u64,
    pub n_unmap: u64,
    /// Optional chunks written (counted in END's n_chunks, as thin_recv counts every chunk).
    pub n_optional: u64,
    pub volume_size: Option<u64>,
    ended: bool,
}

impl Writer {
    pub fn new(volume_size: Option<u64>) -> Self {
        Writer { volume_size, ..Writer::default() }
    }

    pub fn begin(&mut self) -> [u8; CHUNK_LEN] {
        chunk(MAGIC_11, 0, 0, CMD_BEGIN)
    }

    /// The VOLUME_SIZE chunk and its payload (the size, 8 bytes big-endian).
    pub fn volume_size(&mut self, size: u64) -> Vec<u8> {
        self.n_optional += 1;
        let mut out = chunk(MAGIC_11, 0, 8, CMD_VOLUME_SIZE).to_vec();
        out.extend_from_slice(&size.to_be_bytes());
        out
    }

    pub fn data(&mut self, offset: u64, length: u64) -> [u8; CHUNK_LEN] {
        self.n_data += 1;
        chunk(MAGIC_11, offset, length, CMD_DATA)
    }

    pub fn unmap(&mut self, offset: u64, length: u64) -> [u8; CHUNK_LEN] {
        self.n_unmap += 1;
        chunk(MAGIC_11, offset, length, CMD_UNMAP)
    }

    /// END and its stats (n_chunks counts BEGIN, END and optional chunks).
    pub fn end(&mut self) -> Vec<u8> {
        self.ended = true;
        let mut out = chunk(MAGIC_11, 0, STATS_LEN, CMD_END).to_vec();
        out.extend_from_slice(&self.chunks().to_be_bytes());
        out.extend_from_slice(&self.n_data.to_be_bytes());
        out.extend_from_slice(&self.n_unmap.to_be_bytes());
        out
    }

    fn chunks(&self) -> u64 {
        self.n_data + self.n_unmap + self.n_optional + 2
    }
}

impl RecordWriter for Writer {
    fn start(&mut self) -> Vec<u8> {
        let mut out = self.begin().to_vec();
        if let Some(size) = self.volume_size {
            out.extend(self.volume_size(size));
        }
        out
    }
    fn checksummed(&self) -> bool {
        false
    }
    fn data(&mut self, offset: u64, len: u64, _payload_crc: u32) -> Vec<u8> {
        Writer::data(self, offset, len).to_vec()
    }
    fn unmap(&mut self, offset: u64, len: u64) -> Vec<u8> {
        Writer::unmap(self, offset, len).to_vec()
    }
    fn end(&mut self) -> Vec<u8> {
        Writer::end(self)
    }
    fn records(&self) -> u64 {
        // BEGIN is always written; END once [`Writer::end`] ran.
        self.chunks() - u64::from(!self.ended)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_size_the_writer_frames_like_thin_send() {
        let mut w = Writer::new(None);
        let mut s = RecordWriter::start(&mut w);
        assert_eq!(s, chunk(MAGIC_11, 0, 0, CMD_BEGIN));
        s.extend(RecordWriter::data(&mut w, 0, 65536, 0));
        s.extend(RecordWriter::unmap(&mut w, 65536, 65536));
        s.extend(RecordWriter::end(&mut w));
        assert_eq!(s.len(), 4 * CHUNK_LEN + STATS_LEN as usize);
        let stats = &s[s.len() - 24..];
        assert_eq!(stats, [4u64, 1, 1].iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<_>>());
    }

    #[test]
    fn a_known_size_travels_in_a_counted_optional_chunk_after_begin() {
        let mut w = Writer::new(Some(3 << 20));
        let s = RecordWriter::start(&mut w);
        assert_eq!(&s[CHUNK_LEN..2 * CHUNK_LEN], chunk(MAGIC_11, 0, 8, 0x8054_5301));
        assert_eq!(&s[2 * CHUNK_LEN..], (3u64 << 20).to_be_bytes());
        assert_eq!(CMD_VOLUME_SIZE & CMD_OPTIONAL, CMD_OPTIONAL, "old receivers must be able to skip it");
        let end = RecordWriter::end(&mut w);
        assert_eq!(&end[CHUNK_LEN..CHUNK_LEN + 8], 3u64.to_be_bytes(), "n_chunks counts BEGIN, VOLUME_SIZE, END");
    }
}
