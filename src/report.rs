//! The one JSON schema every command's `--format json` output follows (docs/JSON.md,
//! docs/thinsend.schema.json): each document opens with `"schema": "thinsend/1"` and its `"type"`,
//! the pool's facts are one shape everywhere, names carry their unit (`_blocks`, `_bytes`,
//! `_sectors`, `_seconds`), and a value that is absent is `null`, never a missing key.

use std::io::Write;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::send;
use crate::stream::{native, Summary};
use crate::text::json_safe;

/// The schema tag of every JSON document and line this version writes.
pub const SCHEMA: &str = "thinsend/1";

/// The opening of a document written piece by piece: `{"schema":"thinsend/1","type":"<kind>"`
/// (no closing brace, no trailing comma).
pub fn open(kind: &str) -> String {
    format!("{{\"schema\":\"{SCHEMA}\",\"type\":\"{kind}\"")
}

/// A document built whole: `schema` and `type` first, then `fields` in their order.
pub fn document(kind: &str, fields: Map<String, Value>) -> Value {
    let mut m = Map::new();
    m.insert("schema".into(), SCHEMA.into());
    m.insert("type".into(), kind.into());
    m.extend(fields);
    Value::Object(m)
}

/// A value as compact JSON, with DEL and C1 controls escaped too (strings may come from a stream
/// or from LVM).
pub fn to_json(v: &impl Serialize) -> Result<String> {
    serde_json::to_string(v).map(json_safe).map_err(|e| Error::Other(format!("JSON output: {e}")))
}

/// Writes `v` as one line.
pub fn write_line(out: &mut dyn Write, v: &impl Serialize) -> Result<()> {
    let s = to_json(v)?;
    writeln!(out, "{s}").map_err(|e| Error::io("<stdout>", e))
}

/// Seconds, to the millisecond (`elapsed_seconds`, `eta_seconds`).
pub fn seconds(secs: f64) -> Value {
    ((secs.max(0.0) * 1000.0).round() / 1000.0).into()
}

/// A whole number of bytes per second (`bytes_per_second`).
pub fn rate(bytes: u64, secs: f64) -> Value {
    ((bytes as f64 / secs.max(1e-6)).round() as u64).into()
}

/// The pool's facts, the same object in `dump`, `ls` and `diff` (`"superblock"`).
#[derive(Debug, Clone, Serialize)]
pub struct PoolFacts {
    /// The superblock's uuid, 32 hex digits (all zeros in pools LVM made).
    pub uuid: String,
    pub version: u32,
    pub time: u32,
    pub transaction: u64,
    pub flags: u32,
    pub needs_check: bool,
    pub data_block_size_sectors: u64,
    pub data_block_size_bytes: u64,
    pub nr_data_blocks: u64,
    /// Where the held metadata snapshot is (null: none held).
    pub held_root: Option<u64>,
    /// Whether this output was read from the held metadata snapshot (`-m`) rather than the live
    /// superblock.
    pub metadata_snapshot: bool,
}

impl PoolFacts {
    pub fn of(pool: &Pool) -> Self {
        let sb = pool.superblock();
        let sectors = u64::from(sb.data_block_size);
        PoolFacts {
            uuid: native::hex(&sb.uuid),
            version: sb.version,
            time: sb.time,
            transaction: sb.trans_id,
            flags: sb.flags,
            needs_check: sb.needs_check(),
            data_block_size_sectors: sectors,
            data_block_size_bytes: sectors * 512,
            nr_data_blocks: pool.nr_data_blocks(),
            held_root: Some(pool.sb.live.held_root).filter(|&r| r != 0),
            metadata_snapshot: pool.sb.snapshot,
        }
    }
}

/// What a real send did, for its `--format json` result.
pub struct Sent {
    pub format: send::StreamFormat,
    /// The LVM form's snapshot and base (`vg/lv`).
    pub lv: Option<String>,
    pub base: Option<String>,
    /// The file form's thin ids.
    pub thin_id: Option<u64>,
    pub base_id: Option<u64>,
    pub totals: send::Totals,
    pub secs: f64,
}

