//! Hashing one side: the compared length cut into fine blocks, grouped into regions. A block's
//! digest is BLAKE3 of its bytes; a block the side does not map is all zeros and gets the zero
//! block's digest without being read. A region's digest is BLAKE3 of its blocks' digests, so two
//! regions are equal exactly when all their blocks are. Regions are hashed in parallel (rayon),
//! each with one large read per mapped piece.

use std::sync::atomic::{AtomicU64, Ordering};

use rayon::prelude::*;

use super::volume::Volume;
use crate::error::Result;

/// A BLAKE3 digest.
pub type Digest = [u8; 32];

/// Largest fine block and region, and the default region size.
pub const MAX_BLOCK: u64 = 64 << 20;
pub const MAX_REGION_BLOCKS: u64 = 1024;
const REGION_BYTES: u64 = 4 << 20;

/// How the compared bytes are cut: fine blocks of `block` bytes, `region_blocks` to a region,
/// over `[0, len)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    pub block: u64,
    pub region_blocks: u64,
    pub len: u64,
}

impl Layout {
    /// Fine blocks of `block` bytes (a multiple of 4096, at most 64 MiB) in regions of about 4 MiB.
    pub fn new(block: u64, len: u64) -> std::result::Result<Layout, String> {
        let region_blocks = (REGION_BYTES / block.max(1)).clamp(1, MAX_REGION_BLOCKS);
        let l = Layout { block, region_blocks, len };
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
pub fn region_digest(fine: &[Digest]) -> Digest {
    let mut h = blake3::Hasher::new();
    for d in fine {
        h.update(d);
    }
    *h.finalize().as_bytes()
}

fn zero_digest(len: u64) -> Digest {
    *blake3::hash(&vec![0u8; len as usize]).as_bytes()
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
        Hasher { vol, layout, zero: zero_digest(layout.block), read: AtomicU64::new(0) }
    }

    /// Bytes read from the volume so far.
    pub fn bytes_read(&self) -> u64 {
        self.read.load(Ordering::Relaxed)
    }

    /// Regions `first..first+count` (clipped to the layout), in parallel.
    pub fn batch(&self, first: u64, count: u64) -> Result<Vec<Hashed>> {
        let end = first.saturating_add(count).min(self.layout.regions());
        (first.min(end)..end).into_par_iter().map_init(Vec::new, |buf, r| self.region(r, buf)).collect()
    }

    /// Region `r`: each mapped piece read once into `buf`, unmapped blocks taken as zeros.
    pub fn region(&self, r: u64, buf: &mut Vec<u8>) -> Result<Hashed> {
        let (lo, hi) = self.layout.span(r);
        let b = self.layout.block;
        let nblocks = (hi - lo).div_ceil(b) as usize;
        let pieces = self.vol.pieces(lo, hi);
        let mut touched = vec![false; nblocks];
        if !pieces.is_empty() {
            buf.resize((hi - lo) as usize, 0);
            let whole = pieces.len() == 1 && pieces[0].start == lo && pieces[0].len == hi - lo;
            if !whole {
                buf.fill(0);
            }
            for p in &pieces {
                let at = (p.start - lo) as usize;
                self.vol.read_at(&mut buf[at..at + p.len as usize], p.at)?;
                self.read.fetch_add(p.len, Ordering::Relaxed);
                let (first, last) = ((p.start - lo) / b, (p.start - lo + p.len - 1) / b);
                touched[first as usize..=last as usize].fill(true);
            }
        }
        let fine = (0..nblocks)
            .map(|i| {
                let s = i as u64 * b;
                let e = (s + b).min(hi - lo);
                match (touched[i], e - s == b) {
                    (true, _) => *blake3::hash(&buf[s as usize..e as usize]).as_bytes(),
                    (false, true) => self.zero,
                    (false, false) => zero_digest(e - s),
                }
            })
            .collect::<Vec<_>>();
        Ok(Hashed { region: region_digest(&fine), fine })
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
        let l = Layout { block: 4096, region_blocks: 2, len: data.len() as u64 };
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
        let l = Layout { block: 4096, region_blocks: 2, len: data.len() as u64 };
        let (x, y) = (volume(&data, Mapping::All), volume(&other, Mapping::All));
        let (hx, hy) = (Hasher::new(&x, l).batch(0, 2).unwrap(), Hasher::new(&y, l).batch(0, 2).unwrap());
        assert_eq!(hx[0], hy[0]);
        assert_ne!(hx[1].region, hy[1].region);
        assert_eq!(hx[1].fine[0], hy[1].fine[0]);
        assert_ne!(hx[1].fine[1], hy[1].fine[1]);
    }

    #[test]
    fn layouts_outside_the_limits_are_refused() {
        assert!(Layout::new(65536, 1 << 30).is_ok());
        assert_eq!(Layout::new(65536, 0).unwrap().regions(), 0);
        for b in [0, 1000, 128 << 20] {
            assert!(Layout::new(b, 1 << 30).is_err(), "{b}");
        }
        assert!(Layout { block: 4096, region_blocks: 5000, len: 1 }.check().is_err());
    }
}
