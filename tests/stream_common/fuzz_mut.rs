//! Record-aware mutations for tests/stream_fuzz.rs: a native stream or a LINBIT stream is parsed into
//! records, damaged (fields set to interesting values, kinds swapped, records duplicated, dropped,
//! reordered, HEADER strings and ZDATA payloads replaced), and written back, usually with its
//! checksums, sequence numbers and END counts re-stamped so the reader's structural checks are what
//! the case exercises. Raw damage (bit flips, truncation, trailing bytes) is applied on top.
#![allow(dead_code)]

use super::common::Rng;

pub const NATIVE_MAGIC: [u8; 8] = [0x89, b'T', b'S', b'N', 0x0d, 0x0a, 0x1a, 0x01];
pub const M11: u64 = 0x24C4_F02A_AE2E_4FA9;
pub const M10: u64 = 0xCA7F_00D5_DE7E_C7ED;
pub const MOLD: u64 = 0xE85B_C563_6CC7_2A05;
const HEADER: u32 = 1;
const DATA: u32 = 2;
const UNMAP: u32 = 3;
const END: u32 = 4;
const ZDATA: u32 = 5;
const OPTIONAL: u32 = 1 << 31;
const MIB16: u64 = 16 << 20;

/// Precomputed zstd frames for the ZDATA mutations (compressing 64 MiB takes a while: done once).
pub struct Frames {
    /// 64 MiB of zeros: a bomb when its prefix claims a small length.
    pub bomb: Vec<u8>,
    /// 4 KiB of a pattern.
    pub small: Vec<u8>,
    /// 4 KiB with no content size in the frame header.
    pub no_size: Vec<u8>,
}

impl Frames {
    pub fn new() -> Frames {
        let bomb = zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap();
        let pattern: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();
        let small = zstd::bulk::compress(&pattern, 3).unwrap();
        let mut enc = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        enc.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut enc, &pattern).unwrap();
        let no_size = enc.finish().unwrap();
        Frames { bomb, small, no_size }
    }
}

pub fn chance(rng: &mut Rng, percent: u64) -> bool {
    rng.below(100) < percent
}

pub fn pick<'a, T>(rng: &mut Rng, v: &'a [T]) -> &'a T {
    &v[rng.below(v.len() as u64) as usize]
}

/// A value for an offset, length or size field: edges of the volume, of the limits, of the types.
pub fn interesting(rng: &mut Rng, volume: u64) -> u64 {
    match rng.below(16) {
        0 => 0,
        1 => 1,
        2 => u32::MAX as u64,
        3 => u64::MAX,
        4 => volume,
        5 => volume.wrapping_sub(1),
        6 => volume + 1,
        7 => volume + 65536,
        8 => 4097,
        9 => MIB16,
        10 => MIB16 + 1,
        11 => 1 << rng.below(64),
        12 => u64::MAX - rng.below(65536),
        13 => rng.below(volume.max(1)) | 1,
        14 => rng.below(volume.max(1)) & !0xfff,
        _ => rng.next(),
    }
}

/// How much of the stream's integrity a case restores after damaging it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Fix {
    /// Raw: the first damaged header fails its checksum.
    None,
    /// Payload and header checksums re-stamped.
    Crc,
    /// And the sequence renumbered, END's counts and chain recomputed.
    All,
}

#[derive(Clone, Debug)]
pub struct Rec {
    pub kind: u32,
    pub flags: u32,
    pub seq: u64,
    pub offset: u64,
    pub length: u64,
    pub pcrc: u32,
    pub hcrc: u32,
    pub payload: Vec<u8>,
}

fn le64(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}
fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}
fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

/// The records of a valid native stream (as `send` wrote it).
pub fn parse_native(st: &[u8]) -> Vec<Rec> {
    assert_eq!(st[..8], NATIVE_MAGIC, "base is not a native stream");
    let mut v = Vec::new();
    let mut at = 8;
    while at < st.len() {
        let h = &st[at..at + 40];
        let (kind, length) = (le32(h, 0), le64(h, 24));
        let n = if kind == UNMAP { 0 } else { length as usize };
        v.push(Rec {
            kind,
            flags: le32(h, 4),
            seq: le64(h, 8),
            offset: le64(h, 16),
            length,
            pcrc: le32(h, 32),
            hcrc: le32(h, 36),
            payload: st[at + 40..at + 40 + n].to_vec(),
        });
        at += 40 + n;
    }
    v
}

