//! `dump`: every device's mappings as thin_dump-compatible XML (byte-identical to
//! thin-provisioning-tools 0.9.0) or JSON, streamed run by run.

use std::io::Write;

use rayon::prelude::*;

use crate::btree::mapping::{mappings, BlockTime};
use crate::btree::prefetch::{self, Prefetch};
use crate::btree::runs::coalesce;
use crate::error::{Error, Result};
use crate::pool::{Device, Pool};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Xml,
    Json,
}

/// A maximal run of mappings contiguous in virtual and data blocks with one time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Run {
    pub origin_begin: u64,
    pub data_begin: u64,
    pub length: u64,
    pub time: u32,
}

impl Run {
    /// Extends the run by `next` if it continues it in virtual and data blocks with the same time.
    fn join(&mut self, next: &Run) -> bool {
        let ok = next.origin_begin == self.origin_begin + self.length
            && next.data_begin == self.data_begin + self.length
            && next.time == self.time;
        if ok {
            self.length += next.length;
        }
        ok
    }
}

/// Groups one device's mappings into thin_dump's runs.
pub fn runs<'a>(pool: &'a Pool, d: &Device) -> impl Iterator<Item = Result<Run>> + 'a {
    let single = |m: Result<(u64, BlockTime)>| {
        m.map(|(k, BlockTime { data_block, time })| Run { origin_begin: k, data_begin: data_block, length: 1, time })
    };
    coalesce(mappings(&pool.dev, d.root).map(single), Run::join)
}

pub struct Options {
    pub format: Format,
    /// Only these devices (all if empty).
    pub dev_ids: Vec<u64>,
    pub skip_mappings: bool,
}

pub fn dump(pool: &Pool, opts: &Options, out: &mut dyn Write) -> Result<()> {
    // As thin_dump 0.9.0: the selected devices in id order, each once; unknown ids select nothing.
    let devices: Vec<&Device> =
        pool.devices.iter().filter(|d| opts.dev_ids.is_empty() || opts.dev_ids.contains(&d.id)).collect();
    let w = &mut Out { w: out, num: itoa::Buffer::new(), buf: Vec::with_capacity(OUT_CHUNK + 256) };
    let done = match opts.format {
        Format::Xml => xml(pool, &devices, opts.skip_mappings, w),
        Format::Json => json(pool, &devices, opts.skip_mappings, w),
    };
    // What was formatted goes out even when a damaged block ends the dump, as before buffering.
    let flushed = w.flush();
    done.and(flushed.map_err(DumpError::Io)).map_err(|e| match e {
        DumpError::Io(e) => Error::io("<stdout>", e),
        DumpError::Meta(e) => e,
    })
}

enum DumpError {
    Io(std::io::Error),
    Meta(Error),
}

impl From<std::io::Error> for DumpError {
    fn from(e: std::io::Error) -> Self {
        DumpError::Io(e)
    }
}

impl From<Error> for DumpError {
    fn from(e: Error) -> Self {
        DumpError::Meta(e)
    }
}

/// A writer with a reusable integer formatter.
struct Out<'a> {
    w: &'a mut dyn Write,
    num: itoa::Buffer,
    /// Output gathered here and handed to `w` in large pieces: a call through `dyn Write` per
    /// attribute piece was most of dump's time.
    buf: Vec<u8>,
}

const OUT_CHUNK: usize = 1 << 16;

impl Out<'_> {
    fn s(&mut self, s: &str) -> std::io::Result<()> {
        self.buf.extend_from_slice(s.as_bytes());
        if self.buf.len() >= OUT_CHUNK {
            self.flush()?;
        }
        Ok(())
    }
    fn n(&mut self, n: impl itoa::Integer) -> std::io::Result<()> {
        self.buf.extend_from_slice(self.num.format(n).as_bytes());
        Ok(())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.w.write_all(&self.buf)?;
        self.buf.clear();
        Ok(())
    }
    /// ` name="value"`
    fn attr(&mut self, name: &str, v: impl itoa::Integer) -> std::io::Result<()> {
        self.s(" ")?;
        self.s(name)?;
        self.s("=\"")?;
        self.n(v)?;
        self.s("\"")
    }
    /// `"name":value` with a leading comma unless first.
    fn field(&mut self, first: bool, name: &str, v: impl itoa::Integer) -> std::io::Result<()> {
        self.s(if first { "\"" } else { ",\"" })?;
        self.s(name)?;
        self.s("\":")?;
        self.n(v)
    }
    /// Each of `list` as an XML attribute, or as a JSON field (the first without a comma if `first`).
    fn all(&mut self, xml: bool, first: bool, list: &[(&str, u64)]) -> std::io::Result<()> {
        for (i, &(name, v)) in list.iter().enumerate() {
            if xml {
                self.attr(name, v)?;
            } else {
                self.field(first && i == 0, name, v)?;
            }
        }
        Ok(())
    }
}

