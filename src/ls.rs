//! `ls`: per thin device, mapped / exclusive / shared blocks and the details, with thin_ls's field
//! names and its table layout. A data block is shared when more than one device maps it.

use std::io::Write;

use crate::btree::mapping::mappings;
use crate::error::{Error, Result};
use crate::pool::Pool;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Dev,
    MappedBlocks,
    ExclusiveBlocks,
    SharedBlocks,
    MappedSectors,
    ExclusiveSectors,
    SharedSectors,
    MappedBytes,
    ExclusiveBytes,
    SharedBytes,
    Mapped,
    Exclusive,
    Shared,
    Transaction,
    CreateTime,
    SnapTime,
}

pub const ALL_FIELDS: [(&str, Field); 16] = [
    ("DEV", Field::Dev),
    ("MAPPED_BLOCKS", Field::MappedBlocks),
    ("EXCLUSIVE_BLOCKS", Field::ExclusiveBlocks),
    ("SHARED_BLOCKS", Field::SharedBlocks),
    ("MAPPED_SECTORS", Field::MappedSectors),
    ("EXCLUSIVE_SECTORS", Field::ExclusiveSectors),
    ("SHARED_SECTORS", Field::SharedSectors),
    ("MAPPED_BYTES", Field::MappedBytes),
    ("EXCLUSIVE_BYTES", Field::ExclusiveBytes),
    ("SHARED_BYTES", Field::SharedBytes),
    ("MAPPED", Field::Mapped),
    ("EXCLUSIVE", Field::Exclusive),
    ("SHARED", Field::Shared),
    ("TRANSACTION", Field::Transaction),
    ("CREATE_TIME", Field::CreateTime),
    ("SNAP_TIME", Field::SnapTime),
];

pub const DEFAULT_FIELDS: &str = "DEV,MAPPED,CREATE_TIME,SNAP_TIME";

impl Field {
    pub fn name(self) -> &'static str {
        ALL_FIELDS.iter().find(|(_, f)| *f == self).map(|(n, _)| *n).unwrap_or("?")
    }
}

pub fn parse_fields(s: &str) -> Result<Vec<Field>> {
    s.split(',')
        .map(|name| {
            ALL_FIELDS.iter().find(|(n, _)| n.eq_ignore_ascii_case(name.trim())).map(|(_, f)| *f).ok_or_else(|| {
                let all: Vec<&str> = ALL_FIELDS.iter().map(|(n, _)| *n).collect();
                Error::Usage(format!("unknown field '{name}' (fields: {})", all.join(",")))
            })
        })
        .collect()
}

/// The figures of one device.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub dev: u64,
    pub mapped_blocks: u64,
    pub exclusive_blocks: u64,
    pub shared_blocks: u64,
    pub transaction: u64,
    pub create_time: u32,
    pub snap_time: u32,
}

/// Saturating 2-bit use counts (0, 1, 2 = "two or more") per data block.
struct UseCounts {
    bits: Vec<u64>,
}

impl UseCounts {
    fn new(nr_blocks: u64) -> Self {
        UseCounts { bits: vec![0; (nr_blocks as usize).div_ceil(32)] }
    }
    fn get(&self, b: u64) -> u64 {
        let (w, s) = ((b / 32) as usize, (b % 32) * 2);
        self.bits.get(w).map_or(0, |x| (x >> s) & 3)
    }
    fn inc(&mut self, b: u64) {
        let (w, s) = ((b / 32) as usize, (b % 32) * 2);
        if w >= self.bits.len() {
            self.bits.resize((w + 1).next_power_of_two(), 0);
        }
        let c = (self.bits[w] >> s) & 3;
        if c < 2 {
            self.bits[w] += 1 << s;
        }
    }
}

pub fn rows(pool: &Pool) -> Result<Vec<Row>> {
    let mut uses = UseCounts::new(pool.sb.live.data_sm.nr_blocks.max(pool.nr_data_blocks()));
    let mut mapped = Vec::with_capacity(pool.devices.len());
    for d in &pool.devices {
        let mut n = 0u64;
        for m in mappings(&pool.dev, d.root) {
            uses.inc(m?.1.data_block);
            n += 1;
        }
        mapped.push(n);
    }
    let mut out = Vec::with_capacity(pool.devices.len());
    for (d, mapped_blocks) in pool.devices.iter().zip(mapped) {
        let mut exclusive = 0u64;
        for m in mappings(&pool.dev, d.root) {
            exclusive += (uses.get(m?.1.data_block) == 1) as u64;
        }
        out.push(Row {
            dev: d.id,
            mapped_blocks,
            exclusive_blocks: exclusive,
            shared_blocks: mapped_blocks - exclusive,
            transaction: d.details.transaction_id,
            create_time: d.details.creation_time,
            snap_time: d.details.snapshotted_time,
        });
    }
    Ok(out)
}

