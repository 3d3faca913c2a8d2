//! Reading a LINBIT stream: chunk framing (magic, truncation, the END marker's place and counts) and
//! the dispatch of each chunk by its kind in the record table.

use crate::error::Result;
use crate::stream::record::RecordKind;
use crate::stream::{sink_error, stream_error, Format, Input, Located, Record, Sink, Start, Summary};

use super::{CHUNK_LEN, CMD_OPTIONAL, STATS_LEN};

fn be64(b: &[u8], o: usize) -> u64 {
    let mut a = [0u8; 8];
    if let Some(s) = b.get(o..o + 8) {
        a.copy_from_slice(s);
    }
    u64::from_be_bytes(a)
}

/// Payloads move in pieces this large, so receive progress advances within a long chunk.
const PIECE: usize = 1 << 20;
const SPLICE_PIECE: u64 = 8 << 20;

/// One chunk header, framed.
struct Chunk {
    at: u64,
    offset: u64,
    length: u64,
    cmd: u32,
}

/// The sink is started once the stream's volume size is known: at the first chunk that is neither
/// BEGIN nor VOLUME_SIZE. Records read before that are reported right after the start.
struct Starter {
    format: Format,
    started: bool,
    volume_size: Option<u64>,
    held: Vec<Located>,
}

impl Starter {
    fn start(&mut self, at: u64, what: &str, sink: &mut dyn Sink) -> Result<()> {
        if !self.started {
            self.started = true;
            let at = self.held.first().map_or(at, |l| l.at);
            sink.start(&Start::new(self.format, None, self.volume_size)).map_err(|e| sink_error(at, what, e))?;
            for rec in std::mem::take(&mut self.held) {
                sink.record(&rec).map_err(|e| sink_error(rec.at, "chunk", e))?;
            }
        }
        Ok(())
    }
}

/// Reads chunks after the first eight bytes (`first`, the first chunk's magic, already consumed).
pub(crate) fn read_chunks(input: &mut Input, format: Format, first: [u8; 8], sink: &mut dyn Sink) -> Result<Summary> {
    let magic = u64::from_be_bytes(first);
    let v11 = format == Format::Linbit11;
    let mut s = Summary { format: Some(format), ..Summary::default() };
    let mut seen_begin = false;
    let mut seen_end = false;
    let mut st = Starter { format, started: false, volume_size: None, held: Vec::new() };
    let mut buf: Vec<u8> = Vec::new();
    let mut prefix = Some(first);
    while let Some(c) = next_chunk(input, &mut prefix, magic, seen_end)? {
        let Chunk { at, offset, length, cmd } = c;
        s.records += 1;
        let kind = RecordKind::from_linbit(cmd);
        if !v11 && kind != Some(RecordKind::Data) && kind != Some(RecordKind::Unmap) {
            return Err(stream_error(at, format!("Old format stream containing unknown cmd chunk ({cmd:#x})")));
        }
        if v11 && !seen_begin && kind != Some(RecordKind::Begin) {
            return Err(stream_error(at, format!("First chunk is not BEGIN_STREAM (cmd {cmd:#x}) in a 1.1 stream")));
        }
        if !matches!(kind, Some(RecordKind::Begin | RecordKind::VolumeSize)) {
            st.start(at, "BEGIN", sink)?;
        }
        let record = match kind {
            Some(RecordKind::Data) => {
                check_range(at, "DATA", offset, length, st.volume_size)?;
                copy_data(input, sink, offset, length, &mut buf, at)?;
                s.data_records += 1;
                s.data_bytes += length;
                Record::Data { offset, length }
            }
            Some(RecordKind::Unmap) => {
                check_range(at, "UNMAP", offset, length, st.volume_size)?;
                sink.unmap(offset, length).map_err(|e| sink_error(at, "UNMAP", e))?;
                s.unmap_records += 1;
                s.unmap_bytes += length;
                Record::Unmap { offset, length }
            }
            Some(RecordKind::Begin) => {
                if seen_begin {
                    return Err(stream_error(at, "BEGIN_STREAM marker in the middle of the stream"));
                }
                seen_begin = true;
                Record::Begin
            }
            Some(RecordKind::VolumeSize) => {
                let size = volume_size(input, &c, &st)?;
                st.volume_size = Some(size);
                s.optional_records += 1;
                Record::VolumeSize { size }
            }
            Some(RecordKind::End) => {
                end_marker(input, &c, &s)?;
                seen_end = true;
                Record::End { records: s.records }
            }
            Some(RecordKind::Header | RecordKind::ZData) | None if cmd & CMD_OPTIONAL != 0 => {
                sink.warn(&format!("Unrecognized optional chunk {cmd:#x}, length {length}"));
                skip(input, length, &mut buf, at)?;
                s.optional_records += 1;
                Record::Optional { code: cmd, length }
            }
            Some(RecordKind::Header | RecordKind::ZData) | None => {
                return Err(stream_error(at, format!("Unrecognized chunk (cmd {cmd:#x})")));
            }
        };
        let rec = Located { at, record };
        if st.started {
            sink.record(&rec).map_err(|e| sink_error(at, "chunk", e))?;
        } else {
            st.held.push(rec);
        }
    }
    if v11 && !seen_end {
        return Err(stream_error(input.pos, "Missing END_STREAM marker."));
    }
    st.start(input.pos, "END", sink)?;
    s.stream_bytes = input.pos;
    sink.finish(&s).map_err(|e| sink_error(input.pos, "END", e))?;
    Ok(s)
}

