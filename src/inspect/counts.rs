//! Sparse per-block counts for `check` and `ls`: one byte per block in chunks of 64 blocks, allocated
//! when a block of the chunk is first counted, with exact counts past 254 kept apart. Memory follows
//! the blocks actually counted (about 100 bytes per lone block, 1.3 per block when dense), never a
//! device size or a block number read from the (possibly corrupt) metadata.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

const CHUNK: u64 = 64;
/// A byte at this value means "look in `big`".
const BIG: u8 = u8::MAX;

#[derive(Default)]
pub struct Counts {
    chunks: Vec<[u8; CHUNK as usize]>,
    index: ChunkMap<usize>,
    big: ChunkMap<u32>,
    /// The chunk used last: runs of mappings mostly stay in one chunk.
    last: Option<(u64, usize)>,
}

impl Counts {
    fn slot(&mut self, b: u64, create: bool) -> Option<&mut u8> {
        let c = b / CHUNK;
        let i = match self.last {
            Some((lc, li)) if lc == c => li,
            _ => {
                let i = match self.index.get(&c) {
                    Some(&i) => i,
                    None if create => {
                        self.chunks.push([0; CHUNK as usize]);
                        self.index.insert(c, self.chunks.len() - 1);
                        self.chunks.len() - 1
                    }
                    None => return None,
                };
                self.last = Some((c, i));
                i
            }
        };
        Some(&mut self.chunks[i][(b % CHUNK) as usize])
    }

    pub fn get(&mut self, b: u64) -> u32 {
        match self.slot(b, false).map(|s| *s) {
            None => 0,
            Some(BIG) => self.big.get(&b).copied().unwrap_or(BIG as u32),
            Some(v) => v as u32,
        }
    }

    pub fn inc(&mut self, b: u64) {
        let s = self.slot(b, true).expect("created");
        if *s < BIG {
            *s += 1;
            if *s == BIG {
                self.big.insert(b, BIG as u32);
            }
        } else {
            let n = self.big.entry(b).or_insert(BIG as u32);
            *n = n.saturating_add(1);
        }
    }

    pub fn set(&mut self, b: u64, v: u32) {
        let Some(s) = self.slot(b, v != 0) else { return };
        *s = v.min(BIG as u32) as u8;
        if v >= BIG as u32 {
            self.big.insert(b, v);
        } else {
            self.big.remove(&b);
        }
    }

    /// The blocks with a non-zero count, ascending, with their counts.
    pub fn for_each_nonzero(&self, mut f: impl FnMut(u64, u32)) {
        Counts::zip(self, &Counts::default(), |b, v, _| f(b, v));
    }

    /// Chunk numbers in use, ascending.
    fn chunk_keys(&self) -> Vec<u64> {
        let mut keys: Vec<u64> = self.index.keys().copied().collect();
        keys.sort_unstable();
        keys
    }

    fn value(&self, chunk: Option<&[u8; CHUNK as usize]>, b: u64) -> u32 {
        match chunk.map_or(0, |c| c[(b % CHUNK) as usize]) {
            BIG => self.big.get(&b).copied().unwrap_or(BIG as u32),
            v => v as u32,
        }
    }

    pub fn count_nonzero(&self) -> u64 {
        self.chunks.iter().map(|c| c.iter().filter(|&&v| v != 0).count() as u64).sum()
    }

    /// Every block either of `a` and `b` counts, ascending: `(block, count in a, count in b)`.
    pub fn zip(a: &Counts, b: &Counts, mut f: impl FnMut(u64, u32, u32)) {
        let mut keys = a.chunk_keys();
        if !b.index.is_empty() {
            keys.extend(b.chunk_keys());
            keys.sort_unstable();
            keys.dedup();
        }
        for c in keys {
            let (ca, cb) = (a.index.get(&c).map(|&i| &a.chunks[i]), b.index.get(&c).map(|&i| &b.chunks[i]));
            for o in 0..CHUNK {
                let blk = c * CHUNK + o;
                let (va, vb) = (a.value(ca, blk), b.value(cb, blk));
                if va != 0 || vb != 0 {
                    f(blk, va, vb);
                }
            }
        }
    }
}

/// A multiplicative hash for chunk numbers: the default SipHash was most of a dense count's time.
#[derive(Default)]
struct ChunkHasher(u64);

impl Hasher for ChunkHasher {
    fn finish(&self) -> u64 {
        let h = self.0.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^ (h >> 32)
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type ChunkMap<V> = HashMap<u64, V, BuildHasherDefault<ChunkHasher>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_exact_past_a_byte_and_sparse() {
        let mut c = Counts::default();
        for _ in 0..300 {
            c.inc(1 << 40);
        }
        c.inc(5);
        assert_eq!(c.get(1 << 40), 300);
        assert_eq!(c.get(5), 1);
        assert_eq!(c.get(6), 0);
        assert_eq!(c.get(7 << 50), 0);
        let mut nz = Vec::new();
        c.for_each_nonzero(|b, v| nz.push((b, v)));
        assert_eq!(nz, vec![(5, 1), (1 << 40, 300)]);
        assert_eq!(c.chunks.len(), 2, "reading and counting far-apart blocks allocates only their chunks");
        c.set(5, 0);
        c.set(9 << 50, 0);
        assert_eq!(c.count_nonzero(), 1);
        assert_eq!(c.chunks.len(), 2, "setting 0 allocates nothing");
    }

    #[test]
    fn zip_visits_the_union_in_order() {
        let (mut a, mut b) = (Counts::default(), Counts::default());
        a.set(3, 1);
        a.set(200, 2);
        b.set(3, 4);
        b.set(70, 1);
        let mut seen = Vec::new();
        Counts::zip(&a, &b, |blk, x, y| seen.push((blk, x, y)));
        assert_eq!(seen, vec![(3, 1, 4), (70, 0, 1), (200, 2, 0)]);
    }
}
