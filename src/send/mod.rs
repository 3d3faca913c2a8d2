//! `send`: the records a thin device (full) or the change between two thin devices (incremental)
//! needs, and moving their bytes from the pool's data device (or the thin device itself) into the
//! stream: splice where bytes pass unchanged (LINBIT); native DATA read once into buffers where it is
//! checked for zero blocks, checksummed and compressed (`pipeline`).
//!
//! `plan` decides the records, `pipeline` and `copy` move the bytes, [`dry_run`] lists them; the formats'
//! framing comes from [`crate::stream::RecordWriter`], so nothing here knows a wire format's layout.

pub mod compress;
mod copy;
pub use copy::CopyMode;
mod dry_run;
mod out;
mod pace;
mod piped;
mod pipeline;
mod plan;
mod pump;
mod resume;
mod steps;
mod zero;

use std::fs::File;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

pub use dry_run::dry_run;
pub use plan::Plan;

use crate::error::{Error, Result};
use crate::io as sys;
use crate::pool::{Device, Pool};
use crate::progress::{self, human, Progress};
use crate::stream::{self, native, Counts, Format, RecordWriter};
use copy::{Readahead, Sender, Source};
use out::Out;
use plan::Emit;
use pump::Pump;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamFormat {
    #[default]
    Native,
    /// LINBIT thin-send-recv 1.1, byte for byte what thin_send 1.1.3 writes.
    Linbit,
}

/// LVM names and UUIDs of a snapshot, when the caller knows them (the LVM layer fills these).
#[derive(Debug, Clone, Default)]
pub struct LvmIds {
    pub vg_name: Option<String>,
    pub lv_name: Option<String>,
    pub vg_uuid: Option<String>,
    pub lv_uuid: Option<String>,
}

/// What the native data path does to DATA on the way (docs/STREAM.md §4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataPath {
    /// Mapped blocks that read as zeros carry no DATA: left out of a full stream, UNMAP in an
    /// incremental (`--no-zero-detect` turns it off).
    pub zero_detect: bool,
    /// `--compress zstd:LEVEL`: DATA as ZDATA where it shrinks.
    pub compress: Option<i32>,
    /// `--bwlimit`: stream bytes per second.
    pub bwlimit: Option<u64>,
}

impl Default for DataPath {
    fn default() -> Self {
        DataPath { zero_detect: true, compress: None, bwlimit: None }
    }
}

#[derive(Debug, Clone)]
pub struct Options {
    pub thin_id: u64,
    pub base_id: Option<u64>,
    pub format: StreamFormat,
    /// The pool's data device or file: DATA is read at `data_block * block size`.
    pub data: Option<PathBuf>,
    /// The thin device itself: DATA is read at its thin offset.
    pub source: Option<PathBuf>,
    /// Volume size in bytes (the metadata does not record it).
    pub size: Option<u64>,
    pub progress: progress::Mode,
    /// Largest native DATA record payload.
    pub record_size: u64,
    pub copy: CopyMode,
    pub source_lvm: LvmIds,
    pub base_lvm: LvmIds,
    /// Send an incremental whose base is newer than the device (refused otherwise).
    pub allow_backward: bool,
    pub data_path: DataPath,
    /// `--resume TOKEN`: only what follows the token's checkpoint, after checking its identities.
    pub resume: Option<crate::recv::token::Token>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            thin_id: 0,
            base_id: None,
            format: StreamFormat::Native,
            data: None,
            source: None,
            size: None,
            progress: progress::Mode::Auto,
            record_size: 1 << 20,
            copy: CopyMode::Buffered,
            source_lvm: LvmIds::default(),
            base_lvm: LvmIds::default(),
            allow_backward: false,
            data_path: DataPath::default(),
            resume: None,
        }
    }
}

/// What a send wrote: the stream's counts and its size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Totals {
    #[serde(flatten)]
    pub counts: Counts,
    pub stream_bytes: u64,
}

