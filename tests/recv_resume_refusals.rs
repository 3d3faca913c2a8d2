//! What a resumable receive refuses (docs/STREAM.md §7), each time with a clear message and its
//! partial state left exactly as it was: a token with one character changed, a token whose snapshot
//! was removed and recreated under the same name (another creation time and transaction), a
//! resumed stream onto another target's partial state, an old token, a plain stream onto a partial
//! state, a resumed stream onto a target without one. And `recv --abort` returns a target to what
//! it was before the interrupted receive (a new file: absent; an existing one: its old image and
//! state); a signal to `recv -s` keeps the partial state and prints how to continue.

#[path = "stream_common/mod.rs"]
mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::*;

/// Feeds `st[..cut]` to `recv -s --to target` and closes its input (the sender died).
fn cut_receive(target: &Path, st: &[u8], cut: usize) -> Output {
    run(&["recv", "-s", "--quiet", "--to", s(target)], &st[..cut])
}

fn token(target: &Path) -> String {
    let t = run(&["recv", "--resume-token", "--to", s(target)], b"");
    assert!(t.status.success(), "no token: {}", stderr(&t));
    String::from_utf8(t.stdout).unwrap().trim().to_string()
}

/// Every file of `dir` with its bytes: "nothing changed" is this staying equal.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .map(|p| (p.clone(), std::fs::read(&p).unwrap()))
        .collect();
    v.sort();
    v
}

fn with_resume(send: &[String], tok: &str) -> Vec<String> {
    let mut a = send.to_vec();
    a.extend(["--resume".into(), tok.into()]);
    a
}

fn refused(o: &Output, what: &str, want: &str) {
    let e = stderr(o);
    assert!(!o.status.success(), "{what}: accepted: {e}");
    assert!(e.contains(want), "{what}: expected {want:?} in: {e}");
    assert_eq!(e.trim().lines().count(), 1, "{what}: not one line: {e}");
    eprintln!("{what}: {}", e.trim());
}

#[test]
fn bad_tokens_and_wrong_streams_are_refused_and_change_nothing() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(81, 256, 2));
    let vol = 256 * BS;
    let size = vol.to_string();
    let send = send_args(&pool, 1, None, &["--size", &size]);
    let tgt = tempfile::tempdir().unwrap();
    let (a, b) = (tgt.path().join("a.img"), tgt.path().join("b.img"));
    let st_a = stream(&pool, 1, None, &["--size", &size]);
    let st_b = stream(&pool, 1, None, &["--size", &size]);
    assert!(!cut_receive(&a, &st_a, st_a.len() / 3).status.success());
    assert!(!cut_receive(&b, &st_b, st_b.len() / 2).status.success());
    let (ta, tb) = (token(&a), token(&b));
    assert_ne!(ta, tb);
    let before = snapshot(tgt.path());

    // One character of the token changed: the sender refuses it.
    let mut bad = ta.clone().into_bytes();
    let i = bad.len() / 2;
    bad[i] = if bad[i] == b'x' { b'y' } else { b'x' };
    let o = run(&refs(&with_resume(&send, std::str::from_utf8(&bad).unwrap())), b"");
    refused(&o, "changed token", "resume token refused");
    assert!(o.stdout.is_empty(), "a stream was written for a changed token");

    // The snapshot removed and recreated under the same name: same data, another creation time
    // and transaction. The sender refuses the token.
    let other = tempfile::tempdir().unwrap();
    let mut devs = pool.devs.clone();
    devs[0].creation_time += 3;
    devs[0].transaction += 2;
    let recreated = build(other.path(), devs);
    let o = run(&refs(&with_resume(&send_args(&recreated, 1, None, &["--size", &size]), &ta)), b"");
    refused(&o, "recreated snapshot", "the token's was");

    // A's token used for B: B's partial receive is of another stream.
    let resumed_a = stream_of(&with_resume(&send, &ta));
    let o = run(&["recv", "--quiet", "--to", s(&b)], &resumed_a);
    refused(&o, "token of another target", "another target");

    // A plain stream onto a partial state, with and without -s.
    let o = run(&["recv", "--quiet", "--to", s(&a)], &st_a);
    refused(&o, "plain stream", "--resume-token");
    assert!(stderr(&o).contains("recv --abort"), "{}", stderr(&o));
    let o = run(&["recv", "-s", "--quiet", "--to", s(&a)], &st_a);
    refused(&o, "plain stream with -s", "has a partial receive");

    // A resumed stream cut before its HEADER: nothing applied, but the token is printed again.
    let o = run(&["recv", "--quiet", "--to", s(&a)], &resumed_a[..20]);
    assert!(!o.status.success() && stderr(&o).contains(&ta), "no token after a cut: {}", stderr(&o));

    // A resumed stream onto a target without a partial state.
    let c = tgt.path().join("c.img");
    let o = run(&["recv", "--quiet", "--to", s(&c)], &resumed_a);
    refused(&o, "resumed stream without a partial state", "no partial receive");
    assert_eq!(snapshot(tgt.path()), before, "a refusal changed the targets' files");

    // An old token: A resumed and interrupted again, then its first token is stale.
    assert!(!cut_receive(&a, &resumed_a, resumed_a.len() / 2).status.success());
    let again = snapshot(tgt.path());
    let o = run(&["recv", "--quiet", "--to", s(&a)], &resumed_a);
    refused(&o, "old token", "older token");
    assert_eq!(snapshot(tgt.path()), again, "a refusal changed the targets' files");

    // The current token completes it exactly.
    let o = run(&["recv", "--quiet", "--to", s(&a)], &stream_of(&with_resume(&send, &token(&a))));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_image(&a, &image(pool.dev(1), vol), "resumed after the refusals");

    // --abort: B is not created, nothing is left; no token any more (exit 1).
    let o = run(&["recv", "--abort", "--to", s(&b)], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!b.exists());
    let o = run(&["recv", "--resume-token", "--to", s(&b)], b"");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("no partial receive"), "{}", stderr(&o));
    let names: Vec<_> = snapshot(tgt.path()).into_iter().map(|(p, _)| p).collect();
    assert_eq!(names, vec![a.clone()], "files left beside the targets");
}