fn encode_header(r: &Rec, fix: Fix) -> [u8; 40] {
    let mut h = [0u8; 40];
    h[0..4].copy_from_slice(&r.kind.to_le_bytes());
    h[4..8].copy_from_slice(&r.flags.to_le_bytes());
    h[8..16].copy_from_slice(&r.seq.to_le_bytes());
    h[16..24].copy_from_slice(&r.offset.to_le_bytes());
    h[24..32].copy_from_slice(&r.length.to_le_bytes());
    let pcrc = if fix == Fix::None { r.pcrc } else { crc32c::crc32c(&r.payload) };
    h[32..36].copy_from_slice(&pcrc.to_le_bytes());
    let hcrc = if fix == Fix::None { r.hcrc } else { crc32c::crc32c(&h[..36]) };
    h[36..40].copy_from_slice(&hcrc.to_le_bytes());
    h
}

/// The END payload a reader expects after `recs` (END itself excluded), keeping `old`'s stream id.
fn end_payload(recs: &[Rec], old: &[u8], chain: u32) -> Vec<u8> {
    let (mut data, mut unmap, mut dbytes, mut ubytes) = (0u64, 0u64, 0u64, 0u64);
    for r in recs {
        match r.kind {
            DATA => (data, dbytes) = (data + 1, dbytes.wrapping_add(r.length)),
            ZDATA if r.payload.len() >= 8 => (data, dbytes) = (data + 1, dbytes.wrapping_add(le64(&r.payload, 0))),
            UNMAP => (unmap, ubytes) = (unmap + 1, ubytes.wrapping_add(r.length)),
            _ => {}
        }
    }
    let mut p = old.get(..16).map_or(vec![0; 16], <[u8]>::to_vec);
    for v in [recs.len() as u64 + 1, data, unmap, dbytes, ubytes] {
        p.extend(v.to_le_bytes());
    }
    p.extend(chain.to_le_bytes());
    p.extend(0u32.to_le_bytes());
    p
}

pub fn write_native(recs: &mut [Rec], fix: Fix) -> Vec<u8> {
    let mut out = NATIVE_MAGIC.to_vec();
    let mut chain = crc32c::crc32c(&NATIVE_MAGIC);
    for i in 0..recs.len() {
        if fix == Fix::All {
            recs[i].seq = i as u64;
            if recs[i].kind == END && recs[i].payload.len() == 64 {
                recs[i].payload = end_payload(&recs[..i], &recs[i].payload, chain);
            }
        }
        let h = encode_header(&recs[i], fix);
        chain = crc32c::crc32c_append(chain, &h);
        out.extend(h);
        if recs[i].kind != UNMAP {
            out.extend(&recs[i].payload);
        }
    }
    out
}

/// Sets a field of `r` and keeps `length` equal to the payload's for kinds that carry one (unless
/// the mutation is about the length).
fn set_payload(r: &mut Rec, p: Vec<u8>) {
    r.length = p.len() as u64;
    r.payload = p;
}

/// Strings a HEADER must not smuggle onto a terminal, or that are merely huge.
fn nasty_strings() -> [String; 7] {
    [
        "\x1b[31mred\x1b[0m".to_string(),
        "a\nb\rc\u{7}".to_string(),
        "\u{9b}2J\u{7f}".to_string(),
        "x".repeat(1 << 20),
        format!("\x1b]0;title\x07{}", "y".repeat(100_000)),
        "\u{202e}gnp.exe".to_string(),
        String::new(),
    ]
}