impl StreamFormat {
    fn wire(self) -> Format {
        match self {
            StreamFormat::Native => Format::Native,
            StreamFormat::Linbit => Format::Linbit11,
        }
    }
}

pub(crate) fn internal(what: &str) -> Error {
    Error::Other(format!("internal error: {what}"))
}

fn warn(msg: &str) {
    eprintln!("thinsend-native: warning: {msg}");
}

/// Counts records and measures their framing with the format's own writer; reads no data.
struct Count {
    t: Totals,
    w: Box<dyn RecordWriter>,
    framing: u64,
    /// End of the furthest source byte a DATA payload is read from.
    source_end: u64,
}

impl Emit for Count {
    fn data(&mut self, offset: u64, len: u64) -> Result<()> {
        self.t.counts.add_data(len);
        self.framing += self.w.data(offset, len, 0).len() as u64;
        Ok(())
    }
    fn piece(&mut self, src: u64, len: u64) -> Result<()> {
        self.source_end = self.source_end.max(src.saturating_add(len));
        Ok(())
    }
    fn unmap(&mut self, offset: u64, len: u64) -> Result<()> {
        self.t.counts.add_unmap(len);
        self.framing += self.w.unmap(offset, len).len() as u64;
        Ok(())
    }
}

impl Plan<'_> {
    /// The identity of a device as the stream header records it.
    fn identity(&self, d: &Device, lvm: &LvmIds) -> native::Identity {
        let sb = self.pool.superblock();
        native::Identity {
            pool_uuid: native::hex(&sb.uuid),
            thin_id: d.id,
            transaction: d.details.transaction_id,
            creation_time: d.details.creation_time,
            snap_time: d.details.snapshotted_time,
            mapped_blocks: d.details.mapped_blocks,
            pool_transaction: sb.trans_id,
            pool_time: sb.time,
            vg_name: lvm.vg_name.clone(),
            lv_name: lvm.lv_name.clone(),
            vg_uuid: lvm.vg_uuid.clone(),
            lv_uuid: lvm.lv_uuid.clone(),
        }
    }

    /// The native HEADER for this plan.
    pub fn header(&self, opts: &Options, stream_id: &[u8; 16]) -> native::Header {
        native::Header {
            version: native::VERSION,
            stream_id: native::hex(stream_id),
            mode: if self.incremental() { native::Mode::Incremental } else { native::Mode::Full },
            volume_size: self.volume_size(),
            block_size: self.g.bs,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            sender: format!("thinsend-native {}", env!("CARGO_PKG_VERSION")),
            source: self.identity(&self.right, &opts.source_lvm),
            base: self.left.as_ref().map(|l| self.identity(l, &opts.base_lvm)),
            data_bytes: None,
            compression: opts.data_path.compress.map(|_| native::zdata::ZSTD.into()),
            resume: None,
        }
    }

    /// The writer of this plan's stream.
    fn writer(&self, header: &native::Header, stream_id: [u8; 16]) -> Box<dyn RecordWriter> {
        stream::writer(self.format.wire(), header, stream_id, self.known_volume_size())
    }

    /// Counts records and bytes without reading data, and fills in the HEADER's `data_bytes`; the
    /// stream size is what the format's writer frames. Also returns the furthest source byte read.
    fn count(&self, header: &mut native::Header, opts: &Options) -> Result<(Totals, u64)> {
        let mut c = Count { t: Totals::default(), w: self.writer(header, [0; 16]), framing: 0, source_end: 0 };
        self.walk(&mut c)?;
        let mut t = c.t;
        // With zero elision the DATA total is known only afterwards: HEADER leaves it out rather
        // than announce a number END would contradict.
        header.data_bytes = (!self.elides_zeros(opts)).then_some(t.counts.data_bytes);
        let mut w = self.writer(header, [0; 16]);
        let open = w.start().len() as u64;
        let close = w.end().len() as u64;
        t.counts.records += w.records();
        t.stream_bytes = open + c.framing + t.counts.data_bytes + close;
        Ok((t, c.source_end))
    }

    /// Counts records and bytes without reading data; fills in the HEADER's `data_bytes`. With zero
    /// elision or compression the stream is at most this.
    pub fn totals(&self, header: &mut native::Header, opts: &Options) -> Result<Totals> {
        self.count(header, opts).map(|(t, _)| t)
    }

    /// Whether the send reads DATA into buffers (the native default): zero elision and compression.
    fn buffered(&self, opts: &Options) -> bool {
        self.format == StreamFormat::Native
            && (matches!(opts.copy, CopyMode::Buffered | CopyMode::BufferedWrite) || opts.data_path.compress.is_some())
    }

    fn elides_zeros(&self, opts: &Options) -> bool {
        self.buffered(opts) && opts.data_path.zero_detect
    }
}

