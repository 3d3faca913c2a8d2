//! Native record framing on the wire: the 40-byte record header, the END payload, and the writer
//! that numbers, counts and chains records.

use serde::Serialize;

use crate::stream::Counts;

use super::super::writer::RecordWriter;
use super::{
    Header, END_PAYLOAD_LEN, KIND_DATA, KIND_END, KIND_HEADER, KIND_UNMAP, MAGIC, OPTIONAL, RECORD_HEADER_LEN,
};

/// A decoded record header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordHeader {
    pub kind: u32,
    pub flags: u32,
    pub seq: u64,
    pub offset: u64,
    pub length: u64,
    pub payload_crc: u32,
}

impl RecordHeader {
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut b = [0u8; RECORD_HEADER_LEN];
        b[0..4].copy_from_slice(&self.kind.to_le_bytes());
        b[4..8].copy_from_slice(&self.flags.to_le_bytes());
        b[8..16].copy_from_slice(&self.seq.to_le_bytes());
        b[16..24].copy_from_slice(&self.offset.to_le_bytes());
        b[24..32].copy_from_slice(&self.length.to_le_bytes());
        b[32..36].copy_from_slice(&self.payload_crc.to_le_bytes());
        let crc = crc32c::crc32c(&b[..36]);
        b[36..40].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Decodes `b`, or returns `(stored, computed)` header checksums when they differ.
    pub fn decode(b: &[u8; RECORD_HEADER_LEN]) -> std::result::Result<Self, (u32, u32)> {
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let u64_at = |o: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[o..o + 8]);
            u64::from_le_bytes(a)
        };
        let stored = u32_at(36);
        let computed = crc32c::crc32c(&b[..36]);
        if stored != computed {
            return Err((stored, computed));
        }
        Ok(RecordHeader {
            kind: u32_at(0),
            flags: u32_at(4),
            seq: u64_at(8),
            offset: u64_at(16),
            length: u64_at(24),
            payload_crc: u32_at(32),
        })
    }
}

/// The END record's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct End {
    #[serde(skip)]
    pub stream_id: [u8; 16],
    /// All records of the stream, HEADER and END included.
    #[serde(flatten)]
    pub counts: Counts,
    /// crc32c over the magic and every record header before END.
    pub chain: u32,
}

impl End {
    pub fn encode(&self) -> [u8; END_PAYLOAD_LEN] {
        let mut b = [0u8; END_PAYLOAD_LEN];
        b[0..16].copy_from_slice(&self.stream_id);
        let c = &self.counts;
        b[16..24].copy_from_slice(&c.records.to_le_bytes());
        b[24..32].copy_from_slice(&c.data_records.to_le_bytes());
        b[32..40].copy_from_slice(&c.unmap_records.to_le_bytes());
        b[40..48].copy_from_slice(&c.data_bytes.to_le_bytes());
        b[48..56].copy_from_slice(&c.unmap_bytes.to_le_bytes());
        b[56..60].copy_from_slice(&self.chain.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        if b.len() != END_PAYLOAD_LEN {
            return None;
        }
        let u64_at = |o: usize| -> Option<u64> { Some(u64::from_le_bytes(b.get(o..o + 8)?.try_into().ok()?)) };
        let mut stream_id = [0u8; 16];
        stream_id.copy_from_slice(b.get(0..16)?);
        Some(End {
            stream_id,
            counts: Counts {
                records: u64_at(16)?,
                data_records: u64_at(24)?,
                unmap_records: u64_at(32)?,
                data_bytes: u64_at(40)?,
                unmap_bytes: u64_at(48)?,
            },
            chain: u32::from_le_bytes(b.get(56..60)?.try_into().ok()?),
        })
    }
}

/// Builds a native stream's bytes record by record, keeping the sequence, counts and chain.
pub struct Writer {
    stream_id: [u8; 16],
    seq: u64,
    chain: u32,
    end: End,
}

impl Writer {
    pub fn new(stream_id: [u8; 16]) -> Self {
        Writer { stream_id, seq: 0, chain: crc32c::crc32c(&MAGIC), end: End::default() }
    }

    fn record(&mut self, kind: u32, offset: u64, length: u64, payload_crc: u32) -> [u8; RECORD_HEADER_LEN] {
        let h = RecordHeader { kind, flags: 0, seq: self.seq, offset, length, payload_crc }.encode();
        self.seq += 1;
        self.chain = crc32c::crc32c_append(self.chain, &h);
        h
    }

    /// The magic and the HEADER record.
    pub fn start(&mut self, header: &Header) -> Vec<u8> {
        // A Header is plain strings and numbers: serializing it cannot fail.
        let json = serde_json::to_vec(header).unwrap_or_else(|_| b"null".to_vec());
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&self.record(KIND_HEADER, 0, json.len() as u64, crc32c::crc32c(&json)));
        out.extend_from_slice(&json);
        out
    }

