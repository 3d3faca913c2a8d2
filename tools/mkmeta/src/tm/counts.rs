//! Reference counts of a space map in chunks of one bitmap's entries: a chunk whose counts are all
//! equal is one number, any other holds a count per block. A pool of 10^9 data blocks filled in
//! order (and then mostly shared) costs a few MiB instead of 4 GiB.

use thinsend::spacemap::ENTRIES_PER_BITMAP;

const CHUNK: u64 = ENTRIES_PER_BITMAP;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    Uniform(u32),
    Dense(Box<[u32]>),
}

impl Chunk {
    fn get(&self, i: usize) -> u32 {
        match self {
            Chunk::Uniform(c) => *c,
            Chunk::Dense(v) => v[i],
        }
    }

    /// Turns a dense chunk whose counts are all equal back into one number.
    fn compact(&mut self) {
        if let Chunk::Dense(v) = self {
            if v.iter().all(|&c| c == v[0]) {
                *self = Chunk::Uniform(v[0]);
            }
        }
    }
}

/// A count per block for `len` blocks, all 0 at first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    chunks: Vec<Chunk>,
    len: u64,
}

impl Counts {
    pub fn new(len: u64) -> Self {
        Counts { chunks: vec![Chunk::Uniform(0); len.div_ceil(CHUNK) as usize], len }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, b: u64) -> u32 {
        debug_assert!(b < self.len, "block {b} past the end ({})", self.len);
        self.chunks[(b / CHUNK) as usize].get((b % CHUNK) as usize)
    }

    pub fn set(&mut self, b: u64, count: u32) {
        assert!(b < self.len, "block {b} past the end ({})", self.len);
        let i = (b % CHUNK) as usize;
        let chunk = &mut self.chunks[(b / CHUNK) as usize];
        match chunk {
            Chunk::Uniform(c) if *c == count => return,
            Chunk::Uniform(c) => {
                let mut v = vec![*c; CHUNK as usize].into_boxed_slice();
                v[i] = count;
                *chunk = Chunk::Dense(v);
            }
            Chunk::Dense(v) => v[i] = count,
        }
        // A chunk filled in order is compacted when its last block is set.
        if i == CHUNK as usize - 1 {
            chunk.compact();
        }
    }

    /// Compacts every dense chunk whose counts became equal.
    pub fn compact(&mut self) {
        self.chunks.iter_mut().for_each(Chunk::compact);
    }

    /// The counts of blocks `start..end` (within one chunk's worth of the same bitmap or not).
    pub fn range(&self, start: u64, end: u64) -> impl Iterator<Item = u32> + '_ {
        (start..end.min(self.len)).map(|b| self.get(b))
    }

    /// The counts of bitmap `i`'s blocks (fewer for the last bitmap).
    pub fn bitmap(&self, i: u64) -> impl Iterator<Item = u32> + '_ {
        self.range(i * CHUNK, (i + 1) * CHUNK)
    }

    /// The first block in `start..end` for which `pred(count)` holds, skipping whole uniform
    /// chunks for which it does not.
    pub fn find(&self, start: u64, end: u64, pred: impl Fn(u32) -> bool) -> Option<u64> {
        let end = end.min(self.len);
        let mut b = start;
        while b < end {
            let chunk_end = ((b / CHUNK + 1) * CHUNK).min(end);
            match &self.chunks[(b / CHUNK) as usize] {
                Chunk::Uniform(c) if pred(*c) => return Some(b),
                Chunk::Uniform(_) => {}
                Chunk::Dense(v) => {
                    let base = b / CHUNK * CHUNK;
                    let found = (b..chunk_end).find(|&x| pred(v[(x - base) as usize]));
                    if found.is_some() {
                        return found;
                    }
                }
            }
            b = chunk_end;
        }
        None
    }

    /// How many blocks have a count for which `pred` holds.
    pub fn count_where(&self, pred: impl Fn(u32) -> bool) -> u64 {
        let mut n = 0;
        for (ci, chunk) in self.chunks.iter().enumerate() {
            let size = (self.len - ci as u64 * CHUNK).min(CHUNK);
            n += match chunk {
                Chunk::Uniform(c) => u64::from(pred(*c)) * size,
                Chunk::Dense(v) => v[..size as usize].iter().filter(|&&c| pred(c)).count() as u64,
            };
        }
        n
    }

    /// Every `(block, count)` with a count of at least `min`, in block order.
    pub fn at_least(&self, min: u32) -> impl Iterator<Item = (u64, u32)> + '_ {
        self.chunks
            .iter()
            .enumerate()
            .filter(move |(_, c)| !matches!(c, Chunk::Uniform(c) if *c < min))
            .flat_map(move |(ci, _)| {
                let start = ci as u64 * CHUNK;
                (start..(start + CHUNK).min(self.len)).map(|b| (b, self.get(b)))
            })
            .filter(move |&(_, c)| c >= min)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_back_and_compact_when_filled_in_order() {
        let n = 3 * CHUNK + 5;
        let mut c = Counts::new(n);
        for b in 0..2 * CHUNK {
            c.set(b, 1);
        }
        // Two full chunks set in order are one number each again.
        assert!(c.chunks[..2].iter().all(|ch| *ch == Chunk::Uniform(1)));
        c.set(7, 3);
        c.set(3 * CHUNK + 4, 2);
        assert!(matches!(c.chunks[0], Chunk::Dense(_)));
        assert_eq!((c.get(6), c.get(7), c.get(3 * CHUNK + 4), c.get(2 * CHUNK)), (1, 3, 2, 0));
        assert_eq!(c.count_where(|x| x > 0), 2 * CHUNK + 1);
        assert_eq!(c.count_where(|x| x == 0), CHUNK + 4);
        assert_eq!(c.at_least(2).collect::<Vec<_>>(), vec![(7, 3), (3 * CHUNK + 4, 2)]);
        assert_eq!(c.find(0, n, |x| x == 0), Some(2 * CHUNK));
        assert_eq!(c.find(8, n, |x| x == 3), None);
        assert_eq!(c.find(0, n, |x| x == 2), Some(3 * CHUNK + 4));
        assert_eq!(c.bitmap(3).count(), 5);
        c.set(7, 1);
        c.compact();
        assert_eq!(c.chunks[0], Chunk::Uniform(1));
    }
}
