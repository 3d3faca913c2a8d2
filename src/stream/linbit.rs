//! LINBIT thin-send-recv wire formats 1.1 and 1.0 (docs/linbit-thin-send-recv.md §2): 28-byte
//! big-endian chunk headers `magic, offset, length, cmd`, raw DATA payloads, no checksums. Reading
//! follows thin_recv 1.1.3's rules and messages; writing produces what thin_send 1.1.3 produces.

use super::{sink_error, stream_error, Format, Input, Located, Record, Sink, Summary};
use crate::error::Result;

pub const MAGIC_11: u64 = 0x24C4_F02A_AE2E_4FA9;
pub const MAGIC_10: u64 = 0xCA7F_00D5_DE7E_C7ED;
/// Streams of thin-send-recv before 1.0.1 (24-byte headers, 32-bit lengths).
pub const MAGIC_OLD: u64 = 0xE85B_C563_6CC7_2A05;
pub const CHUNK_LEN: usize = 28;
pub const STATS_LEN: u64 = 24;

pub const CMD_DATA: u32 = 0;
pub const CMD_UNMAP: u32 = 1;
pub const CMD_BEGIN: u32 = 2;
pub const CMD_END: u32 = 3;
pub const CMD_OPTIONAL: u32 = 0x8000_0000;

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

/// Builds a 1.1 stream the way thin_send 1.1.3 does: BEGIN, one chunk per range, END with counts.
#[derive(Debug, Default)]
pub struct Writer {
    pub n_data: u64,
    pub n_unmap: u64,
}

impl Writer {
    pub fn begin(&mut self) -> [u8; CHUNK_LEN] {
        chunk(MAGIC_11, 0, 0, CMD_BEGIN)
    }

    pub fn data(&mut self, offset: u64, length: u64) -> [u8; CHUNK_LEN] {
        self.n_data += 1;
        chunk(MAGIC_11, offset, length, CMD_DATA)
    }

    pub fn unmap(&mut self, offset: u64, length: u64) -> [u8; CHUNK_LEN] {
        self.n_unmap += 1;
        chunk(MAGIC_11, offset, length, CMD_UNMAP)
    }

    /// END and its stats (n_chunks counts BEGIN and END).
    pub fn end(&mut self) -> Vec<u8> {
        let mut out = chunk(MAGIC_11, 0, STATS_LEN, CMD_END).to_vec();
        out.extend_from_slice(&(self.n_data + self.n_unmap + 2).to_be_bytes());
        out.extend_from_slice(&self.n_data.to_be_bytes());
        out.extend_from_slice(&self.n_unmap.to_be_bytes());
        out
    }
}

