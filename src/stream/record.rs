//! The record table: every kind of record either wire format carries, with its code in each format,
//! its name, its payload limit and whether a reader that does not know it may skip it. Framing
//! (`native::read`, `linbit::read`) looks kinds up here; nothing else lists them.
//!
//! A new optional kind is one row here, its encoding in each format's writer, its case in each
//! format's dispatch and the sink method that applies it (with a default body). `send/` and `recv/`
//! dispatch do not change.

/// Kinds with this bit set are optional in both formats: a reader that does not know them skips them.
pub const OPTIONAL: u32 = 0x8000_0000;

/// Every record kind of the native and LINBIT formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// Native HEADER: the JSON identity of the stream.
    Header,
    /// LINBIT 1.1 BEGIN_STREAM.
    Begin,
    /// Target bytes.
    Data,
    /// A target range that must read as zeros.
    Unmap,
    /// LINBIT optional chunk: the volume size (8 bytes, big-endian), right after BEGIN. The native
    /// HEADER carries the size itself.
    VolumeSize,
    /// The last record, with counts.
    End,
    /// Native only: target bytes as a zstd frame after an 8-byte uncompressed length
    /// (docs/STREAM.md §1.8). Required: a reader that skipped it would lose data.
    ZData,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Spec {
    pub kind: RecordKind,
    /// Upper-case name used in messages and listings.
    pub name: &'static str,
    /// Native record kind code (`None`: not part of the native format).
    pub native: Option<u32>,
    /// LINBIT chunk command (`None`: not part of the LINBIT formats).
    pub linbit: Option<u32>,
    /// Largest payload a reader accepts (bounds its buffer).
    pub max_payload: u64,
    /// `offset`/`length` name a target range (checked against the volume and the previous record).
    pub ranged: bool,
    /// `length` is a payload that follows the header (UNMAP's length is a range, nothing follows).
    pub has_payload: bool,
}

/// Largest native DATA or optional payload a reader accepts.
pub const MAX_PAYLOAD: u64 = 16 << 20;
pub const MAX_HEADER_PAYLOAD: u64 = 1 << 20;
pub const END_PAYLOAD_LEN: usize = 64;
pub const LINBIT_STATS_LEN: u64 = 24;
/// ZDATA's payload opens with the uncompressed length (u64, little-endian).
pub const ZDATA_PREFIX_LEN: u64 = 8;

const TABLE: [Spec; 7] = [
    Spec {
        kind: RecordKind::Header,
        name: "HEADER",
        native: Some(1),
        linbit: None,
        max_payload: MAX_HEADER_PAYLOAD,
        ranged: false,
        has_payload: true,
    },
    Spec {
        kind: RecordKind::Begin,
        name: "BEGIN",
        native: None,
        linbit: Some(2),
        max_payload: 0,
        ranged: false,
        has_payload: false,
    },
    Spec {
        kind: RecordKind::Data,
        name: "DATA",
        native: Some(2),
        linbit: Some(0),
        max_payload: MAX_PAYLOAD,
        ranged: true,
        has_payload: true,
    },
    Spec {
        kind: RecordKind::Unmap,
        name: "UNMAP",
        native: Some(3),
        linbit: Some(1),
        max_payload: 0,
        ranged: true,
        has_payload: false,
    },
    Spec {
        kind: RecordKind::VolumeSize,
        name: "VOLUME_SIZE",
        native: None,
        linbit: Some(OPTIONAL | 0x0054_5301),
        max_payload: 8,
        ranged: false,
        has_payload: true,
    },
    Spec {
        kind: RecordKind::End,
        name: "END",
        native: Some(4),
        linbit: Some(3),
        max_payload: END_PAYLOAD_LEN as u64,
        ranged: false,
        has_payload: true,
    },
    Spec {
        kind: RecordKind::ZData,
        name: "ZDATA",
        native: Some(5),
        linbit: None,
        // The target range is in the payload's prefix: the dispatch checks it once it is read.
        max_payload: MAX_PAYLOAD + ZDATA_PREFIX_LEN,
        ranged: false,
        has_payload: true,
    },
];

/// A kind's native code in constant context.
pub const fn native_code_const(k: RecordKind) -> Option<u32> {
    TABLE[k as usize].native
}