/// The next chunk header, `None` at a clean end of input.
fn next_chunk(input: &mut Input, prefix: &mut Option<[u8; 8]>, magic: u64, seen_end: bool) -> Result<Option<Chunk>> {
    let mut hb = [0u8; CHUNK_LEN];
    let (at, got) = match prefix.take() {
        Some(p) => {
            hb[..8].copy_from_slice(&p);
            (0, 8 + input.fill(&mut hb[8..])?)
        }
        None => (input.pos, input.fill(&mut hb)?),
    };
    if got == 0 {
        return Ok(None);
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
    let cmd = u32::from_be_bytes([hb[24], hb[25], hb[26], hb[27]]);
    Ok(Some(Chunk { at, offset: be64(&hb, 8), length: be64(&hb, 16), cmd }))
}

/// A DATA/UNMAP range: no overflow, and inside the volume when the stream gave its size.
fn check_range(at: u64, what: &str, offset: u64, length: u64, volume_size: Option<u64>) -> Result<()> {
    let Some(end) = offset.checked_add(length) else {
        return Err(stream_error(at, format!("{what} chunk range {offset}+{length} overflows")));
    };
    match volume_size {
        Some(vs) if end > vs => Err(stream_error(
            at,
            format!("{what} chunk [{offset}, +{length}) reaches past the volume size {vs} of its VOLUME_SIZE chunk"),
        )),
        _ => Ok(()),
    }
}

/// The VOLUME_SIZE chunk's payload; it must come right after BEGIN.
fn volume_size(input: &mut Input, c: &Chunk, st: &Starter) -> Result<u64> {
    if st.volume_size.is_some() {
        return Err(stream_error(c.at, "second VOLUME_SIZE chunk"));
    }
    if st.started {
        return Err(stream_error(
            c.at,
            "VOLUME_SIZE chunk after the first DATA or UNMAP (it belongs right after BEGIN)",
        ));
    }
    if c.offset != 0 || c.length != 8 {
        return Err(stream_error(
            c.at,
            format!("VOLUME_SIZE chunk with offset {} and length {} (expected 0 and 8)", c.offset, c.length),
        ));
    }
    let mut b = [0u8; 8];
    let got = input.fill(&mut b)?;
    if got < b.len() {
        return Err(stream_error(c.at, format!("Truncated input, bytes expected: 8, got: {got} (VOLUME_SIZE)")));
    }
    Ok(u64::from_be_bytes(b))
}

/// END_STREAM: its place, its statistics and their agreement with the stream.
fn end_marker(input: &mut Input, c: &Chunk, s: &Summary) -> Result<()> {
    let (at, offset, length) = (c.at, c.offset, c.length);
    if offset != 0 || length != STATS_LEN {
        return Err(stream_error(
            at,
            format!("END_STREAM marker with offset {offset} and length {length} (expected 0 and {STATS_LEN})"),
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
    Ok(())
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
    if length == 0 {
        // Writes nothing, but its offset goes to the sink like any range's: one past the volume is
        // refused whatever the target (the copy loop below would never call the sink).
        return sink.data(offset, &[]).map_err(|e| sink_error(at, "DATA", e));
    }
    let target =
        if input.pipe { sink.splice_target(offset, length).map_err(|e| sink_error(at, "DATA", e))? } else { None };
    if let Some(out) = target {
        let mut done = 0u64;
        while done < length {
            let n = (length - done).min(SPLICE_PIECE);
            let moved = input
                .splice_to(out, offset + done, n)
                .map_err(|e| stream_error(at, format!("DATA chunk at target offset {offset}: splice: {e}")))?;
            sink.spliced(offset + done, moved);
            done += moved;
            if moved < n {
                return Err(missing(done));
            }
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

#[cfg(test)]
mod tests {
    use super::super::{CMD_BEGIN, CMD_DATA, CMD_END, MAGIC_11};
    use crate::stream::{self, ReadOptions, Start, Summary};
    use std::os::fd::AsRawFd;

    /// Records the DATA calls; refuses ranges past `limit`, as a target does.
    struct Ranges {
        limit: u64,
        calls: Vec<(u64, usize)>,
    }

    impl stream::Sink for Ranges {
        fn start(&mut self, _: &Start) -> crate::error::Result<()> {
            Ok(())
        }
        fn data(&mut self, offset: u64, bytes: &[u8]) -> crate::error::Result<()> {
            self.calls.push((offset, bytes.len()));
            match offset.checked_add(bytes.len() as u64) {
                Some(e) if e <= self.limit => Ok(()),
                _ => Err(stream::stream_error(offset, "past the end")),
            }
        }
        fn unmap(&mut self, _: u64, _: u64) -> crate::error::Result<()> {
            Ok(())
        }
        fn finish(&mut self, _: &Summary) -> crate::error::Result<()> {
            Ok(())
        }
    }

    fn chunk(off: u64, len: u64, cmd: u32) -> Vec<u8> {
        [MAGIC_11.to_be_bytes(), off.to_be_bytes(), len.to_be_bytes()]
            .concat()
            .into_iter()
            .chain(cmd.to_be_bytes())
            .collect()
    }

    #[test]
    fn an_empty_data_chunk_past_the_volume_reaches_the_sink_and_is_refused() {
        let mut st = chunk(0, 0, CMD_BEGIN);
        st.extend(chunk(1 << 60, 0, CMD_DATA));
        st.extend(chunk(0, 24, CMD_END));
        st.extend([3u64, 1, 0].iter().flat_map(|v| v.to_be_bytes()));
        let mut f = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut f, &st).unwrap();
        std::io::Seek::rewind(&mut f).unwrap();
        let mut sink = Ranges { limit: 1 << 20, calls: vec![] };
        let r = stream::read(f.as_raw_fd(), &ReadOptions::default(), &mut sink);
        assert_eq!(sink.calls, [(1 << 60, 0)], "the empty chunk's range was never checked");
        assert!(r.is_err(), "an empty DATA chunk past the volume was accepted");
    }
}
