//! `send`: the records a thin device (full) or the change between two thin devices (incremental)
//! needs, and moving their bytes from the pool's data device (or the thin device itself) into the
//! stream: splice where bytes pass unchanged, one read per native DATA record for its crc32c.
//!
//! One planner ([`walk`]) drives everything: the totals pass, `--dry-run` and the real send all see
//! the same records in the same order.

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt};
use std::path::{Path, PathBuf};

use crate::btree::cursor::MAX_DEPTH;
use crate::btree::node::{read_node, Value};
use crate::btree::BlockTime;
use crate::diff::{self, Delta, Kind};
use crate::dump;
use crate::error::{Error, Result};
use crate::io as sys;
use crate::pool::{Device, Pool};
use crate::progress::{self, human, Progress};
use crate::stream::{linbit, native};

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

/// How native DATA payloads reach the stream (all read the bytes once for the checksum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CopyMode {
    /// pread into a buffer for the crc, then splice the same range from the source (zero-copy).
    #[default]
    SpliceAfterRead,
    /// pread into a buffer, crc, write the buffer.
    ReadWrite,
    /// splice into a private pipe, tee it to a second pipe that is read for the crc, then splice
    /// the first pipe into the stream.
    Tee,
}

impl CopyMode {
    /// `THINSEND_COPY=splice|readwrite|tee` picks a mode (for benchmarks).
    pub fn from_env() -> Self {
        match std::env::var("THINSEND_COPY").as_deref() {
            Ok("readwrite") => CopyMode::ReadWrite,
            Ok("tee") => CopyMode::Tee,
            _ => CopyMode::SpliceAfterRead,
        }
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
            copy: CopyMode::SpliceAfterRead,
            source_lvm: LvmIds::default(),
            base_lvm: LvmIds::default(),
        }
    }
}

/// What a send wrote.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Totals {
    pub records: u64,
    pub data_records: u64,
    pub unmap_records: u64,
    pub data_bytes: u64,
    pub unmap_bytes: u64,
    pub stream_bytes: u64,
}

/// A range of the delta or of a full device, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Target `[offset, offset+len)` gets the source's bytes at `src`.
    Data {
        offset: u64,
        len: u64,
        src: u64,
    },
    Unmap {
        offset: u64,
        len: u64,
    },
}

fn bytes(block: u64, bs: u64, what: &str) -> Result<u64> {
    block.checked_mul(bs).ok_or_else(|| {
        Error::Other(format!("{what} block {block} times block size {bs} overflows a 64-bit byte offset"))
    })
}

/// Where DATA is read from: the pool data device (`src = data block`) or the thin device (`src =
/// thin block`).
#[derive(Debug, Clone, Copy)]
struct Geometry {
    bs: u64,
    from_thin: bool,
}

impl Geometry {
    fn data(&self, begin: u64, length: u64, data_block: u64) -> Result<Step> {
        let offset = bytes(begin, self.bs, "thin")?;
        let len = bytes(length, self.bs, "thin")?;
        let src = if self.from_thin { offset } else { bytes(data_block, self.bs, "data")? };
        Ok(Step::Data { offset, len, src })
    }

    fn unmap(&self, begin: u64, length: u64) -> Result<Step> {
        Ok(Step::Unmap { offset: bytes(begin, self.bs, "thin")?, len: bytes(length, self.bs, "thin")? })
    }

    fn delta_step(&self, d: &Delta) -> Result<Option<Step>> {
        match (d.kind, d.right) {
            (Kind::Same, _) => Ok(None),
            (Kind::LeftOnly, _) => self.unmap(d.begin, d.length).map(Some),
            (Kind::Different | Kind::RightOnly, Some(r)) => self.data(d.begin, d.length, r).map(Some),
            (k, None) => {
                Err(Error::Other(format!("diff piece {} at block {} has no right data block", k.name(), d.begin)))
            }
        }
    }
}

type Steps<'a> = Box<dyn Iterator<Item = Result<Step>> + 'a>;

/// The changed pieces of `right` against `left` (shared subtrees are not read).
fn changed<'a>(pool: &'a Pool, left: &Device, right: &Device) -> Result<diff::Diff<'a>> {
    diff::delta(pool, left, right, diff::Options { changed_only: true, ..Default::default() })
}

/// Data-contiguous pieces in ascending order: a full device's runs, or the changed pieces of a delta.
fn pieces<'a>(pool: &'a Pool, left: Option<&Device>, right: &Device, g: Geometry) -> Steps<'a> {
    match left {
        None => Box::new(
            dump::runs(pool, right).map(move |r| r.and_then(|r| g.data(r.origin_begin, r.length, r.data_begin))),
        ),
        Some(left) => match changed(pool, left, right) {
            Ok(d) => Box::new(d.filter_map(move |d| d.and_then(|d| g.delta_step(&d)).transpose())),
            Err(e) => Box::new(std::iter::once(Err(e))),
        },
    }
}

