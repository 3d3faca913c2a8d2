//! Zero-block elision and `--bwlimit`: a volume whose mapped blocks are half zeros carries no DATA
//! for them (left out of a full stream, UNMAP in an incremental), and the received file, and a loop
//! device that held other bytes, equal the source; `--no-zero-detect` sends them as DATA, record for
//! record what the old splice path sends; a 4 MiB send at `--bwlimit 2M` takes about 2 s.

#[path = "stream_common/mod.rs"]
mod common;

use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use thinsend::stream::native::{self, RecordHeader};

/// (kind, offset, length, payload crc) of every record after the magic.
fn records(st: &[u8]) -> Vec<(u32, u64, u64, u32)> {
    let mut v = Vec::new();
    let mut at = native::MAGIC.len();
    while at < st.len() {
        let hb: [u8; 40] = st[at..at + 40].try_into().unwrap();
        let h = RecordHeader::decode(&hb).expect("sender wrote a valid header");
        v.push((h.kind, h.offset, h.length, h.payload_crc));
        at += 40 + if h.kind == native::KIND_UNMAP { 0 } else { h.length as usize };
    }
    v
}

/// Zeroes every other data block device 1 maps (in the pool's data file); returns the zeroed ones.
fn zero_half(pool: &Pool) -> Vec<u64> {
    let f = std::fs::OpenOptions::new().write(true).open(&pool.data).unwrap();
    let zeroed: Vec<u64> = pool.dev(1).map.iter().step_by(2).map(|m| m.1).collect();
    for d in &zeroed {
        f.write_all_at(&vec![0u8; BS as usize], d * BS).unwrap();
    }
    zeroed
}

/// The image of `dev` from the pool's data file as it is now.
fn image_now(pool: &Pool, dev: &Dev, size: u64) -> Vec<u8> {
    let data = std::fs::read(&pool.data).unwrap();
    let mut img = vec![0u8; size as usize];
    for &(o, d, _) in &dev.map {
        let (o, d) = ((o * BS) as usize, (d * BS) as usize);
        img[o..o + BS as usize].copy_from_slice(&data[d..d + BS as usize]);
    }
    img
}

fn data_bytes(recs: &[(u32, u64, u64, u32)]) -> u64 {
    recs.iter().filter(|r| r.0 == native::KIND_DATA).map(|r| r.2).sum()
}