/// `--source` (the thin device) or `--data` (the pool's data device), exactly one.
fn source_of(opts: &Options) -> Result<(PathBuf, &'static str, bool)> {
    match (&opts.source, &opts.data) {
        (Some(_), Some(_)) => Err(Error::Usage(
            "--source and --data exclude each other: read the thin device itself (--source) or the \
             pool's data device (--data), not both"
                .into(),
        )),
        (Some(s), None) => Ok((s.clone(), "source device", true)),
        (None, Some(d)) => Ok((d.clone(), "pool data device", false)),
        (None, None) => Err(Error::Usage(
            "send needs --data POOL_DATA (the pool's data device) or --source DEV (the thin device)".into(),
        )),
    }
}

/// The pool data device against the pool: it must hold every byte the send reads (and a block
/// device the whole data area); a file of another size than the data area gets a warning.
fn check_data(plan: &Plan<'_>, path: &Path, source_end: u64) -> Result<()> {
    let have = size_of(path)?;
    let is_blk = std::fs::metadata(path).map(|m| m.file_type().is_block_device()).unwrap_or(false);
    let (nr, bs) = (plan.g.nr_data_blocks, plan.g.bs);
    let area = nr.saturating_mul(bs);
    let about = format!("pool data device {} is {have} bytes", path.display());
    let pool = format!("the pool has {nr} data blocks of {bs} bytes ({area} bytes)");
    if have < source_end || (is_blk && have < area) {
        return Err(Error::Usage(format!(
            "{about}, but {} reaching byte {}: is it this pool's data device? ({pool})",
            if have < source_end { "the send reads data blocks" } else { "the pool's data area ends at" },
            if have < source_end { source_end } else { area }
        )));
    }
    if have < area {
        warn(&format!("{about}, shorter than the pool's data area: {pool}; is it this pool's data device?"));
    } else if have - area > bs {
        warn(&format!(
            "{about}, longer than the pool's data area by more than a block: {pool}; it may not be this \
             pool's data device"
        ));
    }
    Ok(())
}

/// Sends the stream to `out`; returns what was written.
pub fn send(pool: &Pool, opts: &Options, out: RawFd) -> Result<Totals> {
    let (path, what, from_thin) = source_of(opts)?;
    let source_size = if from_thin { Some(size_of(&path)?) } else { None };
    let plan = Plan::new(pool, opts, source_size)?;
    send_plan(&plan, opts, &path, what, from_thin, out)
}