/// Joins steps that continue each other (adjacent UNMAPs; DATA adjacent on target and source).
fn merged(mut it: Steps<'_>) -> Steps<'_> {
    let mut cur: Option<Step> = None;
    Box::new(std::iter::from_fn(move || loop {
        match it.next() {
            Some(Ok(s)) => {
                let joined = match (&mut cur, s) {
                    (Some(Step::Data { offset, len, src }), Step::Data { offset: o2, len: l2, src: s2 })
                        if *offset + *len == o2 && *src + *len == s2 =>
                    {
                        *len += l2;
                        true
                    }
                    (Some(Step::Unmap { offset, len }), Step::Unmap { offset: o2, len: l2 })
                        if *offset + *len == o2 =>
                    {
                        *len += l2;
                        true
                    }
                    _ => false,
                };
                if !joined {
                    if let Some(done) = cur.replace(s) {
                        return Some(Ok(done));
                    }
                }
            }
            Some(Err(e)) => return Some(Err(e)),
            None => return cur.take().map(Ok),
        }
    }))
}

/// LINBIT chunks: thin_dump's runs (full) or thin_delta's simple ranges (incremental), one each.
fn linbit_chunks<'a>(pool: &'a Pool, left: Option<&Device>, right: &Device, g: Geometry) -> Steps<'a> {
    match left {
        None => pieces(pool, None, right, g),
        Some(left) => match changed(pool, left, right) {
            Ok(d) => Box::new(diff::coalesce_simple(d).filter_map(move |d| {
                d.and_then(|d| match d.kind {
                    Kind::Same => Ok(None),
                    Kind::LeftOnly => g.unmap(d.begin, d.length).map(Some),
                    // The data block is irrelevant for a chunk header; pieces carry the sources.
                    Kind::Different | Kind::RightOnly => g.data(d.begin, d.length, 0).map(Some),
                })
                .transpose()
            })),
            Err(e) => Box::new(std::iter::once(Err(e))),
        },
    }
}

/// What the planner asks a consumer to do, in stream order.
trait Emit {
    /// A native DATA record: target `[offset, offset+len)` from source byte `src`.
    fn native_data(&mut self, offset: u64, len: u64, src: u64) -> Result<()>;
    /// A LINBIT DATA chunk header; its payload follows as [`Emit::piece`]s.
    fn linbit_data(&mut self, offset: u64, len: u64) -> Result<()>;
    fn piece(&mut self, src: u64, len: u64) -> Result<()>;
    fn unmap(&mut self, offset: u64, len: u64) -> Result<()>;
}

/// The planned send: devices, geometry and volume size.
pub struct Plan<'a> {
    pool: &'a Pool,
    left: Option<Device>,
    right: Device,
    g: Geometry,
    format: StreamFormat,
    record_size: u64,
    /// Native only.
    volume_size: u64,
    /// The steps, walked once by [`Plan::record`] so that later passes need no metadata.
    recorded: Option<Recorded>,
}

/// A plan's steps held in memory: the data-contiguous pieces and (LINBIT) the chunks over them.
struct Recorded {
    pieces: Vec<Step>,
    chunks: Vec<Step>,
}

/// The highest thin block `d` maps, found by following the last child down the mapping tree (a few
/// metadata blocks, not a walk of every mapping).
fn last_mapped_block(pool: &Pool, d: &Device) -> Result<Option<u64>> {
    let mut node = read_node(&pool.dev, d.root, BlockTime::SIZE, true)?;
    for _ in 0..MAX_DEPTH {
        let Some(last) = node.len().checked_sub(1) else {
            return Ok(None);
        };
        if node.is_leaf {
            return Ok(Some(node.key(last)));
        }
        let child = node.child(last);
        node = read_node(&pool.dev, child, BlockTime::SIZE, false)?;
    }
    Err(Error::Metadata {
        path: pool.dev.path().to_path_buf(),
        what: format!("mapping tree of thin device {} is deeper than {MAX_DEPTH} levels", d.id),
    })
}

fn internal(what: &str) -> Error {
    Error::Other(format!("internal error: {what}"))
}

