//! The undo journal under fire: an incremental receive into a file and into a loop block device is
//! killed at random points (SIGKILL mostly, SIGTERM sometimes; 20 seeded trials each). After the
//! next run into the target, it always holds the old image with the old state or the new image
//! with the new state, never a mixture. (The incremental is about 2 MiB, more than one batch of
//! journaled writes, so kills land between batches too.)

#[path = "stream_common/mod.rs"]
mod common;

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const TRIALS: usize = 20;

/// Feeds `st[..cut]` to `recv ARGS`, waits `pause`, kills it with `sig`.
fn killed_receive(args: &[&str], st: &[u8], cut: usize, pause: Duration, sig: i32) {
    let mut child =
        Command::new(BIN).args(args).stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for piece in st[..cut].chunks(64 << 10) {
        if stdin.write_all(piece).is_err() {
            break;
        }
    }
    // At the end of the stream the input closes and the receiver may finish; before it, the
    // receiver waits for more.
    let open = (cut < st.len()).then_some(stdin);
    std::thread::sleep(pause);
    // SAFETY: signalling our own child, not yet waited for.
    unsafe { libc::kill(child.id() as i32, sig) };
    drop(open);
    let _ = child.wait();
}

/// The target's bytes and the thin id its state records, after a run that recovers it.
type Observe<'a> = dyn Fn() -> (Vec<u8>, Option<u64>) + 'a;

fn trials(what: &str, args: &[&str], reset: &dyn Fn(), observe: &Observe, inc: &[u8], old: &[u8], new: &[u8]) {
    let mut rng = Rng::new(0x5eed ^ what.len() as u64);
    let (mut olds, mut news) = (0, 0);
    for trial in 0..TRIALS {
        reset();
        // Half the kills mid-stream, half once the whole stream is in the pipe (while the receiver
        // applies it, commits, or has finished).
        let cut = if rng.below(2) == 0 { rng.below(inc.len() as u64) as usize } else { inc.len() };
        let pause = Duration::from_millis(rng.below(300));
        let sig = if rng.below(4) == 0 { libc::SIGTERM } else { libc::SIGKILL };
        killed_receive(args, inc, cut, pause, sig);
        let (got, id) = observe();
        let ctx = format!("{what} trial {trial}: cut at {cut}/{} bytes, {pause:?}, signal {sig}", inc.len());
        if got == old {
            assert_eq!(id, Some(1), "{ctx}: old image but the state records {id:?}");
            olds += 1;
        } else if got == new {
            assert_eq!(id, Some(2), "{ctx}: new image but the state records {id:?}");
            news += 1;
        } else {
            let i = got.iter().zip(old).position(|(a, b)| a != b).unwrap_or(0);
            panic!("{ctx}: a MIXTURE of the old and new images (first difference from the old at byte {i})");
        }
    }
    eprintln!("{what}: {olds} trials ended at the old image, {news} at the new one");
}

#[test]
fn a_killed_receive_into_a_file_leaves_the_old_or_the_new_image() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(61, 300, 2));
    let vol = 300 * BS;
    let size = vol.to_string();
    let full = stream(&pool, 1, None, &["--size", &size]);
    let inc = stream(&pool, 2, Some(1), &["--size", &size]);
    let target = dir.path().join("t.img");
    let t = s(&target);
    let reset = || {
        let out = run(&["recv", "--to", t, "--quiet", "--force"], &full);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let observe = || {
        let out = run(&["recv", "--to", t, "--quiet", "--allow-empty"], b"");
        assert!(out.status.success(), "the run after the kill failed: {}", stderr(&out));
        let st = thinsend::recv::read_state(&target, None).unwrap();
        (std::fs::read(&target).unwrap(), st.and_then(|s| s.source).map(|s| s.thin_id))
    };
    let args = ["recv", "--to", t, "--quiet"];
    trials("file", &args, &reset, &observe, &inc, &image(pool.dev(1), vol), &image(pool.dev(2), vol));
    assert!(temp_files(dir.path()).is_empty(), "{:?}", temp_files(dir.path()));
}

#[test]
fn a_killed_receive_into_a_block_device_leaves_the_old_or_the_new_image() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(62, 300, 2));
    let vol = 300 * BS;
    let size = vol.to_string();
    let backing = dir.path().join("backing");
    std::fs::write(&backing, vec![0xABu8; vol as usize]).unwrap();
    let Some(l) = attach(&backing) else {
        return;
    };
    let state = dir.path().join("state.json");
    let full = stream(&pool, 1, None, &["--size", &size]);
    let inc = stream(&pool, 2, Some(1), &["--size", &size]);
    let (d, st) = (s(&l.0), s(&state));
    let reset = || {
        let out = run(&["recv", "--to", d, "--state-file", st, "--quiet", "--force"], &full);
        assert!(out.status.success(), "{}", stderr(&out));
    };
    let observe = || {
        let out = run(&["recv", "--to", d, "--state-file", st, "--quiet", "--allow-empty"], b"");
        assert!(out.status.success(), "the run after the kill failed: {}", stderr(&out));
        let s = thinsend::recv::read_state(&l.0, Some(&state)).unwrap();
        assert!(s.as_ref().is_some_and(|s| s.complete), "state not complete: {s:?}");
        let mut got = std::fs::read(&l.0).unwrap();
        got.truncate(vol as usize);
        (got, s.and_then(|s| s.source).map(|s| s.thin_id))
    };
    let args = ["recv", "--to", d, "--state-file", st, "--quiet"];
    trials("block device", &args, &reset, &observe, &inc, &image(pool.dev(1), vol), &image(pool.dev(2), vol));
}
