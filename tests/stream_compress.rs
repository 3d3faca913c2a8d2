//! `send --compress zstd[:LEVEL]`: ZDATA records that recv and inspect decompress, raw DATA where a
//! record does not shrink, and damage to the new kind (a flipped byte, a lying length, a zstd bomb
//! past the record limit, ZDATA undeclared by the HEADER) refused with one line, no target made.

#[path = "stream_common/mod.rs"]
mod common;

use std::os::unix::fs::FileExt;

use common::*;
use thinsend::stream::native::{self, RecordHeader};

/// (start, kind) of every record after the magic.
fn records(st: &[u8]) -> Vec<(usize, RecordHeader)> {
    let mut v = Vec::new();
    let mut at = native::MAGIC.len();
    while at < st.len() {
        let hb: [u8; 40] = st[at..at + 40].try_into().unwrap();
        let h = RecordHeader::decode(&hb).expect("sender wrote a valid header");
        v.push((at, h));
        at += 40 + if h.kind == native::KIND_UNMAP { 0 } else { h.length as usize };
    }
    v
}

/// `st` with record `i`'s payload replaced (its header's length and checksums made to match).
fn with_payload(st: &[u8], i: usize, payload: &[u8]) -> Vec<u8> {
    let recs = records(st);
    let (at, mut h) = recs[i];
    let end = at + 40 + h.length as usize;
    h.length = payload.len() as u64;
    h.payload_crc = crc32c::crc32c(payload);
    let mut out = st[..at].to_vec();
    out.extend_from_slice(&h.encode());
    out.extend_from_slice(payload);
    out.extend_from_slice(&st[end..]);
    out
}

/// The uncompressed length a ZDATA payload claims.
fn h_len(payload: &[u8]) -> u64 {
    u64::from_le_bytes(payload[..8].try_into().unwrap())
}

fn recv_fails(dir: &std::path::Path, st: &[u8], want: &str) {
    let target = dir.join("damaged.img");
    let out = run(&["recv", "--to", s(&target), "--quiet"], st);
    let e = stderr(&out);
    assert!(!out.status.success(), "damaged stream accepted ({want})");
    assert!(e.contains(want), "expected {want:?} in: {e}");
    assert_eq!(e.trim().lines().count(), 1, "one line: {e}");
    assert!(!target.exists(), "{want}: a target was made");
}

#[test]
fn compressed_streams_round_trip_with_raw_data_where_records_do_not_shrink() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(5, 60, 2));
    // Random bytes in a few of device 1's data blocks: those records go raw.
    let f = std::fs::OpenOptions::new().write(true).open(&pool.data).unwrap();
    let mut rng = Rng::new(9);
    let noisy: Vec<u64> = pool.dev(1).map.iter().step_by(7).map(|m| m.0).collect();
    for m in pool.dev(1).map.iter().step_by(7) {
        let noise: Vec<u8> = (0..BS / 8).flat_map(|_| rng.next().to_le_bytes()).collect();
        f.write_all_at(&noise, m.1 * BS).unwrap();
    }
    let size = (60 * BS).to_string();
    let plain = stream(&pool, 1, None, &["--size", &size]);
    let z = stream(&pool, 1, None, &["--size", &size, "--compress", "zstd:3"]);
    assert!(z.len() < plain.len() / 3, "compressed {} of {}", z.len(), plain.len());
    let recs = records(&z);
    let json: serde_json::Value = serde_json::from_slice(&z[8 + 40..8 + 40 + recs[0].1.length as usize]).unwrap();
    assert_eq!(json["compression"], "zstd");
    assert!(recs.iter().any(|r| r.1.kind == native::KIND_ZDATA));
    let raw: Vec<u64> = recs.iter().filter(|r| r.1.kind == native::KIND_DATA).map(|r| r.1.offset).collect();
    assert!(!raw.is_empty() && raw.iter().all(|o| noisy.contains(&(o / BS))), "raw DATA at {raw:?}");
    // recv decompresses (full, then an incremental on top); inspect lists it.
    let target = dir.path().join("t.img");
    let data = std::fs::read(&pool.data).unwrap();
    let img = |d: &Dev| {
        let mut v = vec![0u8; 60 * BS as usize];
        for &(o, b, _) in &d.map {
            v[(o * BS) as usize..((o + 1) * BS) as usize]
                .copy_from_slice(&data[(b * BS) as usize..((b + 1) * BS) as usize]);
        }
        v
    };
    for (id, base) in [(1, None), (2, Some(1))] {
        let a = send_args(&pool, id, base, &["--size", &size, "--compress", "zstd"]);
        let (snd, rcv) = pipe(&refs(&a), &["recv", "--to", s(&target), "--quiet"]);
        assert!(snd.status.success() && rcv.status.success(), "{} {}", stderr(&snd), stderr(&rcv));
        assert_image(&target, &img(pool.dev(id)), &format!("compressed {id}"));
    }
    let out = run(&["inspect", "--verify"], &z);
    assert!(out.status.success(), "inspect: {}", stderr(&out));
    // The listing names ZDATA with its target and wire lengths (text and JSON).
    let (zat, zh) = recs.iter().find(|r| r.1.kind == native::KIND_ZDATA).unwrap();
    let text = String::from_utf8(run(&["inspect"], &z).stdout).unwrap();
    let line = format!("@{zat} ZDATA  offset={} length={} compressed={}", zh.offset, h_len(&z[zat + 40..]), zh.length);
    assert!(text.lines().any(|l| l == line), "{line} not in\n{text}");
    let json: serde_json::Value = serde_json::from_slice(&run(&["inspect", "--format", "json"], &z).stdout).unwrap();
    let listed = json["records"].as_array().unwrap().iter().find(|r| r["at"] == *zat as u64).unwrap().clone();
    assert_eq!(listed["kind"], "zdata");
    assert_eq!(listed["payload_bytes"], zh.length);
    // The dry run says what it cannot know.
    let out = run(&refs(&send_args(&pool, 1, None, &["--size", &size, "--compress", "zstd:5", "--dry-run"])), b"");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("not known in advance"), "{text}");
}

