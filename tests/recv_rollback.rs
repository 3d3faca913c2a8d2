//! A modified replica: a file target written after a receive is refused by the next incremental
//! with a message naming the change; `--force` applies anyway; `--rollback` returns it to the
//! received state first where the filesystem has reflink (a loop-mounted XFS here) and refuses
//! clearly where it has not (ext4).

#[path = "stream_common/mod.rs"]
mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn scribble(p: &Path) {
    let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
    f.write_all_at(b"MODIFIED", 100).unwrap();
}

fn recv(target: &Path, st: &[u8], extra: &[&str]) -> std::process::Output {
    let mut a = vec!["recv", "--to", s(target), "--quiet"];
    a.extend_from_slice(extra);
    run(&a, st)
}

/// Receives 1, scribbles on the target, and checks the incremental 1 -> 2 is refused.
fn received_then_modified(pool: &Pool, target: &Path) -> Vec<u8> {
    let out = recv(target, &stream(pool, 1, None, &[]), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    scribble(target);
    let modified = std::fs::read(target).unwrap();
    let out = recv(target, &stream(pool, 2, Some(1), &[]), &[]);
    let err = stderr(&out);
    assert!(!out.status.success(), "an incremental was applied to a modified replica");
    assert!(err.contains("changed since the last receive") && err.contains("modification time"), "{err}");
    assert!(err.contains("--rollback"), "{err}");
    assert_eq!(std::fs::read(target).unwrap(), modified, "the refused receive changed the target");
    modified
}

#[test]
fn a_modified_replica_is_refused_and_force_applies_anyway() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(51, 40, 2));
    let target = dir.path().join("t.img");
    received_then_modified(&pool, &target);
    // ext4 has no reflink: no copy of the received state, --rollback says so.
    let out = recv(&target, &stream(&pool, 2, Some(1), &[]), &["--rollback"]);
    if out.status.success() {
        eprintln!("NOTICE: {} has reflink: the refusal of --rollback is not checked here", dir.path().display());
    } else {
        assert!(stderr(&out).contains("no copy of the received state"), "{}", stderr(&out));
    }
    let out = recv(&target, &stream(&pool, 2, Some(1), &[]), &["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The replica is now at 2 as far as its state goes, and unmodified since: the next applies.
    let out = recv(&target, &stream(&pool, 2, None, &[]), &["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

struct Mount {
    dir: PathBuf,
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// A loop-mounted XFS (reflink on) in `dir`, or `None` with a notice.
fn xfs(dir: &Path) -> Option<Mount> {
    let img = dir.join("xfs.img");
    std::fs::File::create(&img).unwrap().set_len(320 << 20).unwrap();
    let mnt = dir.join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let ok = Command::new("mkfs.xfs").args(["-q", "-m", "reflink=1"]).arg(&img).status().is_ok_and(|s| s.success())
        && Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&mnt).status().is_ok_and(|s| s.success());
    if !ok {
        eprintln!("NOTICE: cannot make and mount an XFS image (needs xfsprogs and root): test skipped");
        return None;
    }
    Some(Mount { dir: mnt })
}

#[test]
fn rollback_returns_a_modified_replica_to_the_received_state_where_there_is_reflink() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let Some(m) = xfs(dir.path()) else {
        return;
    };
    let pool = build(dir.path(), chain(52, 40, 3));
    let target = m.dir.join("t.img");
    received_then_modified(&pool, &target);
    let out = recv(&target, &stream(&pool, 2, Some(1), &[]), &["--rollback"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_image(&target, &image(pool.dev(2), pool.dev(2).highest_end() * BS), "rolled back, then 1 -> 2");
    // And again one step further, unmodified this time.
    let out = recv(&target, &stream(&pool, 3, Some(2), &[]), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_image(&target, &image(pool.dev(3), pool.dev(3).highest_end() * BS), "2 -> 3");
}