#[test]
fn zero_blocks_carry_no_data_and_the_received_images_are_equal() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(11, 80, 2));
    let zeroed = zero_half(&pool);
    let (d1, d2) = (pool.dev(1).clone(), pool.dev(2).clone());
    let size = 80 * BS;
    let size_arg = size.to_string();
    let sized = ["--size", size_arg.as_str()];
    // Full: no DATA covers a zeroed block; the DATA bytes are exactly the non-zero mapped blocks.
    let full = records(&stream(&pool, 1, None, &sized));
    let zero_thin: Vec<u64> = d1.map.iter().filter(|m| zeroed.contains(&m.1)).map(|m| m.0 * BS).collect();
    assert!(!zero_thin.is_empty());
    for r in full.iter().filter(|r| r.0 == native::KIND_DATA) {
        assert!(!zero_thin.iter().any(|z| *z >= r.1 && *z < r.1 + r.2), "DATA {r:?} covers a zero block");
    }
    assert_eq!(data_bytes(&full), (d1.map.len() - zero_thin.len()) as u64 * BS);
    assert!(full.iter().all(|r| r.0 != native::KIND_UNMAP), "a full stream needs no UNMAP");
    // --no-zero-detect: every mapped block as DATA, the same records as the splice path.
    let all = records(&stream(&pool, 1, None, &["--size", &size_arg, "--no-zero-detect"]));
    assert_eq!(data_bytes(&all), d1.map.len() as u64 * BS);
    let mut splice_cmd = Command::new(BIN);
    splice_cmd.args(send_args(&pool, 1, None, &sized)).env("THINSEND_COPY", "splice");
    let spliced = run_cmd(&mut splice_cmd, b"");
    assert!(spliced.status.success(), "{}", stderr(&spliced));
    // HEADER and END differ (stream id, time); kinds, ranges and payload checksums do not.
    let body = |r: &[(u32, u64, u64, u32)]| r[1..r.len() - 1].to_vec();
    assert_eq!(body(&all), body(&records(&spliced.stdout)), "buffered and splice paths differ");
    // Received into a file: equal to the source, and thinner than without elision.
    let target = dir.path().join("t.img");
    let (snd, rcv) = pipe(&refs(&send_args(&pool, 1, None, &sized)), &["recv", "--to", s(&target), "--quiet"]);
    assert!(snd.status.success() && rcv.status.success(), "{} {}", stderr(&snd), stderr(&rcv));
    assert_image(&target, &image_now(&pool, &d1, size), "full, zero blocks elided");
    let thick = dir.path().join("thick.img");
    let a = send_args(&pool, 1, None, &["--size", &size_arg, "--no-zero-detect"]);
    let (snd, rcv) = pipe(&refs(&a), &["recv", "--to", s(&thick), "--quiet"]);
    assert!(snd.status.success() && rcv.status.success(), "{}", stderr(&rcv));
    let alloc = |p: &Path| std::fs::metadata(p).unwrap().blocks() * 512;
    assert!(alloc(&target) < alloc(&thick), "{} vs {}", alloc(&target), alloc(&thick));
    // Incremental: the zeroed blocks device 2 changed come as UNMAP, and the image follows.
    let incr = records(&stream(&pool, 2, Some(1), &sized));
    let changed_zero = d2.map.iter().any(|m| zeroed.contains(&m.1) && !d1.map.contains(m));
    let (snd, rcv) = pipe(&refs(&send_args(&pool, 2, Some(1), &sized)), &["recv", "--to", s(&target), "--quiet"]);
    assert!(snd.status.success() && rcv.status.success(), "{} {}", stderr(&snd), stderr(&rcv));
    assert_image(&target, &image_now(&pool, &d2, size), "incremental, zero blocks as UNMAP");
    let no_zero = records(&stream(&pool, 2, Some(1), &["--size", &size_arg, "--no-zero-detect"]));
    assert!(data_bytes(&incr) <= data_bytes(&no_zero));
    if changed_zero {
        assert!(data_bytes(&incr) < data_bytes(&no_zero), "changed zero blocks sent as DATA");
    }
    on_loop_device(dir.path(), &pool, &d1, size);
}

/// A full stream with elided blocks onto a loop device that held other bytes: the gaps read as zeros.
fn on_loop_device(dir: &Path, pool: &Pool, d1: &Dev, size: u64) {
    let backing = dir.join("backing");
    std::fs::write(&backing, vec![0xABu8; size as usize]).unwrap();
    let out = Command::new("losetup").args(["-f", "--show"]).arg(&backing).output();
    let Some(dev) = out.ok().filter(|o| o.status.success()) else {
        eprintln!("NOTICE: cannot attach a loop device (needs root and losetup): loop part skipped");
        return;
    };
    let dev = PathBuf::from(String::from_utf8_lossy(&dev.stdout).trim());
    let state = dir.join("loop.state");
    let a = send_args(pool, 1, None, &["--size", &size.to_string()]);
    let (snd, rcv) = pipe(&refs(&a), &["recv", "--to", s(&dev), "--state-file", s(&state), "--quiet"]);
    let got = std::fs::read(&dev).unwrap_or_default();
    let _ = Command::new("losetup").arg("-d").arg(&dev).status();
    assert!(snd.status.success() && rcv.status.success(), "{} {}", stderr(&snd), stderr(&rcv));
    assert!(got[..size as usize] == image_now(pool, d1, size)[..], "loop device differs from the source");
}

#[test]
fn bwlimit_paces_a_4_mib_send_at_2m_to_about_2_seconds() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let devs =
        vec![Dev { id: 1, transaction: 0, creation_time: 0, snap_time: 0, map: (0..64).map(|b| (b, b, 0)).collect() }];
    let pool = build(dir.path(), devs);
    let t = std::time::Instant::now();
    let st = stream(&pool, 1, None, &["--bwlimit", "2M"]);
    let secs = t.elapsed().as_secs_f64();
    assert!(st.len() as u64 > 4 << 20);
    // (4 MiB + framing - one sixteenth of a second's worth) / 2 MiB/s = 1.94 s
    assert!((1.8..3.5).contains(&secs), "4 MiB at 2M took {secs:.2}s");
    let t = std::time::Instant::now();
    stream(&pool, 1, None, &[]);
    assert!(t.elapsed().as_secs_f64() < 1.5, "unlimited");
}

