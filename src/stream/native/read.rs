//! Reading a native stream: framing (record header checksum, sequence, flags, kind, length limits,
//! target ranges and their order, payload checksum) in [`Framer`], apart from the dispatch of a framed
//! record to the sink (one case per record kind, [`read_records`]).

use super::codec::{End, RecordHeader};
use super::zdata::{Unpacker, ZSTD};
use super::{hex, parse_stream_id, Header, MAGIC, RECORD_HEADER_LEN};
use crate::error::Result;
use crate::stream::record::{self, RecordKind, OPTIONAL};
use crate::stream::{sink_error, stream_error, Counts, Format, Input, Located, Record, Sink, Start, Summary};

/// A record whose framing was checked and whose payload (in [`Framer::payload`]) was verified.
struct Frame {
    at: u64,
    h: RecordHeader,
    /// `None`: an optional kind this reader does not know.
    kind: Option<RecordKind>,
    name: String,
    raw: [u8; RECORD_HEADER_LEN],
}

struct Framer<'i> {
    input: &'i mut Input,
    seq: u64,
    /// Where the previous DATA/UNMAP ended (records come in ascending target order).
    prev_end: u64,
    /// From the HEADER, once read.
    volume_size: Option<u64>,
    payload: Vec<u8>,
    unpacker: Unpacker,
}

