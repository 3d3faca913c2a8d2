//! Native record framing on the wire: the 40-byte record header, the END payload, and the writer
//! that numbers, counts and chains records.

use serde::Serialize;

use crate::ondisk::{on_disk, OnDisk};
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

on_disk!(RecordHeader, 36, { kind @ 0, flags @ 4, seq @ 8, offset @ 16, length @ 24, payload_crc @ 32 });

/// Where the header's own checksum (crc32c of the bytes before it) sits.
const HEADER_CRC_OFFSET: usize = 36;

impl RecordHeader {
    pub fn encode(&self) -> [u8; RECORD_HEADER_LEN] {
        let mut b = [0u8; RECORD_HEADER_LEN];
        OnDisk::pack(self, &mut b);
        crc32c::crc32c(&b[..HEADER_CRC_OFFSET]).pack(&mut b[HEADER_CRC_OFFSET..]);
        b
    }

    /// Decodes `b`, or returns `(stored, computed)` header checksums when they differ.
    pub fn decode(b: &[u8; RECORD_HEADER_LEN]) -> std::result::Result<Self, (u32, u32)> {
        let stored = u32::unpack(&b[HEADER_CRC_OFFSET..]);
        let computed = crc32c::crc32c(&b[..HEADER_CRC_OFFSET]);
        if stored != computed {
            return Err((stored, computed));
        }
        Ok(<RecordHeader as OnDisk>::unpack(b))
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

on_disk!(Counts, 40, { records @ 0, data_records @ 8, unmap_records @ 16, data_bytes @ 24, unmap_bytes @ 32 });
on_disk!(End, END_PAYLOAD_LEN, { stream_id @ 0, counts @ 16, chain @ 56 });

impl End {
    pub fn encode(&self) -> [u8; END_PAYLOAD_LEN] {
        let mut b = [0u8; END_PAYLOAD_LEN];
        OnDisk::pack(self, &mut b);
        b
    }

    pub fn decode(b: &[u8]) -> Option<Self> {
        (b.len() == END_PAYLOAD_LEN).then(|| <End as OnDisk>::unpack(b))
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
            resume: None,
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
