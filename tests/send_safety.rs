//! Send-side safety (issue 9): a replica never comes out shorter than its source, the data the
//! sender reads lies inside the pool's data area and on the pool's own data device, and invocations
//! that cannot be right (`--source` with `--data`, a base newer than the snapshot) are refused.

#[path = "stream_common/mod.rs"]
mod common;

use std::os::fd::AsRawFd;

use common::*;
use thinsend::stream::{self, Located, ReadOptions, Sink, Start, Summary};

fn args<'a>(pool: &'a Pool, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["send", "--metadata", s(&pool.meta), "--quiet"];
    a.extend_from_slice(extra);
    a
}

fn refused(out: &std::process::Output, msg: &str) {
    assert!(!out.status.success(), "accepted, expected a refusal naming {msg:?}");
    assert!(stderr(out).contains(msg), "message lacks {msg:?}: {}", stderr(out));
    assert!(out.stdout.is_empty(), "{} stream bytes written before the refusal", out.stdout.len());
}

#[test]
fn native_send_without_a_size_is_refused_instead_of_cutting_the_replica() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(5, 60, 2));
    let out = run(&args(&pool, &["--data", s(&pool.data), "--thin-id", "1"]), b"");
    refused(&out, "give --size BYTES");
    // With the device itself as the source, its length is the volume size.
    let size = 75 * BS;
    let dev = dir.path().join("thin1.dev");
    std::fs::write(&dev, image(pool.dev(1), size)).unwrap();
    let target = dir.path().join("t.img");
    let (snd, rcv) =
        pipe(&args(&pool, &["--source", s(&dev), "--thin-id", "1"]), &["recv", "--to", s(&target), "--quiet"]);
    assert!(snd.status.success() && rcv.status.success(), "{} {}", stderr(&snd), stderr(&rcv));
    assert_image(&target, &image(pool.dev(1), size), "full send from --source");
}

/// Records the volume size a reader reports at the start.
#[derive(Default)]
struct SizeOf(Option<Option<u64>>, Vec<String>);

impl Sink for SizeOf {
    fn start(&mut self, start: &Start) -> thinsend::Result<()> {
        self.0 = Some(start.volume_size());
        Ok(())
    }
    fn data(&mut self, _: u64, _: &[u8]) -> thinsend::Result<()> {
        Ok(())
    }
    fn unmap(&mut self, _: u64, _: u64) -> thinsend::Result<()> {
        Ok(())
    }
    fn record(&mut self, rec: &Located) -> thinsend::Result<()> {
        self.1.push(rec.record.kind_name().to_string());
        Ok(())
    }
    fn finish(&mut self, _: &Summary) -> thinsend::Result<()> {
        Ok(())
    }
    fn warn(&mut self, msg: &str) {
        panic!("warning on a well-formed stream: {msg}");
    }
}

fn read_back(dir: &std::path::Path, st: &[u8]) -> SizeOf {
    let p = dir.join("stream");
    std::fs::write(&p, st).unwrap();
    let f = std::fs::File::open(&p).unwrap();
    let mut sink = SizeOf::default();
    stream::read(f.as_raw_fd(), &ReadOptions::default(), &mut sink).expect("stream reads back");
    sink
}

#[test]
fn the_volume_size_travels_in_both_formats_when_the_sender_knows_it() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(6, 40, 2));
    let size = (50 * BS).to_string();
    for fmt in ["native", "linbit"] {
        let st = stream(&pool, 2, Some(1), &["--stream-format", fmt, "--size", &size]);
        let got = read_back(dir.path(), &st);
        assert_eq!(got.0, Some(Some(50 * BS)), "{fmt}: Start::volume_size");
        if fmt == "linbit" {
            assert_eq!(&got.1[..2], ["BEGIN", "VOLUME_SIZE"], "linbit: the size chunk follows BEGIN");
            // What thin_recv 1.1.3 sees: an optional chunk (cmd bit 31), skipped and counted.
            let cmd = u32::from_be_bytes(st[28 + 24..28 + 28].try_into().unwrap());
            assert_eq!(cmd & 0x8000_0000, 0x8000_0000, "VOLUME_SIZE must be optional for old receivers");
            let ins = run(&["inspect"], &st);
            assert!(ins.status.success(), "{}", stderr(&ins));
            assert!(String::from_utf8_lossy(&ins.stdout).contains(&format!("VOLUME_SIZE size={size}")));
        }
    }
    // Without a size a LINBIT stream is what thin_send writes: no size, and the sender says so.
    let out = run(&refs(&send_args(&pool, 2, Some(1), &["--stream-format", "linbit"])), b"");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_back(dir.path(), &out.stdout).0, Some(None));
    assert!(stderr(&out).contains("the stream does not carry it"), "no warning: {}", stderr(&out));
}

