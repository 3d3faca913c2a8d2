//! Hashing one side: the compared length cut into fine blocks, grouped into regions. A block's
//! digest is xxh3-128 or BLAKE3 of its bytes; a block the side does not map is all zeros and gets the zero
//! block's digest without being read. A region's digest is the same hash of its blocks' digests, so two
//! regions are equal exactly when all their blocks are. Regions are hashed in parallel (rayon),
//! each thread reading its regions in order, a chunk at a time.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::volume::Volume;
use crate::error::Result;

/// A block or region digest: 16 bytes of xxh3-128 (the rest zero) or 32 of BLAKE3.
pub type Digest = [u8; 32];

/// The hash both sides use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// xxh3-128 (the default): about four times cheaper than BLAKE3 per byte, so verify runs at the
    /// speed of reading; 2^-128 per block that an accidental difference goes unseen. Not proof
    /// against a replica crafted to collide.
    #[default]
    Xxh3,
    /// BLAKE3: cryptographic, for replicas someone may have written on purpose.
    Blake3,
}

impl Algorithm {
    pub fn digest(self, bytes: &[u8]) -> Digest {
        match self {
            Algorithm::Blake3 => *blake3::hash(bytes).as_bytes(),
            Algorithm::Xxh3 => {
                let mut d = [0u8; 32];
                d[..16].copy_from_slice(&xxhash_rust::xxh3::xxh3_128(bytes).to_le_bytes());
                d
            }
        }
    }

    /// Bytes of a digest on the wire.
    pub fn digest_len(self) -> usize {
        match self {
            Algorithm::Blake3 => 32,
            Algorithm::Xxh3 => 16,
        }
    }

    /// Its number in the verify protocol.
    pub fn id(self) -> u64 {
        match self {
            Algorithm::Xxh3 => 1,
            Algorithm::Blake3 => 2,
        }
    }

    pub fn from_id(id: u64) -> Option<Algorithm> {
        [Algorithm::Xxh3, Algorithm::Blake3].into_iter().find(|a| a.id() == id)
    }
}

/// Largest fine block and region, and the default region size.
pub const MAX_BLOCK: u64 = 64 << 20;
pub const MAX_REGION_BLOCKS: u64 = 1024;
const REGION_BYTES: u64 = 4 << 20;
/// Bytes read at a time: small enough that a chunk is still in the CPU's cache when it is hashed.
const CHUNK: u64 = 256 << 10;

/// How the compared bytes are cut: fine blocks of `block` bytes, `region_blocks` to a region,
/// over `[0, len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub alg: Algorithm,
    pub block: u64,
    pub region_blocks: u64,
    pub len: u64,
}

impl Layout {
    /// Fine blocks of `block` bytes (a multiple of 4096, at most 64 MiB) in regions of about 4 MiB.
    pub fn new(alg: Algorithm, block: u64, len: u64) -> std::result::Result<Layout, String> {
        let region_blocks = (REGION_BYTES / block.max(1)).clamp(1, MAX_REGION_BLOCKS);
        let l = Layout { alg, block, region_blocks, len };
        l.check()?;
        Ok(l)
    }

    /// Refuses a layout outside the limits (one a peer sent, too).
    pub fn check(&self) -> std::result::Result<(), String> {
        if self.block == 0 || self.block % 4096 != 0 || self.block > MAX_BLOCK {
            return Err(format!("block size {} is not a multiple of 4096 up to {MAX_BLOCK}", self.block));
        }
        if self.region_blocks == 0 || self.region_blocks > MAX_REGION_BLOCKS {
            return Err(format!("{} blocks per region is not in 1..={MAX_REGION_BLOCKS}", self.region_blocks));
        }
        Ok(())
    }

    pub fn region_bytes(&self) -> u64 {
        self.block * self.region_blocks
    }

    /// Number of regions over `[0, len)`.
    pub fn regions(&self) -> u64 {
        self.len.div_ceil(self.region_bytes())
    }

    /// Bytes `[lo, hi)` of region `r`.
    pub fn span(&self, r: u64) -> (u64, u64) {
        let lo = r.saturating_mul(self.region_bytes()).min(self.len);
        (lo, lo.saturating_add(self.region_bytes()).min(self.len))
    }
}