/// The stream `send ARGS` writes.
fn stream_of(args: &[String]) -> Vec<u8> {
    let o = run(&refs(args), b"");
    assert!(o.status.success(), "send failed: {}", stderr(&o));
    o.stdout
}

#[test]
fn abort_returns_an_existing_file_to_its_old_image_and_state() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(82, 256, 2));
    let vol = 256 * BS;
    let size = vol.to_string();
    let t = dir.path().join("t.img");
    let o = run(&["recv", "--quiet", "--to", s(&t)], &stream(&pool, 1, None, &["--size", &size]));
    assert!(o.status.success(), "{}", stderr(&o));
    let inc = stream(&pool, 2, Some(1), &["--size", &size]);
    assert!(!cut_receive(&t, &inc, inc.len() * 2 / 3).status.success());
    assert_ne!(std::fs::read(&t).unwrap(), image(pool.dev(1), vol), "the in-place receive wrote nothing");
    let o = run(&["recv", "--quiet", "--to", s(&t)], &inc);
    refused(&o, "the incremental again, not resumed", "has a partial receive");
    let o = run(&["recv", "--abort", "--to", s(&t)], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("rolled back"), "{}", stderr(&o));
    assert_image(&t, &image(pool.dev(1), vol), "after --abort");
    let st = thinsend::recv::read_state(&t, None).unwrap().unwrap();
    assert_eq!(st.source.map(|s| s.thin_id), Some(1));
    // The target is a plain received replica again: the incremental applies normally.
    let o = run(&["recv", "--quiet", "--to", s(&t)], &inc);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_image(&t, &image(pool.dev(2), vol), "incremental after --abort");
}

#[test]
fn a_signal_keeps_the_partial_state_and_prints_how_to_continue() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(83, 256, 2));
    let vol = 256 * BS;
    let size = vol.to_string();
    let send = send_args(&pool, 1, None, &["--size", &size]);
    let st = stream(&pool, 1, None, &["--size", &size]);
    for (i, sig) in [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGKILL].into_iter().enumerate() {
        let t = dir.path().join(format!("t{i}.img"));
        let mut child = Command::new(BIN)
            .args(["recv", "-s", "--quiet", "--to", s(&t)])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input.write_all(&st[..st.len() / 2]).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: signalling our own child, not yet waited for.
        unsafe { libc::kill(child.id() as i32, sig) };
        let out = child.wait_with_output().unwrap();
        drop(input);
        let tok = token(&t);
        if sig != libc::SIGKILL {
            let e = stderr(&out);
            assert!(e.contains(&tok) && e.contains("send --resume"), "signal {sig}: {e}");
        }
        let o = run(&["recv", "--quiet", "--to", s(&t)], &stream_of(&with_resume(&send, &tok)));
        assert!(o.status.success(), "signal {sig}: {}", stderr(&o));
        assert_image(&t, &image(pool.dev(1), vol), &format!("resumed after signal {sig}"));
    }
}