fn mutate_header_json(rng: &mut Rng, r: &mut Rec, volume: u64) -> String {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(&r.payload) else { return "header not JSON".into() };
    let nasty = nasty_strings();
    let what;
    let obj = v.as_object_mut().unwrap();
    match rng.below(12) {
        0..=2 => {
            let field = *pick(rng, &["sender", "stream_id", "mode", "compression", "created"]);
            let s = pick(rng, &nasty).clone();
            what = format!("HEADER {field} = nasty string ({} bytes)", s.len());
            obj.insert(field.into(), s.into());
        }
        3 | 4 => {
            let side = *pick(rng, &["source", "base"]);
            let field = *pick(rng, &["vg_name", "lv_name", "pool_uuid", "vg_uuid", "lv_uuid"]);
            let s = pick(rng, &nasty).clone();
            what = format!("HEADER {side}.{field} = nasty string ({} bytes)", s.len());
            match obj.get_mut(side).and_then(|x| x.as_object_mut()) {
                Some(o) => {
                    o.insert(field.into(), s.into());
                }
                None => {
                    obj.insert(side.into(), serde_json::json!({ field: s }));
                }
            }
        }
        5 | 6 => {
            let field = *pick(rng, &["volume_size", "block_size", "data_bytes", "version", "created"]);
            let n = interesting(rng, volume);
            what = format!("HEADER {field} = {n}");
            obj.insert(field.into(), n.into());
        }
        7 => {
            let field = *pick(rng, &["source", "base", "mode", "volume_size", "stream_id", "version"]);
            what = format!("HEADER {field} removed");
            obj.remove(field);
        }
        8 => {
            let m = *pick(rng, &["full", "incremental", "bogus"]);
            what = format!("HEADER mode = {m}");
            obj.insert("mode".into(), m.into());
        }
        9 => {
            let off = interesting(rng, volume);
            what = format!("HEADER resume from_offset {off}");
            obj.insert("resume".into(), serde_json::json!({"of": "00".repeat(16), "from_offset": off}));
        }
        10 => {
            let c = *pick(rng, &["zstd", "lz4", "ZSTD", ""]);
            what = format!("HEADER compression = {c:?}");
            obj.insert("compression".into(), c.into());
        }
        _ => {
            let field = *pick(rng, &["source", "volume_size", "mode", "sender"]);
            what = format!("HEADER {field} = deeply nested array");
            let deep: serde_json::Value =
                serde_json::from_str(&format!("{}{}", "[".repeat(100), "]".repeat(100))).unwrap();
            obj.insert(field.into(), deep);
        }
    }
    set_payload(r, serde_json::to_vec(&v).unwrap());
    if rng.below(6) == 0 {
        // Raw bytes after the JSON, or the JSON cut.
        let mut p = r.payload.clone();
        if chance(rng, 50) {
            p.extend_from_slice(b"\x00\x1b garbage");
        } else {
            p.truncate(rng.below(p.len() as u64) as usize);
        }
        set_payload(r, p);
        return what + " + raw damage";
    }
    what
}

fn zdata_payload(n: u64, frame: &[u8]) -> Vec<u8> {
    let mut p = n.to_le_bytes().to_vec();
    p.extend_from_slice(frame);
    p
}

/// Replaces `r` (DATA or ZDATA) by a hostile ZDATA record.
fn mutate_zdata(rng: &mut Rng, r: &mut Rec, frames: &Frames) -> String {
    r.kind = ZDATA;
    let (what, p) = match rng.below(8) {
        0 => ("bomb: claims 4096, inflates to 64 MiB".to_string(), zdata_payload(4096, &frames.bomb)),
        1 => ("bomb: claims 16 MiB, inflates to 64 MiB".into(), zdata_payload(MIB16, &frames.bomb)),
        2 => ("claims 16 MiB, inflates to 4 KiB".into(), zdata_payload(MIB16, &frames.small)),
        3 => ("claims u64::MAX".into(), zdata_payload(u64::MAX, &frames.small)),
        4 => ("claims 0".into(), zdata_payload(0, &frames.small)),
        5 => ("frame without content size".into(), zdata_payload(4096, &frames.no_size)),
        6 => {
            let mut f = frames.small.clone();
            let i = rng.below(f.len() as u64) as usize;
            f[i] ^= 1 << rng.below(8);
            ("frame with a flipped bit".into(), zdata_payload(4096, &f))
        }
        _ => ("payload shorter than its prefix".into(), vec![1, 2, 3]),
    };
    set_payload(r, p);
    format!("ZDATA at {}: {what}", r.offset)
}

/// A DATA or ZDATA record made a hostile ZDATA (a bomb, a lie about its length, a broken frame).
fn hostile_zdata(rng: &mut Rng, recs: &mut [Rec], volume: u64, frames: &Frames) -> String {
    let data: Vec<usize> = (0..recs.len()).filter(|&k| matches!(recs[k].kind, DATA | ZDATA)).collect();
    if data.is_empty() {
        return "no DATA to make hostile".into();
    }
    let k = *pick(rng, &data);
    if chance(rng, 20) {
        let off = interesting(rng, volume);
        recs[k].offset = off;
    }
    let what = mutate_zdata(rng, &mut recs[k], frames);
    // Mostly in a stream that declares zstd, so the ZDATA reader is what sees it.
    match recs.iter_mut().find(|r| r.kind == HEADER) {
        Some(h) if chance(rng, 80) => {
            if let Ok(serde_json::Value::Object(mut o)) = serde_json::from_slice(&h.payload) {
                o.insert("compression".into(), "zstd".into());
                set_payload(h, serde_json::to_vec(&o).unwrap());
            }
            what + " (HEADER declares zstd)"
        }
        _ => what,
    }
}

