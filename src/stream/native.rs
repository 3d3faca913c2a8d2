//! The native stream format (docs/STREAM.md): an 8-byte versioned magic, then records of a 40-byte
//! little-endian header (kind, flags, sequence number, offset, length, payload crc32c, header crc32c)
//! and a payload. HEADER (JSON identity) first, DATA/UNMAP in ascending target order, END last with
//! counts, totals and a checksum chained over every record header.

use serde::{Deserialize, Serialize};

use super::{sink_error, stream_error, Input, Located, Record, Sink, Start, Summary};
use crate::error::Result;

/// `\x89TSN\r\n\x1a` + format major version.
pub const MAGIC: [u8; 8] = [0x89, b'T', b'S', b'N', 0x0d, 0x0a, 0x1a, 0x01];
pub const VERSION: u32 = 1;
pub const RECORD_HEADER_LEN: usize = 40;

pub const KIND_HEADER: u32 = 1;
pub const KIND_DATA: u32 = 2;
pub const KIND_UNMAP: u32 = 3;
pub const KIND_END: u32 = 4;
/// Kinds with this bit set are optional: a reader that does not know them verifies and skips them.
pub const OPTIONAL: u32 = 0x8000_0000;

/// Largest DATA or optional payload a reader accepts (bounds its buffer).
pub const MAX_PAYLOAD: u64 = 16 << 20;
pub const MAX_HEADER_PAYLOAD: u64 = 1 << 20;
pub const END_PAYLOAD_LEN: usize = 64;

fn kind_name(kind: u32) -> String {
    match kind {
        KIND_HEADER => "HEADER".into(),
        KIND_DATA => "DATA".into(),
        KIND_UNMAP => "UNMAP".into(),
        KIND_END => "END".into(),
        k if k & OPTIONAL != 0 => format!("optional {k:#x}"),
        k => format!("unknown kind {k:#x}"),
    }
}

/// Which snapshot a stream was made from, or applies to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Identity {
    /// The pool superblock's uuid as 32 hex digits (all zeros in pools LVM made).
    pub pool_uuid: String,
    pub thin_id: u64,
    /// The device's transaction id (the pool transaction that last changed it).
    pub transaction: u64,
    pub creation_time: u32,
    pub snap_time: u32,
    pub mapped_blocks: u64,
    /// The pool's transaction id and time when the metadata was read (informational).
    pub pool_transaction: u64,
    pub pool_time: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vg_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lv_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vg_uuid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lv_uuid: Option<String>,
}

impl Identity {
    /// Whether both describe the same snapshot contents: same pool, thin id, creation time, device
    /// transaction and mapped block count, and the same LVM UUIDs where both know them.
    pub fn same_snapshot(&self, o: &Identity) -> bool {
        let opt = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.pool_uuid == o.pool_uuid
            && self.thin_id == o.thin_id
            && self.transaction == o.transaction
            && self.creation_time == o.creation_time
            && self.mapped_blocks == o.mapped_blocks
            && opt(&self.vg_uuid, &o.vg_uuid)
            && opt(&self.lv_uuid, &o.lv_uuid)
    }

    /// A short human description: `thin 2 (transaction 1, created at time 1) of pool 0000…`.
    pub fn describe(&self) -> String {
        let mut s = match (&self.vg_name, &self.lv_name) {
            (Some(vg), Some(lv)) => format!("{vg}/{lv} = thin {}", self.thin_id),
            _ => format!("thin {}", self.thin_id),
        };
        s.push_str(&format!(
            " (transaction {}, creation time {}, {} mapped blocks, pool {})",
            self.transaction, self.creation_time, self.mapped_blocks, self.pool_uuid
        ));
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The stream carries the whole volume: whatever it does not write reads as zeros.
    Full,
    /// The stream carries the changes from `base` to `source`.
    Incremental,
}

/// The HEADER record's JSON payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub version: u32,
    /// 32 hex digits, random per stream; END repeats it.
    pub stream_id: String,
    pub mode: Mode,
    /// Size of the volume in bytes; every DATA/UNMAP lies inside it.
    pub volume_size: u64,
    /// The source pool's data block size in bytes.
    pub block_size: u64,
    /// Seconds since the epoch when the stream was made (sender's clock).
    pub created: u64,
    pub sender: String,
    pub source: Identity,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base: Option<Identity>,
    /// Total DATA payload bytes the stream carries (for progress; END must agree).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_bytes: Option<u64>,
}