/// Named integer fields, written as XML attributes or JSON fields.
type Fields<const N: usize> = [(&'static str, u64); N];

/// The superblock's fields as both formats give them, split where JSON adds `needs_check`.
fn superblock_fields(pool: &Pool) -> (Fields<3>, Fields<3>) {
    let sb = pool.superblock();
    let nr_data_blocks = pool.nr_data_blocks();
    (
        [("time", sb.time.into()), ("transaction", sb.trans_id), ("flags", sb.flags.into())],
        [
            ("version", sb.version.into()),
            ("data_block_size", sb.data_block_size.into()),
            ("nr_data_blocks", nr_data_blocks),
        ],
    )
}

/// A device's fields, the same in both formats.
fn device_fields(d: &Device) -> Fields<5> {
    let det = &d.details;
    [
        ("dev_id", d.id),
        ("mapped_blocks", det.mapped_blocks),
        ("transaction", det.transaction_id),
        ("creation_time", det.creation_time.into()),
        ("snap_time", det.snapshotted_time.into()),
    ]
}

fn xml(pool: &Pool, devices: &[&Device], skip: bool, w: &mut Out) -> Result<(), DumpError> {
    let (head, tail) = superblock_fields(pool);
    w.s("<superblock uuid=\"\"")?;
    w.all(true, true, &head)?;
    w.all(true, true, &tail)?;
    w.s(">\n")?;
    for d in devices {
        w.s("  <device")?;
        w.all(true, true, &device_fields(d))?;
        w.s(">\n")?;
        if !skip {
            xml_mappings(pool, d, w)?;
        }
        w.s("  </device>\n")?;
    }
    w.s("</superblock>\n")?;
    Ok(())
}

/// One run as thin_dump 0.9.0 prints it.
fn xml_run(buf: &mut Vec<u8>, num: &mut itoa::Buffer, r: &Run) {
    let mut attr = |buf: &mut Vec<u8>, name: &str, v: u64| {
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(num.format(v).as_bytes());
    };
    if r.length == 1 {
        attr(buf, "    <single_mapping origin_block=\"", r.origin_begin);
        attr(buf, "\" data_block=\"", r.data_begin);
    } else {
        attr(buf, "    <range_mapping origin_begin=\"", r.origin_begin);
        attr(buf, "\" data_begin=\"", r.data_begin);
        attr(buf, "\" length=\"", r.length);
    }
    attr(buf, "\" time=\"", r.time.into());
    buf.extend_from_slice(b"\"/>\n");
}

/// A device's mappings as XML, formatted in parallel key windows (`par`) and written in order.
fn xml_mappings(pool: &Pool, d: &Device, w: &mut Out) -> Result<(), DumpError> {
    let windows = par::windows(&pool.dev, d.root)?;
    let mut pending: Option<Run> = None;
    let batch = 4 * rayon::current_num_threads().max(1);
    // Cold-aware: the internal nodes read a level at a time, then each batch's share of the leaves
    // (by position: windows hold about as many leaves each) asked for a batch ahead.
    let leaves = prefetch::tree(&pool.dev, d.root, 8, &mut Prefetch::default());
    let share = |w: usize| (w * leaves.len()).div_ceil(windows.len()).min(leaves.len());
    for (i, chunk) in windows.chunks(batch).enumerate() {
        let ahead = if i == 0 { 0..2 * batch } else { (i + 1) * batch..(i + 2) * batch };
        let mut ask = leaves[share(ahead.start)..share(ahead.end)].to_vec();
        ask.sort_unstable();
        pool.dev.will_need(&ask);
        let parts: Vec<par::Part> = chunk.par_iter().map(|&(lo, hi)| par::window(&pool.dev, d.root, lo, hi)).collect();
        for part in parts {
            if let Some(f) = part.first {
                if !pending.as_mut().is_some_and(|p| p.join(&f)) {
                    if let Some(p) = pending.replace(f) {
                        xml_run(&mut w.buf, &mut w.num, &p);
                    }
                }
            }
            if part.last.is_some() {
                if let Some(p) = pending.take() {
                    xml_run(&mut w.buf, &mut w.num, &p);
                }
                w.buf.extend_from_slice(&part.body);
                pending = part.last;
            }
            w.s("")?;
            if let Some(e) = part.err {
                // As the serial walk: the run in progress at the error is dropped, one it ended is not.
                if let (Some(p), Some(t)) = (pending.as_mut(), part.tail) {
                    if !p.join(&t) {
                        xml_run(&mut w.buf, &mut w.num, p);
                    }
                }
                return Err(e.into());
            }
        }
    }
    if let Some(p) = pending {
        xml_run(&mut w.buf, &mut w.num, &p);
    }
    Ok(())
}

/// Key windows of one device's tree, each walked and formatted on its own.
mod par {
    use super::{xml_run, Run};
    use crate::block::MetadataDev;
    use crate::btree::cursor::{boundaries, Cursor, Front};
    use crate::btree::mapping::BlockTime;
    use crate::error::{Error, Result};
    use crate::ondisk::OnDisk;

    /// One window's runs: the first and last apart (they may join the neighbours' runs), those
    /// between them formatted; and the error that ended the window, if one did, with the run then in
    /// progress.
    #[derive(Default)]
    pub struct Part {
        pub first: Option<Run>,
        pub body: Vec<u8>,
        pub last: Option<Run>,
        pub err: Option<Error>,
        /// With `err`: the run in progress when it came.
        pub tail: Option<Run>,
    }

    /// `[lo, hi)` windows along the root's children (and theirs, when the root has few). A node
    /// below the root that cannot be read only makes the windows coarser: the walk reports it.
    pub fn windows(dev: &MetadataDev, root: u64) -> Result<Vec<(u64, Option<u64>)>> {
        let mut keys = boundaries(dev, root, 8, 1)?;
        if keys.len() < 64 {
            if let Ok(k) = boundaries(dev, root, 8, 2) {
                keys = k;
            }
        }
        let mut w = Vec::with_capacity(keys.len() + 1);
        let mut lo = 0;
        for k in keys {
            w.push((lo, Some(k)));
            lo = k;
        }
        w.push((lo, None));
        Ok(w)
    }

    pub fn window(dev: &MetadataDev, root: u64, lo: u64, hi: Option<u64>) -> Part {
        let mut part = Part::default();
        let mut cur: Option<Run> = None;
        let mut num = itoa::Buffer::new();
        let mut c = Cursor::new(dev, root, 8);
        let mut emit = |part: &mut Part, r: Run| match part.first {
            None => part.first = Some(r),
            Some(_) => xml_run(&mut part.body, &mut num, &r),
        };
        loop {
            match c.front_within(lo, hi) {
                Front::End => break,
                Front::Sub { .. } => {
                    if let Err(e) = c.expand() {
                        part.err = Some(e);
                        break;
                    }
                }
                Front::Entry { .. } => {
                    let Some((leaf, i)) = c.leaf_pos() else { break };
                    let mut n = 0;
                    for j in i..leaf.len() {
                        let k = leaf.key(j);
                        if hi.is_some_and(|h| k >= h) {
                            break;
                        }
                        let BlockTime { data_block, time } = BlockTime::from_raw(u64::unpack(leaf.value_bytes(j)));
                        let r = Run { origin_begin: k, data_begin: data_block, length: 1, time };
                        if !cur.as_mut().is_some_and(|p| p.join(&r)) {
                            if let Some(p) = cur.replace(r) {
                                emit(&mut part, p);
                            }
                        }
                        n += 1;
                    }
                    c.skip_entries(n.max(1));
                }
            }
        }
        if part.err.is_some() {
            part.tail = cur;
        } else if let Some(r) = cur {
            if part.first.is_none() {
                part.first = Some(r);
            } else {
                part.last = Some(r);
            }
        }
        part
    }
}

fn json(pool: &Pool, devices: &[&Device], skip: bool, w: &mut Out) -> Result<(), DumpError> {
    let (head, tail) = superblock_fields(pool);
    w.s("{\"superblock\":{")?;
    w.all(false, true, &head)?;
    w.s(&format!(",\"needs_check\":{}", pool.superblock().needs_check()))?;
    w.all(false, false, &tail)?;
    w.field(false, "held_root", pool.sb.live.held_root)?;
    w.s(&format!(",\"metadata_snapshot\":{}", pool.sb.snapshot))?;
    w.s("},\"devices\":[")?;
    for (i, d) in devices.iter().enumerate() {
        w.s(if i == 0 { "\n{" } else { ",\n{" })?;
        w.all(false, true, &device_fields(d))?;
        if !skip {
            w.s(",\"mappings\":[")?;
            for (j, r) in runs(pool, d).enumerate() {
                let r = r?;
                w.s(if j == 0 { "\n{" } else { ",\n{" })?;
                w.field(true, "origin_begin", r.origin_begin)?;
                w.field(false, "data_begin", r.data_begin)?;
                w.field(false, "length", r.length)?;
                w.field(false, "time", r.time)?;
                w.s("}")?;
            }
            w.s("]")?;
        }
        w.s("}")?;
    }
    w.s("]}\n")?;
    Ok(())
}
