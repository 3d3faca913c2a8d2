//! The native stream format (docs/STREAM.md): an 8-byte versioned magic, then records of a 40-byte
//! little-endian header (kind, flags, sequence number, offset, length, payload crc32c, header crc32c)
//! and a payload. HEADER (JSON identity) first, DATA/UNMAP in ascending target order, END last with
//! counts, totals and a checksum chained over every record header.

mod codec;
mod read;

pub use codec::{Encoder, End, RecordHeader, Writer};
pub(crate) use read::read_records;

use serde::{Deserialize, Serialize};

use super::record::{self, RecordKind};
use crate::text::escape;

/// `\x89TSN\r\n\x1a` + format major version.
pub const MAGIC: [u8; 8] = [0x89, b'T', b'S', b'N', 0x0d, 0x0a, 0x1a, 0x01];
pub const VERSION: u32 = 1;
pub const RECORD_HEADER_LEN: usize = 40;

// The record kinds' native codes, from the record table.
pub const KIND_HEADER: u32 = code(RecordKind::Header);
pub const KIND_DATA: u32 = code(RecordKind::Data);
pub const KIND_UNMAP: u32 = code(RecordKind::Unmap);
pub const KIND_END: u32 = code(RecordKind::End);
/// Kinds with this bit set are optional: a reader that does not know them verifies and skips them.
pub const OPTIONAL: u32 = record::OPTIONAL;

pub use record::{END_PAYLOAD_LEN, MAX_HEADER_PAYLOAD, MAX_PAYLOAD};

const fn code(k: RecordKind) -> u32 {
    match record::native_code_const(k) {
        Some(c) => c,
        None => panic!("record kind without a native code"),
    }
}

/// Which snapshot a stream was made from, or applies to.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Identity {
    /// The pool superblock's uuid as 32 hex digits (all zeros in pools LVM made).
    pub pool_uuid: String,
    /// The thin device's id in its pool.
    pub thin_id: u64,
    /// The device's transaction id (the pool transaction that last changed it).
    pub transaction: u64,
    /// The pool time when the device was created, and when it was last snapshotted.
    pub creation_time: u32,
    pub snap_time: u32,
    /// Data blocks the device maps.
    pub mapped_blocks: u64,
    /// The pool's transaction id and time when the metadata was read (informational).
    pub pool_transaction: u64,
    pub pool_time: u32,
    /// The LV's names and UUIDs, when it was sent by LV name (the file form knows none).
    pub vg_name: Option<String>,
    pub lv_name: Option<String>,
    pub vg_uuid: Option<String>,
    pub lv_uuid: Option<String>,
}

impl Identity {
    /// Whether both describe the same snapshot contents: same pool, thin id, creation time, device
    /// transaction and mapped block count, and the same LVM UUIDs where both know them.
    pub fn same_snapshot(&self, o: &Identity) -> bool {
        let opt = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.pool_uuid == o.pool_uuid
            && self.thin_id == o.thin_id
            && self.transaction == o.transaction
            && self.creation_time == o.creation_time
            && self.mapped_blocks == o.mapped_blocks
            && opt(&self.vg_uuid, &o.vg_uuid)
            && opt(&self.lv_uuid, &o.lv_uuid)
    }

    /// A short human description: `thin 2 (transaction 1, created at time 1) of pool 0000…`.
    pub fn describe(&self) -> String {
        // Names and the uuid may come from a stream: escaped, they cannot forge lines or escapes.
        let mut s = match (&self.vg_name, &self.lv_name) {
            (Some(vg), Some(lv)) => format!("{}/{} = thin {}", escape(vg), escape(lv), self.thin_id),
            _ => format!("thin {}", self.thin_id),
        };
        s.push_str(&format!(
            " (transaction {}, creation time {}, {} mapped blocks, pool {})",
            self.transaction,
            self.creation_time,
            self.mapped_blocks,
            escape(&self.pool_uuid)
        ));
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// The stream carries the whole volume: whatever it does not write reads as zeros.
    Full,
    /// The stream carries the changes from `base` to `source`.
    Incremental,
}

/// The HEADER record's JSON payload.
#[serde_with::skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The header's own version (a reader refuses one it does not know).
    pub version: u32,
    /// 32 hex digits, random per stream; END repeats it.
    pub stream_id: String,
    /// Full, or incremental from `base`.
    pub mode: Mode,
    /// Size of the volume in bytes; every DATA/UNMAP lies inside it.
    pub volume_size: u64,
    /// The source pool's data block size in bytes.
    pub block_size: u64,
    /// Seconds since the epoch when the stream was made (sender's clock).
    pub created: u64,
    /// The sending program and version (informational; escaped before it is printed).
    pub sender: String,
    /// The snapshot the target equals after this stream.
    pub source: Identity,
    /// The snapshot the target must equal before an incremental.
    pub base: Option<Identity>,
    /// Total DATA payload bytes the stream carries (for progress; END must agree).
    pub data_bytes: Option<u64>,
    /// A resumed stream: what follows the checkpoint of an interrupted receive (docs/STREAM.md §7).
    pub resume: Option<Resume>,
}

/// The HEADER's `resume` object: this stream continues stream `of` from target offset `from_offset`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resume {
    /// The interrupted stream's `stream_id`.
    pub of: String,
    /// Every DATA/UNMAP of this stream lies at or past this target offset.
    pub from_offset: u64,
}

impl Header {
    fn validate(&self) -> std::result::Result<(), String> {
        if self.version != VERSION {
            return Err(format!("header version {} (expected {VERSION})", self.version));
        }
        if self.stream_id.len() != 32 || !self.stream_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("stream_id {:?} is not 32 hex digits", self.stream_id));
        }
        if self.block_size == 0 || self.block_size % 512 != 0 {
            return Err(format!("block_size {} is not a positive multiple of 512", self.block_size));
        }
        if let Some(r) = &self.resume {
            if parse_stream_id(&r.of).is_none() {
                return Err(format!("resume.of {:?} is not 32 hex digits", r.of));
            }
            if r.from_offset > self.volume_size {
                return Err(format!("resume.from_offset {} is past the volume size", r.from_offset));
            }
        }
        match (self.mode, &self.base) {
            (Mode::Incremental, None) => Err("incremental stream without a base identity".into()),
            (Mode::Full, Some(_)) => Err("full stream with a base identity".into()),
            _ => Ok(()),
        }
    }
}

/// The 16 stream-id bytes of a header's hex `stream_id`.
pub fn parse_stream_id(s: &str) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut id = [0u8; 16];
    for (i, b) in id.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