/// A kind's LINBIT command in constant context.
pub const fn linbit_cmd_const(k: RecordKind) -> Option<u32> {
    TABLE[k as usize].linbit
}

impl RecordKind {
    pub fn spec(self) -> &'static Spec {
        // The table is indexed by the enum's order; `table_is_in_enum_order` checks it.
        &TABLE[self as usize]
    }

    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn native_code(self) -> Option<u32> {
        self.spec().native
    }

    pub fn linbit_cmd(self) -> Option<u32> {
        self.spec().linbit
    }

    /// The kind a native record code names.
    pub fn from_native(code: u32) -> Option<Self> {
        TABLE.iter().find(|s| s.native == Some(code)).map(|s| s.kind)
    }

    /// The kind a LINBIT chunk command names.
    pub fn from_linbit(cmd: u32) -> Option<Self> {
        TABLE.iter().find(|s| s.linbit == Some(cmd)).map(|s| s.kind)
    }

    pub fn all() -> impl Iterator<Item = RecordKind> {
        TABLE.iter().map(|s| s.kind)
    }
}

/// The name of a native record code, for messages (unknown codes by number).
pub fn native_name(code: u32) -> String {
    match RecordKind::from_native(code) {
        Some(k) => k.name().into(),
        None if code & OPTIONAL != 0 => format!("optional {code:#x}"),
        None => format!("unknown kind {code:#x}"),
    }
}

/// The payload limit of a native record code (unknown optional kinds: [`MAX_PAYLOAD`]).
pub fn native_limit(code: u32) -> u64 {
    RecordKind::from_native(code).map_or(MAX_PAYLOAD, |k| k.spec().max_payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_in_enum_order() {
        for (i, s) in TABLE.iter().enumerate() {
            assert_eq!(s.kind as usize, i, "{} out of place", s.name);
            assert_eq!(s.kind.spec().name, s.name);
        }
    }

    #[test]
    fn codes_round_trip_and_are_unique_per_format() {
        for k in RecordKind::all() {
            if let Some(c) = k.native_code() {
                assert_eq!(RecordKind::from_native(c), Some(k), "{}", k.name());
            }
            if let Some(c) = k.linbit_cmd() {
                assert_eq!(RecordKind::from_linbit(c), Some(k), "{}", k.name());
            }
            assert!(k.native_code().is_some() || k.linbit_cmd().is_some(), "{} in no format", k.name());
        }
    }

    #[test]
    fn wire_codes_are_the_published_ones() {
        // docs/STREAM.md and docs/linbit-thin-send-recv.md §2: changing one breaks every reader.
        let native: Vec<_> = RecordKind::all().filter_map(|k| k.native_code().map(|c| (k.name(), c))).collect();
        assert_eq!(native, [("HEADER", 1), ("DATA", 2), ("UNMAP", 3), ("END", 4), ("ZDATA", 5)]);
        let linbit: Vec<_> = RecordKind::all().filter_map(|k| k.linbit_cmd().map(|c| (k.name(), c))).collect();
        assert_eq!(linbit, [("BEGIN", 2), ("DATA", 0), ("UNMAP", 1), ("VOLUME_SIZE", 0x8054_5301), ("END", 3)]);
    }

    #[test]
    fn optional_kinds_have_the_optional_bit_and_mandatory_ones_do_not() {
        assert_eq!(RecordKind::VolumeSize.linbit_cmd().map(|c| c & OPTIONAL), Some(OPTIONAL));
        for k in [
            RecordKind::Header,
            RecordKind::Begin,
            RecordKind::Data,
            RecordKind::Unmap,
            RecordKind::End,
            RecordKind::ZData,
        ] {
            for c in k.native_code().into_iter().chain(k.linbit_cmd()) {
                assert_eq!(c & OPTIONAL, 0, "{}", k.name());
            }
        }
    }

    #[test]
    fn unknown_native_codes_are_named_by_number_and_limited() {
        assert_eq!(native_name(2), "DATA");
        assert_eq!(native_name(0x8000_0007), "optional 0x80000007");
        assert_eq!(native_name(9), "unknown kind 0x9");
        assert_eq!(native_limit(1), MAX_HEADER_PAYLOAD);
        assert_eq!(native_limit(4), END_PAYLOAD_LEN as u64);
        assert_eq!(native_limit(0x8000_0007), MAX_PAYLOAD);
    }
}
