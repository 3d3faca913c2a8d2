//! What a receive target does for each record; the [`Sink`] around it is the same for every target.
//! Each change is made under [`writing`], so a signal's rollback never overlaps one. A journaled
//! target takes no spliced DATA: a splice waits for input while writing, under that lock.

use std::os::fd::RawFd;

use super::track;
use super::undo::Undo;
use crate::cleanup::writing;
use crate::error::Result;
use crate::progress::Progress;
use crate::stream::{Sink, Start, Summary};

/// What every target keeps for its sink: its undo journal, the stream's start, progress, the last
/// error it raised.
pub struct Slots {
    /// Under an undo journal (then DATA is never spliced).
    pub(crate) journal: Option<Undo>,
    pub(crate) start: Option<Start>,
    pub(crate) progress: Progress,
    pub(crate) error: Option<String>,
}

impl Slots {
    pub(crate) fn new(progress: Progress) -> Self {
        Slots { journal: None, start: None, progress, error: None }
    }
}

pub trait Target {
    fn slots(&mut self) -> &mut Slots;
    fn begin_stream(&mut self, start: &Start) -> Result<()>;
    fn put(&mut self, offset: u64, bytes: &[u8]) -> Result<()>;
    /// Prepares `[offset, offset+len)` for spliced DATA; returns the descriptor to splice into.
    fn splice_into(&mut self, offset: u64, len: u64) -> Result<RawFd>;
    fn zero(&mut self, offset: u64, len: u64) -> Result<()>;
    fn complete(&mut self) -> Result<()>;
}

impl<T: Target> Sink for T {
    fn start(&mut self, start: &Start) -> Result<()> {
        let _w = writing();
        if let Some(d) = start.header.as_ref().and_then(|h| h.data_bytes) {
            self.slots().progress.set_total(d);
        }
        let r = self.begin_stream(start);
        let s = self.slots();
        s.start = Some(start.clone());
        track(&mut s.error, r)
    }

    fn data(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        let _w = writing();
        let r = self.put(offset, bytes);
        let s = self.slots();
        s.progress.add(bytes.len() as u64);
        track(&mut s.error, r)
    }

    fn splice_target(&mut self, offset: u64, len: u64) -> Result<Option<RawFd>> {
        if self.slots().journal.is_some() {
            return Ok(None);
        }
        let r = self.splice_into(offset, len).map(Some);
        track(&mut self.slots().error, r)
    }

    fn spliced(&mut self, _offset: u64, len: u64) {
        self.slots().progress.add(len);
    }

    fn unmap(&mut self, offset: u64, len: u64) -> Result<()> {
        let _w = writing();
        let r = self.zero(offset, len);
        track(&mut self.slots().error, r)
    }

    fn finish(&mut self, _summary: &Summary) -> Result<()> {
        let _w = writing();
        let r = self.complete();
        track(&mut self.slots().error, r)
    }
}
