//! Damaged and mismatched native streams: a flipped byte in, a truncation at or inside, a dropped,
//! repeated or swapped record of every kind, and an incremental for the wrong base are each refused
//! with a one-line message, and the target file stays byte-identical with its recorded state.

#[path = "stream_common/mod.rs"]
mod common;

use std::path::Path;

use common::*;
use thinsend::stream::native::{self, RecordHeader};

/// (start, end, kind) of every record after the magic.
fn records(st: &[u8]) -> Vec<(usize, usize, u32)> {
    let mut v = Vec::new();
    let mut at = native::MAGIC.len();
    while at < st.len() {
        let hb: [u8; 40] = st[at..at + 40].try_into().unwrap();
        let h = RecordHeader::decode(&hb).expect("sender wrote a valid header");
        let payload = if h.kind == native::KIND_UNMAP { 0 } else { h.length as usize };
        v.push((at, at + 40 + payload, h.kind));
        at += 40 + payload;
    }
    v
}

fn kind_name(k: u32) -> &'static str {
    match k {
        native::KIND_HEADER => "HEADER",
        native::KIND_DATA => "DATA",
        native::KIND_UNMAP => "UNMAP",
        native::KIND_END => "END",
        _ => "other",
    }
}

struct Fixture {
    _dir: tempfile::TempDir,
    pool: Pool,
    target: std::path::PathBuf,
    before: Vec<u8>,
    state: Option<thinsend::recv::State>,
}

/// A pool of three snapshots and a target holding snapshot 1 (received with a full stream).
fn fixture(seed: u64) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(seed, 80, 3));
    let target = dir.path().join("target.img");
    let full = stream(&pool, 1, None, &[]);
    let out = run(&["recv", "--to", s(&target), "--quiet"], &full);
    assert!(out.status.success(), "{}", stderr(&out));
    let before = std::fs::read(&target).unwrap();
    let state = thinsend::recv::read_state(&target, None).unwrap();
    assert!(state.is_some(), "no state recorded after a full receive");
    Fixture { _dir: dir, pool, target, before, state }
}

impl Fixture {
    fn dir(&self) -> &Path {
        self.target.parent().unwrap()
    }

    /// Receives `st`, expects a refusal mentioning one of `msgs`, and checks nothing changed.
    fn refused(&self, st: &[u8], what: &str, msgs: &[&str]) {
        let out = run(&["recv", "--to", s(&self.target), "--quiet"], st);
        let err = stderr(&out);
        assert!(!out.status.success(), "{what}: damaged stream accepted");
        assert_ne!(out.status.code(), Some(101), "{what}: receiver panicked: {err}");
        assert!(!err.contains("panicked"), "{what}: receiver panicked: {err}");
        assert_eq!(err.trim_end().lines().count(), 1, "{what}: message is not one line: {err}");
        assert!(msgs.iter().any(|m| err.contains(m)), "{what}: expected one of {msgs:?} in: {err}");
        assert!(err.contains("left unchanged"), "{what}: message does not say the target is unchanged: {err}");
        assert!(std::fs::read(&self.target).unwrap() == self.before, "{what}: target changed");
        assert_eq!(
            thinsend::recv::read_state(&self.target, None).unwrap(),
            self.state,
            "{what}: recorded state changed"
        );
        assert!(temp_files(self.dir()).is_empty(), "{what}: temporary file left behind");
        // inspect refuses a damaged stream as well (a wrong base is not damage)
        if !err.contains("refusing an incremental") {
            let ins = run(&["inspect", "--verify"], st);
            assert!(!ins.status.success(), "{what}: inspect accepted the damaged stream");
            // and its JSON is still one complete document that says so
            for extra in [&[][..], &["--verify"][..]] {
                let mut a = vec!["inspect", "--format", "json"];
                a.extend_from_slice(extra);
                let ins = run(&a, st);
                assert!(!ins.status.success(), "{what}: inspect {extra:?} accepted the damaged stream");
                let v: serde_json::Value = serde_json::from_slice(&ins.stdout).unwrap_or_else(|e| {
                    panic!(
                        "{what}: inspect {extra:?} JSON does not parse ({e}): {}",
                        String::from_utf8_lossy(&ins.stdout)
                    )
                });
                assert_eq!(v["valid"], false, "{what}: inspect {extra:?} JSON");
                assert!(v["error"].as_str().is_some_and(|e| e.contains("stream byte")), "{what}: {v}");
            }
        }
    }
}

