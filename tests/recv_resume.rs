//! Resumable receives (`recv -s`, `send --resume`, docs/STREAM.md §7) on the host, into files.
//!
//! The middle process of `send | cat | recv -s` is killed at random points of the stream; each
//! run is resumed with the token `recv --resume-token` prints, until one completes. The target must
//! then hold exactly the source's image, and the bytes the sender wrote over all attempts may exceed
//! the stream by at most one checkpoint interval per interruption. Full (new file) and incremental
//! (existing file, in place under the undo journal) streams. Then the refusals: a changed token, a
//! token of another target, an old token, a recreated snapshot, a plain stream onto a partial
//! state; each must leave the partial state as it was. (A bigger version: bench/resume.sh.)

#[path = "stream_common/mod.rs"]
mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};

use common::*;

/// `recv`'s checkpoint interval in bytes (src/recv/resume.rs).
const INTERVAL: u64 = 32 << 20;

/// `SEND | cat | recv -s --to TARGET`; the `cat` is SIGKILLed once `cut` bytes passed (if given).
/// Returns the bytes the sender wrote and recv's output.
fn attempt(send: &[String], target: &Path, cut: Option<u64>) -> (u64, Output) {
    let mut snd = Command::new(BIN).args(send).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut cat = Command::new("cat").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    let rcv = Command::new(BIN)
        .args(["recv", "-s", "--quiet", "--to", s(target)])
        .stdin(Stdio::from(cat.stdout.take().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut from = snd.stdout.take().unwrap();
    let mut to = cat.stdin.take().unwrap();
    let mut buf = vec![0u8; 64 << 10];
    let mut sent = 0u64;
    loop {
        let n = from.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        sent += n as u64;
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
        if cut.is_some_and(|c| sent >= c) {
            let _ = cat.kill();
            break;
        }
    }
    drop(to);
    drop(from);
    let _ = cat.wait();
    let r = rcv.wait_with_output().unwrap();
    let _ = snd.wait_with_output().unwrap();
    (sent, r)
}

/// recv's files beside targets in `dir` (the reflink copy `--rollback` uses aside).
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".thinsend-") && !n.ends_with(".thinsend-base"))
        .collect()
}

fn token(target: &Path) -> Output {
    run(&["recv", "--resume-token", "--to", s(target)], b"")
}

/// Sends `send` into `target`, interrupted at `kills` random points, resumed each time. Returns the
/// bytes sent over all attempts.
fn interrupted(send: &[String], target: &Path, stream_len: u64, kills: usize, seed: u64) -> u64 {
    let mut rng = Rng::new(seed);
    let mut args = send.to_vec();
    let (mut total, mut left, mut done) = (0u64, kills, 0u64);
    for round in 0..kills + 3 {
        // A cut somewhere in what is left of the stream (stream bytes, roughly).
        let cut = (left > 0).then(|| 1 + rng.below((stream_len - done).max(2) * 9 / 10));
        let (sent, out) = attempt(&args, target, cut);
        total += sent;
        done += sent;
        let err = stderr(&out);
        if out.status.success() {
            assert_eq!(left, 0, "round {round}: completed although the transport was killed: {err}");
            return total;
        }
        assert!(left > 0, "round {round}: failed without a kill: {err}");
        left -= 1;
        let t = token(target);
        assert!(t.status.success(), "round {round}: no token after the interruption: {}", stderr(&t));
        let tok = String::from_utf8(t.stdout).unwrap().trim().to_string();
        assert!(err.contains(&tok) && err.contains("send --resume"), "round {round}: token not printed: {err}");
        args = send.to_vec();
        args.extend(["--resume".into(), tok]);
    }
    panic!("did not complete after {kills} interruptions");
}

#[test]
fn a_full_send_into_a_file_survives_killed_transports() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(71, 1024, 2));
    let vol = 1024 * BS;
    let size = vol.to_string();
    let send = send_args(&pool, 1, None, &["--size", &size]);
    let len = stream(&pool, 1, None, &["--size", &size]).len() as u64;
    let target = dir.path().join("full.img");
    let kills = 4;
    let total = interrupted(&send, &target, len, kills, 7);
    assert_image(&target, &image(pool.dev(1), vol), "resumed full receive");
    eprintln!("full: stream {len} bytes, sent {total} bytes over {} attempts", kills + 1);
    assert!(total <= len + kills as u64 * INTERVAL, "sent {total} bytes for a stream of {len}");
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
    assert!(!token(&target).status.success(), "a token is still printed after completion");
}

#[test]
fn an_incremental_into_a_file_survives_killed_transports() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(72, 1024, 2));
    let vol = 1024 * BS;
    let size = vol.to_string();
    let target = dir.path().join("inc.img");
    let full = stream(&pool, 1, None, &["--size", &size]);
    let out = run(&["recv", "--quiet", "--to", s(&target)], &full);
    assert!(out.status.success(), "{}", stderr(&out));
    let send = send_args(&pool, 2, Some(1), &["--size", &size]);
    let len = stream(&pool, 2, Some(1), &["--size", &size]).len() as u64;
    let kills = 3;
    let total = interrupted(&send, &target, len, kills, 8);
    assert_image(&target, &image(pool.dev(2), vol), "resumed incremental");
    let st = thinsend::recv::read_state(&target, None).unwrap().unwrap();
    assert_eq!(st.source.map(|s| s.thin_id), Some(2));
    eprintln!("incremental: stream {len} bytes, sent {total} bytes over {} attempts", kills + 1);
    assert!(total <= len + kills as u64 * INTERVAL, "sent {total} bytes for a stream of {len}");
    assert!(leftovers(dir.path()).is_empty(), "{:?}", leftovers(dir.path()));
}
