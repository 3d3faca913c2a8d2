//! The receive-side holes of issue 9, each driven through the real binary: symlinks planted where
//! recv creates files, messages that must say the truth about the target, target errors reported
//! before the stream is read, long names, filesystems without hole punching, temporaries a SIGKILL
//! left, exact target lengths, and the identity of an existing file kept by an in-place receive.

#[path = "stream_common/mod.rs"]
mod common;

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn recv_cmd(target: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.args(["recv", "--to", s(target), "--quiet"]).args(extra);
    c
}

fn no_xattr(target: &Path, extra: &[&str]) -> Option<Command> {
    let mut c = recv_cmd(target, extra);
    deny_syscalls(&mut c, XATTR_CALLS, libc::EOPNOTSUPP).then_some(c)
}

#[test]
fn state_files_are_never_written_through_a_planted_symlink() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(41, 40, 1));
    let victim = dir.path().join("victim");
    std::fs::write(&victim, b"precious bytes").unwrap();
    let target = dir.path().join("t.img");
    let Some(mut cmd) = no_xattr(&target, &[]) else {
        return;
    };
    let mut child = cmd.stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let pid = child.id();
    // Every name the receiver (today's or an earlier one) creates beside the target, as a symlink.
    let tag = name_tag("t.img");
    for name in [
        format!("t.img.thinsend.{pid}.tmp"),
        format!(".{tag}.thinsend-{pid}.state.tmp"),
        format!(".{tag}.thinsend-{pid}.base.tmp"),
        format!(".{tag}.thinsend-journal"),
        "t.img.thinsend".to_string(),
    ] {
        std::os::unix::fs::symlink(&victim, dir.path().join(name)).unwrap();
    }
    child.stdin.take().unwrap().write_all(&stream(&pool, 1, None, &[])).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious bytes", "a file outside the target was overwritten");
    assert!(out.status.success(), "{}", stderr(&out));
    let state = std::fs::read(dir.path().join("t.img.thinsend")).unwrap();
    assert!(String::from_utf8_lossy(&state).contains("\"complete\":true"));
}

#[test]
fn a_failed_state_write_leaves_the_target_unchanged_and_says_so_truthfully() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(42, 40, 2));
    let target = dir.path().join("t.img");
    let old = b"an old image that a full stream with --force would replace".to_vec();
    std::fs::write(&target, &old).unwrap();
    std::fs::create_dir(dir.path().join("t.img.thinsend")).unwrap();
    let Some(mut cmd) = no_xattr(&target, &["--force"]) else {
        return;
    };
    let out = run_cmd(&mut cmd, &stream(&pool, 1, None, &[]));
    let err = stderr(&out);
    assert!(!out.status.success(), "succeeded without recording its state");
    assert!(err.contains("t.img.thinsend"), "the message does not name the state file: {err}");
    assert!(err.contains("left unchanged"), "{err}");
    assert_eq!(std::fs::read(&target).unwrap(), old, "the message says 'left unchanged' but the target changed");
    // A new target: "not created", and it is not.
    let new = dir.path().join("n.img");
    std::fs::create_dir(dir.path().join("n.img.thinsend")).unwrap();
    let mut cmd = no_xattr(&new, &[]).unwrap();
    let out = run_cmd(&mut cmd, &stream(&pool, 1, None, &[]));
    assert!(!out.status.success() && stderr(&out).contains("not created"), "{}", stderr(&out));
    assert!(!new.exists(), "the message says 'not created' but the target exists");
    assert!(temp_files(dir.path()).is_empty(), "{:?}", temp_files(dir.path()));
}

#[test]
fn target_errors_are_reported_before_the_stream_is_read_and_name_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("missing-dir").join("x.img");
    // stdin stays open and silent: a receiver that waits for the stream before checking hangs.
    let mut child = recv_cmd(&target, &[]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let t0 = Instant::now();
    while child.try_wait().unwrap().is_none() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
        panic!("the receiver waited for the stream instead of checking its target first");
    }
    let out = child.wait_with_output().unwrap();
    let err = stderr(&out);
    assert!(!out.status.success());
    assert!(err.contains("x.img") && err.contains("missing-dir"), "{err}");
    assert!(!err.contains("stream byte") && !err.contains(".thinsend-"), "reported as a stream error: {err}");
}

#[test]
fn a_250_byte_file_name_can_be_received_into() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(43, 40, 2));
    let target = dir.path().join("n".repeat(250));
    for (id, base) in [(1, None), (2, Some(1))] {
        let out = run(&["recv", "--to", s(&target), "--quiet"], &stream(&pool, id, base, &[]));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_image(&target, &image(pool.dev(id), pool.dev(id).highest_end() * BS), "250-byte name");
    }
}

#[test]
fn unmap_writes_zeros_where_holes_cannot_be_punched() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(44, 60, 2));
    let size = (60 * BS).to_string();
    let target = dir.path().join("t.img");
    let out = run(&["recv", "--to", s(&target), "--quiet"], &stream(&pool, 1, None, &["--size", &size]));
    assert!(out.status.success(), "{}", stderr(&out));
    let inc = stream(&pool, 2, Some(1), &["--size", &size]);
    let mut cmd = recv_cmd(&target, &[]);
    if !deny_syscalls(&mut cmd, &[libc::SYS_fallocate], libc::EOPNOTSUPP) {
        return;
    }
    let out = run_cmd(&mut cmd, &inc);
    assert!(out.status.success(), "UNMAP failed without hole punching: {}", stderr(&out));
    assert_image(&target, &image(pool.dev(2), 60 * BS), "incremental without hole punching");
}