const CORRUPT: &[&str] = &["checksum mismatch"];
const TRUNC: &[&str] = &["Truncated stream"];
const ORDER: &[&str] = &["sequence number", "first record is", "second HEADER"];

#[test]
fn every_record_kind_damaged_is_refused_and_the_target_kept() {
    if !have_thin_restore() {
        return;
    }
    let fx = fixture(21);
    let st = stream(&fx.pool, 2, Some(1), &[]);
    let recs = records(&st);
    let kinds: Vec<u32> = recs.iter().map(|r| r.2).collect();
    for k in [native::KIND_HEADER, native::KIND_DATA, native::KIND_UNMAP, native::KIND_END] {
        assert!(kinds.contains(&k), "the test stream lacks a {} record", kind_name(k));
    }
    // The undamaged stream is fine (checked on a copy of the target, so the fixture stays at 1).
    let ok = run(&["inspect", "--verify"], &st);
    assert!(ok.status.success(), "{}", stderr(&ok));

    // one record of each kind (the first DATA and UNMAP, and the last DATA)
    let mut picked: Vec<usize> = Vec::new();
    for k in [native::KIND_HEADER, native::KIND_DATA, native::KIND_UNMAP, native::KIND_END] {
        picked.push(recs.iter().position(|r| r.2 == k).unwrap());
    }
    picked.push(recs.iter().rposition(|r| r.2 == native::KIND_DATA).unwrap());
    for &i in &picked {
        let (a, b, k) = recs[i];
        let name = format!("{} record #{i}", kind_name(k));
        // a flipped bit in each header field and in the payload
        for off in [0usize, 5, 9, 17, 26, 33, 38] {
            let mut d = st.clone();
            d[a + off] ^= 0x10;
            fx.refused(&d, &format!("{name}: header byte {off} flipped"), CORRUPT);
        }
        if b > a + 40 {
            for off in [a + 40, (a + 40 + b) / 2, b - 1] {
                let mut d = st.clone();
                d[off] ^= 0x01;
                fx.refused(&d, &format!("{name}: payload byte {} flipped", off - a), CORRUPT);
            }
            fx.refused(&st[..(a + 40 + b) / 2], &format!("{name}: cut inside the payload"), TRUNC);
        }
        fx.refused(&st[..a], &format!("{name}: cut before it"), TRUNC);
        fx.refused(&st[..a + 17], &format!("{name}: cut inside its header"), TRUNC);
        // dropped, repeated, swapped with its neighbour
        let mut d = st[..a].to_vec();
        d.extend_from_slice(&st[b..]);
        fx.refused(&d, &format!("{name}: dropped"), &["sequence number", "first record is", "Truncated stream"]);
        let mut d = st[..b].to_vec();
        d.extend_from_slice(&st[a..]);
        fx.refused(&d, &format!("{name}: repeated"), &["sequence number", "Trailing bytes"]);
        if i + 1 < recs.len() {
            let (_, c, _) = recs[i + 1];
            let mut d = st[..a].to_vec();
            d.extend_from_slice(&st[b..c]);
            d.extend_from_slice(&st[a..b]);
            d.extend_from_slice(&st[c..]);
            fx.refused(&d, &format!("{name}: swapped with the next record"), ORDER);
        }
    }
    let mut d = st.clone();
    d[3] ^= 1;
    fx.refused(&d, "magic flipped", &["Magic value mismatch"]);
    let mut d = st.clone();
    d[7] = 9;
    fx.refused(&d, "future format version", &["version 9 is not supported"]);
    let mut d = st.clone();
    d.push(0);
    fx.refused(&d, "trailing byte", &["Trailing bytes after the END record"]);
    fx.refused(&st[..5], "only part of the magic", &["Truncated input"]);
    fx.refused(&st[..8], "only the magic", TRUNC);
    fx.refused(b"", "empty input", &["Empty input"]);

    // Halves of two streams of the same change: each is valid alone, together they are not.
    let other = stream(&fx.pool, 2, Some(1), &[]);
    let ro = records(&other);
    let (end_a, _, _) = *recs.last().unwrap();
    let (end_b, _, _) = *ro.last().unwrap();
    let mut d = st[..end_a].to_vec();
    d.extend_from_slice(&other[end_b..]);
    fx.refused(&d, "END of another stream", &["two streams were mixed"]);
}