/// Shrinks the pool's data area in the superblock (thin_restore refuses such metadata).
fn set_nr_data_blocks(meta: &std::path::Path, nr: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().read(true).write(true).open(meta).unwrap();
    let mut b = vec![0u8; 4096];
    f.read_exact_at(&mut b, 0).unwrap();
    // data_space_map_root starts at byte 64; its first field is nr_blocks.
    b[64..72].copy_from_slice(&nr.to_le_bytes());
    thinsend::checksum::stamp(&mut b, thinsend::checksum::BlockKind::Superblock);
    f.write_all_at(&b, 0).unwrap();
}

#[test]
fn a_mapping_past_the_pools_data_area_is_refused() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let dev = Dev { id: 1, transaction: 0, creation_time: 0, snap_time: 0, map: vec![(0, 1, 0), (1, 9, 0)] };
    let pool = build(dir.path(), vec![dev]);
    set_nr_data_blocks(&pool.meta, 4);
    // The data file is longer than the area: the bytes past it exist, and must not be sent.
    let out = run(&args(&pool, &["--data", s(&pool.data), "--thin-id", "1", "--size", "131072"]), b"");
    refused(&out, "thin device 1: thin blocks 1..+1 map to data blocks 9..+1, past the pool's 4 data blocks");
    let out = run(&args(&pool, &["--data", s(&pool.data), "--thin-id", "1", "--size", "131072", "--dry-run"]), b"");
    refused(&out, "past the pool's 4 data blocks");
}

#[test]
fn a_data_device_that_is_not_the_pools_is_refused_or_warned_about() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(7, 60, 1));
    let highest = pool.dev(1).map.iter().map(|m| m.1).max().unwrap();
    let size = (60 * BS).to_string();
    let send = |data: &std::path::Path| run(&args(&pool, &["--data", s(data), "--thin-id", "1", "--size", &size]), b"");
    // Too short to hold the data blocks the send reads: refused before any byte is written.
    let short = dir.path().join("short.img");
    std::fs::copy(&pool.data, &short).unwrap();
    std::fs::OpenOptions::new().write(true).open(&short).unwrap().set_len(highest * BS).unwrap();
    refused(&send(&short), "is it this pool's data device?");
    // Longer than the pool's data area by more than a block: sent, with a warning.
    let long = dir.path().join("long.img");
    std::fs::copy(&pool.data, &long).unwrap();
    let len = std::fs::metadata(&long).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&long).unwrap().set_len(len + 2 * BS).unwrap();
    let out = send(&long);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("it may not be this pool's data device"), "no warning: {}", stderr(&out));
    // The pool's own data device: no warning.
    let out = send(&pool.data);
    assert!(out.status.success() && out.stderr.is_empty(), "{}", stderr(&out));
}

#[test]
fn source_and_data_together_are_a_usage_error() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(8, 30, 1));
    let dev = dir.path().join("thin1.dev");
    std::fs::write(&dev, image(pool.dev(1), 30 * BS)).unwrap();
    let out = run(&args(&pool, &["--data", s(&pool.data), "--source", s(&dev), "--thin-id", "1"]), b"");
    refused(&out, "--source and --data exclude each other");
    let out = run(&args(&pool, &["--data", s(&pool.data), "--source", s(&dev), "--thin-id", "1", "--dry-run"]), b"");
    refused(&out, "--source and --data exclude each other");
}

#[test]
fn a_backward_incremental_is_refused_unless_forced() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(9, 40, 2));
    let size = (40 * BS).to_string();
    let base = ["--data", s(&pool.data), "--size", &size, "--thin-id", "1", "--base-id", "2"];
    let out = run(&args(&pool, &base), b"");
    refused(&out, "backward incremental: base thin 2 (creation time 1, transaction 1) is newer than thin 1");
    let mut forced = base.to_vec();
    forced.push("--force");
    let out = run(&args(&pool, &forced), b"");
    assert!(out.status.success() && !out.stdout.is_empty(), "{}", stderr(&out));
}

#[test]
fn a_fifo_as_data_or_source_is_refused_at_once() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(8, 30, 1));
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let size = (30 * BS).to_string();
    for extra in [&["--data", s(&fifo), "--size", &size][..], &["--source", s(&fifo)][..]] {
        // `timeout` bounds the old behaviour (blocking in open for a writer that never comes).
        let mut argv = vec!["10", BIN];
        argv.extend(args(&pool, &["--thin-id", "1"]));
        argv.extend_from_slice(extra);
        let t = std::time::Instant::now();
        let out = std::process::Command::new("timeout").args(&argv).output().unwrap();
        assert!(t.elapsed() < std::time::Duration::from_secs(1), "{extra:?}: took {:?}", t.elapsed());
        refused(&out, "is a FIFO, not a regular file or block device");
    }
}