impl<'a> Plan<'a> {
    /// Resolves the devices and the volume size. `source_size` is the size of `--source` if given.
    pub fn new(pool: &'a Pool, opts: &Options, source_size: Option<u64>) -> Result<Self> {
        let right = *pool.device(opts.thin_id)?;
        let left = opts.base_id.map(|b| pool.device(b).copied()).transpose()?;
        if opts.base_id == Some(opts.thin_id) {
            return Err(Error::Usage(format!("--base-id {} is the device being sent", opts.thin_id)));
        }
        let g = Geometry { bs: pool.superblock().data_block_bytes(), from_thin: opts.source.is_some() };
        let record_size = (opts.record_size.clamp(4096, native::MAX_PAYLOAD) / 4096) * 4096;
        let mut plan = Plan { pool, left, right, g, format: opts.format, record_size, volume_size: 0, recorded: None };
        // The highest byte the device maps: every DATA must fit in the volume.
        let mapped_end = match last_mapped_block(pool, &right)? {
            Some(b) => bytes(b.saturating_add(1), g.bs, "thin")?,
            None => 0,
        };
        plan.volume_size = match (opts.size, source_size) {
            (Some(s), _) => s,
            (None, Some(s)) => s,
            (None, None) if mapped_end > 0 => mapped_end,
            (None, None) if opts.format == StreamFormat::Linbit => 0,
            (None, None) => {
                return Err(Error::Usage(format!(
                    "the size of thin device {} is unknown (it maps no blocks and the metadata does \
                     not record device sizes): give --size BYTES",
                    opts.thin_id
                )))
            }
        };
        if opts.format == StreamFormat::Native && mapped_end > plan.volume_size {
            return Err(Error::Usage(format!(
                "volume size {} is smaller than the {} bytes thin device {} maps{}",
                plan.volume_size,
                mapped_end,
                opts.thin_id,
                if opts.size.is_some() { " (--size too small)" } else { " (is --source the right device?)" }
            )));
        }
        Ok(plan)
    }

    pub fn volume_size(&self) -> u64 {
        self.volume_size
    }

    pub fn incremental(&self) -> bool {
        self.left.is_some()
    }

    /// Walks the metadata once and keeps the steps, so the metadata (a held metadata snapshot) can be
    /// released before any data moves. Memory grows with the number of ranges, not of mappings.
    pub fn record(&mut self) -> Result<()> {
        let pieces = self.piece_steps().collect::<Result<Vec<_>>>()?;
        let chunks = match self.format {
            StreamFormat::Linbit => self.chunk_steps().collect::<Result<Vec<_>>>()?,
            StreamFormat::Native => Vec::new(),
        };
        self.recorded = Some(Recorded { pieces, chunks });
        Ok(())
    }