    /// The header of a DATA record whose payload (`length` bytes) has checksum `payload_crc`.
    pub fn data(&mut self, offset: u64, length: u64, payload_crc: u32) -> [u8; RECORD_HEADER_LEN] {
        self.end.counts.add_data(length);
        self.record(KIND_DATA, offset, length, payload_crc)
    }

    pub fn unmap(&mut self, offset: u64, length: u64) -> [u8; RECORD_HEADER_LEN] {
        self.end.counts.add_unmap(length);
        self.record(KIND_UNMAP, offset, length, 0)
    }

    /// An optional record (kind must have [`OPTIONAL`] set) with its payload.
    pub fn optional(&mut self, kind: u32, payload: &[u8]) -> Vec<u8> {
        let mut out = self.record(kind | OPTIONAL, 0, payload.len() as u64, crc32c::crc32c(payload)).to_vec();
        out.extend_from_slice(payload);
        out
    }

    /// The END record; the writer is done.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut end = self.end;
        // Records so far (HEADER, DATA, UNMAP, optional) and END itself.
        end.counts.records = self.seq + 1;
        end.stream_id = self.stream_id;
        end.chain = self.chain;
        let payload = end.encode();
        let mut out = self.record(KIND_END, 0, END_PAYLOAD_LEN as u64, crc32c::crc32c(&payload)).to_vec();
        out.extend_from_slice(&payload);
        out
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.seq
    }
}

/// A native [`Writer`] with the HEADER it opens with, as a [`RecordWriter`].
pub struct Encoder {
    w: Writer,
    header: Header,
}

impl Encoder {
    pub fn new(header: Header, stream_id: [u8; 16]) -> Self {
        Encoder { w: Writer::new(stream_id), header }
    }
}

impl RecordWriter for Encoder {
    fn start(&mut self) -> Vec<u8> {
        self.w.start(&self.header)
    }
    fn checksummed(&self) -> bool {
        true
    }
    fn data(&mut self, offset: u64, len: u64, payload_crc: u32) -> Vec<u8> {
        self.w.data(offset, len, payload_crc).to_vec()
    }
    fn unmap(&mut self, offset: u64, len: u64) -> Vec<u8> {
        self.w.unmap(offset, len).to_vec()
    }
    fn end(&mut self) -> Vec<u8> {
        self.w.finish()
    }
    fn records(&self) -> u64 {
        self.w.records()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::native::{hex, parse_stream_id, Identity, Mode, VERSION};

    #[test]
    fn record_header_round_trips_and_detects_any_flipped_bit() {
        let h = RecordHeader {
            kind: KIND_DATA,
            flags: 0,
            seq: 7,
            offset: 1 << 40,
            length: 65536,
            payload_crc: 0xdead_beef,
        };
        let b = h.encode();
        assert_eq!(RecordHeader::decode(&b), Ok(h));
        for bit in 0..RECORD_HEADER_LEN * 8 {
            let mut d = b;
            d[bit / 8] ^= 1 << (bit % 8);
            assert!(RecordHeader::decode(&d).is_err(), "bit {bit} flip not detected");
        }
    }

    #[test]
    fn end_payload_round_trips() {
        let e = End {
            stream_id: [9; 16],
            counts: Counts { records: 5, data_records: 2, unmap_records: 1, data_bytes: 131072, unmap_bytes: 65536 },
            chain: 0x1234_5678,
        };
        assert_eq!(End::decode(&e.encode()), Some(e));
        assert_eq!(End::decode(&[0u8; 63]), None);
    }

    #[test]
    fn writer_counts_and_chains_every_record() {
        let mut w = Writer::new([1; 16]);
        let h = Header {
            version: VERSION,
            stream_id: hex(&[1; 16]),
            mode: Mode::Full,
            volume_size: 1 << 20,
            block_size: 65536,
            created: 0,
            sender: "test".into(),
            source: Identity::default(),
            base: None,
            data_bytes: Some(4096),
        };
        let start = w.start(&h);
        assert_eq!(&start[..8], &MAGIC);
        let d = w.data(0, 4096, crc32c::crc32c(&[0u8; 4096]));
        let u = w.unmap(4096, 4096);
        let end = w.finish();
        let e = End::decode(&end[RECORD_HEADER_LEN..]).unwrap();
        let want = Counts { records: 4, data_records: 1, unmap_records: 1, data_bytes: 4096, unmap_bytes: 4096 };
        assert_eq!(e.counts, want);
        let mut chain = crc32c::crc32c(&MAGIC);
        chain = crc32c::crc32c_append(chain, &start[8..8 + RECORD_HEADER_LEN]);
        chain = crc32c::crc32c_append(chain, &d);
        chain = crc32c::crc32c_append(chain, &u);
        assert_eq!(e.chain, chain);
        assert_eq!(parse_stream_id(&h.stream_id), Some([1; 16]));
    }
}