/// thin_ls's human size: the largest binary unit in which the rounded value is at least 10.
pub fn human(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    for (i, u) in UNITS.iter().enumerate().rev() {
        let v = (bytes as f64 / (1u64 << (10 * (i + 1))) as f64).round();
        if v >= 10.0 {
            return format!("{}{u}", v as u64);
        }
    }
    format!("{}KiB", (bytes as f64 / 1024.0).round() as u64)
}

fn value(row: &Row, f: Field, sectors_per_block: u64) -> String {
    let bytes = |blocks: u64| blocks * sectors_per_block * 512;
    match f {
        Field::Dev => row.dev.to_string(),
        Field::MappedBlocks => row.mapped_blocks.to_string(),
        Field::ExclusiveBlocks => row.exclusive_blocks.to_string(),
        Field::SharedBlocks => row.shared_blocks.to_string(),
        Field::MappedSectors => (row.mapped_blocks * sectors_per_block).to_string(),
        Field::ExclusiveSectors => (row.exclusive_blocks * sectors_per_block).to_string(),
        Field::SharedSectors => (row.shared_blocks * sectors_per_block).to_string(),
        Field::MappedBytes => bytes(row.mapped_blocks).to_string(),
        Field::ExclusiveBytes => bytes(row.exclusive_blocks).to_string(),
        Field::SharedBytes => bytes(row.shared_blocks).to_string(),
        Field::Mapped => human(bytes(row.mapped_blocks)),
        Field::Exclusive => human(bytes(row.exclusive_blocks)),
        Field::Shared => human(bytes(row.shared_blocks)),
        Field::Transaction => row.transaction.to_string(),
        Field::CreateTime => row.create_time.to_string(),
        Field::SnapTime => row.snap_time.to_string(),
    }
}

/// thin_ls's table: every column right-aligned to its widest cell, each followed by one space.
pub fn write_table(pool: &Pool, rows: &[Row], fields: &[Field], headers: bool, out: &mut dyn Write) -> Result<()> {
    let spb = pool.superblock().data_block_size as u64;
    let mut table: Vec<Vec<String>> = Vec::new();
    if headers {
        table.push(fields.iter().map(|f| f.name().to_string()).collect());
    }
    table.extend(rows.iter().map(|r| fields.iter().map(|&f| value(r, f, spb)).collect()));
    let widths: Vec<usize> = (0..fields.len()).map(|c| table.iter().map(|r| r[c].len()).max().unwrap_or(0)).collect();
    let mut s = String::new();
    for r in &table {
        for (cell, w) in r.iter().zip(&widths) {
            s.push_str(&format!("{cell:>w$} "));
        }
        s.push('\n');
    }
    out.write_all(s.as_bytes()).map_err(|e| Error::io("<stdout>", e))
}

pub fn write_json(pool: &Pool, rows: &[Row], out: &mut dyn Write) -> Result<()> {
    let spb = pool.superblock().data_block_size as u64;
    let v: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            serde_json::json!({
                "dev": r.dev,
                "mapped_blocks": r.mapped_blocks,
                "exclusive_blocks": r.exclusive_blocks,
                "shared_blocks": r.shared_blocks,
                "mapped_bytes": r.mapped_blocks * spb * 512,
                "exclusive_bytes": r.exclusive_blocks * spb * 512,
                "shared_bytes": r.shared_blocks * spb * 512,
                "data_block_size_sectors": spb,
                "transaction": r.transaction,
                "create_time": r.create_time,
                "snap_time": r.snap_time,
            })
        })
        .collect();
    let s = serde_json::to_string_pretty(&v).map_err(|e| Error::Other(e.to_string()))?;
    writeln!(out, "{s}").map_err(|e| Error::io("<stdout>", e))
}