/// (kind, offset, length, payload) of every record between HEADER and END.
fn body_with_payloads(st: &[u8]) -> Vec<(u32, u64, u64, Vec<u8>)> {
    let mut v = Vec::new();
    let mut at = native::MAGIC.len();
    while at < st.len() {
        let hb: [u8; 40] = st[at..at + 40].try_into().unwrap();
        let h = RecordHeader::decode(&hb).expect("sender wrote a valid header");
        let n = if h.kind == native::KIND_UNMAP { 0 } else { h.length as usize };
        let payload = st[at + 40..at + 40 + n].to_vec();
        if h.kind == native::KIND_DATA {
            assert_eq!(crc32c::crc32c(&payload), h.payload_crc, "DATA at {} checksum", h.offset);
        }
        v.push((h.kind, h.offset, h.length, payload));
        at += 40 + n;
    }
    v[1..v.len() - 1].to_vec()
}

/// The default path (spliced through a private pipe, read once through `tee`) sends the records the
/// buffered path writes, byte for byte, into a pipe, a regular file, an O_APPEND file (which cannot
/// take a splice: the bytes are written instead and the pipe drained), and with splice and tee
/// denied to the sender (the plain read): full with elided zero blocks, and incremental with UNMAP.
#[test]
fn the_spliced_path_sends_what_the_buffered_path_writes_into_every_kind_of_output() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(12, 80, 2));
    zero_half(&pool);
    let size_arg = (80 * BS).to_string();
    for (id, base) in [(1, None), (2, Some(1))] {
        let args = send_args(&pool, id, base, &["--size", &size_arg]);
        let mut buffered = Command::new(BIN);
        buffered.args(&args).env("THINSEND_COPY", "buffered");
        let want = run_cmd(&mut buffered, b"");
        assert!(want.status.success(), "{}", stderr(&want));
        let want = body_with_payloads(&want.stdout);
        assert!(want.iter().any(|r| r.0 == native::KIND_DATA));
        let piped = body_with_payloads(&stream(&pool, id, base, &["--size", &size_arg]));
        assert!(piped == want, "into a pipe: thin {id}");
        for append in [false, true] {
            let path = dir.path().join(format!("st-{id}-{append}"));
            let f = std::fs::OpenOptions::new().create_new(true).write(true).append(append).open(&path).unwrap();
            let st = Command::new(BIN).args(&args).stdout(f).output().unwrap();
            assert!(st.status.success(), "{}", stderr(&st));
            assert!(body_with_payloads(&std::fs::read(&path).unwrap()) == want, "into a file (append {append})");
        }
        let mut denied = Command::new(BIN);
        denied.args(&args);
        if deny_syscalls(&mut denied, &[libc::SYS_splice, libc::SYS_tee], libc::EINVAL) {
            let st = run_cmd(&mut denied, b"");
            assert!(st.status.success(), "{}", stderr(&st));
            assert!(body_with_payloads(&st.stdout) == want, "splice denied: thin {id}");
        }
    }
}

/// From a block device (read `O_DIRECT`, several reads in flight) the records are those read from
/// a file with the same bytes, on every path: spliced from the `O_DIRECT` descriptor (the default,
/// into a pipe and into an O_APPEND file that refuses the splice), read `O_DIRECT` into the buffer
/// and written (`THINSEND_COPY=buffered`, and with splice and tee denied), read buffered from the
/// device (`THINSEND_DIRECT=0`): full with elided zero blocks, and incremental.
#[test]
fn a_block_device_source_read_direct_sends_what_a_file_source_sends() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(13, 80, 2));
    zero_half(&pool);
    let size = 80 * BS;
    let size_arg = size.to_string();
    for (id, base) in [(1, None), (2, Some(1))] {
        let vol = dir.path().join(format!("vol{id}"));
        std::fs::write(&vol, image_now(&pool, pool.dev(id), size)).unwrap();
        let args = |src: &Path| send_args(&pool, id, base, &["--size", &size_arg, "--source", s(src)]);
        let from_file = run(&refs(&args(&vol)), b"");
        let paths: [DevicePath; 4] = [
            ("spliced O_DIRECT", &[], false),
            ("O_DIRECT into the buffer", &[("THINSEND_COPY", "buffered")], false),
            ("O_DIRECT with splice and tee denied", &[], true),
            ("buffered", &[("THINSEND_DIRECT", "0")], false),
        ];
        let Some(sent) = from_device(&vol, &args, &paths) else { return };
        assert!(from_file.status.success(), "{}", stderr(&from_file));
        let want = body_with_payloads(&from_file.stdout);
        assert!(want.iter().any(|r| r.0 == native::KIND_DATA));
        for (what, st) in sent {
            assert!(body_with_payloads(&st) == want, "{what} from the device: thin {id}");
        }
    }
}