#[test]
fn a_temporary_left_by_a_sigkilled_receive_is_reported_and_removed() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(45, 60, 1));
    let target = dir.path().join("t.img");
    let full = stream(&pool, 1, None, &[]);
    let mut child = recv_cmd(&target, &[]).stdin(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&full[..full.len() / 2]).unwrap();
    let t0 = Instant::now();
    while temp_files(dir.path()).is_empty() && t0.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL: nothing runs in the receiver
    child.wait().unwrap();
    let left = temp_files(dir.path());
    assert_eq!(left.len(), 1, "expected the killed receive's temporary: {left:?}");
    let out = run(&["recv", "--to", s(&target), "--quiet"], &full);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("removed") && stderr(&out).contains(&left[0]), "not reported: {}", stderr(&out));
    assert!(temp_files(dir.path()).is_empty(), "still there: {:?}", temp_files(dir.path()));
    assert_image(&target, &image(pool.dev(1), pool.dev(1).highest_end() * BS), "after the stale temporary");
}

#[test]
fn the_target_always_has_the_source_volume_length() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(46, 40, 2));
    let vol = 50 * BS; // beyond the last mapped block
    let vs = vol.to_string();
    let img1 = image(pool.dev(1), vol);
    let t = |n: &str| dir.path().join(n);
    // native, new file, with and without --size (the header carries the size)
    for (name, extra) in [("n1", vec![]), ("n2", vec!["--size", vs.as_str()])] {
        let p = t(name);
        let mut a = vec!["recv", "--to", s(&p), "--quiet"];
        a.extend(extra);
        let out = run(&a, &stream(&pool, 1, None, &["--size", &vs]));
        assert!(out.status.success(), "{}", stderr(&out));
        assert_image(&t(name), &img1, &format!("native into a new file {name}"));
    }
    // native, existing longer file, full with --force: cut to the volume
    std::fs::write(t("n3"), vec![1u8; (vol + 3 * BS) as usize]).unwrap();
    let out = run(&["recv", "--to", s(&t("n3")), "--quiet", "--force"], &stream(&pool, 1, None, &["--size", &vs]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_image(&t("n3"), &img1, "native full into a longer file");
    // native with a --size that contradicts the header: refused
    let out =
        run(&["recv", "--to", s(&t("n4")), "--quiet", "--size", "65536"], &stream(&pool, 1, None, &["--size", &vs]));
    assert!(
        !out.status.success() && stderr(&out).contains("differs from the stream's volume size"),
        "{}",
        stderr(&out)
    );
    assert!(!t("n4").exists());
    let lin = |id, base| stream(&pool, id, base, &["--stream-format", "linbit"]);
    // LINBIT, new file, no --size: refused before writing, nothing created
    let out = run(&["recv", "--to", s(&t("l1")), "--quiet"], &lin(1, None));
    assert!(!out.status.success() && stderr(&out).contains("--size"), "{}", stderr(&out));
    assert!(!t("l1").exists() && temp_files(dir.path()).is_empty());
    // LINBIT, new file, --size: exactly that long
    let out = run(&["recv", "--to", s(&t("l1")), "--quiet", "--size", &vs], &lin(1, None));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_image(&t("l1"), &img1, "linbit into a new file with --size");
    // LINBIT, existing file, no --size: keeps the existing length
    let out = run(&["recv", "--to", s(&t("l1")), "--quiet"], &lin(2, Some(1)));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_image(&t("l1"), &image(pool.dev(2), vol), "linbit incremental keeps the length");
    // LINBIT, existing file, --size: exactly that long
    let out = run(&["recv", "--to", s(&t("l1")), "--quiet", "--size", &(vol + BS).to_string()], &lin(2, Some(1)));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_image(&t("l1"), &image(pool.dev(2), vol + BS), "linbit with --size into an existing file");
}

#[test]
fn an_existing_file_keeps_owner_mode_hard_links_and_xattrs() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(47, 40, 3));
    let target = dir.path().join("t.img");
    let out = run(&["recv", "--to", s(&target), "--quiet"], &stream(&pool, 1, None, &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    let link = dir.path().join("link.img");
    std::fs::hard_link(&target, &link).unwrap();
    std::os::unix::fs::chown(&target, Some(1234), Some(5678)).unwrap();
    std::fs::set_permissions(&target, std::os::unix::fs::PermissionsExt::from_mode(0o640)).unwrap();
    let name = std::ffi::CString::new("user.keep").unwrap();
    let p = std::ffi::CString::new(s(&target)).unwrap();
    // SAFETY: both strings are NUL-terminated and the value is 2 readable bytes.
    let r = unsafe { libc::setxattr(p.as_ptr(), name.as_ptr(), b"me".as_ptr().cast(), 2, 0) };
    let xattrs = r == 0;
    let before = std::fs::metadata(&target).unwrap();
    let out = run(&["recv", "--to", s(&link), "--quiet"], &stream(&pool, 2, Some(1), &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = run(&["recv", "--to", s(&target), "--quiet", "--force"], &stream(&pool, 3, None, &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    let after = std::fs::metadata(&target).unwrap();
    assert_eq!((after.uid(), after.gid()), (1234, 5678), "owner changed");
    assert_eq!(after.mode() & 0o7777, 0o640, "mode changed");
    assert_eq!((after.ino(), after.nlink()), (before.ino(), 2), "hard link split");
    assert_image(&link, &image(pool.dev(3), pool.dev(3).highest_end() * BS), "the image through its hard link");
    if xattrs {
        let mut buf = [0u8; 8];
        // SAFETY: as above; `buf` is writable for its length.
        let n = unsafe { libc::getxattr(p.as_ptr(), name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        assert_eq!(n, 2, "user xattr lost");
    }
}