    fn piece_steps(&self) -> Steps<'_> {
        match &self.recorded {
            Some(r) => Box::new(r.pieces.iter().copied().map(Ok)),
            None => pieces(self.pool, self.left.as_ref(), &self.right, self.g),
        }
    }

    fn chunk_steps(&self) -> Steps<'_> {
        match &self.recorded {
            Some(r) => Box::new(r.chunks.iter().copied().map(Ok)),
            None => linbit_chunks(self.pool, self.left.as_ref(), &self.right, self.g),
        }
    }

    fn walk(&self, e: &mut dyn Emit) -> Result<()> {
        match self.format {
            StreamFormat::Native => self.walk_native(e),
            StreamFormat::Linbit => self.walk_linbit(e),
        }
    }

    fn walk_native(&self, e: &mut dyn Emit) -> Result<()> {
        let rs = self.record_size;
        let vs = self.volume_size;
        let steps = merged(self.piece_steps());
        for step in steps {
            match step? {
                Step::Data { offset, len, src } => {
                    if offset.saturating_add(len) > vs {
                        return Err(internal("DATA past the volume size"));
                    }
                    let mut done = 0;
                    while done < len {
                        let n = (len - done).min(rs);
                        e.native_data(offset + done, n, src + done)?;
                        done += n;
                    }
                }
                Step::Unmap { offset, len } => {
                    // Blocks the base maps beyond the volume's end are cut off by the resize.
                    let end = offset.saturating_add(len).min(vs);
                    if end > offset {
                        e.unmap(offset, end - offset)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn walk_linbit(&self, e: &mut dyn Emit) -> Result<()> {
        let chunks = self.chunk_steps();
        let mut pieces = self.piece_steps();
        for c in chunks {
            let (offset, len, data) = match c? {
                Step::Data { offset, len, .. } => (offset, len, true),
                Step::Unmap { offset, len } => (offset, len, false),
            };
            if data {
                e.linbit_data(offset, len)?;
            } else {
                e.unmap(offset, len)?;
            }
            // Walk the data-contiguous pieces that tile this chunk.
            let mut at = offset;
            while at < offset + len {
                let p = pieces.next().ok_or_else(|| internal("LINBIT chunk not covered by pieces"))??;
                match (p, data) {
                    (Step::Data { offset: po, len: pl, src }, true) if po == at => {
                        e.piece(src, pl)?;
                        at += pl;
                    }
                    (Step::Unmap { offset: po, len: pl }, false) if po == at => at += pl,
                    _ => return Err(internal("LINBIT chunk and pieces disagree")),
                }
            }
            if at != offset + len {
                return Err(internal("LINBIT chunk and pieces disagree on length"));
            }
        }
        Ok(())
    }

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
            volume_size: self.volume_size,
            block_size: self.g.bs,
            created: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
            sender: format!("thinsend-native {}", env!("CARGO_PKG_VERSION")),
            source: self.identity(&self.right, &opts.source_lvm),
            base: self.left.as_ref().map(|l| self.identity(l, &opts.base_lvm)),
            data_bytes: None,
        }
    }

    /// Counts records and bytes without reading data; the native HEADER goes into the stream size.
    pub fn totals(&self, header: Option<&mut native::Header>) -> Result<Totals> {
        let mut c = Count::default();
        self.walk(&mut c)?;
        let mut t = c.0;
        t.records += 2;
        t.stream_bytes = match self.format {
            StreamFormat::Native => {
                let mut header_len = 0;
                if let Some(h) = header {
                    h.data_bytes = Some(t.data_bytes);
                    header_len = serde_json::to_vec(h).map(|v| v.len() as u64).unwrap_or(0);
                }
                native::MAGIC.len() as u64
                    + t.records * native::RECORD_HEADER_LEN as u64
                    + header_len
                    + t.data_bytes
                    + native::END_PAYLOAD_LEN as u64
            }
            StreamFormat::Linbit => t.records * linbit::CHUNK_LEN as u64 + linbit::STATS_LEN + t.data_bytes,
        };
        Ok(t)
    }
}

#[derive(Default)]
struct Count(Totals);

impl Emit for Count {
    fn native_data(&mut self, _: u64, len: u64, _: u64) -> Result<()> {
        self.0.records += 1;
        self.0.data_records += 1;
        self.0.data_bytes += len;
        Ok(())
    }
    fn linbit_data(&mut self, _: u64, len: u64) -> Result<()> {
        self.0.records += 1;
        self.0.data_records += 1;
        self.0.data_bytes += len;
        Ok(())
    }
    fn piece(&mut self, _: u64, _: u64) -> Result<()> {
        Ok(())
    }
    fn unmap(&mut self, _: u64, len: u64) -> Result<()> {
        self.0.records += 1;
        self.0.unmap_records += 1;
        self.0.unmap_bytes += len;
        Ok(())
    }
}

/// `--dry-run`: every record that would be sent, and the totals, as text or JSON.
pub fn dry_run(pool: &Pool, opts: &Options, json: bool, out: &mut dyn Write) -> Result<Totals> {
    let source_size = match &opts.source {
        Some(p) => Some(size_of(p)?),
        None => None,
    };
    let plan = Plan::new(pool, opts, source_size)?;
    let id = [0u8; 16];
    let mut header = plan.header(opts, &id);
    let totals = plan.totals(Some(&mut header))?;
    let w = |e: std::io::Error| Error::io("<stdout>", e);
    let format = match opts.format {
        StreamFormat::Native => "native",
        StreamFormat::Linbit => "linbit-1.1",
    };
    if json {
        let mut head = serde_json::json!({
            "format": format,
            "mode": if plan.incremental() { "incremental" } else { "full" },
            "block_size": plan.g.bs,
            "source": header.source,
            "base": header.base,
        });
        if opts.format == StreamFormat::Native {
            head["volume_size"] = plan.volume_size.into();
        }
        let head = head.to_string();
        // Print the header fields, then stream the records, then the totals.
        write!(out, "{},\"records\":[", head.strip_suffix('}').unwrap_or(&head)).map_err(w)?;
        let mut p = Print { out, json: true, first: true };
        plan.walk(&mut p)?;
        let totals_json = serde_json::to_string(&totals).unwrap_or_default();
        writeln!(p.out, "\n],\"totals\":{totals_json}}}").map_err(w)?;
    } else {
        writeln!(
            out,
            "# {format} stream, {}, thin {}{}, {}block size {} bytes",
            if plan.incremental() { "incremental" } else { "full" },
            opts.thin_id,
            opts.base_id.map(|b| format!(" from base {b}")).unwrap_or_default(),
            if opts.format == StreamFormat::Native {
                format!("volume {} bytes, ", plan.volume_size)
            } else {
                String::new()
            },
            plan.g.bs
        )
        .map_err(w)?;
        let mut p = Print { out, json: false, first: true };
        plan.walk(&mut p)?;
        writeln!(
            p.out,
            "# {} records: {} DATA ({} bytes), {} UNMAP ({} bytes); {} stream bytes",
            totals.records,
            totals.data_records,
            totals.data_bytes,
            totals.unmap_records,
            totals.unmap_bytes,
            totals.stream_bytes
        )
        .map_err(w)?;
    }
    Ok(totals)
}

struct Print<'w> {
    out: &'w mut dyn Write,
    json: bool,
    first: bool,
}

impl Print<'_> {
    fn line(&mut self, kind: &str, offset: u64, len: u64, src: Option<u64>) -> Result<()> {
        let r = if self.json {
            let sep = if self.first { "\n" } else { ",\n" };
            match src {
                Some(s) => write!(
                    self.out,
                    "{sep}{{\"kind\":\"{kind}\",\"offset\":{offset},\"length\":{len},\"source_offset\":{s}}}"
                ),
                None => write!(self.out, "{sep}{{\"kind\":\"{kind}\",\"offset\":{offset},\"length\":{len}}}"),
            }
        } else {
            match src {
                Some(s) => writeln!(self.out, "{:<5} offset={offset} length={len} source={s}", kind.to_uppercase()),
                None => writeln!(self.out, "{:<5} offset={offset} length={len}", kind.to_uppercase()),
            }
        };
        self.first = false;
        r.map_err(|e| Error::io("<stdout>", e))
    }
}