/// A way to send from a block device: its name, its environment, whether splice and tee are denied.
type DevicePath = (&'static str, &'static [(&'static str, &'static str)], bool);

/// The streams sent with `args(device)` from `vol` attached as a loop device: one per path (the
/// denied one left out where seccomp is not available) and one into an O_APPEND file (which
/// refuses the splice), each checked to have succeeded; `None` (with a notice) where no loop device
/// can be attached.
fn from_device(
    vol: &Path,
    args: &dyn Fn(&Path) -> Vec<String>,
    paths: &[DevicePath],
) -> Option<Vec<(String, Vec<u8>)>> {
    let lo = attach(vol)?;
    let dev = lo.0.clone();
    let mut sent = Vec::new();
    for &(what, env, deny) in paths {
        let mut c = Command::new(BIN);
        c.args(args(&dev)).envs(env.iter().copied());
        if deny && !deny_syscalls(&mut c, &[libc::SYS_splice, libc::SYS_tee], libc::EINVAL) {
            continue;
        }
        sent.push((what.to_string(), run_cmd(&mut c, b"")));
    }
    let appended = vol.with_extension("appended");
    let f = std::fs::OpenOptions::new().create_new(true).append(true).open(&appended).unwrap();
    let into_append = Command::new(BIN).args(args(&dev)).stdout(f).output().unwrap();
    drop(lo);
    sent.push(("into an O_APPEND file".into(), into_append));
    let mut streams = Vec::new();
    for (what, o) in sent {
        assert!(o.status.success(), "{what}: {}", stderr(&o));
        let st = if what.starts_with("into") { std::fs::read(&appended).unwrap() } else { o.stdout };
        streams.push((what, st));
    }
    std::fs::remove_file(&appended).unwrap();
    Some(streams)
}

/// A LINBIT stream from a block device (its DATA spliced from the `O_DIRECT` descriptor by several
/// readers, passed on in order with the headers between them) is byte for byte the stream from a
/// file with the same bytes: into a pipe, into an O_APPEND file (which refuses the splice), with
/// splice and tee denied, and read buffered (`THINSEND_DIRECT=0`); full and incremental, over a
/// volume of many short runs, so the readers' pipes run out and wait for the output.
#[test]
fn a_block_device_source_sends_the_linbit_stream_a_file_source_sends() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(14, 80, 2));
    let size_arg = (80 * BS).to_string();
    for (id, base) in [(1, None), (2, Some(1))] {
        let vol = dir.path().join(format!("vol{id}"));
        std::fs::write(&vol, image_now(&pool, pool.dev(id), 80 * BS)).unwrap();
        let args = |src: &Path| {
            send_args(&pool, id, base, &["--size", &size_arg, "--source", s(src), "--stream-format", "linbit"])
        };
        let from_file = run(&refs(&args(&vol)), b"");
        let paths: [DevicePath; 3] = [
            ("O_DIRECT", &[], false),
            ("O_DIRECT with splice and tee denied", &[], true),
            ("buffered", &[("THINSEND_DIRECT", "0")], false),
        ];
        let Some(sent) = from_device(&vol, &args, &paths) else { return };
        assert!(from_file.status.success(), "{}", stderr(&from_file));
        let want = &from_file.stdout;
        let least = if base.is_none() { 40 * BS } else { BS };
        assert!(want.len() as u64 > least, "thin {id}: the stream carries data ({} bytes)", want.len());
        for (what, st) in sent {
            assert!(&st == want, "{what} from the device: thin {id}");
        }
    }
}