/// A region's digest and its blocks' digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hashed {
    pub region: Digest,
    pub fine: Vec<Digest>,
}

/// The digest of a region whose blocks have the digests `fine`.
pub fn region_digest(alg: Algorithm, fine: &[Digest]) -> Digest {
    let all: Vec<u8> = fine.iter().flat_map(|d| d[..alg.digest_len()].iter().copied()).collect();
    alg.digest(&all)
}

fn zero_digest(alg: Algorithm, len: u64) -> Digest {
    alg.digest(&vec![0u8; len as usize])
}

/// Hashes one side's regions; counts the bytes it reads.
pub struct Hasher<'a> {
    vol: &'a Volume,
    pub layout: Layout,
    zero: Digest,
    read: AtomicU64,
}

impl<'a> Hasher<'a> {
    pub fn new(vol: &'a Volume, layout: Layout) -> Self {
        Hasher { vol, layout, zero: zero_digest(layout.alg, layout.block), read: AtomicU64::new(0) }
    }

    /// Bytes read from the volume so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Regions `first..first+count` (clipped to the layout), in parallel: rayon hands each thread
    /// a contiguous run of regions, which it reads in order.
    pub fn batch(&self, first: u64, count: u64) -> Result<Vec<Hashed>> {
        let end = first.saturating_add(count).min(self.layout.regions());
        (first.min(end)..end).into_par_iter().map_init(Vec::new, |buf, r| self.region(r, buf)).collect()
    }

    /// Region `r`, read a chunk at a time into `buf` and hashed while the chunk is in the CPU's
    /// cache; blocks no mapped piece touches are zeros and are not read.
    pub fn region(&self, r: u64, buf: &mut Vec<u8>) -> Result<Hashed> {
        let (lo, hi) = self.layout.span(r);
        let b = self.layout.block;
        let pieces = self.vol.pieces(lo, hi);
        let nblocks = (hi - lo).div_ceil(b);
        let per = (CHUNK / b).max(1);
        let mut fine = Vec::with_capacity(nblocks as usize);
        let mut next = 0;
        let mut i = 0;
        while i < nblocks {
            let (clo, chi) = (lo + i * b, (lo + (i + per) * b).min(hi));
            while next < pieces.len() && pieces[next].end() <= clo {
                next += 1;
            }
            let inside: Vec<_> = pieces[next..].iter().take_while(|p| p.start < chi).collect();
            let mut touched = vec![false; (chi - clo).div_ceil(b) as usize];
            if !inside.is_empty() {
                buf.resize((chi - clo) as usize, 0);
                let covered: u64 = inside.iter().map(|p| p.end().min(chi) - p.start.max(clo)).sum();
                if covered < chi - clo {
                    buf.fill(0);
                }
                for p in inside {
                    let (s, e) = (p.start.max(clo), p.end().min(chi));
                    let at = (s - clo) as usize;
                    self.vol.read_at(&mut buf[at..at + (e - s) as usize], p.at + (s - p.start))?;
                    self.read.fetch_add(e - s, Ordering::Relaxed);
                    touched[((s - clo) / b) as usize..=((e - 1 - clo) / b) as usize].fill(true);
                }
            }
            for (k, t) in touched.iter().enumerate() {
                let s = k as u64 * b;
                let e = (s + b).min(chi - clo);
                fine.push(match (t, e - s == b) {
                    (true, _) => self.layout.alg.digest(&buf[s as usize..e as usize]),
                    (false, true) => self.zero,
                    (false, false) => zero_digest(self.layout.alg, e - s),
                });
            }
            i += per;
        }
        Ok(Hashed { region: region_digest(self.layout.alg, &fine), fine })
    }
}

#[cfg(test)]
mod tests {
    use super::super::volume::{Extent, Mapping};
    use super::*;
    use std::os::unix::fs::FileExt;

    fn volume(bytes: &[u8], mapping: Mapping) -> Volume {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(bytes, 0).unwrap();
        Volume { path: "t".into(), file: f, size: bytes.len() as u64, mapping }
    }

