//! `ls`: per thin device, mapped / exclusive / shared blocks and the details, with thin_ls's field
//! names and its table layout. A data block is shared when more than one device maps it.

use std::io::Write;

use crate::btree::mapping::mappings;
use crate::error::{Error, Result};
use crate::inspect::counts::Counts;
use crate::pool::Pool;
use crate::report::{self, PoolFacts};

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
    /// As the device details record it (thin_ls prints this, not a count of the mappings).
    pub mapped_blocks: u64,
    /// Mappings whose data block no other mapping uses.
    pub exclusive_blocks: u64,
    /// `mapped_blocks - exclusive_blocks` (0 rather than thin_ls's crash when the details undercount).
    pub shared_blocks: u64,
    pub transaction: u64,
    pub create_time: u32,
    pub snap_time: u32,
}

/// One row per device. Like thin_ls, walks every device's tree in full, so blocks of a subtree two
/// devices share count as used twice (shared), as do blocks two leaves map.
pub fn rows(pool: &Pool) -> Result<Vec<Row>> {
    // Memory follows the blocks mapped (sparse counts), not the data device's size.
    let mut uses = Counts::default();
    // Whole trees: the kernel's read-around and fault-around fetch the next nodes too.
    pool.dev.read_around(true);
    for d in &pool.devices {
        for m in mappings(&pool.dev, d.root) {
            uses.inc(m?.1.data_block);
        }
    }
    let mut out = Vec::with_capacity(pool.devices.len());
    for d in &pool.devices {
        let mut exclusive = 0u64;
        for m in mappings(&pool.dev, d.root) {
            exclusive += (uses.get(m?.1.data_block) == 1) as u64;
        }
        let mapped_blocks = d.details.mapped_blocks;
        out.push(Row {
            dev: d.id,
            mapped_blocks,
            exclusive_blocks: exclusive,
            shared_blocks: mapped_blocks.saturating_sub(exclusive),
            transaction: d.details.transaction_id,
            create_time: d.details.creation_time,
            snap_time: d.details.snapshotted_time,
        });
    }
    Ok(out)
}

/// thin_ls's human size. Fitted to thin_ls 0.9.0's output (its formula is not documented): the unit
/// is the largest in which the size is over 8192 of the next smaller unit (8192KiB, then 8MiB from
/// 8193KiB; 8192GiB, then 8TiB from 8193GiB); the figure is rounded half up below 1024 and rounded
/// down from 1024 (8.5MiB -> 9MiB, 1023.5MiB -> 1024MiB, but 1024.9MiB -> 1024MiB).
pub fn human(bytes: u64) -> String {
    if bytes == 0 {
        return "0".into();
    }
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let bytes = bytes as u128;
    let mut i = 0;
    while i + 1 < UNITS.len() && bytes >> (10 * (i + 1)) > 8192 {
        i += 1;
    }
    let unit = 1u128 << (10 * (i + 1));
    let (q, r) = (bytes / unit, bytes % unit);
    let v = if q < 1024 && 2 * r >= unit { q + 1 } else { q };
    format!("{v}{}", UNITS[i])
}

fn value(row: &Row, f: Field, sectors_per_block: u64) -> String {
    // Counts come from the details tree as recorded; like thin_ls's u64 arithmetic, wrap rather than
    // panic on absurd ones.
    let sectors = |blocks: u64| blocks.wrapping_mul(sectors_per_block);
    let bytes = |blocks: u64| sectors(blocks).wrapping_mul(512);
    match f {
        Field::Dev => row.dev.to_string(),
        Field::MappedBlocks => row.mapped_blocks.to_string(),
        Field::ExclusiveBlocks => row.exclusive_blocks.to_string(),
        Field::SharedBlocks => row.shared_blocks.to_string(),
        Field::MappedSectors => sectors(row.mapped_blocks).to_string(),
        Field::ExclusiveSectors => sectors(row.exclusive_blocks).to_string(),
        Field::SharedSectors => sectors(row.shared_blocks).to_string(),
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

impl Field {
    /// The field's name in the JSON output: thin_ls's name in lower case, but `dev_id` and
    /// `creation_time` as in `dump` and the stream identities.
    pub fn json_name(self) -> &'static str {
        match self {
            Field::Dev => "dev_id",
            Field::MappedBlocks => "mapped_blocks",
            Field::ExclusiveBlocks => "exclusive_blocks",
            Field::SharedBlocks => "shared_blocks",
            Field::MappedSectors => "mapped_sectors",
            Field::ExclusiveSectors => "exclusive_sectors",
            Field::SharedSectors => "shared_sectors",
            Field::MappedBytes => "mapped_bytes",
            Field::ExclusiveBytes => "exclusive_bytes",
            Field::SharedBytes => "shared_bytes",
            Field::Mapped => "mapped",
            Field::Exclusive => "exclusive",
            Field::Shared => "shared",
            Field::Transaction => "transaction",
            Field::CreateTime => "creation_time",
            Field::SnapTime => "snap_time",
        }
    }
}

/// The JSON document (docs/JSON.md, `"type": "ls"`): the pool's facts and, per device, the
/// `fields` (numbers; the human MAPPED/EXCLUSIVE/SHARED as thin_ls's strings).
pub fn write_json(pool: &Pool, rows: &[Row], fields: &[Field], out: &mut dyn Write) -> Result<()> {
    let spb = pool.superblock().data_block_size as u64;
    let devices: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| {
            let m: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .map(|&f| {
                    let v = value(r, f, spb);
                    let v = match f {
                        Field::Mapped | Field::Exclusive | Field::Shared => serde_json::Value::from(v),
                        _ => v.parse::<u64>().map_or(serde_json::Value::from(v), serde_json::Value::from),
                    };
                    (f.json_name().to_string(), v)
                })
                .collect();
            serde_json::Value::Object(m)
        })
        .collect();
    let mut doc = serde_json::Map::new();
    doc.insert("superblock".into(), serde_json::to_value(PoolFacts::of(pool)).unwrap_or_default());
    doc.insert("fields".into(), fields.iter().map(|f| f.name()).collect::<Vec<_>>().into());
    doc.insert("devices".into(), devices.into());
    report::write_line(out, &report::document("ls", doc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_match_thin_ls() {
        const K: u64 = 1024;
        const M: u64 = K * K;
        const G: u64 = M * K;
        for (bytes, s) in [
            (0, "0"),
            (64 * K, "64KiB"),
            (8 * M, "8192KiB"),
            (8 * M + K, "8MiB"),
            (8 * M + M / 2 - 64 * K, "8MiB"),
            (8 * M + M / 2, "9MiB"),
            (99 * M + M / 2, "100MiB"),
            (100 * M + M / 2, "101MiB"),
            (1023 * M + M / 2, "1024MiB"),
            (1024 * M + M / 2, "1024MiB"),
            (1024 * M + 15 * M / 16, "1024MiB"),
            (2047 * M + 15 * M / 16, "2047MiB"),
            (8 * G, "8192MiB"),
            (8 * G + G / 2, "9GiB"),
            (8192 * G, "8192GiB"),
            (8192 * G + G / 2, "8192GiB"),
            (8193 * G, "8TiB"),
            (8 * 1024 * G + 512 * G, "9TiB"),
            (10299 * G, "10TiB"),
        ] {
            assert_eq!(human(bytes), s, "{bytes} bytes");
        }
    }
}
