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
    /// Progress counts the volume position reached past this offset, not DATA bytes: a native
    /// stream whose HEADER has no DATA total (zero blocks elided, compression).
    by_position: Option<u64>,
    pub(crate) error: Option<String>,
}

impl Slots {
    pub(crate) fn new(progress: Progress) -> Self {
        Slots { journal: None, start: None, progress, by_position: None, error: None }
    }

    /// Progress for a record covering `[offset, offset+len)` of the target.
    fn advance(&mut self, offset: u64, len: u64) {
        match self.by_position {
            Some(from) => {
                let reached = offset.saturating_add(len).saturating_sub(from);
                if let Some(more) = reached.checked_sub(self.progress.done()).filter(|m| *m > 0) {
                    self.progress.add(more);
                }
            }
            None => self.progress.add(len),
        }
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
        if let Some(h) = &start.header {
            let s = self.slots();
            match h.data_bytes {
                Some(d) => s.progress.set_total(d),
                None => {
                    let from = h.resume.as_ref().map_or(0, |r| r.from_offset);
                    s.by_position = Some(from);
                    s.progress.set_total(h.volume_size.saturating_sub(from));
                }
            }
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
        s.advance(offset, bytes.len() as u64);
        track(&mut s.error, r)
    }

    fn splice_target(&mut self, offset: u64, len: u64) -> Result<Option<RawFd>> {
        if self.slots().journal.is_some() {
            return Ok(None);
        }
        let r = self.splice_into(offset, len).map(Some);
        track(&mut self.slots().error, r)
    }

    fn spliced(&mut self, offset: u64, len: u64) {
        self.slots().advance(offset, len);
    }

    fn unmap(&mut self, offset: u64, len: u64) -> Result<()> {
        let _w = writing();
        let r = self.zero(offset, len);
        let s = self.slots();
        s.advance(offset, len);
        track(&mut s.error, r)
    }

    fn finish(&mut self, _summary: &Summary) -> Result<()> {
        let _w = writing();
        let r = self.complete();
        let s = self.slots();
        // By position, the stream's end is the volume's end (a full stream leaves trailing gaps out).
        if let Some(size) = s.start.as_ref().and_then(|st| st.header.as_ref()).map(|h| h.volume_size) {
            s.advance(size, 0);
        }
        track(&mut s.error, r)
    }
}