/// Sends a plan (recorded or not), reading data from `path` (the thin device when `from_thin`, else
/// the pool's data device).
pub fn send_plan(
    plan: &Plan<'_>,
    opts: &Options,
    path: &Path,
    what: &'static str,
    from_thin: bool,
    out: RawFd,
) -> Result<Totals> {
    if plan.format == StreamFormat::Linbit && opts.data_path.compress.is_some() {
        return Err(Error::Usage(
            "--compress needs the native stream format: LINBIT streams carry no compression".into(),
        ));
    }
    let stream_id = random_id()?;
    let mut header = plan.header(opts, &stream_id);
    resume::bind(opts, &mut header)?;
    let (totals, source_end) = plan.count(&mut header, opts)?;
    if plan.known_volume_size().is_none() {
        warn(&format!(
            "the volume size of thin device {} is unknown, so the stream does not carry it: a receiver \
             cannot tell the volume's length (give --size BYTES or --source DEV)",
            opts.thin_id
        ));
    }
    if !from_thin {
        check_data(plan, path, source_end)?;
    }
    let src = Source::open(path, what, plan.g.bs, from_thin)?;
    let buffered = plan.buffered(opts);
    let exact = !buffered || (!opts.data_path.zero_detect && opts.data_path.compress.is_none());
    let mut out = Out::new(out).paced(opts.data_path.bwlimit);
    // Into a pipe, the receiver may draw its progress on the same terminal: it owns the line.
    let mut progress =
        Progress::new(opts.progress, "sent", Some(totals.counts.data_bytes)).lines_only(sys::is_pipe(out.fd));
    let r = if buffered {
        let cfg = pipeline::Config {
            incremental: plan.incremental(),
            zero_grain: opts.data_path.zero_detect.then(|| plan.g.bs.min(plan.record_size)),
            level: opts.data_path.compress,
            splice: opts.copy == CopyMode::Buffered,
        };
        let mut enc = native::Encoder::new(header, stream_id);
        pipeline::run(plan, &src, cfg, &mut enc, &mut out, &mut progress)
    } else {
        let writer = plan.writer(&header, stream_id);
        spliced(plan, opts, &src, writer, &mut out, &mut progress).map(|()| totals.counts)
    };
    let counts = match r {
        Ok(c) => c,
        Err(e) => {
            progress.abandon();
            return Err(e);
        }
    };
    let written = out.bytes;
    if exact && (written != totals.stream_bytes || counts != totals.counts) {
        return Err(internal(&format!("wrote {written} stream bytes, planned {}", totals.stream_bytes)));
    }
    let secs = progress.elapsed();
    let elided = totals.counts.data_bytes.saturating_sub(counts.data_bytes);
    progress.finish(&format!(
        "sent {} ({} records: {} DATA, {} UNMAP covering {}{}) in {:.1}s, {}/s",
        human(written as f64),
        counts.records,
        counts.data_records,
        counts.unmap_records,
        human(counts.unmap_bytes as f64),
        if elided > 0 { format!("; {} of zero blocks elided", human(elided as f64)) } else { String::new() },
        secs,
        human(written as f64 / secs.max(1e-6))
    ));
    Ok(Totals { counts, stream_bytes: written })
}

/// The splice paths (LINBIT always; native with `THINSEND_COPY=splice|readwrite|tee`).
fn spliced(
    plan: &Plan<'_>,
    opts: &Options,
    src: &Source,
    writer: Box<dyn RecordWriter>,
    out: &mut Out,
    progress: &mut Progress,
) -> Result<()> {
    std::thread::scope(|scope| {
        let pump = if writer.checksummed() { None } else { Pump::start(scope, src)? };
        let mut sender = Sender {
            out,
            src,
            ra: Readahead::new(src.fd(), plan.piece_steps()).on(pump.is_none()),
            mode: opts.copy,
            writer,
            pending: None,
            buf: Vec::new(),
            tee: None,
            progress,
            pump,
        };
        let r = (|| -> Result<()> {
            let start = sender.writer.start();
            sender.out.write(&start)?;
            plan.walk(&mut sender)?;
            sender.flush()?;
            let end = sender.writer.end();
            sender.out.write(&end)
        })();
        sender.ra.finish();
        // Dropping the pump closes its job queue, so its workers end before the scope waits for them.
        drop(sender);
        r
    })
}

/// Size of a regular file or block device.
pub fn size_of(path: &Path) -> Result<u64> {
    let (f, m) = crate::block::open_file_or_block_device(path, false)?;
    if m.file_type().is_block_device() {
        sys::blk_size(f.as_raw_fd()).map_err(|e| Error::io(path, e))
    } else {
        Ok(m.len())
    }
}

fn random_id() -> Result<[u8; 16]> {
    let mut id = [0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut id))
        .map_err(|e| Error::io("/dev/urandom", e))?;
    Ok(id)
}