impl Framer<'_> {
    fn next(&mut self) -> Result<Frame> {
        let at = self.input.pos;
        let mut raw = [0u8; RECORD_HEADER_LEN];
        let n = self.input.fill(&mut raw)?;
        if n == 0 {
            let what = match self.volume_size {
                None => "Truncated stream: it ends after the magic, before the HEADER record".into(),
                Some(_) => format!(
                    "Truncated stream: it ends after {} records without an END record \
                     (the sender stopped or the stream was cut)",
                    self.seq
                ),
            };
            return Err(stream_error(at, what));
        }
        if n < RECORD_HEADER_LEN {
            return Err(stream_error(
                at,
                format!("Truncated stream: a record header is cut after {n} of {RECORD_HEADER_LEN} bytes"),
            ));
        }
        let h = RecordHeader::decode(&raw).map_err(|(stored, computed)| {
            stream_error(
                at,
                format!(
                    "record header checksum mismatch (stored {stored:#010x}, computed {computed:#010x}): \
                     the stream is corrupted"
                ),
            )
        })?;
        let name = record::native_name(h.kind);
        let kind = RecordKind::from_native(h.kind);
        self.check_header(at, &h, kind, &name)?;
        if kind.is_some_and(|k| k.spec().ranged) {
            self.check_range(at, h.offset, h.length, &name)?;
        }
        self.read_payload(at, &h, kind, &name)?;
        Ok(Frame { at, h, kind, name, raw })
    }

    /// Sequence, flags, position of the HEADER, kind and length limit.
    fn check_header(&self, at: u64, h: &RecordHeader, kind: Option<RecordKind>, name: &str) -> Result<()> {
        let seq = self.seq;
        if h.seq != seq {
            return Err(stream_error(
                at,
                format!(
                    "{name} record has sequence number {}, expected {seq}: a record is missing, \
                     repeated or out of order",
                    h.seq
                ),
            ));
        }
        if h.flags != 0 {
            return Err(stream_error(at, format!("{name} record has unknown flags {:#x}", h.flags)));
        }
        if seq == 0 && kind != Some(RecordKind::Header) {
            return Err(stream_error(at, format!("first record is {name}, expected HEADER")));
        }
        if kind.is_none() && h.kind & OPTIONAL == 0 {
            return Err(stream_error(
                at,
                format!("unknown record kind {:#x} that is not optional: the stream needs a newer receiver", h.kind),
            ));
        }
        let limit = record::native_limit(h.kind);
        if payload_len(h, kind) > limit {
            return Err(stream_error(
                at,
                format!("{name} record length {} exceeds the limit of {limit} bytes", h.length),
            ));
        }
        Ok(())
    }

    /// A target range: after the HEADER, not empty, inside the volume, after the previous one.
    fn check_range(&mut self, at: u64, offset: u64, length: u64, name: &str) -> Result<()> {
        let Some(volume_size) = self.volume_size else {
            return Err(stream_error(at, format!("{name} record before the HEADER")));
        };
        if length == 0 {
            return Err(stream_error(at, format!("{name} record with length 0 at target offset {offset}")));
        }
        match offset.checked_add(length) {
            Some(e) if e <= volume_size => {}
            _ => {
                return Err(stream_error(
                    at,
                    format!("{name} record [{offset}, +{length}) reaches past the volume size {volume_size}"),
                ))
            }
        }
        if offset < self.prev_end {
            return Err(stream_error(
                at,
                format!(
                    "{name} record at target offset {offset} overlaps or precedes the previous record, \
                     which ended at {}: records out of order",
                    self.prev_end
                ),
            ));
        }
        self.prev_end = offset + length;
        Ok(())
    }

    /// A ZDATA record's target range (from its payload's prefix), checked like DATA's, and its
    /// decompressed bytes.
    fn unpack(&mut self, at: u64, h: &RecordHeader, header: Option<&Header>) -> Result<&[u8]> {
        if header.is_some_and(|hd| hd.compression.as_deref() != Some(ZSTD)) {
            return Err(stream_error(at, "ZDATA record in a stream whose HEADER declares no compression"));
        }
        let bad = |e: String| stream_error(at, format!("ZDATA record (target offset {}): {e}", h.offset));
        let n = Unpacker::claimed(&self.payload).map_err(bad)?;
        self.check_range(at, h.offset, n, "ZDATA")?;
        self.unpacker.unpack(&self.payload).map_err(bad)
    }

    fn read_payload(&mut self, at: u64, h: &RecordHeader, kind: Option<RecordKind>, name: &str) -> Result<()> {
        // The limit was checked: the buffer is bounded by the record table, not by the stream.
        self.payload.resize(payload_len(h, kind) as usize, 0);
        let got = self.input.fill(&mut self.payload)?;
        if got < self.payload.len() {
            return Err(stream_error(
                at,
                format!(
                    "Truncated stream: the {name} record's payload is cut after {got} of {} bytes",
                    self.payload.len()
                ),
            ));
        }
        let computed = crc32c::crc32c(&self.payload);
        if computed != h.payload_crc {
            return Err(stream_error(
                at,
                format!(
                    "{name} record (target offset {}, length {}): payload checksum mismatch \
                     (stored {:#010x}, computed {computed:#010x}): the stream is corrupted",
                    h.offset, h.length, h.payload_crc
                ),
            ));
        }
        Ok(())
    }
}

fn payload_len(h: &RecordHeader, kind: Option<RecordKind>) -> u64 {
    match kind {
        Some(k) if !k.spec().has_payload => 0,
        _ => h.length,
    }
}