impl Header {
    fn validate(&self) -> std::result::Result<(), String> {
        if self.version != VERSION {
            return Err(format!("header version {} (expected {VERSION})", self.version));
        }
        if self.stream_id.len() != 32 || !self.stream_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("stream_id {:?} is not 32 hex digits", self.stream_id));
        }
        if self.block_size == 0 || self.block_size % 512 != 0 {
            return Err(format!("block_size {} is not a positive multiple of 512", self.block_size));
        }
        match (self.mode, &self.base) {
            (Mode::Incremental, None) => Err("incremental stream without a base identity".into()),
            (Mode::Full, Some(_)) => Err("full stream with a base identity".into()),
            _ => Ok(()),
        }
    }
}

/// The 16 stream-id bytes of a header's hex `stream_id`.
pub fn parse_stream_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

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
    pub records: u64,
    pub data_records: u64,
    pub unmap_records: u64,
    pub data_bytes: u64,
    pub unmap_bytes: u64,
    /// crc32c over the magic and every record header before END.
    pub chain: u32,
}

impl End {
    pub fn encode(&self) -> [u8; END_PAYLOAD_LEN] {
        let mut b = [0u8; END_PAYLOAD_LEN];
        b[0..16].copy_from_slice(&self.stream_id);
        b[16..24].copy_from_slice(&self.records.to_le_bytes());
        b[24..32].copy_from_slice(&self.data_records.to_le_bytes());
        b[32..40].copy_from_slice(&self.unmap_records.to_le_bytes());
        b[40..48].copy_from_slice(&self.data_bytes.to_le_bytes());
        b[48..56].copy_from_slice(&self.unmap_bytes.to_le_bytes());
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
            records: u64_at(16)?,
            data_records: u64_at(24)?,
            unmap_records: u64_at(32)?,
            data_bytes: u64_at(40)?,
            unmap_bytes: u64_at(48)?,
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
        self.end.records += 1;
        self.chain = crc32c::crc32c_append(self.chain, &h);
        h
    }