    #[test]
    fn unmapped_blocks_hash_as_zeros_without_being_read() {
        let mut data = vec![0u8; 3 * 4096 + 100];
        data[5000] = 7;
        let all = volume(&data, Mapping::All);
        let sparse = volume(&data, Mapping::Extents(vec![Extent { start: 4096, len: 4096, at: 4096 }]));
        let l = Layout { alg: Algorithm::Blake3, block: 4096, region_blocks: 2, len: data.len() as u64 };
        let (a, s) = (Hasher::new(&all, l), Hasher::new(&sparse, l));
        assert_eq!(a.batch(0, 10).unwrap(), s.batch(0, 10).unwrap(), "zeros read or not hash alike");
        assert_eq!(s.bytes_read(), 4096, "only the mapped block is read");
        assert_eq!(a.bytes_read(), data.len() as u64);
        assert_eq!(l.regions(), 2);
        assert_eq!(a.batch(0, 10).unwrap()[1].fine.len(), 2, "the partial last block counts");
    }

    #[test]
    fn one_changed_byte_changes_its_block_and_region_only() {
        let data = vec![3u8; 4 * 4096];
        let mut other = data.clone();
        other[4096 * 3 + 9] = 4;
        let (x, y) = (volume(&data, Mapping::All), volume(&other, Mapping::All));
        for alg in [Algorithm::Xxh3, Algorithm::Blake3] {
            let l = Layout { alg, block: 4096, region_blocks: 2, len: data.len() as u64 };
            let (hx, hy) = (Hasher::new(&x, l).batch(0, 2).unwrap(), Hasher::new(&y, l).batch(0, 2).unwrap());
            assert_eq!(hx[0], hy[0], "{alg:?}");
            assert_ne!(hx[1].region, hy[1].region, "{alg:?}");
            assert_eq!(hx[1].fine[0], hy[1].fine[0], "{alg:?}");
            assert_ne!(hx[1].fine[1], hy[1].fine[1], "{alg:?}");
        }
        assert_eq!(Algorithm::Xxh3.digest(b"x")[16..], [0u8; 16], "16 bytes of xxh3-128");
        assert_eq!(Algorithm::from_id(Algorithm::Blake3.id()), Some(Algorithm::Blake3));
        assert_eq!(Algorithm::from_id(0), None);
    }

    #[test]
    fn pieces_inside_a_chunk_are_read_at_their_file_offsets() {
        // Two pieces inside one 16 KiB block, stored elsewhere in the file: the block's digest is
        // that of the bytes placed at their volume offsets, zeros between.
        let mut file = vec![0u8; 1 << 20];
        file[100_000..100_100].fill(5);
        file[200_000..200_050].fill(6);
        let ext = vec![
            Extent { start: 16384 + 10, len: 100, at: 100_000 },
            Extent { start: 16384 + 1000, len: 50, at: 200_000 },
        ];
        let v = volume(&file, Mapping::Extents(ext));
        let mut want = vec![0u8; 16384];
        want[10..110].fill(5);
        want[1000..1050].fill(6);
        let l = Layout { alg: Algorithm::Xxh3, block: 16384, region_blocks: 4, len: 65536 };
        let h = Hasher::new(&v, l);
        let got = h.batch(0, 1).unwrap();
        assert_eq!(got[0].fine[1], Algorithm::Xxh3.digest(&want));
        assert_eq!(got[0].fine[0], Algorithm::Xxh3.digest(&[0u8; 16384]));
        assert_eq!(h.bytes_read(), 150);
    }

    #[test]
    fn layouts_outside_the_limits_are_refused() {
        assert!(Layout::new(Algorithm::Xxh3, 65536, 1 << 30).is_ok());
        assert_eq!(Layout::new(Algorithm::Xxh3, 65536, 0).unwrap().regions(), 0);
        for b in [0, 1000, 128 << 20] {
            assert!(Layout::new(Algorithm::Xxh3, b, 1 << 30).is_err(), "{b}");
        }
        assert!(Layout { alg: Algorithm::Xxh3, block: 4096, region_blocks: 5000, len: 1 }.check().is_err());
    }
}