/// A new UNMAP (at interesting offset and length) or optional record inserted after the first.
fn insert_record(rng: &mut Rng, recs: &mut Vec<Rec>, volume: u64, optional: bool) -> String {
    let n = recs.len() as u64;
    if !optional {
        let (offset, length) = (interesting(rng, volume), interesting(rng, volume));
        let r = Rec { kind: UNMAP, flags: 0, seq: 0, offset, length, pcrc: 0, hcrc: 0, payload: vec![] };
        let j = (1 + rng.below(n)) as usize;
        recs.insert(j, r);
        return format!("UNMAP {offset}+{length} inserted at {j}");
    }
    let kind = *pick(rng, &[OPTIONAL | 7, OPTIONAL | 0x5453, OPTIONAL]);
    let len = *pick(rng, &[0u64, 1, 4096, MIB16]);
    let payload = vec![0x5a; len as usize];
    let r = Rec { kind, flags: 0, seq: 0, offset: 0, length: len, pcrc: 0, hcrc: 0, payload };
    let j = (1 + rng.below(n)) as usize;
    recs.insert(j, r);
    format!("optional record {kind:#x} of {len} bytes inserted at {j}")
}

/// Applies one record-level mutation to `recs`; returns what it did.
/// Record or chunk `i` duplicated to a random place (`op` 6), dropped (7) or swapped with another
/// (8): the same draws for both formats, so a case seed replays the same damage.
fn reorder<T: Clone>(rng: &mut Rng, v: &mut Vec<T>, op: u64, i: usize, noun: &str) -> String {
    let n = v.len() as u64;
    match op {
        6 => {
            let j = rng.below(n + 1) as usize;
            v.insert(j, v[i].clone());
            format!("{noun} {i} duplicated at {j}")
        }
        7 => {
            v.remove(i);
            format!("{noun} {i} dropped")
        }
        _ => {
            let j = rng.below(n) as usize;
            v.swap(i, j);
            format!("{noun}s {i} and {j} swapped")
        }
    }
}

pub fn mutate_native(rng: &mut Rng, recs: &mut Vec<Rec>, volume: u64, frames: &Frames) -> String {
    if recs.is_empty() {
        return "no records left".into();
    }
    let n = recs.len() as u64;
    let i = rng.below(n) as usize;
    let kinds = [0, HEADER, DATA, UNMAP, END, ZDATA, 6, 0x42, OPTIONAL, OPTIONAL | 2, OPTIONAL | 0x42, u32::MAX];
    match rng.below(16) {
        0 | 1 => {
            let v = interesting(rng, volume);
            recs[i].offset = v;
            format!("record {i} offset = {v}")
        }
        2 | 3 => {
            let v = interesting(rng, volume);
            recs[i].length = v;
            // For small lengths keep the payload consistent so the framing still holds.
            if recs[i].kind != UNMAP && v <= 1 << 20 && chance(rng, 50) {
                recs[i].payload.resize(v as usize, 0xa5);
                return format!("record {i} length and payload = {v}");
            }
            format!("record {i} length = {v}")
        }
        4 => {
            let k = *pick(rng, &kinds);
            let old = recs[i].kind;
            recs[i].kind = k;
            format!("record {i} kind {old} -> {k:#x}")
        }
        5 => {
            recs[i].flags = *pick(rng, &[1, 2, 1 << 31, u32::MAX]);
            format!("record {i} flags = {:#x}", recs[i].flags)
        }
        op @ 6..=8 => reorder(rng, recs, op, i, "record"),
        9 | 10 => match recs.iter().position(|r| r.kind == HEADER) {
            Some(h) => mutate_header_json(rng, &mut recs[h], volume),
            None => "no HEADER to mutate".into(),
        },
        11 | 12 => hostile_zdata(rng, recs, volume, frames),
        13 => insert_record(rng, recs, volume, false),
        14 => insert_record(rng, recs, volume, true),
        _ => {
            if recs[i].payload.is_empty() {
                return format!("record {i} has no payload to change");
            }
            let k = rng.below(recs[i].payload.len() as u64) as usize;
            recs[i].payload[k] ^= 1 << rng.below(8);
            format!("record {i} payload byte {k} flipped")
        }
    }
}

// ---- LINBIT -----------------------------------------------------------------------------------

#[derive(Clone, Debug)]
pub struct Chunk {
    pub magic: u64,
    pub offset: u64,
    pub length: u64,
    pub cmd: u32,
    pub payload: Vec<u8>,
}

fn has_payload(cmd: u32) -> bool {
    cmd == 0 || cmd == 3 || cmd & OPTIONAL != 0
}