#[test]
fn damaged_zdata_is_refused_with_one_line_and_no_target() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(6, 40, 1));
    let z = stream(&pool, 1, None, &["--compress", "zstd"]);
    let recs = records(&z);
    let i = recs.iter().position(|r| r.1.kind == native::KIND_ZDATA).expect("a ZDATA record");
    let (at, h) = recs[i];
    let payload = &z[at + 40..at + 40 + h.length as usize];
    // A flipped byte in the zstd frame: the payload checksum.
    let mut flipped = z.clone();
    flipped[at + 40 + 20] ^= 1;
    recv_fails(dir.path(), &flipped, "ZDATA record (target offset");
    // Lying lengths, checksums made to match: the frame does not decompress to them.
    for claim in [BS - 1, BS + 1, native::MAX_PAYLOAD + 1] {
        let mut p = payload.to_vec();
        p[..8].copy_from_slice(&claim.to_le_bytes());
        let msg = if claim > native::MAX_PAYLOAD { "outside 1..=" } else { "its length claims" };
        recv_fails(dir.path(), &with_payload(&z, i, &p), msg);
    }
    // A bomb: 64 MiB of zeros in a small frame, claiming the record's true length.
    let mut bomb = h_len(payload).to_le_bytes().to_vec();
    bomb.extend_from_slice(&zstd::bulk::compress(&vec![0u8; 64 << 20], 19).unwrap());
    recv_fails(dir.path(), &with_payload(&z, i, &bomb), "does not decompress into the");
    // ZDATA in a stream whose HEADER declares no compression.
    let hjson = &z[8 + 40..8 + 40 + recs[0].1.length as usize];
    let undeclared = String::from_utf8_lossy(hjson).replace("\"compression\":\"zstd\"", "\"compression\":null");
    recv_fails(dir.path(), &with_payload(&z, 0, undeclared.as_bytes()), "declares no compression");
    // An unknown compression in the HEADER.
    let lz = String::from_utf8_lossy(hjson).replace("\"zstd\"", "\"lz4\"");
    recv_fails(dir.path(), &with_payload(&z, 0, lz.as_bytes()), "compression \"lz4\" is not supported");
    // LINBIT streams carry no compression.
    let out = run(&refs(&send_args(&pool, 1, None, &["--stream-format", "linbit", "--compress", "zstd"])), b"");
    assert!(!out.status.success() && stderr(&out).contains("--compress needs the native"), "{}", stderr(&out));
}