#[test]
fn incremental_for_another_base_is_refused_unless_forced() {
    if !have_thin_restore() {
        return;
    }
    let fx = fixture(22);
    // The target holds 1; a stream from 2 to 3 needs 2.
    let st = stream(&fx.pool, 3, Some(2), &[]);
    fx.refused(&st, "incremental 2->3 onto 1", &["refusing an incremental stream: the target holds thin 1"]);
    // A plain file records nothing.
    let plain = fx.dir().join("plain.img");
    std::fs::write(&plain, &fx.before).unwrap();
    let out = run(&["recv", "--to", s(&plain), "--quiet"], &stream(&fx.pool, 2, Some(1), &[]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("records no received snapshot"), "{}", stderr(&out));
    assert!(std::fs::read(&plain).unwrap() == fx.before);
    // Nor can an incremental create a target.
    let none = fx.dir().join("none.img");
    let out = run(&["recv", "--to", s(&none), "--quiet"], &st);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("does not exist"), "{}", stderr(&out));
    assert!(!none.exists());
    // --force applies it anyway (to a target that is in fact at 2 here).
    let out = run(&["recv", "--to", s(&plain), "--quiet", "--force"], &stream(&fx.pool, 2, Some(1), &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["recv", "--to", s(&plain), "--quiet"], &st);
    assert!(out.status.success(), "{}", stderr(&out));
    let d3 = fx.pool.dev(3);
    assert_image(&plain, &image(d3, d3.highest_end() * BS), "forced chain");
}

#[test]
fn optional_records_are_skipped_and_unknown_required_ones_refused() {
    if !have_thin_restore() {
        return;
    }
    let fx = fixture(23);
    let st = stream(&fx.pool, 2, Some(1), &[]);
    // Re-encode the stream with an optional record after the HEADER.
    let recs = records(&st);
    let header_json: native::Header = {
        let (a, b, _) = recs[0];
        serde_json::from_slice(&st[a + 40..b]).unwrap()
    };
    let id = native::parse_stream_id(&header_json.stream_id).unwrap();
    let build_with = |extra_kind: u32| {
        let mut w = native::Writer::new(id);
        let mut out = w.start(&header_json);
        out.extend(w.optional(extra_kind, b"future stuff"));
        for &(a, b, k) in &recs[1..recs.len() - 1] {
            let hb: [u8; 40] = st[a..a + 40].try_into().unwrap();
            let h = RecordHeader::decode(&hb).unwrap();
            match k {
                native::KIND_DATA => {
                    out.extend(w.data(h.offset, h.length, h.payload_crc));
                    out.extend_from_slice(&st[a + 40..b]);
                }
                native::KIND_UNMAP => out.extend(w.unmap(h.offset, h.length)),
                _ => unreachable!(),
            }
        }
        out.extend(w.finish());
        out
    };
    let with_optional = build_with(0x8000_0042);
    let copy = fx.dir().join("copy.img");
    std::fs::copy(&fx.target, &copy).unwrap();
    let state = std::fs::read(&fx.target).unwrap();
    assert_eq!(state, fx.before);
    // xattrs are not copied by fs::copy; force the identity check off for the copy
    let out = run(&["recv", "--to", s(&copy), "--quiet", "--force"], &with_optional);
    assert!(out.status.success(), "stream with an optional record refused: {}", stderr(&out));
    let d2 = fx.pool.dev(2);
    assert_image(&copy, &image(d2, d2.highest_end() * BS), "with an optional record");
    let ins = run(&["inspect"], &with_optional);
    assert!(String::from_utf8_lossy(&ins.stdout).contains("OPTIONAL code=0x80000042"));

    // Writer::optional always sets the optional bit; make a required unknown kind by hand.
    let mut bad = with_optional.clone();
    let (a, _, _) = records(&bad)[1];
    let mut hb: [u8; 40] = bad[a..a + 40].try_into().unwrap();
    let mut h = RecordHeader::decode(&hb).unwrap();
    h.kind = 0x42;
    hb = h.encode();
    bad[a..a + 40].copy_from_slice(&hb);
    fx.refused(&bad, "unknown required record", &["unknown record kind 0x42"]);
}

/// True if `b` holds a byte a terminal would act on: C0 controls other than newline, DEL, and C1
/// controls (raw or UTF-8 encoded).
fn has_control(b: &[u8]) -> bool {
    b.iter().any(|&c| (c < 0x20 && c != b'\n') || c == 0x7f)
        || b.windows(2).any(|w| w[0] == 0xc2 && (0x80..0xa0).contains(&w[1]))
}

const EVIL: &str = "lv\nreceived OK\x1b[2J\x07\u{7f}\u{9b}31m\\";

/// `st` with its HEADER's LVM names and sender replaced by `EVIL`, re-framed with valid checksums.
fn with_evil_header(st: &[u8]) -> Vec<u8> {
    let recs = records(st);
    let (a, b, _) = recs[0];
    let mut h: native::Header = serde_json::from_slice(&st[a + 40..b]).unwrap();
    h.sender = EVIL.into();
    for id in std::iter::once(&mut h.source).chain(h.base.as_mut()) {
        id.vg_name = Some(EVIL.into());
        id.lv_name = Some(EVIL.into());
        id.pool_uuid = EVIL.into();
    }
    reframe(st, &h)
}

#[test]
fn stream_text_reaches_the_terminal_escaped() {
    if !have_thin_restore() {
        return;
    }
    let fx = fixture(24);
    let st = with_evil_header(&stream(&fx.pool, 2, Some(1), &[]));
    for a in [&["inspect"][..], &["inspect", "--format", "json"][..]] {
        let out = run(a, &st);
        assert!(out.status.success(), "{a:?}: {}", stderr(&out));
        assert!(!has_control(&out.stdout), "{a:?}: raw control bytes in {:?}", String::from_utf8_lossy(&out.stdout));
        assert!(!String::from_utf8_lossy(&out.stdout).lines().any(|l| l.starts_with("received OK")), "{a:?}");
    }
    let json = run(&["inspect", "--format", "json"], &st);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["header"]["sender"], EVIL, "JSON escaping must keep the string's value");
    // recv's refusal names the stream's base: escaped, on one line.
    let plain = fx.dir().join("plain.img");
    std::fs::write(&plain, &fx.before).unwrap();
    let out = run(&["recv", "--to", s(&plain), "--quiet"], &st);
    assert!(!out.status.success());
    assert!(!has_control(&out.stderr), "raw control bytes in {:?}", stderr(&out));
    assert_eq!(stderr(&out).trim_end().lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("lv\\nreceived OK\\x1b[2J"), "{}", stderr(&out));
}

