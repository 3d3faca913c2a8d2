//! `heal`: the differing ranges of a comparison as a native stream: DATA where the source maps
//! bytes, UNMAP where it does not, for the source's volume size. The stream is an incremental whose
//! base is the source itself ("whatever the target held, this makes it the source"), applied with
//! the receiver's `force`, so it goes through the atomic receive and records the source as the
//! target's new base.

use std::os::fd::RawFd;

use super::compare::Range;
use super::volume::Volume;
use crate::error::{Error, Result};
use crate::io as sys;
use crate::stream::native::{self, Header, Mode};
use crate::stream::{self, Format};

/// Largest DATA payload a heal stream writes.
const RECORD: u64 = 1 << 20;

/// One record of a heal stream: DATA from file byte `at`, or UNMAP (`at == None`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rec {
    pub offset: u64,
    pub len: u64,
    pub at: Option<u64>,
}

/// The records that make `ranges` of the target equal the source (clipped to the source's size:
/// past it, the receiver cuts the target to the volume size).
pub fn records(src: &Volume, ranges: &[Range]) -> Vec<Rec> {
    let mut out = Vec::new();
    for r in ranges {
        let (lo, hi) = (r.offset.min(src.size), r.offset.saturating_add(r.length).min(src.size));
        let mut pos = lo;
        for p in src.pieces(lo, hi) {
            if p.start > pos {
                out.push(Rec { offset: pos, len: p.start - pos, at: None });
            }
            let mut done = 0;
            while done < p.len {
                let len = RECORD.min(p.len - done);
                out.push(Rec { offset: p.start + done, len, at: Some(p.at + done) });
                done += len;
            }
            pos = p.start + p.len;
        }
        if hi > pos {
            out.push(Rec { offset: pos, len: hi - pos, at: None });
        }
    }
    out
}

/// The header of a heal stream that makes a target equal `source` (the identity `send` would give).
pub fn header(source: native::Identity, volume_size: u64, block_size: u64, recs: &[Rec]) -> Result<Header> {
    let mut id = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut id))
        .map_err(|e| Error::io("/dev/urandom", e))?;
    Ok(Header {
        version: native::VERSION,
        stream_id: native::hex(&id),
        mode: Mode::Incremental,
        volume_size,
        block_size,
        created: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        sender: format!("thinsend-native {} heal", env!("CARGO_PKG_VERSION")),
        base: Some(source.clone()),
        source,
        data_bytes: Some(recs.iter().filter(|r| r.at.is_some()).map(|r| r.len).sum()),
        compression: None,
        resume: None,
    })
}

/// Writes the stream of `recs` from `src` to `out`; returns the stream bytes written.
pub fn write_stream(src: &Volume, header: &Header, recs: &[Rec], out: RawFd) -> Result<u64> {
    let id = native::parse_stream_id(&header.stream_id).ok_or_else(|| Error::Other("bad stream id".into()))?;
    let mut w = stream::writer(Format::Native, header, id, Some(header.volume_size));
    let mut written = 0u64;
    let mut put = |b: &[u8]| -> Result<()> {
        written += b.len() as u64;
        sys::write_all(out, b).map_err(|e| Error::io("<heal stream>", e))
    };
    put(&w.start())?;
    let mut buf = Vec::new();
    for r in recs {
        match r.at {
            Some(at) => {
                buf.resize(r.len as usize, 0);
                src.read_at(&mut buf, at)?;
                put(&w.data(r.offset, r.len, crc32c::crc32c(&buf)))?;
                put(&buf)?;
            }
            None => put(&w.unmap(r.offset, r.len))?,
        }
    }
    put(&w.end())?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::super::volume::{Extent, Mapping};
    use super::*;

    #[test]
    fn ranges_become_data_where_mapped_and_unmap_elsewhere() {
        let f = tempfile::tempfile().unwrap();
        let ext = vec![Extent { start: 4096, len: 3 << 20, at: 65536 }];
        let v = Volume { path: "t".into(), file: f, size: 8 << 20, mapping: Mapping::Extents(ext) };
        let recs = records(&v, &[Range { offset: 0, length: 2 << 20 }, Range { offset: 7 << 20, length: 4 << 20 }]);
        assert_eq!(
            recs,
            vec![
                Rec { offset: 0, len: 4096, at: None },
                Rec { offset: 4096, len: 1 << 20, at: Some(65536) },
                Rec { offset: 4096 + (1 << 20), len: (1 << 20) - 4096, at: Some(65536 + (1 << 20)) },
                Rec { offset: 7 << 20, len: 1 << 20, at: None },
            ],
            "clipped to the source's size"
        );
    }
}
