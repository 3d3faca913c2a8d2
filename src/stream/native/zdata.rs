//! ZDATA records (docs/STREAM.md §1.8): a DATA payload as one zstd frame (content size and content
//! checksum on) after its uncompressed length, a u64 little-endian. [`Packer`] makes them for the
//! sender, [`Unpacker`] undoes them for the reader without trusting the length it claims beyond the
//! record limit.

use zstd::bulk::{Compressor, Decompressor};
use zstd::zstd_safe::DParameter;

use super::MAX_PAYLOAD;
pub use crate::stream::record::ZDATA_PREFIX_LEN;

/// The HEADER's `compression` value for ZDATA records.
pub const ZSTD: &str = "zstd";

const PREFIX: usize = ZDATA_PREFIX_LEN as usize;

/// A zstd window large enough for any record (16 MiB): a frame asking for more is refused instead
/// of making the reader allocate it.
const WINDOW_LOG_MAX: u32 = 24;

/// Compresses record payloads at one zstd level.
pub struct Packer {
    c: Compressor<'static>,
    /// Where the probes of [`Packer::worth_trying`] are compressed.
    probe: Vec<u8>,
}

/// A record at least this long is probed before it is compressed whole.
const PROBE_FROM: usize = 256 << 10;
/// Probes: this many bytes at each of these fractions of the record.
const PROBE_LEN: usize = 16 << 10;
const PROBES: usize = 4;

impl Packer {
    pub fn new(level: i32) -> std::io::Result<Self> {
        let mut c = Compressor::new(level)?;
        c.include_checksum(true)?;
        c.include_contentsize(true)?;
        Ok(Packer { c, probe: Vec::new() })
    }

    /// Whether `raw` may shrink: a long record is compressed whole only if one of [`PROBES`] samples
    /// of it (at its start and at each quarter) shrinks by 3 % or more. Incompressible data (random,
    /// already compressed, encrypted) then costs a sixteenth of a failed attempt at the whole.
    fn worth_trying(&mut self, raw: &[u8]) -> bool {
        if raw.len() < PROBE_FROM {
            return true;
        }
        self.probe.resize(PROBE_LEN + PROBE_LEN / 2, 0);
        (0..PROBES).any(|i| {
            let at = raw.len() / PROBES * i;
            let sample = &raw[at..(at + PROBE_LEN).min(raw.len())];
            match self.c.compress_to_buffer(sample, &mut self.probe) {
                Ok(n) => n < sample.len() / 100 * 97,
                Err(_) => false,
            }
        })
    }

    /// Appends `raw`'s ZDATA payload to `out` when it is smaller than `raw` and returns its
    /// length; `None` (and `out` as it was) when it is not, or when its probes say it will not
    /// be: the record goes raw.
    pub fn pack(&mut self, raw: &[u8], out: &mut Vec<u8>) -> Option<usize> {
        let room = raw.len().checked_sub(PREFIX + 1).filter(|r| *r > 0)?;
        if !self.worth_trying(raw) {
            return None;
        }
        let base = out.len();
        out.resize(base + PREFIX + room, 0);
        match self.c.compress_to_buffer(raw, &mut out[base + PREFIX..]) {
            Ok(n) => {
                out[base..base + PREFIX].copy_from_slice(&(raw.len() as u64).to_le_bytes());
                out.truncate(base + PREFIX + n);
                Some(PREFIX + n)
            }
            // Mostly "destination buffer is too small": it does not shrink.
            Err(_) => {
                out.truncate(base);
                None
            }
        }
    }
}

/// Decompresses ZDATA payloads into a buffer bounded by the record limit.
#[derive(Default)]
pub struct Unpacker {
    d: Option<Decompressor<'static>>,
    out: Vec<u8>,
}

impl Unpacker {
    /// The uncompressed length a ZDATA payload claims (checked against the record limit).
    pub fn claimed(payload: &[u8]) -> Result<u64, String> {
        let Some(prefix) = payload.get(..PREFIX) else {
            return Err(format!("payload of {} bytes is shorter than its {PREFIX}-byte length", payload.len()));
        };
        let mut b = [0u8; PREFIX];
        b.copy_from_slice(prefix);
        let n = u64::from_le_bytes(b);
        if n == 0 || n > MAX_PAYLOAD {
            return Err(format!("claims {n} uncompressed bytes, outside 1..={MAX_PAYLOAD}"));
        }
        Ok(n)
    }