impl Emit for Print<'_> {
    fn native_data(&mut self, offset: u64, len: u64, src: u64) -> Result<()> {
        self.line("data", offset, len, Some(src))
    }
    fn linbit_data(&mut self, offset: u64, len: u64) -> Result<()> {
        self.line("data", offset, len, None)
    }
    fn piece(&mut self, src: u64, len: u64) -> Result<()> {
        if self.json {
            return Ok(());
        }
        writeln!(self.out, "        source={src} length={len}").map_err(|e| Error::io("<stdout>", e))
    }
    fn unmap(&mut self, offset: u64, len: u64) -> Result<()> {
        self.line("unmap", offset, len, None)
    }
}

/// Size of a regular file or block device.
pub fn size_of(path: &Path) -> Result<u64> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let m = f.metadata().map_err(|e| Error::io(path, e))?;
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

/// The data source, opened read-only.
struct Source {
    file: File,
    path: PathBuf,
    what: &'static str,
    bs: u64,
    from_thin: bool,
}

impl Source {
    fn open(path: &Path, what: &'static str, bs: u64, from_thin: bool) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // Ranges are scattered in an incremental send: the kernel's own readahead would read
        // around them. [`Readahead`] asks for exactly the ranges that will be read.
        let _ = sys::fadvise(file.as_raw_fd(), 0, 0, sys::Advice::Random);
        Ok(Source { file, path: path.to_path_buf(), what, bs, from_thin })
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn read_error(&self, off: u64, e: std::io::Error) -> Error {
        let block = off.checked_div(self.bs).unwrap_or(0);
        let unit = if self.from_thin { "thin" } else { "data" };
        let what = if e.kind() == std::io::ErrorKind::UnexpectedEof {
            format!("ends before byte {off} ({unit} block {block}): is it the right device?")
        } else {
            format!("reading byte {off} ({unit} block {block}): {e}")
        };
        Error::Other(format!("{} {}: {what}", self.what, self.path.display()))
    }

    fn read_at(&self, buf: &mut [u8], off: u64) -> Result<()> {
        self.file.read_exact_at(buf, off).map_err(|e| self.read_error(off, e))
    }
}

/// Source ranges in the order the send reads them, walked ahead of the send by a second planner
/// iterator: each range gets WILLNEED a window before it is read, and once the stream is well past
/// it, DONTNEED if it was not in the page cache before this send asked for it (so a send never
/// evicts what others had cached, nor leaves behind what only it needed).
struct Readahead<'a> {
    fd: RawFd,
    ahead: Steps<'a>,
    /// Source bytes prefetched / consumed so far, counted in send order.
    prefetched: u64,
    consumed: u64,
    /// Prefetched ranges not yet released: (offset, length, drop afterwards, end in send order).
    pending: VecDeque<(u64, u64, bool, u64)>,
    done: bool,
}

/// How far ahead of the reads the prefetch runs, and how far behind them the cache is dropped
/// (the stream pipe may still reference pages just spliced).
const AHEAD: u64 = 32 << 20;
const BEHIND: u64 = 4 << 20;
const PREFETCH_PIECE: u64 = 4 << 20;