    /// The magic and the HEADER record.
    pub fn start(&mut self, header: &Header) -> Vec<u8> {
        let json = serde_json::to_vec(header).unwrap_or_default();
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&self.record(KIND_HEADER, 0, json.len() as u64, crc32c::crc32c(&json)));
        out.extend_from_slice(&json);
        out
    }

    /// The header of a DATA record whose payload (`length` bytes) has checksum `payload_crc`.
    pub fn data(&mut self, offset: u64, length: u64, payload_crc: u32) -> [u8; RECORD_HEADER_LEN] {
        self.end.data_records += 1;
        self.end.data_bytes += length;
        self.record(KIND_DATA, offset, length, payload_crc)
    }

    pub fn unmap(&mut self, offset: u64, length: u64) -> [u8; RECORD_HEADER_LEN] {
        self.end.unmap_records += 1;
        self.end.unmap_bytes += length;
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
        end.records += 1;
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

/// Reads the records after the magic (already consumed by the caller), validating each.
pub(crate) fn read_records(input: &mut Input, sink: &mut dyn Sink) -> Result<Summary> {
    let mut s = Summary { format: Some(super::Format::Native), ..Summary::default() };
    let mut chain = crc32c::crc32c(&MAGIC);
    let mut header: Option<Header> = None;
    let mut prev_end = 0u64;
    let mut buf: Vec<u8> = Vec::new();
    let mut seq = 0u64;
    loop {
        let at = input.pos;
        let mut hb = [0u8; RECORD_HEADER_LEN];
        let n = input.fill(&mut hb)?;
        if n == 0 {
            return Err(stream_error(
                at,
                match header {
                    None => "Truncated stream: it ends after the magic, before the HEADER record".into(),
                    Some(_) => format!(
                        "Truncated stream: it ends after {seq} records without an END record \
                         (the sender stopped or the stream was cut)"
                    ),
                },
            ));
        }
        if n < RECORD_HEADER_LEN {
            return Err(stream_error(
                at,
                format!("Truncated stream: a record header is cut after {n} of {RECORD_HEADER_LEN} bytes"),
            ));
        }
        let h = RecordHeader::decode(&hb).map_err(|(stored, computed)| {
            stream_error(
                at,
                format!(
                    "record header checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): \
                     the stream is corrupted"
                ),
            )
        })?;
        let kind = kind_name(h.kind);
        if h.seq != seq {
            return Err(stream_error(
                at,
                format!(
                    "{kind} record has sequence number {}, expected {seq}: a record is missing, \
                     repeated or out of order",
                    h.seq
                ),
            ));
        }
        if h.flags != 0 {
            return Err(stream_error(at, format!("{kind} record has unknown flags {:#x}", h.flags)));
        }
        if seq == 0 && h.kind != KIND_HEADER {
            return Err(stream_error(at, format!("first record is {kind}, expected HEADER")));
        }
        let known = matches!(h.kind, KIND_HEADER | KIND_DATA | KIND_UNMAP | KIND_END);
        if !known && h.kind & OPTIONAL == 0 {
            return Err(stream_error(
                at,
                format!("unknown record kind {:#x} that is not optional: the stream needs a newer receiver", h.kind),
            ));
        }
        let payload_len = if h.kind == KIND_UNMAP { 0 } else { h.length };
        let limit = match h.kind {
            KIND_HEADER => MAX_HEADER_PAYLOAD,
            KIND_END => END_PAYLOAD_LEN as u64,
            _ => MAX_PAYLOAD,
        };
        if payload_len > limit {
            return Err(stream_error(
                at,
                format!("{kind} record length {} exceeds the limit of {limit} bytes", h.length),
            ));
        }
        if h.kind == KIND_DATA || h.kind == KIND_UNMAP {
            let Some(hd) = &header else {
                return Err(stream_error(at, format!("{kind} record before the HEADER")));
            };
            let end = h.offset.checked_add(h.length);
            if h.length == 0 {
                return Err(stream_error(at, format!("{kind} record with length 0 at target offset {}", h.offset)));
            }
            match end {
                Some(e) if e <= hd.volume_size => {}
                _ => {
                    return Err(stream_error(
                        at,
                        format!(
                            "{kind} record [{}, +{}) reaches past the volume size {}",
                            h.offset, h.length, hd.volume_size
                        ),
                    ))
                }
            }
            if h.offset < prev_end {
                return Err(stream_error(
                    at,
                    format!(
                        "{kind} record at target offset {} overlaps or precedes the previous record, \
                         which ended at {prev_end}: records out of order",
                        h.offset
                    ),
                ));
            }
        }
        // Read and verify the payload.
        buf.resize(payload_len as usize, 0);
        let got = input.fill(&mut buf)?;
        if got < buf.len() {
            return Err(stream_error(
                at,
                format!("Truncated stream: the {kind} record's payload is cut after {got} of {} bytes", buf.len()),
            ));
        }
        let computed = crc32c::crc32c(&buf);
        if computed != h.payload_crc {
            return Err(stream_error(
                at,
                format!(
                    "{kind} record (target offset {}, length {}): payload checksum mismatch \
                     (stored {:#010x}, computed {computed:#010x}): the stream is corrupted",
                    h.offset, h.length, h.payload_crc
                ),
            ));
        }
        s.records += 1;
        let record = match h.kind {
            KIND_HEADER => {
                if header.is_some() {
                    return Err(stream_error(at, "second HEADER record"));
                }
                let hd: Header = serde_json::from_slice(&buf)
                    .map_err(|e| stream_error(at, format!("HEADER record: bad JSON: {e}")))?;
                hd.validate().map_err(|e| stream_error(at, format!("HEADER record: {e}")))?;
                sink.start(&Start { format: super::Format::Native, header: Some(hd.clone()) })
                    .map_err(|e| sink_error(at, &kind, e))?;
                header = Some(hd);
                Record::Header { payload: h.length }
            }
            KIND_DATA => {
                sink.data(h.offset, &buf).map_err(|e| sink_error(at, &kind, e))?;
                prev_end = h.offset + h.length;
                s.data_records += 1;
                s.data_bytes += h.length;
                Record::Data { offset: h.offset, length: h.length }
            }
            KIND_UNMAP => {
                sink.unmap(h.offset, h.length).map_err(|e| sink_error(at, &kind, e))?;
                prev_end = h.offset + h.length;
                s.unmap_records += 1;
                s.unmap_bytes += h.length;
                Record::Unmap { offset: h.offset, length: h.length }
            }
            KIND_END => {
                let end = End::decode(&buf).ok_or_else(|| stream_error(at, "END record: payload is not 64 bytes"))?;
                let Some(hd) = &header else {
                    return Err(stream_error(at, "END record before the HEADER"));
                };
                if Some(end.stream_id) != parse_stream_id(&hd.stream_id) {
                    return Err(stream_error(
                        at,
                        format!(
                            "END record belongs to stream {}, but the HEADER says {}: \
                             two streams were mixed",
                            hex(&end.stream_id),
                            hd.stream_id
                        ),
                    ));
                }
                let ours = (s.records, s.data_records, s.unmap_records, s.data_bytes, s.unmap_bytes);
                let theirs = (end.records, end.data_records, end.unmap_records, end.data_bytes, end.unmap_bytes);
                if ours != theirs {
                    return Err(stream_error(
                        at,
                        format!(
                            "END record counts differ from the stream: records/data/unmap/data bytes/unmap bytes: \
                             stream {}/{}/{}/{}/{}, END {}/{}/{}/{}/{}",
                            ours.0, ours.1, ours.2, ours.3, ours.4, theirs.0, theirs.1, theirs.2, theirs.3, theirs.4
                        ),
                    ));
                }
                if let Some(d) = hd.data_bytes.filter(|d| *d != end.data_bytes) {
                    return Err(stream_error(
                        at,
                        format!("END record says {} data bytes, the HEADER announced {d}", end.data_bytes),
                    ));
                }
                if end.chain != chain {
                    return Err(stream_error(
                        at,
                        format!(
                            "END record chain checksum {:#010x} differs from the stream's {chain:#010x}",
                            end.chain
                        ),
                    ));
                }
                let mut extra = [0u8; 1];
                let end_pos = input.pos;
                if input.fill(&mut extra)? != 0 {
                    return Err(stream_error(end_pos, "Trailing bytes after the END record"));
                }
                s.stream_bytes = input.pos;
                sink.record(&Located { at, record: Record::End { records: end.records } })
                    .map_err(|e| sink_error(at, &kind, e))?;
                sink.finish(&s).map_err(|e| sink_error(at, &kind, e))?;
                return Ok(s);
            }
            _ => {
                s.optional_records += 1;
                Record::Optional { code: h.kind, length: h.length }
            }
        };
        chain = crc32c::crc32c_append(chain, &hb);
        sink.record(&Located { at, record }).map_err(|e| sink_error(at, &kind, e))?;
        seq += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            records: 5,
            data_records: 2,
            unmap_records: 1,
            data_bytes: 131072,
            unmap_bytes: 65536,
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
        assert_eq!((e.records, e.data_records, e.unmap_records), (4, 1, 1));
        assert_eq!((e.data_bytes, e.unmap_bytes), (4096, 4096));
        let mut chain = crc32c::crc32c(&MAGIC);
        chain = crc32c::crc32c_append(chain, &start[8..8 + RECORD_HEADER_LEN]);
        chain = crc32c::crc32c_append(chain, &d);
        chain = crc32c::crc32c_append(chain, &u);
        assert_eq!(e.chain, chain);
        assert_eq!(parse_stream_id(&h.stream_id), Some([1; 16]));
    }
}
