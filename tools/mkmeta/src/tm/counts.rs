//! Reference counts of a space map in chunks of one bitmap's entries: a chunk whose counts are all
//! equal is one number, any other holds a byte per block (counts from 255 up in a map). A pool of
//! 10^9 data blocks filled in order (and then mostly shared) costs a few MiB instead of 4 GiB, and
//! at most a byte per block however it was written.

use std::collections::HashMap;

use thinsend::spacemap::ENTRIES_PER_BITMAP;

const CHUNK: u64 = ENTRIES_PER_BITMAP;
/// A dense byte meaning "the count is in `Counts::big`".
const BIG: u8 = u8::MAX;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Chunk {
    Uniform(u32),
    Dense(Box<[u8]>),
}

impl Chunk {
    /// Turns a dense chunk whose counts are all equal (and small) back into one number.
    fn compact(&mut self) {
        if let Chunk::Dense(v) = self {
            if v[0] != BIG && v.iter().all(|&c| c == v[0]) {
                *self = Chunk::Uniform(u32::from(v[0]));
            }
        }
    }
}

/// A count per block for `len` blocks, all 0 at first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    chunks: Vec<Chunk>,
    /// The counts of dense blocks whose byte is `BIG`.
    big: HashMap<u64, u32>,
    len: u64,
}

impl Counts {
    pub fn new(len: u64) -> Self {
        Counts { chunks: vec![Chunk::Uniform(0); len.div_ceil(CHUNK) as usize], big: HashMap::new(), len }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, b: u64) -> u32 {
        debug_assert!(b < self.len, "block {b} past the end ({})", self.len);
        match &self.chunks[(b / CHUNK) as usize] {
            Chunk::Uniform(c) => *c,
            Chunk::Dense(v) => match v[(b % CHUNK) as usize] {
                BIG => self.big[&b],
                c => u32::from(c),
            },
        }
    }

    pub fn set(&mut self, b: u64, count: u32) {
        assert!(b < self.len, "block {b} past the end ({})", self.len);
        let i = (b % CHUNK) as usize;
        let base = b - i as u64;
        let chunk = &mut self.chunks[(b / CHUNK) as usize];
        if let Chunk::Uniform(c) = *chunk {
            if c == count {
                return;
            }
            if c >= u32::from(BIG) {
                self.big.extend((base..(base + CHUNK).min(self.len)).map(|x| (x, c)));
            }
            *chunk = Chunk::Dense(vec![c.min(u32::from(BIG)) as u8; CHUNK as usize].into_boxed_slice());
        }
        let Chunk::Dense(v) = chunk else { unreachable!("the chunk was made dense above") };
        if count >= u32::from(BIG) {
            v[i] = BIG;
            self.big.insert(b, count);
        } else {
            if v[i] == BIG {
                self.big.remove(&b);
            }
            v[i] = count as u8;
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
                Chunk::Dense(_) => {
                    let found = (b..chunk_end).find(|&x| pred(self.get(x)));
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
                Chunk::Dense(_) => {
                    let start = ci as u64 * CHUNK;
                    (start..start + size).filter(|&b| pred(self.get(b))).count() as u64
                }
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

    #[test]
    fn counts_from_255_up_read_back() {
        let mut c = Counts::new(2 * CHUNK);
        c.set(3, 255);
        c.set(4, 70_000);
        c.set(5, 254);
        assert_eq!((c.get(3), c.get(4), c.get(5), c.get(6)), (255, 70_000, 254, 0));
        c.set(4, 2);
        assert_eq!((c.get(4), c.big.len()), (2, 1));
        assert_eq!(c.at_least(255).collect::<Vec<_>>(), vec![(3, 255)]);
        // A uniform chunk of big counts made dense keeps every count.
        c.chunks[1] = Chunk::Uniform(300);
        c.set(CHUNK + 1, 1);
        assert_eq!((c.get(CHUNK), c.get(CHUNK + 1), c.get(2 * CHUNK - 1)), (300, 1, 300));
        assert_eq!(c.count_where(|x| x == 300), CHUNK - 1);
        c.set(CHUNK + 1, 300);
        c.compact();
        assert!(matches!(c.chunks[1], Chunk::Dense(_)), "big counts stay dense");
        assert_eq!(c.find(0, 2 * CHUNK, |x| x == 300), Some(CHUNK));
    }
}
