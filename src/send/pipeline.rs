//! The native data path: every source byte is read once into a reused buffer (uncompressed, through
//! a private pipe the writer later splices from: see `piped`), checked for zero blocks,
//! checksummed (and compressed) there. This thread walks the plan and hands jobs, in stream order,
//! to workers that read and prepare them (one reader; four for a block device read `O_DIRECT`, to
//! keep reads in flight; one per core when compressing); a writer thread frames the prepared
//! records in stream order and writes them.
//!
//! Memory is bounded by the slots: a worker takes a free slot before it takes a job, so the oldest
//! unfinished job always has a slot and the writer, which holds the later ones, always progresses.

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

use super::copy::{Readahead, Source, DIRECT_ALIGN};
use super::internal;
use super::out::Out;
use super::piped::{Passer, Pipe};
use super::plan::{Emit, Plan};
use super::zero::{runs, Run};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::stream::native::zdata::Packer;
use crate::stream::native::Encoder;
use crate::stream::{Counts, RecordWriter};

/// How records are prepared.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Config {
    /// Zero runs become UNMAP (incremental) instead of nothing (full).
    pub incremental: bool,
    /// Zero-block elision at this grain (target bytes), or off.
    pub zero_grain: Option<u64>,
    /// zstd level, or no compression.
    pub level: Option<i32>,
    /// Uncompressed DATA goes from the source into the stream by splice, read once through `tee`
    /// for the zero check and the checksum (see `piped`); off: read into the buffer (`O_DIRECT`
    /// from a block device) and written from it.
    pub splice: bool,
}

#[derive(Debug, Clone, Copy)]
enum Job {
    Data { offset: u64, len: u64, src: u64 },
    Unmap { offset: u64, len: u64 },
}

/// One record a job became.
#[derive(Debug, Clone, Copy)]
enum Part {
    /// `raw[at..at+len]` for target `offset`.
    Data {
        offset: u64,
        at: usize,
        len: usize,
        crc: u32,
    },
    /// `z[at..at+wire]`, a ZDATA payload of `len` target bytes at `offset`.
    ZData {
        offset: u64,
        len: u64,
        at: usize,
        wire: usize,
        crc: u32,
    },
    Unmap {
        offset: u64,
        len: u64,
    },
}

/// A worker's buffers, recycled through the writer.
#[derive(Default)]
struct Slot {
    raw: Vec<u8>,
    z: Vec<u8>,
    parts: Vec<Part>,
    runs: Vec<Run>,
    /// Source bytes the job read.
    source: u64,
    /// The job's bytes wait in this pipe too (`piped`), for the writer to splice on.
    pipe: Option<Pipe>,
    piped: bool,
}

enum Msg {
    Done(u64, Result<Slot>),
    /// The walk ended after this many jobs: the writer may close the stream once all are written.
    Finished(u64),
}

