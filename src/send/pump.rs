//! Reads in flight for bytes that go into the stream unchanged (LINBIT DATA) from a block device:
//! pieces are cut at the pipe size, spliced from the source's `O_DIRECT` descriptor by worker
//! threads into pipes of their own (the kernel reads the device into new pages it hands to the pipe:
//! no copy, no page cache), and passed into the stream by splice, in stream order, with the record
//! headers between them. Without it such a send reads one piece at a time through the page cache.
//!
//! Memory and reads in flight are bounded by the pipes: a piece is handed out only with a free
//! pipe, and when none is free the oldest queued item is written first (waiting for its read).

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Mutex;
use std::thread::Scope;

use super::copy::Source;
use super::internal;
use super::out::Out;
use super::piped::{Passer, Pipe};
use super::pipeline::DIRECT_READS;
use crate::error::Result;
use crate::progress::Progress;

/// Reads in flight, as many as the native path's `O_DIRECT` workers keep.
const READS: usize = DIRECT_READS;
/// Pipes: the reads in flight and two finished ones waiting for the output.
const PIPES: usize = READS + 2;

struct Job {
    idx: u64,
    at: u64,
    len: usize,
    pipe: Pipe,
}

/// What goes into the stream next, in order.
enum Item {
    Bytes(Vec<u8>),
    /// The bytes of job `idx` (`len` of them), once read.
    Piece {
        idx: u64,
        len: usize,
    },
}

pub(crate) struct Pump {
    jobs: Option<SyncSender<Job>>,
    done: Receiver<(u64, Result<Pipe>)>,
    free: Vec<Pipe>,
    queue: VecDeque<Item>,
    read: BTreeMap<u64, Result<Pipe>>,
    next: u64,
    /// The largest piece: what every pipe holds.
    piece: usize,
    passer: Passer,
}

impl Pump {
    /// A pump reading `src` with workers in `scope`; `None` when `src` has no `O_DIRECT`
    /// descriptor (a file: its page cache and readahead serve it better).
    pub(crate) fn start<'scope>(scope: &'scope Scope<'scope, '_>, src: &'scope Source) -> Result<Option<Self>> {
        if src.direct().is_none() {
            return Ok(None);
        }
        let free = (0..PIPES).map(|_| Pipe::new(1 << 20)).collect::<Result<Vec<_>>>()?;
        let piece = free.iter().map(Pipe::cap).min().unwrap_or(0);
        let (job_tx, job_rx) = sync_channel::<Job>(PIPES);
        let (done_tx, done_rx) = channel();
        let job_rx = std::sync::Arc::new(Mutex::new(job_rx));
        for _ in 0..READS {
            let (jobs, done) = (job_rx.clone(), done_tx.clone());
            scope.spawn(move || worker(src, &jobs, &done));
        }
        Ok(Some(Pump {
            jobs: Some(job_tx),
            done: done_rx,
            free,
            queue: VecDeque::new(),
            read: BTreeMap::new(),
            next: 0,
            piece,
            passer: Passer::new(),
        }))
    }

    /// Bytes for the stream after everything queued before them.
    pub(crate) fn bytes(&mut self, out: &mut Out, b: Vec<u8>) -> Result<()> {
        if self.queue.is_empty() {
            return out.write(&b);
        }
        self.queue.push_back(Item::Bytes(b));
        Ok(())
    }

    /// `len` source bytes at `at` for the stream, after everything queued before them: handed to
    /// the workers a pipe at a time.
    pub(crate) fn piece(&mut self, out: &mut Out, progress: &mut Progress, at: u64, len: u64) -> Result<()> {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(self.piece as u64) as usize;
            let pipe = loop {
                match self.free.pop() {
                    Some(p) => break p,
                    None => self.write_one(out, progress)?,
                }
            };
            let jobs = self.jobs.as_ref().ok_or_else(|| internal("the send's readers stopped"))?;
            let job = Job { idx: self.next, at: at + done, len: n, pipe };
            jobs.send(job).map_err(|_| internal("the send's readers stopped"))?;
            self.queue.push_back(Item::Piece { idx: self.next, len: n });
            self.next += 1;
            done += n as u64;
        }
        Ok(())
    }

    /// Writes everything queued and stops the workers.
    pub(crate) fn finish(&mut self, out: &mut Out, progress: &mut Progress) -> Result<()> {
        while !self.queue.is_empty() {
            self.write_one(out, progress)?;
        }
        self.jobs = None;
        Ok(())
    }

    /// Writes the oldest queued item, waiting for its read.
    fn write_one(&mut self, out: &mut Out, progress: &mut Progress) -> Result<()> {
        match self.queue.pop_front() {
            None => Err(internal("the send's pump waited with nothing queued")),
            Some(Item::Bytes(b)) => out.write(&b),
            Some(Item::Piece { idx, len }) => {
                let mut pipe = loop {
                    if let Some(r) = self.read.remove(&idx) {
                        break r?;
                    }
                    let (i, r) = self.done.recv().map_err(|_| internal("the send's readers stopped"))?;
                    self.read.insert(i, r);
                };
                self.passer.pass_all(&mut pipe, out)?;
                progress.add(len as u64);
                self.free.push(pipe);
                Ok(())
            }
        }
    }
}

fn worker(src: &Source, jobs: &Mutex<Receiver<Job>>, done: &Sender<(u64, Result<Pipe>)>) {
    let mut buf = Vec::new();
    loop {
        let Some(Job { idx, at, len, mut pipe }) = jobs.lock().ok().and_then(|j| j.recv().ok()) else { return };
        let r = match pipe.load(src, at, len) {
            Ok(true) => Ok(pipe),
            // A source that cannot splice: read plainly, into the pipe all the same.
            Ok(false) => {
                buf.resize(len, 0);
                src.read_at(&mut buf, at).and_then(|()| pipe.put(&buf)).map(|()| pipe)
            }
            Err(e) => Err(e),
        };
        if done.send((idx, r)).is_err() {
            return;
        }
    }
}