#[test]
fn compressed_input_gets_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    for (name, magic, cmd) in [
        ("zstd", &[0x28u8, 0xb5, 0x2f, 0xfd, 0x24, 0x00, 0x01, 0x00][..], "zstd -d"),
        ("gzip", &[0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0][..], "gzip -d"),
        ("xz", &[0xfd, b'7', b'z', b'X', b'Z', 0x00, 0x00, 0x04][..], "xz -d"),
    ] {
        let mut st = magic.to_vec();
        st.extend_from_slice(&[0u8; 100]);
        let t = dir.path().join("t.img");
        for a in [vec!["recv", "--to", s(&t), "--quiet"], vec!["inspect"]] {
            let out = run(&a, &st);
            assert!(!out.status.success(), "{name}: {a:?} accepted");
            let want = format!("this is a {name}-compressed stream");
            assert!(stderr(&out).contains(&want) && stderr(&out).contains(cmd), "{name} {a:?}: {}", stderr(&out));
        }
        assert!(!t.exists());
    }
}

/// `st` re-encoded with HEADER `h` (same stream id), its DATA and UNMAP records unchanged.
fn reframe(st: &[u8], h: &native::Header) -> Vec<u8> {
    let recs = records(st);
    let id = native::parse_stream_id(&h.stream_id).unwrap();
    let mut w = native::Writer::new(id);
    let mut out = w.start(h);
    for &(a, b, k) in &recs[1..recs.len() - 1] {
        let hb: [u8; 40] = st[a..a + 40].try_into().unwrap();
        let r = RecordHeader::decode(&hb).unwrap();
        match k {
            native::KIND_DATA => {
                out.extend(w.data(r.offset, r.length, r.payload_crc));
                out.extend_from_slice(&st[a + 40..b]);
            }
            native::KIND_UNMAP => out.extend(w.unmap(r.offset, r.length)),
            _ => unreachable!(),
        }
    }
    out.extend(w.finish());
    out
}

#[test]
fn inspect_refuses_a_terminal_on_stdin() {
    // `script` gives the command a pseudo-terminal as stdin (util-linux).
    let Ok(out) = std::process::Command::new("script")
        .args(["-qec", &format!("{BIN} inspect"), "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
    else {
        eprintln!("NOTICE: script (util-linux) not found: test skipped");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "inspect read a terminal: {text}");
    assert!(text.contains("expecting a data stream on stdin, which is a terminal"), "{text}");
}