/// Sends `plan`'s records from `src` through `enc` into `out`; returns the records' counts.
pub(crate) fn run(
    plan: &Plan<'_>,
    src: &Source,
    cfg: Config,
    enc: &mut Encoder,
    out: &mut Out,
    progress: &mut Progress,
) -> Result<Counts> {
    let workers = match cfg.level {
        Some(_) => std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 16),
        // Direct reads wait for the device: several in flight keep it busy.
        None if src.direct().is_some() => DIRECT_READS,
        None => 1,
    };
    let packers = (0..workers)
        .map(|_| cfg.level.map(Packer::new).transpose().map_err(|e| Error::Other(format!("zstd: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    let slots = workers + 4;
    let (job_tx, job_rx) = sync_channel::<(u64, Job)>(2 * workers);
    let (free_tx, free_rx) = channel::<Slot>();
    let (done_tx, done_rx) = channel::<Msg>();
    for _ in 0..slots {
        let _ = free_tx.send(Slot::default());
    }
    let (job_rx, free_rx) = (Arc::new(Mutex::new(job_rx)), Arc::new(Mutex::new(free_rx)));
    let consumed = AtomicU64::new(0);
    // Direct reads bypass the page cache: nothing to prefetch or drop.
    let mut ra = Readahead::new(src.fd(), plan.piece_steps()).on(src.direct().is_none());
    let r = std::thread::scope(|s| {
        for packer in packers {
            let (job_rx, free_rx, done_tx) = (job_rx.clone(), free_rx.clone(), done_tx.clone());
            s.spawn(move || worker(src, cfg, packer, &job_rx, &free_rx, &done_tx));
        }
        drop((job_rx, free_rx));
        let consumed = &consumed;
        let w = s.spawn(move || write_all(enc, out, progress, done_rx, free_tx, consumed));
        let mut feed = Feeder { jobs: job_tx, ra: &mut ra, consumed, next: 0, pending: None };
        let walked = plan.walk(&mut feed);
        let Feeder { jobs, next, .. } = feed;
        drop(jobs);
        if walked.is_ok() {
            let _ = done_tx.send(Msg::Finished(next));
        }
        drop(done_tx);
        let written = w.join().unwrap_or_else(|_| Err(internal("the stream writer panicked")));
        // The writer's error is the cause when the walk stopped because the writer went away.
        match (written, walked) {
            (Err(e), _) if !matches!(e, Error::Other(ref m) if m == STOPPED) => Err(e),
            (_, Err(e)) => Err(e),
            (w, Ok(())) => w,
        }
    });
    ra.caught_up(consumed.load(Ordering::Relaxed));
    ra.finish();
    r
}

/// Reads in flight from a block device opened `O_DIRECT`.
pub(crate) const DIRECT_READS: usize = 4;

const STOPPED: &str = "internal error: the send stopped before its end";

/// The planner's side: records become jobs, in order.
struct Feeder<'r, 'a> {
    jobs: SyncSender<(u64, Job)>,
    ra: &'r mut Readahead<'a>,
    consumed: &'r AtomicU64,
    next: u64,
    pending: Option<(u64, u64)>,
}

impl Feeder<'_, '_> {
    fn send(&mut self, job: Job) -> Result<()> {
        self.jobs.send((self.next, job)).map_err(|_| internal("the send's workers stopped"))?;
        self.next += 1;
        self.ra.caught_up(self.consumed.load(Ordering::Relaxed));
        Ok(())
    }
}

impl Emit for Feeder<'_, '_> {
    fn data(&mut self, offset: u64, len: u64) -> Result<()> {
        self.pending = Some((offset, len));
        Ok(())
    }
    fn piece(&mut self, src: u64, len: u64) -> Result<()> {
        // A native record's payload is one piece (the planner cuts records that way).
        match self.pending.take() {
            Some((offset, rlen)) if rlen == len => {
                self.ra.before(len);
                self.send(Job::Data { offset, len, src })
            }
            _ => Err(internal("native DATA record with more than one piece")),
        }
    }
    fn unmap(&mut self, offset: u64, len: u64) -> Result<()> {
        self.send(Job::Unmap { offset, len })
    }
}

fn worker(
    src: &Source,
    cfg: Config,
    mut packer: Option<Packer>,
    jobs: &Mutex<Receiver<(u64, Job)>>,
    free: &Mutex<Receiver<Slot>>,
    done: &Sender<Msg>,
) {
    // The worker's side of the tee, made at its first piped job.
    let mut via = None;
    loop {
        // A slot first, then a job: see the module comment.
        let Some(slot) = free.lock().ok().and_then(|f| f.recv().ok()) else { return };
        let Some((idx, job)) = jobs.lock().ok().and_then(|j| j.recv().ok()) else { return };
        let r = prepare(src, cfg, packer.as_mut(), slot, job, &mut via);
        if done.send(Msg::Done(idx, r)).is_err() {
            return;
        }
    }
}

/// Reads a job's bytes and makes its records: zero runs elided (or UNMAP), the rest DATA or ZDATA.
fn prepare(
    src: &Source,
    cfg: Config,
    packer: Option<&mut Packer>,
    mut slot: Slot,
    job: Job,
    via: &mut Option<Pipe>,
) -> Result<Slot> {
    slot.parts.clear();
    slot.z.clear();
    slot.source = 0;
    slot.piped = false;
    let (offset, len, at) = match job {
        Job::Unmap { offset, len } => {
            slot.parts.push(Part::Unmap { offset, len });
            return Ok(slot);
        }
        Job::Data { offset, len, src } => (offset, len, src),
    };
    let n = usize::try_from(len).map_err(|_| internal("record larger than memory"))?;
    let base = read_job(src, cfg, &mut slot, n, at, via)?;
    slot.source = len;
    let Slot { raw, z, parts, runs: rs, .. } = &mut slot;
    match cfg.zero_grain {
        Some(g) => runs(offset, &raw[base..base + n], g, rs),
        None => {
            rs.clear();
            rs.push(Run { at: 0, len: n, zero: false });
        }
    }
    let mut packer = packer;
    for r in rs.iter() {
        let o = offset + r.at as u64;
        if r.zero {
            if cfg.incremental {
                parts.push(Part::Unmap { offset: o, len: r.len as u64 });
            }
            continue;
        }
        let bytes = &raw[base + r.at..base + r.at + r.len];
        let zat = z.len();
        match packer.as_mut().and_then(|p| p.pack(bytes, z)) {
            Some(wire) => {
                let crc = crc32c::crc32c(&z[zat..zat + wire]);
                parts.push(Part::ZData { offset: o, len: r.len as u64, at: zat, wire, crc });
            }
            None => parts.push(Part::Data { offset: o, at: base + r.at, len: r.len, crc: crc32c::crc32c(bytes) }),
        }
    }
    Ok(slot)
}

/// Reads the job's `n` source bytes at `at` into the slot (through its pipe, `O_DIRECT` into its
/// buffer, or plainly); returns where in `raw` they start.
fn read_job(src: &Source, cfg: Config, slot: &mut Slot, n: usize, at: u64, via: &mut Option<Pipe>) -> Result<usize> {
    if cfg.splice && cfg.level.is_none() {
        if slot.raw.len() < n {
            slot.raw.resize(n, 0);
        }
        slot.piped = fill_piped(src, slot, n, at, via)?;
        if slot.piped {
            return Ok(0);
        }
    }
    if let Some(base) = read_direct(src, &mut slot.raw, n, at)? {
        return Ok(base);
    }
    if slot.raw.len() < n {
        slot.raw.resize(n, 0);
    }
    src.read_at(&mut slot.raw[..n], at)?;
    Ok(0)
}

/// Reads into the first `DIRECT_ALIGN`-aligned stretch of `raw` from the source's `O_DIRECT` descriptor;
/// `None`: not done (no such descriptor, an unaligned range, or the device refused it).
fn read_direct(src: &Source, raw: &mut Vec<u8>, n: usize, at: u64) -> Result<Option<usize>> {
    let Some(f) = src.direct() else { return Ok(None) };
    if at % DIRECT_ALIGN as u64 != 0 || n % DIRECT_ALIGN != 0 {
        return Ok(None);
    }
    if raw.len() < n + DIRECT_ALIGN {
        raw.resize(n + DIRECT_ALIGN, 0);
    }
    let base = raw.as_ptr().align_offset(DIRECT_ALIGN);
    if base >= DIRECT_ALIGN {
        return Ok(None);
    }
    match f.read_exact_at(&mut raw[base..base + n], at) {
        Ok(()) => Ok(Some(base)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        Err(e) => Err(src.read_error(at, e)),
    }
}

/// Reads the job's `n` bytes at `at` into the slot's buffer through its pipe; false: not done.
fn fill_piped(src: &Source, slot: &mut Slot, n: usize, at: u64, via: &mut Option<Pipe>) -> Result<bool> {
    const WANT: usize = 1 << 20;
    let pipe = match &mut slot.pipe {
        Some(p) => p,
        p => p.insert(Pipe::new(WANT.max(n))?),
    };
    let via = match via {
        Some(v) => v,
        v => v.insert(Pipe::new(WANT)?),
    };
    pipe.fill(src, at, &mut slot.raw[..n], via)
}

/// The writer thread: prepared jobs in stream order, framed and written; END once the walk finished
/// and every job was written.
fn write_all(
    enc: &mut Encoder,
    out: &mut Out,
    progress: &mut Progress,
    done: Receiver<Msg>,
    free: Sender<Slot>,
    consumed: &AtomicU64,
) -> Result<Counts> {
    out.write(&enc.start())?;
    let mut held: BTreeMap<u64, Result<Slot>> = BTreeMap::new();
    let (mut next, mut total) = (0u64, None);
    let mut passer = Passer::new();
    for m in done {
        match m {
            Msg::Done(idx, r) => {
                held.insert(idx, r);
            }
            Msg::Finished(n) => total = Some(n),
        }
        while let Some(r) = held.remove(&next) {
            let mut slot = r?;
            write_slot(enc, out, &mut slot, &mut passer)?;
            progress.add(slot.source);
            consumed.fetch_add(slot.source, Ordering::Relaxed);
            let _ = free.send(slot);
            next += 1;
        }
        if total == Some(next) {
            out.write(&enc.end())?;
            return Ok(enc.counts());
        }
    }
    // A worker's error may have arrived out of order.
    match held.into_values().find(|r| r.is_err()) {
        Some(Err(e)) => Err(e),
        _ => Err(Error::Other(STOPPED.into())),
    }
}

/// A slot's records, in order; a piped slot's DATA spliced from its pipe, the bytes between them
/// (elided zero runs) dropped.
fn write_slot(enc: &mut Encoder, out: &mut Out, slot: &mut Slot, passer: &mut Passer) -> Result<()> {
    let Slot { parts, pipe, piped, raw, z, .. } = slot;
    let pipe = match pipe {
        Some(p) if *piped => Some(p),
        _ => None,
    };
    let Some(pipe) = pipe else {
        return parts.iter().try_for_each(|p| write_part(enc, out, raw, z, p));
    };
    let mut pos = 0;
    for p in parts.iter() {
        if let Part::Data { offset, at, len, crc } = *p {
            passer.drop_bytes(pipe, at - pos)?;
            out.write(&enc.data(offset, len as u64, crc))?;
            passer.pass(pipe, out, &raw[at..at + len])?;
            pos = at + len;
        } else {
            write_part(enc, out, raw, z, p)?;
        }
    }
    passer.empty(pipe)
}

fn write_part(enc: &mut Encoder, out: &mut Out, raw: &[u8], z: &[u8], p: &Part) -> Result<()> {
    match *p {
        Part::Data { offset, at, len, crc } => {
            let h = enc.data(offset, len as u64, crc);
            out.write_record(&h, &raw[at..at + len])
        }
        Part::ZData { offset, len, at, wire, crc } => {
            let h = enc.zdata(offset, len, wire as u64, crc);
            out.write_record(&h, &z[at..at + wire])
        }
        Part::Unmap { offset, len } => {
            let h = enc.unmap(offset, len);
            out.write(&h)
        }
    }
}
