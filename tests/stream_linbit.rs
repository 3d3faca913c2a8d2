//! LINBIT thin-send-recv compatibility: the real 1.1.3 streams in the shared test vectors are
//! received into the images their README describes, `send --stream-format linbit` reproduces them
//! byte for byte, and the receiver follows thin_recv's validation rules and messages.

#[path = "stream_common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::*;

/// The real thin-send-recv 1.1.3 streams, kept in testdata/linbit (copied from the shared vectors).
fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/linbit")
}

fn vector(name: &str) -> Option<Vec<u8>> {
    Some(std::fs::read(vectors().join(name)).unwrap_or_else(|e| panic!("testdata/linbit/{name}: {e}")))
}

fn vector_path(name: &str) -> PathBuf {
    vectors().join(name)
}

/// The README's rule: thin block `b` holds `blk` + b as six digits + space, repeated, cut at 64 KiB.
fn readme_block(b: u64) -> Vec<u8> {
    format!("blk{b:06} ").into_bytes().into_iter().cycle().take(65536).collect()
}

fn readme_image(blocks: &[u64], size_blocks: u64) -> Vec<u8> {
    let mut img = vec![0u8; (size_blocks * BS) as usize];
    for &b in blocks {
        img[(b * BS) as usize..((b + 1) * BS) as usize].copy_from_slice(&readme_block(b));
    }
    img
}

const DEV1: &[u64] = &[0, 1, 2, 3, 10, 20, 21, 100];
const DEV2: &[u64] = &[0, 1, 2, 3, 10, 100, 200, 201, 202, 300];

fn recv(target: &Path, stream: &[u8], extra: &[&str]) -> std::process::Output {
    let mut a = vec!["recv", "--to", s(target), "--quiet"];
    a.extend_from_slice(extra);
    run(&a, stream)
}