pub fn parse_linbit(st: &[u8]) -> Vec<Chunk> {
    let mut v = Vec::new();
    let mut at = 0;
    while at + 28 <= st.len() {
        let (magic, offset, length) = (be64(st, at), be64(st, at + 8), be64(st, at + 16));
        let cmd = u32::from_be_bytes(st[at + 24..at + 28].try_into().unwrap());
        let n = if has_payload(cmd) { length as usize } else { 0 };
        v.push(Chunk { magic, offset, length, cmd, payload: st[at + 28..at + 28 + n].to_vec() });
        at += 28 + n;
    }
    assert_eq!(at, st.len(), "base is not a whole LINBIT stream");
    v
}

/// Writes the chunks; with `fix`, END's counters are recomputed (thin_recv counts every chunk).
pub fn write_linbit(chunks: &mut [Chunk], fix: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let (mut data, mut unmap) = (0u64, 0u64);
    for (i, c) in chunks.iter_mut().enumerate() {
        if fix && c.cmd == 3 && c.payload.len() == 24 {
            c.payload = [i as u64 + 1, data, unmap].iter().flat_map(|v| v.to_be_bytes()).collect();
        }
        data += u64::from(c.cmd == 0);
        unmap += u64::from(c.cmd == 1);
        out.extend(c.magic.to_be_bytes());
        out.extend(c.offset.to_be_bytes());
        out.extend(c.length.to_be_bytes());
        out.extend(c.cmd.to_be_bytes());
        if has_payload(c.cmd) {
            out.extend(&c.payload);
        }
    }
    out
}

pub fn mutate_linbit(rng: &mut Rng, chunks: &mut Vec<Chunk>, volume: u64) -> String {
    if chunks.is_empty() {
        return "no chunks left".into();
    }
    let n = chunks.len() as u64;
    let i = rng.below(n) as usize;
    match rng.below(11) {
        0 | 1 => {
            chunks[i].offset = interesting(rng, volume);
            format!("chunk {i} offset = {}", chunks[i].offset)
        }
        2 | 3 => {
            let v = interesting(rng, volume);
            chunks[i].length = v;
            if has_payload(chunks[i].cmd) && v <= 1 << 20 && chance(rng, 50) {
                chunks[i].payload.resize(v as usize, 0xa5);
                return format!("chunk {i} length and payload = {v}");
            }
            format!("chunk {i} length = {v}")
        }
        4 => {
            let c = *pick(rng, &[0, 1, 2, 3, 4, 0x42, OPTIONAL, OPTIONAL | 0x545301, u32::MAX]);
            chunks[i].cmd = c;
            format!("chunk {i} cmd = {c:#x}")
        }
        5 => {
            let m = *pick(rng, &[M11, M10, MOLD, 0, u64::MAX]);
            chunks[i].magic = m;
            format!("chunk {i} magic = {m:#x}")
        }
        op @ 6..=8 => reorder(rng, chunks, op, i, "chunk"),
        9 => {
            let size = interesting(rng, volume);
            let magic = chunks[0].magic;
            let c = Chunk { magic, offset: 0, length: 8, cmd: 0x8054_5301, payload: size.to_be_bytes().to_vec() };
            let j = rng.below(n.min(3) + 1) as usize;
            chunks.insert(j, c);
            format!("VOLUME_SIZE {size} inserted at {j}")
        }
        _ => {
            if chunks[i].payload.is_empty() {
                return format!("chunk {i} has no payload");
            }
            let k = rng.below(chunks[i].payload.len() as u64) as usize;
            chunks[i].payload[k] ^= 1 << rng.below(8);
            format!("chunk {i} payload byte {k} flipped")
        }
    }
}

/// Raw damage on the written bytes: a flipped bit, a cut (at a random byte or near a record
/// boundary in `bounds`), or bytes appended.
pub fn raw_damage(rng: &mut Rng, st: &mut Vec<u8>, bounds: &[usize]) -> String {
    match rng.below(4) {
        0 => {
            let i = rng.below(st.len().max(1) as u64) as usize;
            if let Some(b) = st.get_mut(i) {
                *b ^= 1 << rng.below(8);
            }
            format!("bit flipped at byte {i}")
        }
        1 => {
            let at = rng.below(st.len() as u64 + 1) as usize;
            st.truncate(at);
            format!("cut at byte {at}")
        }
        2 => {
            let b = *pick(rng, bounds) as i64 + rng.below(3) as i64 - 1;
            let at = (b.max(0) as usize).min(st.len());
            st.truncate(at);
            format!("cut near a record boundary, at byte {at}")
        }
        _ => {
            let n = *pick(rng, &[1usize, 40, 4096]);
            st.extend((0..n).map(|_| rng.next() as u8));
            format!("{n} bytes appended")
        }
    }
}