/// The `"type": "send"` result document.
pub fn send_result(s: &Sent) -> Value {
    let format = match s.format {
        send::StreamFormat::Native => "native",
        send::StreamFormat::Linbit => "linbit-1.1",
    };
    let incremental = s.base.is_some() || s.base_id.is_some();
    let mut m = Map::new();
    m.insert("format".into(), format.into());
    m.insert("mode".into(), (if incremental { "incremental" } else { "full" }).into());
    m.insert("lv".into(), s.lv.clone().into());
    m.insert("base_lv".into(), s.base.clone().into());
    m.insert("thin_id".into(), s.thin_id.into());
    m.insert("base_thin_id".into(), s.base_id.into());
    m.insert("totals".into(), serde_json::to_value(s.totals).unwrap_or_default());
    m.insert("elapsed_seconds".into(), seconds(s.secs));
    m.insert("bytes_per_second".into(), rate(s.totals.stream_bytes, s.secs));
    document("send", m)
}

/// The `"type": "recv"` result document of a stream applied to `target`.
pub fn recv_result(target: &str, s: &Summary, secs: f64) -> Value {
    let mut m = Map::new();
    m.insert("target".into(), target.into());
    m.insert("format".into(), s.format.map(|f| f.name()).into());
    m.insert("header".into(), header(s.header.as_ref()));
    m.insert("summary".into(), serde_json::to_value(s).unwrap_or_default());
    m.insert("elapsed_seconds".into(), seconds(secs));
    m.insert("bytes_per_second".into(), rate(s.stream_bytes, secs));
    document("recv", m)
}

/// Optional fields of a stream identity that the wire format leaves out when unknown.
const IDENTITY_NULLABLE: [&str; 4] = ["vg_name", "lv_name", "vg_uuid", "lv_uuid"];
/// Optional fields of the HEADER record.
const HEADER_NULLABLE: [&str; 4] = ["base", "data_bytes", "compression", "resume"];

fn fill_nulls(v: &mut Value, keys: &[&str]) {
    if let Value::Object(m) = v {
        for k in keys {
            m.entry(*k).or_insert(Value::Null);
        }
    }
}

/// A stream identity as the JSON outputs give it: the wire format's names, every field present.
pub fn identity(id: Option<&native::Identity>) -> Value {
    let Some(id) = id else { return Value::Null };
    let mut v = serde_json::to_value(id).unwrap_or(Value::Null);
    fill_nulls(&mut v, &IDENTITY_NULLABLE);
    v
}

/// A native HEADER as the JSON outputs give it: the record's own fields (docs/STREAM.md), with
/// the optional ones `null` instead of left out.
pub fn header(h: Option<&native::Header>) -> Value {
    let Some(h) = h else { return Value::Null };
    let mut v = serde_json::to_value(h).unwrap_or(Value::Null);
    fill_nulls(&mut v, &HEADER_NULLABLE);
    if let Value::Object(m) = &mut v {
        m.insert("source".into(), identity(Some(&h.source)));
        m.insert("base".into(), identity(h.base.as_ref()));
    }
    v
}

/// Renames keys of an object (a library type serialized with its field names) to the schema's,
/// each in its place.
pub fn rename(v: Value, pairs: &[(&str, &str)]) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, x)| match pairs.iter().find(|(from, _)| *from == k) {
                    Some((_, to)) => ((*to).to_string(), x),
                    None => (k, x),
                })
                .collect(),
        ),
        v => v,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_identity_fields_are_null_not_missing() {
        let id = native::Identity { thin_id: 3, ..Default::default() };
        let v = identity(Some(&id));
        for k in IDENTITY_NULLABLE {
            assert_eq!(v.get(k), Some(&Value::Null), "{k}");
        }
        assert_eq!(v["thin_id"], 3);
        assert_eq!(identity(None), Value::Null);
    }

    #[test]
    fn documents_open_with_the_schema_and_type() {
        let mut f = Map::new();
        f.insert("a".into(), 1.into());
        let d = document("ls", f);
        assert_eq!(to_json(&d).unwrap(), r#"{"schema":"thinsend/1","type":"ls","a":1}"#);
        assert_eq!(format!("{}}}", open("dump")), r#"{"schema":"thinsend/1","type":"dump"}"#);
    }

    #[test]
    fn rename_keeps_values_and_leaves_other_keys() {
        let v = rename(serde_json::json!({"same": 3, "x": 1}), &[("same", "same_blocks"), ("nope", "n")]);
        assert_eq!(to_json(&v).unwrap(), r#"{"same_blocks":3,"x":1}"#);
    }
}
