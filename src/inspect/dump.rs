//! `dump`: every device's mappings as thin_dump-compatible XML or human_readable text
//! (byte-identical to thin-provisioning-tools 0.9.0) or JSON (docs/JSON.md), streamed run by run.

use std::io::Write;

use crate::btree::mapping::{mappings, BlockTime};
use crate::btree::runs::coalesce;
use crate::error::{Error, Result};
use crate::pool::{Device, Pool};
use crate::report::{self, PoolFacts};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Xml,
    /// thin_dump 0.9.0's `--format human_readable`.
    HumanReadable,
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
    // A whole tree: the kernel's read-around and fault-around fetch the next nodes too.
    pool.dev.read_around(true);
    let single = |m: Result<(u64, BlockTime)>| {
        m.map(|(k, BlockTime { data_block, time })| Run { origin_begin: k, data_begin: data_block, length: 1, time })
    };
    coalesce(mappings(&pool.dev, d.root).map(single), Run::join)
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub format: Format,
    /// Only these devices (all if empty).
    pub dev_ids: Vec<u64>,
    pub skip_mappings: bool,
    /// The superblock values printed instead of the pool's (thin_dump's `--transaction-id`,
    /// `--data-block-size`, `--nr-data-blocks`).
    pub overrides: Overrides,
}

/// Superblock values to print instead of what the pool records.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overrides {
    pub transaction: Option<u64>,
    pub data_block_size: Option<u64>,
    pub nr_data_blocks: Option<u64>,
}

pub fn dump(pool: &Pool, opts: &Options, out: &mut dyn Write) -> Result<()> {
    // As thin_dump 0.9.0: the selected devices in id order, each once; unknown ids select nothing.
    let devices: Vec<&Device> =
        pool.devices.iter().filter(|d| opts.dev_ids.is_empty() || opts.dev_ids.contains(&d.id)).collect();
    let w = &mut Out { w: out, num: itoa::Buffer::new(), buf: Vec::with_capacity(OUT_CHUNK + 256) };
    let (skip, o) = (opts.skip_mappings, &opts.overrides);
    let done = match opts.format {
        Format::Xml => xml(pool, &devices, skip, o, w),
        Format::HumanReadable => human(pool, &devices, skip, o, w),
        Format::Json => json(pool, &devices, skip, o, w),
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

/// The superblock's fields in thin_dump's order, with the overrides applied.
fn superblock_fields(pool: &Pool, o: &Overrides) -> Fields<6> {
    let sb = pool.superblock();
    [
        ("time", sb.time.into()),
        ("transaction", o.transaction.unwrap_or(sb.trans_id)),
        ("flags", sb.flags.into()),
        ("version", sb.version.into()),
        ("data_block_size", o.data_block_size.unwrap_or(sb.data_block_size.into())),
        ("nr_data_blocks", o.nr_data_blocks.unwrap_or(pool.nr_data_blocks())),
    ]
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

fn xml(pool: &Pool, devices: &[&Device], skip: bool, o: &Overrides, w: &mut Out) -> Result<(), DumpError> {
    w.s("<superblock uuid=\"\"")?;
    w.all(true, true, &superblock_fields(pool, o))?;
    w.s(">\n")?;
    for d in devices {
        w.s("  <device")?;
        w.all(true, true, &device_fields(d))?;
        w.s(">\n")?;
        if !skip {
            for r in runs(pool, d) {
                let r = r?;
                if r.length == 1 {
                    w.s("    <single_mapping")?;
                    w.attr("origin_block", r.origin_begin)?;
                    w.attr("data_block", r.data_begin)?;
                } else {
                    w.s("    <range_mapping")?;
                    w.attr("origin_begin", r.origin_begin)?;
                    w.attr("data_begin", r.data_begin)?;
                    w.attr("length", r.length)?;
                }
                w.attr("time", r.time)?;
                w.s("/>\n")?;
            }
        }
        w.s("  </device>\n")?;
    }
    w.s("</superblock>\n")?;
    Ok(())
}

/// thin_dump 0.9.0's human_readable format: the superblock's values in a line, each device's
/// details, then one line per run (`begin..end` inclusive for a range).
fn human(pool: &Pool, devices: &[&Device], skip: bool, o: &Overrides, w: &mut Out) -> Result<(), DumpError> {
    w.s("begin superblock: \"\"")?;
    let sb = superblock_fields(pool, o);
    // thin_dump's order here: time, transaction, flags, version, data block size, data blocks.
    for (_, v) in sb {
        w.s(", ")?;
        w.n(v)?;
    }
    w.s("\n")?;
    for d in devices {
        let det = &d.details;
        let lines: Fields<5> = [
            ("device: ", d.id),
            ("mapped_blocks: ", det.mapped_blocks),
            ("transaction: ", det.transaction_id),
            ("creation time: ", det.creation_time.into()),
            ("snap time: ", det.snapshotted_time.into()),
        ];
        for (name, v) in lines {
            w.s(name)?;
            w.n(v)?;
            w.s("\n")?;
        }
        if !skip {
            for r in runs(pool, d) {
                let r = r?;
                w.s("    ")?;
                if r.length == 1 {
                    w.n(r.origin_begin)?;
                    w.s(" -> ")?;
                    w.n(r.data_begin)?;
                } else {
                    for (i, b) in [r.origin_begin, r.data_begin].into_iter().enumerate() {
                        w.s(if i == 0 { "(" } else { " -> (" })?;
                        w.n(b)?;
                        w.s("..")?;
                        w.n(b + (r.length - 1))?;
                        w.s(")")?;
                    }
                }
                w.s(", ")?;
                w.n(r.time)?;
                w.s("\n")?;
            }
        }
        w.s("\n")?;
    }
    w.s("end superblock\n")?;
    Ok(())
}

/// The JSON document (docs/JSON.md, `"type": "dump"`).
fn json(pool: &Pool, devices: &[&Device], skip: bool, o: &Overrides, w: &mut Out) -> Result<(), DumpError> {
    let mut facts = PoolFacts::of(pool);
    facts.transaction = o.transaction.unwrap_or(facts.transaction);
    if let Some(s) = o.data_block_size {
        facts.data_block_size_sectors = s;
        facts.data_block_size_bytes = s.saturating_mul(512);
    }
    facts.nr_data_blocks = o.nr_data_blocks.unwrap_or(facts.nr_data_blocks);
    w.s(&report::open("dump"))?;
    w.s(",\"superblock\":")?;
    w.s(&report::to_json(&facts)?)?;
    w.s(",\"devices\":[")?;
    for (i, d) in devices.iter().enumerate() {
        w.s(if i == 0 { "\n{" } else { ",\n{" })?;
        w.all(false, true, &device_fields(d))?;
        if skip {
            w.s(",\"mappings\":null}")?;
            continue;
        }
        w.s(",\"mappings\":[")?;
        for (j, r) in runs(pool, d).enumerate() {
            let r = r?;
            w.s(if j == 0 { "\n{" } else { ",\n{" })?;
            w.field(true, "origin_begin", r.origin_begin)?;
            w.field(false, "data_begin", r.data_begin)?;
            w.field(false, "length_blocks", r.length)?;
            w.field(false, "time", r.time)?;
            w.s("}")?;
        }
        w.s("]}")?;
    }
    w.s("]}\n")?;
    Ok(())
}