impl<'a> Readahead<'a> {
    fn new(fd: RawFd, ahead: Steps<'a>) -> Self {
        Readahead { fd, ahead, prefetched: 0, consumed: 0, pending: VecDeque::new(), done: false }
    }

    /// Before reading the next `len` source bytes.
    fn before(&mut self, len: u64) {
        let want = self.consumed + len + AHEAD;
        while !self.done && self.prefetched < want {
            match self.ahead.next() {
                Some(Ok(Step::Data { len, src, .. })) => {
                    let mut done = 0;
                    while done < len {
                        let n = (len - done).min(PREFETCH_PIECE);
                        let off = src + done;
                        let cached = sys::is_cached(self.fd, off, n);
                        if !cached {
                            let _ = sys::fadvise(self.fd, off, n, sys::Advice::WillNeed);
                        }
                        self.prefetched += n;
                        self.pending.push_back((off, n, !cached, self.prefetched));
                        done += n;
                    }
                }
                Some(Ok(Step::Unmap { .. })) => {}
                // The send's own walk reports errors.
                Some(Err(_)) | None => self.done = true,
            }
        }
    }

    /// After `len` source bytes went into the stream.
    fn after(&mut self, len: u64) {
        self.consumed += len;
        while let Some(&(off, n, drop, end)) = self.pending.front() {
            if end + BEHIND > self.consumed {
                break;
            }
            if drop {
                let _ = sys::fadvise(self.fd, off, n, sys::Advice::DontNeed);
            }
            self.pending.pop_front();
        }
    }

    /// At the end of the send: release everything this send brought in.
    fn finish(&mut self) {
        while let Some((off, n, drop, end)) = self.pending.pop_front() {
            if drop && end <= self.consumed {
                let _ = sys::fadvise(self.fd, off, n, sys::Advice::DontNeed);
            }
        }
    }
}

/// The stream's output descriptor.
struct Out {
    fd: RawFd,
    /// A private pipe for splicing when `fd` is not a pipe.
    relay: Option<(OwnedFd, OwnedFd)>,
    is_pipe: bool,
    /// Splice failed once (e.g. O_APPEND file): copy through user space from then on.
    no_splice: bool,
    bytes: u64,
    buf: Vec<u8>,
}

fn out_error(e: std::io::Error) -> Error {
    Error::io("<stdout>", e)
}

impl Out {
    fn new(fd: RawFd) -> Self {
        let is_pipe = sys::is_pipe(fd);
        if is_pipe {
            sys::grow_pipe(fd, 1 << 20);
        }
        Out { fd, relay: None, is_pipe, no_splice: false, bytes: 0, buf: Vec::new() }
    }

    fn write(&mut self, b: &[u8]) -> Result<()> {
        sys::write_all(self.fd, b).map_err(out_error)?;
        self.bytes += b.len() as u64;
        Ok(())
    }

    /// Moves `len` bytes at `off` of `src` into the stream unchanged.
    fn copy(&mut self, src: &Source, off: u64, len: u64) -> Result<()> {
        if !self.no_splice {
            match self.splice(src, off, len) {
                Ok(()) => return Ok(()),
                Err((0, e)) if e.raw_os_error() == Some(libc::EINVAL) => self.no_splice = true,
                Err((done, e)) => {
                    return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        src.read_error(off + done, e)
                    } else if done == u64::MAX {
                        src.read_error(off, e)
                    } else {
                        out_error(e)
                    })
                }
            }
        }
        let mut done = 0u64;
        self.buf.resize(1 << 20, 0);
        while done < len {
            let n = (len - done).min(self.buf.len() as u64) as usize;
            let mut buf = std::mem::take(&mut self.buf);
            let r = src.read_at(&mut buf[..n], off + done).and_then(|()| self.write(&buf[..n]));
            self.buf = buf;
            r?;
            done += n as u64;
        }
        Ok(())
    }

    /// Splice `src[off..off+len]` to the output. Errors carry the bytes done before them
    /// (`u64::MAX` marks a source-side error).
    fn splice(&mut self, src: &Source, off: u64, len: u64) -> std::result::Result<(), (u64, std::io::Error)> {
        let mut pos = off as i64;
        let mut done = 0u64;
        if self.is_pipe {
            while done < len {
                let want = (len - done).min(1 << 30) as usize;
                let n = sys::splice(src.fd(), Some(&mut pos), self.fd, None, want).map_err(|e| (done, e))?;
                if n == 0 {
                    return Err((done, std::io::ErrorKind::UnexpectedEof.into()));
                }
                done += n as u64;
                self.bytes += n as u64;
            }
            return Ok(());
        }
        if self.relay.is_none() {
            let p = sys::pipe().map_err(|e| (0, e))?;
            sys::grow_pipe(p.1.as_raw_fd(), 1 << 20);
            self.relay = Some(p);
        }
        let Some((r, w)) = &self.relay else {
            return Err((0, std::io::ErrorKind::Other.into()));
        };
        let (r, w) = (r.as_raw_fd(), w.as_raw_fd());
        while done < len {
            let want = (len - done).min(1 << 20) as usize;
            let n = sys::splice(src.fd(), Some(&mut pos), w, None, want).map_err(|e| (u64::MAX, e))?;
            if n == 0 {
                return Err((done, std::io::ErrorKind::UnexpectedEof.into()));
            }
            let mut left = n;
            while left > 0 {
                let m = sys::splice(r, None, self.fd, None, left).map_err(|e| (done, e))?;
                if m == 0 {
                    return Err((done, std::io::ErrorKind::WriteZero.into()));
                }
                left -= m;
            }
            done += n as u64;
            self.bytes += n as u64;
        }
        Ok(())
    }
}