fn be64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(o..o + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

const PIECE: usize = 1 << 20;

/// Reads chunks after the first eight bytes (`first`, the first chunk's magic, already consumed).
pub(crate) fn read_chunks(input: &mut Input, format: Format, first: [u8; 8], sink: &mut dyn Sink) -> Result<Summary> {
    let magic = u64::from_be_bytes(first);
    let v11 = format == Format::Linbit11;
    let mut s = Summary { format: Some(format), ..Summary::default() };
    let mut seen_begin = false;
    let mut seen_end = false;
    let mut started = false;
    let mut buf: Vec<u8> = Vec::new();
    let mut prefix = Some(first);
    loop {
        let mut hb = [0u8; CHUNK_LEN];
        let (at, got) = match prefix.take() {
            Some(p) => {
                hb[..8].copy_from_slice(&p);
                (0, 8 + input.fill(&mut hb[8..])?)
            }
            None => (input.pos, input.fill(&mut hb)?),
        };
        if got == 0 {
            break;
        }
        if got < CHUNK_LEN {
            return Err(stream_error(
                at,
                if seen_end {
                    "Trailing garbage beyond END_STREAM marker.".to_string()
                } else {
                    format!("Truncated input, bytes expected: {CHUNK_LEN}, got: {got}")
                },
            ));
        }
        if seen_end {
            return Err(stream_error(at, "Stream continued beyond END_STREAM marker"));
        }
        let m = be64(&hb, 0);
        if m != magic {
            return Err(stream_error(at, format!("Magic value mismatch, expected {magic:#018X}, found {m:#018X}")));
        }
        let offset = be64(&hb, 8);
        let length = be64(&hb, 16);
        let cmd = u32::from_be_bytes([hb[24], hb[25], hb[26], hb[27]]);
        s.records += 1;
        if !v11 && cmd != CMD_DATA && cmd != CMD_UNMAP {
            return Err(stream_error(at, format!("Old format stream containing unknown cmd chunk ({cmd:#x})")));
        }
        if v11 && !seen_begin && cmd != CMD_BEGIN {
            return Err(stream_error(at, format!("First chunk is not BEGIN_STREAM (cmd {cmd:#x}) in a 1.1 stream")));
        }
        if !started && (cmd == CMD_DATA || cmd == CMD_UNMAP) {
            sink.start(&super::Start { format, header: None }).map_err(|e| sink_error(at, "BEGIN", e))?;
            started = true;
        }
        let record = match cmd {
            CMD_DATA => {
                if offset.checked_add(length).is_none() {
                    return Err(stream_error(at, format!("DATA chunk range {offset}+{length} overflows")));
                }
                copy_data(input, sink, offset, length, &mut buf, at)?;
                s.data_records += 1;
                s.data_bytes += length;
                Record::Data { offset, length }
            }
            CMD_UNMAP => {
                if offset.checked_add(length).is_none() {
                    return Err(stream_error(at, format!("UNMAP chunk range {offset}+{length} overflows")));
                }
                sink.unmap(offset, length).map_err(|e| sink_error(at, "UNMAP", e))?;
                s.unmap_records += 1;
                s.unmap_bytes += length;
                Record::Unmap { offset, length }
            }
            CMD_BEGIN => {
                if seen_begin {
                    return Err(stream_error(at, "BEGIN_STREAM marker in the middle of the stream"));
                }
                seen_begin = true;
                if !started {
                    sink.start(&super::Start { format, header: None }).map_err(|e| sink_error(at, "BEGIN", e))?;
                    started = true;
                }
                Record::Begin
            }
            CMD_END => {
                if offset != 0 || length != STATS_LEN {
                    return Err(stream_error(
                        at,
                        format!(
                            "END_STREAM marker with offset {offset} and length {length} \
                             (expected 0 and {STATS_LEN})"
                        ),
                    ));
                }
                let mut stats = [0u8; STATS_LEN as usize];
                let got = input.fill(&mut stats)?;
                if got < stats.len() {
                    return Err(stream_error(
                        at,
                        format!("Truncated input, bytes expected: {STATS_LEN}, got: {got} (END_STREAM statistics)"),
                    ));
                }
                let (chunks, data, unmap) = (be64(&stats, 0), be64(&stats, 8), be64(&stats, 16));
                if (chunks, data, unmap) != (s.records, s.data_records, s.unmap_records) {
                    return Err(stream_error(
                        at,
                        format!(
                            "END_STREAM marker mismatch: chunks/unmap/data: stream: {}/{}/{}, marker: {chunks}/{unmap}/{data}",
                            s.records, s.unmap_records, s.data_records
                        ),
                    ));
                }
                seen_end = true;
                Record::End { records: chunks }
            }
            c if c & CMD_OPTIONAL != 0 => {
                sink.warn(&format!("Unrecognized optional chunk {c:#x}, length {length}"));
                skip(input, length, &mut buf, at)?;
                s.optional_records += 1;
                Record::Optional { code: c, length }
            }
            c => {
                return Err(stream_error(at, format!("Unrecognized chunk (cmd {c:#x})")));
            }
        };
        sink.record(&Located { at, record }).map_err(|e| sink_error(at, "chunk", e))?;
    }
    if v11 && !seen_end {
        return Err(stream_error(input.pos, "Missing END_STREAM marker."));
    }
    if !started {
        sink.start(&super::Start { format, header: None }).map_err(|e| sink_error(input.pos, "END", e))?;
    }
    s.stream_bytes = input.pos;
    sink.finish(&s).map_err(|e| sink_error(input.pos, "END", e))?;
    Ok(s)
}

fn copy_data(
    input: &mut Input,
    sink: &mut dyn Sink,
    offset: u64,
    length: u64,
    buf: &mut Vec<u8>,
    at: u64,
) -> Result<()> {
    let missing = |done: u64| stream_error(at, format!("Incomplete copy_data, {} bytes missing.", length - done));
    let target =
        if input.pipe { sink.splice_target(offset, length).map_err(|e| sink_error(at, "DATA", e))? } else { None };
    if let Some(out) = target {
        let done = input
            .splice_to(out, offset, length)
            .map_err(|e| stream_error(at, format!("DATA chunk at target offset {offset}: splice: {e}")))?;
        sink.spliced(offset, done);
        if done < length {
            return Err(missing(done));
        }
        return Ok(());
    }
    let mut done = 0u64;
    while done < length {
        let n = (length - done).min(PIECE as u64) as usize;
        buf.resize(n, 0);
        let got = input.fill(buf)?;
        if got > 0 {
            sink.data(offset + done, &buf[..got]).map_err(|e| sink_error(at, "DATA", e))?;
        }
        done += got as u64;
        if got < n {
            return Err(missing(done));
        }
    }
    Ok(())
}

fn skip(input: &mut Input, length: u64, buf: &mut Vec<u8>, at: u64) -> Result<()> {
    let mut done = 0u64;
    while done < length {
        let n = (length - done).min(PIECE as u64) as usize;
        buf.resize(n, 0);
        let got = input.fill(buf)?;
        done += got as u64;
        if got < n {
            return Err(stream_error(
                at,
                format!("Truncated input: optional chunk payload, {} bytes missing.", length - done),
            ));
        }
    }
    Ok(())
}