/// Reads the records after the magic (already consumed by the caller), validating each.
pub(crate) fn read_records(input: &mut Input, sink: &mut dyn Sink) -> Result<Summary> {
    let mut s = Summary { format: Some(Format::Native), ..Summary::default() };
    let mut chain = crc32c::crc32c(&MAGIC);
    let mut header: Option<Header> = None;
    let mut f =
        Framer { input, seq: 0, prev_end: 0, volume_size: None, payload: Vec::new(), unpacker: Unpacker::default() };
    loop {
        let fr = f.next()?;
        let (at, h) = (fr.at, fr.h);
        let on_sink = |e| sink_error(at, &fr.name, e);
        s.records += 1;
        let record = match fr.kind {
            Some(RecordKind::Header) => {
                if header.is_some() {
                    return Err(stream_error(at, "second HEADER record"));
                }
                let hd: Header = serde_json::from_slice(&f.payload)
                    .map_err(|e| stream_error(at, format!("HEADER record: bad JSON: {e}")))?;
                hd.validate().map_err(|e| stream_error(at, format!("HEADER record: {e}")))?;
                sink.start(&Start::new(Format::Native, Some(hd.clone()), None)).map_err(on_sink)?;
                f.volume_size = Some(hd.volume_size);
                s.header = Some(hd.clone());
                // A resumed stream carries nothing before its checkpoint.
                f.prev_end = hd.resume.as_ref().map_or(0, |r| r.from_offset);
                header = Some(hd);
                Record::Header { payload: h.length }
            }
            Some(RecordKind::Data) => {
                sink.data(h.offset, &f.payload).map_err(on_sink)?;
                s.data_records += 1;
                s.data_bytes += h.length;
                Record::Data { offset: h.offset, length: h.length }
            }
            Some(RecordKind::ZData) => {
                let bytes = f.unpack(at, &h, header.as_ref())?;
                let length = bytes.len() as u64;
                sink.data(h.offset, bytes).map_err(on_sink)?;
                s.data_records += 1;
                s.data_bytes += length;
                Record::ZData { offset: h.offset, length, payload: h.length }
            }
            Some(RecordKind::Unmap) => {
                sink.unmap(h.offset, h.length).map_err(on_sink)?;
                s.unmap_records += 1;
                s.unmap_bytes += h.length;
                Record::Unmap { offset: h.offset, length: h.length }
            }
            Some(RecordKind::End) => {
                check_end(at, &f.payload, header.as_ref(), &s, chain)?;
                let mut extra = [0u8; 1];
                let end_pos = f.input.pos;
                if f.input.fill(&mut extra)? != 0 {
                    return Err(stream_error(end_pos, "Trailing bytes after the END record"));
                }
                s.stream_bytes = f.input.pos;
                sink.record(&Located { at, record: Record::End { records: s.records } }).map_err(on_sink)?;
                sink.finish(&s).map_err(on_sink)?;
                return Ok(s);
            }
            // Kinds of the other format only, and optional kinds this reader does not know.
            Some(RecordKind::Begin | RecordKind::VolumeSize) | None => {
                s.optional_records += 1;
                Record::Optional { code: h.kind, length: h.length }
            }
        };
        chain = crc32c::crc32c_append(chain, &fr.raw);
        sink.record(&Located { at, record }).map_err(on_sink)?;
        f.seq += 1;
    }
}

/// The END record against the HEADER and what the stream held.
fn check_end(at: u64, payload: &[u8], header: Option<&Header>, s: &Summary, chain: u32) -> Result<()> {
    let end = End::decode(payload).ok_or_else(|| stream_error(at, "END record: payload is not 64 bytes"))?;
    let Some(hd) = header else {
        return Err(stream_error(at, "END record before the HEADER"));
    };
    if Some(end.stream_id) != parse_stream_id(&hd.stream_id) {
        return Err(stream_error(
            at,
            format!(
                "END record belongs to stream {}, but the HEADER says {}: two streams were mixed",
                hex(&end.stream_id),
                hd.stream_id
            ),
        ));
    }
    let (ours, theirs) = (s.counts(), end.counts);
    if ours != theirs {
        let show = |c: Counts| {
            format!("{}/{}/{}/{}/{}", c.records, c.data_records, c.unmap_records, c.data_bytes, c.unmap_bytes)
        };
        return Err(stream_error(
            at,
            format!(
                "END record counts differ from the stream: records/data/unmap/data bytes/unmap bytes: \
                 stream {}, END {}",
                show(ours),
                show(theirs)
            ),
        ));
    }
    if let Some(d) = hd.data_bytes.filter(|d| *d != theirs.data_bytes) {
        return Err(stream_error(
            at,
            format!("END record says {} data bytes, the HEADER announced {d}", theirs.data_bytes),
        ));
    }
    if end.chain != chain {
        return Err(stream_error(
            at,
            format!("END record chain checksum {:#010x} differs from the stream's {chain:#010x}", end.chain),
        ));
    }
    Ok(())
}