/// Sends over a private pipe pair: splice in, tee for the checksum, splice out.
struct TeePipes {
    a: (OwnedFd, OwnedFd),
    b: (OwnedFd, OwnedFd),
    cap: usize,
}

impl TeePipes {
    fn new() -> std::io::Result<Self> {
        let a = sys::pipe()?;
        let b = sys::pipe()?;
        let cap = sys::grow_pipe(a.1.as_raw_fd(), 1 << 20).min(sys::grow_pipe(b.1.as_raw_fd(), 1 << 20));
        Ok(TeePipes { a, b, cap })
    }
}

/// Moves records into the stream.
struct Sender<'s, 'a> {
    out: Out,
    src: &'s Source,
    ra: Readahead<'a>,
    mode: CopyMode,
    format: StreamFormat,
    native: native::Writer,
    linbit: linbit::Writer,
    buf: Vec<u8>,
    tee: Option<TeePipes>,
    progress: Progress,
}

impl Sender<'_, '_> {
    fn data_record(&mut self, offset: u64, len: u64, src: u64) -> Result<()> {
        let n = len as usize;
        match self.mode {
            CopyMode::SpliceAfterRead => {
                self.buf.resize(n, 0);
                self.src.read_at(&mut self.buf[..n], src)?;
                let crc = crc32c::crc32c(&self.buf[..n]);
                let h = self.native.data(offset, len, crc);
                self.out.write(&h)?;
                self.out.copy(self.src, src, len)
            }
            CopyMode::ReadWrite => {
                let hl = native::RECORD_HEADER_LEN;
                self.buf.resize(hl + n, 0);
                self.src.read_at(&mut self.buf[hl..hl + n], src)?;
                let crc = crc32c::crc32c(&self.buf[hl..hl + n]);
                let h = self.native.data(offset, len, crc);
                self.buf[..hl].copy_from_slice(&h);
                let buf = std::mem::take(&mut self.buf);
                let r = self.out.write(&buf[..hl + n]);
                self.buf = buf;
                r
            }
            CopyMode::Tee => self.tee_record(offset, len, src),
        }
    }

    fn tee_record(&mut self, offset: u64, len: u64, src: u64) -> Result<()> {
        if self.tee.is_none() {
            self.tee = Some(TeePipes::new().map_err(out_error)?);
        }
        let Some(t) = &self.tee else {
            return Err(internal("tee pipes"));
        };
        let (ar, aw) = (t.a.0.as_raw_fd(), t.a.1.as_raw_fd());
        let (br, bw) = (t.b.0.as_raw_fd(), t.b.1.as_raw_fd());
        let cap = t.cap as u64;
        let mut done = 0u64;
        let mut crc = 0u32;
        // The whole payload must sit in pipe a before its header can be written: records larger
        // than the pipe go the splice-after-read way.
        if len > cap {
            return self.data_record_fallback(offset, len, src);
        }
        let mut pos = src as i64;
        while done < len {
            let n = sys::splice(self.src.fd(), Some(&mut pos), aw, None, (len - done) as usize)
                .map_err(|e| self.src.read_error(src + done, e))?;
            if n == 0 {
                return Err(self.src.read_error(src + done, std::io::ErrorKind::UnexpectedEof.into()));
            }
            done += n as u64;
        }
        let mut teed = 0u64;
        self.buf.resize(len as usize, 0);
        while teed < len {
            let n = sys::tee(ar, bw, (len - teed) as usize).map_err(out_error)?;
            let mut got = 0usize;
            while got < n {
                let m = sys::read(br, &mut self.buf[teed as usize + got..teed as usize + n]).map_err(out_error)?;
                if m == 0 {
                    return Err(internal("tee pipe closed"));
                }
                got += m;
            }
            crc = crc32c::crc32c_append(crc, &self.buf[teed as usize..teed as usize + n]);
            teed += n as u64;
        }
        let h = self.native.data(offset, len, crc);
        self.out.write(&h)?;
        let mut left = len as usize;
        while left > 0 {
            let m = sys::splice(ar, None, self.out.fd, None, left).map_err(out_error)?;
            if m == 0 {
                return Err(out_error(std::io::ErrorKind::WriteZero.into()));
            }
            left -= m;
            self.out.bytes += m as u64;
        }
        Ok(())
    }