    /// The target bytes of a ZDATA payload: exactly the claimed length, or an error.
    pub fn unpack(&mut self, payload: &[u8]) -> Result<&[u8], String> {
        let n = Self::claimed(payload)? as usize;
        let d = match &mut self.d {
            Some(d) => d,
            None => {
                let mut d = Decompressor::new().map_err(|e| format!("zstd: {e}"))?;
                d.set_parameter(DParameter::WindowLogMax(WINDOW_LOG_MAX)).map_err(|e| format!("zstd: {e}"))?;
                self.d.insert(d)
            }
        };
        self.out.resize(n, 0);
        let got = d
            .decompress_to_buffer(&payload[PREFIX..], &mut self.out[..n])
            .map_err(|e| format!("its zstd frame does not decompress into the {n} bytes its length claims ({e})"))?;
        if got != n {
            return Err(format!("its zstd frame decompresses to {got} bytes, its length claims {n}"));
        }
        Ok(&self.out[..n])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(n: usize) -> Vec<u8> {
        (0..n).map(|i| b"thin volumes, "[i % 14]).collect()
    }

    fn noise(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    #[test]
    fn a_long_record_is_compressed_whole_when_any_probe_shrinks() {
        let mut p = Packer::new(3).unwrap();
        let n = 1 << 20;
        let mut z = Vec::new();
        assert_eq!(p.pack(&noise(n, 1), &mut z), None, "all probes incompressible: raw");
        assert!(z.is_empty());
        // Text only in the third quarter: one probe shrinks, so the whole record is compressed.
        let mut mixed = noise(n, 2);
        mixed[n / 2..n * 3 / 4].copy_from_slice(&text(n / 4));
        let w = p.pack(&mixed, &mut z).expect("a probe shrank: compressed");
        assert!(w < n * 9 / 10, "{w}");
        assert_eq!(Unpacker::default().unpack(&z).unwrap(), &mixed[..]);
        // Text only between the probes: not found, sent raw (the price of probing).
        let mut hidden = noise(n, 3);
        hidden[PROBE_LEN..n / 4].copy_from_slice(&text(n / 4 - PROBE_LEN));
        assert_eq!(p.pack(&hidden, &mut Vec::new()), None);
    }

    #[test]
    fn compressible_payloads_round_trip_and_incompressible_ones_are_refused() {
        let mut p = Packer::new(3).unwrap();
        let raw = text(65536);
        let mut z = vec![7u8; 3];
        let n = p.pack(&raw, &mut z).unwrap();
        assert_eq!(z.drain(..3).collect::<Vec<_>>(), [7, 7, 7], "appended after what was there");
        assert_eq!(n, z.len());
        assert!(z.len() < raw.len() / 10, "{}", z.len());
        assert_eq!(Unpacker::claimed(&z), Ok(65536));
        assert_eq!(Unpacker::default().unpack(&z).unwrap(), &raw[..]);
        // xorshift bytes do not shrink: sent raw.
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let noise: Vec<u8> = (0..65536)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let before = z.clone();
        assert_eq!(p.pack(&noise, &mut z), None);
        assert_eq!(p.pack(&[0u8; 8], &mut z), None, "too short to gain anything");
        assert_eq!(z, before);
    }

    #[test]
    fn a_lying_length_or_a_frame_larger_than_it_claims_is_refused_without_allocating_it() {
        let mut p = Packer::new(3).unwrap();
        let raw = text(65536);
        let mut z = Vec::new();
        assert!(p.pack(&raw, &mut z).is_some());
        let mut u = Unpacker::default();
        for claim in [65535u64, 65537, 1] {
            let mut l = z.clone();
            l[..8].copy_from_slice(&claim.to_le_bytes());
            let e = u.unpack(&l).unwrap_err();
            assert!(e.contains("claims") || e.contains("decompress"), "{claim}: {e}");
        }
        for claim in [0u64, MAX_PAYLOAD + 1, u64::MAX] {
            let mut l = z.clone();
            l[..8].copy_from_slice(&claim.to_le_bytes());
            assert!(u.unpack(&l).unwrap_err().contains("outside"), "{claim}");
        }
        assert!(u.unpack(&z[..5]).unwrap_err().contains("shorter"));
        // A bomb: 64 MiB of zeros in a tiny frame, claiming the limit.
        let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 3).unwrap();
        let mut l = MAX_PAYLOAD.to_le_bytes().to_vec();
        l.extend_from_slice(&bomb);
        assert!(u.unpack(&l).unwrap_err().contains("does not decompress"), "bomb");
        assert!(u.out.len() as u64 <= MAX_PAYLOAD);
    }
}