#[test]
fn linbit_vectors_received_into_files_give_the_readme_images() {
    let (Some(full), Some(diff)) = (vector("full.stream"), vector("diff.stream")) else {
        eprintln!("NOTICE: LINBIT test vectors not found: test skipped");
        return;
    };
    assert_eq!(full.len(), 524480);
    assert_eq!(diff.len(), 327872);
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("lv.img");
    // LINBIT streams carry no volume size: the first receive into a new file is given it.
    let size = (301 * BS).to_string();
    let out = recv(&t, &full, &["--size", &size]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_image(&t, &readme_image(DEV1, 301), "full.stream");
    let out = recv(&t, &diff, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_image(&t, &readme_image(DEV2, 301), "full.stream + diff.stream");

    // The same from a regular file on stdin (read path instead of splice).
    let t2 = dir.path().join("lv2.img");
    for name in ["full.stream", "diff.stream"] {
        let out = Command::new(BIN)
            .args(["recv", "--to", s(&t2), "--quiet", "--size", &size])
            .stdin(Stdio::from(std::fs::File::open(vector_path(name)).unwrap()))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
    }
    assert_image(&t2, &readme_image(DEV2, 301), "vectors read from a file");

    let min = vector("minimal.stream").unwrap();
    let out = recv(&t2, &min, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_image(&t2, &readme_image(DEV2, 301), "minimal.stream changes nothing");
}

/// The pool of the vectors: pool.xml through thin_restore, data blocks filled by the README rule
/// for the thin block that maps them.
fn vector_pool(dir: &Path) -> (PathBuf, PathBuf) {
    let meta = dir.join("meta.img");
    std::fs::File::create(&meta).unwrap().set_len(8 << 20).unwrap();
    let out =
        Command::new("thin_restore").arg("-i").arg(vector_path("pool.xml")).arg("-o").arg(&meta).output().unwrap();
    assert!(out.status.success(), "thin_restore: {}", stderr(&out));
    // (thin block, data block) of both devices, from pool.xml.
    let maps: &[(u64, u64)] = &[
        (0, 0),
        (1, 1),
        (2, 2),
        (3, 3),
        (10, 4),
        (20, 5),
        (21, 6),
        (100, 7),
        (10, 8),
        (200, 9),
        (201, 10),
        (202, 11),
        (300, 12),
    ];
    let mut data = vec![0u8; 13 * BS as usize];
    for &(o, d) in maps {
        data[(d * BS) as usize..((d + 1) * BS) as usize].copy_from_slice(&readme_block(o));
    }
    let data_path = dir.join("data.img");
    std::fs::write(&data_path, data).unwrap();
    (meta, data_path)
}

#[test]
fn send_linbit_writes_the_vectors_byte_for_byte() {
    if !have_thin_restore() {
        return;
    }
    let (Some(full), Some(diff)) = (vector("full.stream"), vector("diff.stream")) else {
        eprintln!("NOTICE: LINBIT test vectors not found: test skipped");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (meta, data) = vector_pool(dir.path());
    let base = ["send", "--metadata", s(&meta), "--data", s(&data), "--stream-format", "linbit", "--quiet"];
    let mut a = base.to_vec();
    a.extend(["--thin-id", "1"]);
    let out = run(&a, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(out.stdout == full, "full send differs from full.stream ({} vs {} bytes)", out.stdout.len(), full.len());
    let mut a = base.to_vec();
    a.extend(["--thin-id", "2", "--base-id", "1"]);
    let out = run(&a, b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        out.stdout == diff,
        "incremental send differs from diff.stream ({} vs {} bytes)",
        out.stdout.len(),
        diff.len()
    );

    // And through a pipe into a file, as thin_recv would apply them.
    let t = dir.path().join("t.img");
    for (id, b) in [("1", None), ("2", Some("1"))] {
        let mut a: Vec<&str> = base.to_vec();
        a.extend(["--thin-id", id]);
        if let Some(b) = b {
            a.extend(["--base-id", b]);
        }
        let (snd, rcv) = pipe(&a, &["recv", "--to", s(&t), "--quiet", "--size", &(301 * BS).to_string()]);
        assert!(snd.status.success() && rcv.status.success(), "{} {}", stderr(&snd), stderr(&rcv));
    }
    assert_image(&t, &readme_image(DEV2, 301), "sent linbit chain");
}

// ---- receiver rules ---------------------------------------------------------------------------

const M11: u64 = 0x24C4_F02A_AE2E_4FA9;
const M10: u64 = 0xCA7F_00D5_DE7E_C7ED;
const MOLD: u64 = 0xE85B_C563_6CC7_2A05;

fn chunk(magic: u64, off: u64, len: u64, cmd: u32) -> Vec<u8> {
    let mut v = magic.to_be_bytes().to_vec();
    v.extend(off.to_be_bytes());
    v.extend(len.to_be_bytes());
    v.extend(cmd.to_be_bytes());
    v
}

fn end(chunks: u64, data: u64, unmap: u64) -> Vec<u8> {
    let mut v = chunk(M11, 0, 24, 3);
    v.extend(chunks.to_be_bytes());
    v.extend(data.to_be_bytes());
    v.extend(unmap.to_be_bytes());
    v
}

fn data(magic: u64, off: u64, bytes: &[u8]) -> Vec<u8> {
    let mut v = chunk(magic, off, bytes.len() as u64, 0);
    v.extend_from_slice(bytes);
    v
}

/// Receives `stream` into a target holding known bytes; returns (success, stderr, target bytes).
fn apply(stream: &[u8], extra: &[&str]) -> (bool, String, Vec<u8>) {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.img");
    std::fs::write(&t, vec![7u8; 8192]).unwrap();
    let out = recv(&t, stream, extra);
    let after = std::fs::read(&t).unwrap();
    assert!(temp_files(dir.path()).is_empty(), "temporary file left behind");
    (out.status.success(), stderr(&out), after)
}

fn refused(stream: &[u8], extra: &[&str], msg: &str) {
    let (ok, err, after) = apply(stream, extra);
    assert!(!ok, "stream accepted, expected refusal with {msg:?}");
    assert!(err.contains(msg), "expected {msg:?} in: {err}");
    assert_eq!(after, vec![7u8; 8192], "target changed by a refused stream ({msg})");
    assert_eq!(err.trim_end().lines().count(), 1, "error is not one line: {err}");
}

fn valid11() -> Vec<u8> {
    let mut s = chunk(M11, 0, 0, 2);
    s.extend(data(M11, 512, b"hello world"));
    s.extend(chunk(M11, 4096, 4096, 1));
    s.extend(end(4, 1, 1));
    s
}

#[test]
fn a_valid_1_1_stream_applies_like_thin_recv() {
    let (ok, err, after) = apply(&valid11(), &[]);
    assert!(ok, "{err}");
    let mut want = vec![7u8; 8192];
    want[512..523].copy_from_slice(b"hello world");
    want[4096..].fill(0);
    assert_eq!(after, want);
}

#[test]
fn empty_input_is_refused_unless_allowed() {
    refused(b"", &[], "Empty input");
    let (ok, err, _) = apply(b"", &["--allow-empty"]);
    assert!(ok, "{err}");
    refused(b"", &["--allow-empty", "--accept-stream-format", "1.1"], "Empty input");
}

#[test]
fn truncation_is_detected_as_thin_recv_does() {
    let v = valid11();
    refused(&v[..10], &[], "Truncated input, bytes expected: 28, got: 10");
    refused(&v[..28 + 20], &[], "Truncated input, bytes expected: 28, got: 20");
    refused(&v[..28 + 28 + 5], &[], "Incomplete copy_data, 6 bytes missing.");
    refused(&v[..v.len() - 24 - 28], &[], "Missing END_STREAM marker.");
    refused(&v[..v.len() - 3], &[], "Truncated input, bytes expected: 24, got: 21");
}

#[test]
fn end_marker_is_checked() {
    let mut s = valid11();
    let n = s.len();
    s.truncate(n - 52);
    s.extend(end(4, 2, 1));
    refused(&s, &[], "END_STREAM marker mismatch: chunks/unmap/data: stream: 4/1/1, marker: 4/1/2");
    let mut s = valid11();
    s.extend(b"xy");
    refused(&s, &[], "Trailing garbage beyond END_STREAM marker.");
    let mut s = valid11();
    s.extend(chunk(M11, 0, 0, 1));
    refused(&s, &[], "Stream continued beyond END_STREAM marker");
    let mut s = chunk(M11, 0, 0, 2);
    s.extend(chunk(M11, 0, 16, 3));
    s.extend([0u8; 16]);
    refused(&s, &[], "END_STREAM marker with offset 0 and length 16");
}

#[test]
fn magic_values_are_checked() {
    let mut s = chunk(M11, 0, 0, 2);
    s.extend(data(M10, 0, b"x"));
    s.extend(end(3, 1, 0));
    refused(&s, &[], "Magic value mismatch, expected 0x24C4F02AAE2E4FA9, found 0xCA7F00D5DE7EC7ED");
    refused(
        &chunk(0x1122_3344_5566_7788, 0, 0, 2),
        &[],
        "Magic value mismatch, encountered unknown value 0x1122334455667788",
    );
    let mut old = MOLD.to_be_bytes().to_vec();
    old.extend([0u8; 16]);
    refused(&old, &[], "before 1.0.1");
}

#[test]
fn format_1_0_is_accepted_with_its_rules() {
    let mut s = data(M10, 0, b"abc");
    s.extend(chunk(M10, 4096, 4096, 1));
    let (ok, err, after) = apply(&s, &[]);
    assert!(ok, "{err}");
    assert_eq!(&after[..3], b"abc");
    assert!(after[4096..].iter().all(|&b| b == 0));
    // truncation at a chunk boundary cannot be detected in 1.0
    let (ok, err, _) = apply(&data(M10, 0, b"abc"), &[]);
    assert!(ok, "{err}");
    let mut bad = data(M10, 0, b"abc");
    bad.extend(chunk(M10, 0, 0, 2));
    refused(&bad, &[], "Old format stream containing unknown cmd chunk");
    refused(&s, &["--accept-stream-format", "1.1"], "not accepted");
    refused(&valid11(), &["--accept-stream-format", "1.0"], "not accepted");
    refused(&valid11(), &["--accept-stream-format", "native"], "not accepted");
    let (ok, err, _) = apply(&s, &["--accept-stream-format", "1.0"]);
    assert!(ok, "{err}");
}

#[test]
fn optional_chunks_are_skipped_and_counted() {
    let mut s = chunk(M11, 0, 0, 2);
    s.extend(chunk(M11, 0, 5, 0x8000_0007));
    s.extend(b"12345");
    s.extend(data(M11, 0, b"zz"));
    s.extend(end(4, 1, 0));
    let (ok, err, after) = apply(&s, &[]);
    assert!(ok, "{err}");
    assert!(err.contains("Unrecognized optional chunk 0x80000007, length 5"), "{err}");
    assert_eq!(&after[..2], b"zz");
    let mut s = chunk(M11, 0, 0, 2);
    s.extend(chunk(M11, 0, 0, 9));
    s.extend(end(3, 0, 0));
    refused(&s, &[], "Unrecognized chunk");
    let mut s = data(M11, 0, b"a");
    s.extend(end(2, 1, 0));
    refused(&s, &[], "First chunk is not BEGIN_STREAM");
    let mut s = chunk(M11, 0, 0, 2);
    s.extend(chunk(M11, 0, 0, 2));
    refused(&s, &[], "BEGIN_STREAM marker in the middle");
}

#[test]
fn inspect_lists_linbit_vectors() {
    let Some(diff) = vector("diff.stream") else {
        eprintln!("NOTICE: LINBIT test vectors not found: test skipped");
        return;
    };
    let out = run(&["inspect"], &diff);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for want in [
        "format linbit-1.1",
        "@0 BEGIN",
        "DATA   offset=655360 length=65536",
        "UNMAP  offset=1310720 length=131072",
        "DATA   offset=13107200 length=196608",
        "DATA   offset=19660800 length=65536",
        "END    records=6",
        "327872 stream bytes",
    ] {
        assert!(text.contains(want), "inspect output lacks {want:?}:\n{text}");
    }
}