    fn data_record_fallback(&mut self, offset: u64, len: u64, src: u64) -> Result<()> {
        let mode = self.mode;
        self.mode = CopyMode::SpliceAfterRead;
        let r = self.data_record(offset, len, src);
        self.mode = mode;
        r
    }
}

impl Emit for Sender<'_, '_> {
    fn native_data(&mut self, offset: u64, len: u64, src: u64) -> Result<()> {
        self.ra.before(len);
        self.data_record(offset, len, src)?;
        self.ra.after(len);
        self.progress.add(len);
        Ok(())
    }
    fn linbit_data(&mut self, offset: u64, len: u64) -> Result<()> {
        let h = self.linbit.data(offset, len);
        self.out.write(&h)
    }
    fn piece(&mut self, src: u64, len: u64) -> Result<()> {
        // Large pieces go in windows so readahead and cache dropping keep pace.
        const WINDOW: u64 = 8 << 20;
        let mut done = 0;
        while done < len {
            let n = (len - done).min(WINDOW);
            self.ra.before(n);
            self.out.copy(self.src, src + done, n)?;
            self.ra.after(n);
            self.progress.add(n);
            done += n;
        }
        Ok(())
    }
    fn unmap(&mut self, offset: u64, len: u64) -> Result<()> {
        let h = match self.format {
            StreamFormat::Linbit => self.linbit.unmap(offset, len).to_vec(),
            StreamFormat::Native => self.native.unmap(offset, len).to_vec(),
        };
        self.out.write(&h)
    }
}

/// Sends the stream to `out`; returns what was written.
pub fn send(pool: &Pool, opts: &Options, out: RawFd) -> Result<Totals> {
    let (path, what, from_thin) = match (&opts.source, &opts.data) {
        (Some(s), _) => (s.clone(), "source device", true),
        (None, Some(d)) => (d.clone(), "pool data device", false),
        (None, None) => {
            return Err(Error::Usage(
                "send needs --data POOL_DATA (the pool's data device) or --source DEV (the thin device)".into(),
            ))
        }
    };
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
    let stream_id = random_id()?;
    let mut header = plan.header(opts, &stream_id);
    let totals = plan.totals(Some(&mut header))?;
    let src = Source::open(path, what, plan.g.bs, from_thin)?;
    let ahead = plan.piece_steps();
    let mut sender = Sender {
        out: Out::new(out),
        src: &src,
        ra: Readahead::new(src.fd(), ahead),
        mode: opts.copy,
        format: opts.format,
        native: native::Writer::new(stream_id),
        linbit: linbit::Writer::default(),
        buf: Vec::new(),
        tee: None,
        progress: Progress::new(opts.progress, "sent", Some(totals.data_bytes)),
    };
    let r = (|| -> Result<()> {
        match opts.format {
            StreamFormat::Native => {
                let start = sender.native.start(&header);
                sender.out.write(&start)?;
                plan.walk(&mut sender)?;
                let end = sender.native.finish();
                sender.out.write(&end)
            }
            StreamFormat::Linbit => {
                let b = sender.linbit.begin();
                sender.out.write(&b)?;
                plan.walk(&mut sender)?;
                let end = sender.linbit.end();
                sender.out.write(&end)
            }
        }
    })();
    sender.ra.finish();
    if let Err(e) = r {
        sender.progress.abandon();
        return Err(e);
    }
    let written = sender.out.bytes;
    if written != totals.stream_bytes {
        return Err(internal(&format!("wrote {written} stream bytes, planned {}", totals.stream_bytes)));
    }
    let secs = sender.progress.elapsed();
    sender.progress.finish(&format!(
        "sent {} ({} records: {} DATA, {} UNMAP covering {}) in {:.1}s, {}/s",
        human(written as f64),
        totals.records,
        totals.data_records,
        totals.unmap_records,
        human(totals.unmap_bytes as f64),
        secs,
        human(written as f64 / secs.max(1e-6))
    ));
    Ok(totals)
}
