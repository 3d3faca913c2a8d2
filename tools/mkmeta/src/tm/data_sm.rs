//! The data space map: a reference count per data block and the kernel's allocation rule.

use super::counts::Counts;
use crate::error::{Error, Result};

/// The data space map: a count per data block, the counts at the last commit (a block freed in
/// this transaction is not reused before the next), and the allocation hint.
#[derive(Debug)]
pub struct DataSm {
    pub counts: Counts,
    committed: Counts,
    hint: u64,
}

impl DataSm {
    pub fn new(nr_blocks: u64) -> Self {
        DataSm { counts: Counts::new(nr_blocks), committed: Counts::new(nr_blocks), hint: 0 }
    }

    pub fn nr_blocks(&self) -> u64 {
        self.counts.len()
    }

    /// The first block in `start..end` free now and at the last commit.
    fn find_free(&self, mut start: u64, end: u64) -> Option<u64> {
        loop {
            let b = self.counts.find(start, end, |c| c == 0)?;
            let c = self.committed.find(b, end, |c| c == 0)?;
            if c == b {
                return Some(b);
            }
            start = c;
        }
    }

    /// Blocks free now (some may only become allocatable at the next commit).
    pub fn nr_free(&self) -> u64 {
        self.counts.count_where(|c| c == 0)
    }

    /// The kernel's `sm_disk_new_block`: the lowest block free in both the committed and the
    /// current map, searching from the hint and then from the start.
    pub fn alloc(&mut self) -> Result<u64> {
        let n = self.nr_blocks();
        let found = self.find_free(self.hint, n).or_else(|| self.find_free(0, self.hint.min(n)));
        match found {
            Some(b) => {
                self.counts.set(b, 1);
                self.hint = b + 1;
                Ok(b)
            }
            None => Err(Error::Pool(format!("data device full: all {n} data blocks are in use"))),
        }
    }

    pub fn inc(&mut self, b: u64) {
        self.counts.set(b, self.counts.get(b) + 1);
    }

    pub fn dec(&mut self, b: u64) {
        let c = self.counts.get(b);
        debug_assert!(c > 0, "data block {b} count underflow");
        self.counts.set(b, c.saturating_sub(1));
    }

    pub(super) fn commit(&mut self) {
        self.counts.compact();
        self.committed = self.counts.clone();
    }
}

impl Default for DataSm {
    fn default() -> Self {
        DataSm::new(0)
    }
}
