//! The data space map: a reference count per data block and the kernel's allocation rule.

use crate::error::{Error, Result};

/// A growable bitset.
#[derive(Debug, Clone, Default)]
struct Bits(Vec<u64>);

impl Bits {
    fn get(&self, i: u64) -> bool {
        self.0.get((i / 64) as usize).is_some_and(|w| w >> (i % 64) & 1 == 1)
    }

    fn from_counts(counts: &[u32]) -> Self {
        let mut words = vec![0u64; counts.len().div_ceil(64)];
        for (w, chunk) in words.iter_mut().zip(counts.chunks(64)) {
            for (j, &c) in chunk.iter().enumerate() {
                if c > 0 {
                    *w |= 1 << j;
                }
            }
        }
        Bits(words)
    }
}

/// The data space map: a count per data block, the counts at the last commit (a block freed in
/// this transaction is not reused before the next), and the allocation hint.
#[derive(Debug)]
pub struct DataSm {
    pub counts: Vec<u32>,
    committed: Bits,
    hint: u64,
}

impl DataSm {
    pub fn new(nr_blocks: u64) -> Self {
        DataSm { counts: vec![0; nr_blocks as usize], committed: Bits::default(), hint: 0 }
    }

    pub fn nr_blocks(&self) -> u64 {
        self.counts.len() as u64
    }

    fn is_free(&self, b: u64) -> bool {
        self.counts[b as usize] == 0 && !self.committed.get(b)
    }

    /// The kernel's `sm_disk_new_block`: the lowest block free in both the committed and the
    /// current map, searching from the hint and then from the start.
    pub fn alloc(&mut self) -> Result<u64> {
        let n = self.nr_blocks();
        let found =
            (self.hint..n).find(|&b| self.is_free(b)).or_else(|| (0..self.hint.min(n)).find(|&b| self.is_free(b)));
        match found {
            Some(b) => {
                self.counts[b as usize] = 1;
                self.hint = b + 1;
                Ok(b)
            }
            None => Err(Error::Pool(format!("data device full: all {n} data blocks are in use"))),
        }
    }

    pub fn inc(&mut self, b: u64) {
        self.counts[b as usize] += 1;
    }

    pub fn dec(&mut self, b: u64) {
        let c = &mut self.counts[b as usize];
        debug_assert!(*c > 0, "data block {b} count underflow");
        *c = c.saturating_sub(1);
    }

    pub(super) fn commit(&mut self) {
        self.committed = Bits::from_counts(&self.counts);
    }
}

impl Default for DataSm {
    fn default() -> Self {
        DataSm::new(0)
    }
}
