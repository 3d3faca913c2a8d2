//! DATA held back while an undo journal is in use, so that one journal sync covers many writes: a
//! sync per record made a scattered incremental cost about 10 ms a record. At most [`LIMIT`] bytes
//! are held; anything else that changes the target (UNMAP, a spliced range, the commit) flushes first,
//! so writes keep their stream order.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::journal::Journal;

pub(crate) const LIMIT: usize = 1 << 20;

#[derive(Default)]
pub(crate) struct Pending {
    items: Vec<(u64, Vec<u8>)>,
    bytes: usize,
}

impl Pending {
    /// Holds `bytes` for `offset`; true once the batch should be flushed.
    pub fn push(&mut self, offset: u64, bytes: &[u8]) -> bool {
        // An empty write (a LINBIT DATA chunk of length 0) changes nothing: nothing to journal.
        if bytes.is_empty() {
            return false;
        }
        self.items.push((offset, bytes.to_vec()));
        self.bytes += bytes.len();
        self.bytes >= LIMIT
    }

    /// Journals every held range (one sync for all), then writes them in order. The journal saves a
    /// range once, before any write of the batch, so it holds the contents from before the receive.
    pub fn flush(&mut self, journal: &mut Journal, target: &File) -> io::Result<()> {
        if self.items.is_empty() {
            return Ok(());
        }
        for (o, b) in &self.items {
            journal.stage(target, *o, b.len() as u64)?;
        }
        journal.sync()?;
        for (o, b) in self.items.drain(..) {
            target.write_all_at(&b, o)?;
        }
        self.bytes = 0;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recv::journal::Ident;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn a_batch_with_overlapping_writes_applies_in_order_and_rolls_back_to_the_original() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t");
        std::fs::write(&p, vec![1u8; 8192]).unwrap();
        let t = std::fs::OpenOptions::new().read(true).write(true).open(&p).unwrap();
        let m = t.metadata().unwrap();
        let id = Ident { file: true, len: 8192, dev: m.dev(), ino: m.ino(), mtime_ns: 0 };
        let mut j = Journal::create(&d.path().join("j"), id, None).unwrap();
        let mut b = Pending::default();
        assert!(!b.push(0, &[2u8; 100]));
        assert!(!b.push(50, &[3u8; 100]));
        b.flush(&mut j, &t).unwrap();
        let got = std::fs::read(&p).unwrap();
        assert!(got[..50].iter().all(|&x| x == 2) && got[50..150].iter().all(|&x| x == 3));
        j.rollback(&t).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), vec![1u8; 8192]);
        assert!(b.push(0, &vec![0u8; LIMIT]), "a full batch is not reported");
    }

    #[test]
    fn an_empty_write_is_not_held() {
        let mut b = Pending::default();
        assert!(!b.push(1 << 60, &[]));
        assert!(b.items.is_empty(), "an empty write was held for the journal");
    }
}
