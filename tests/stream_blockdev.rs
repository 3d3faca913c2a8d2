//! Receiving into a block device (a loop device over a file): written in place, exclusively, with
//! the size checked first, holes of a full stream and UNMAPs zeroed (by discard or zero-out), the
//! received identity recorded in a state file, a failed incremental rolled back from the undo
//! journal and a failed full stream marked incomplete. Needs root and losetup; skipped with a notice
//! otherwise.

#[path = "stream_common/mod.rs"]
mod common;

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

struct Loop {
    dev: PathBuf,
}

impl Loop {
    fn attach(file: &Path) -> Option<Loop> {
        let out = Command::new("losetup").args(["-f", "--show"]).arg(file).output().ok()?;
        if !out.status.success() {
            return None;
        }
        let dev = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Some(Loop { dev: PathBuf::from(dev) })
    }

    fn sysfs(&self, what: &str) -> PathBuf {
        let name = self.dev.file_name().unwrap().to_string_lossy().into_owned();
        PathBuf::from(format!("/sys/block/{name}/queue/{what}"))
    }

    fn read(&self, len: usize) -> Vec<u8> {
        let mut v = std::fs::read(&self.dev).unwrap();
        v.truncate(len);
        v
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

fn setup(dir: &Path, size: u64) -> Option<Loop> {
    let backing = dir.join("backing");
    std::fs::write(&backing, vec![0xABu8; size as usize]).unwrap();
    let l = Loop::attach(&backing);
    if l.is_none() {
        eprintln!("NOTICE: cannot attach a loop device (needs root and losetup): test skipped");
    }
    l
}

fn recv_args<'a>(dev: &'a Path, state: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut a = vec!["recv", "--to", s(dev), "--state-file", s(state), "--quiet"];
    a.extend_from_slice(extra);
    a
}

fn state_of(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

fn check(l: &Loop, dev: &Dev, dev_size: usize, what: &str) {
    let vol = (dev.highest_end() * BS) as usize;
    let got = l.read(dev_size);
    let want = image(dev, vol as u64);
    if let Some(i) = got[..vol].iter().zip(&want).position(|(a, b)| a != b) {
        panic!("{what}: device differs from the image at byte {i} (block {})", i as u64 / BS);
    }
}

#[test]
fn block_device_chain_holes_state_and_failures() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(31, 100, 3));
    let size = 8u64 << 20;
    let Some(l) = setup(dir.path(), size) else {
        return;
    };
    let state = dir.path().join("state.json");

    // Full: mapped blocks written, holes zeroed (the device was 0xAB everywhere), rest untouched.
    let full = stream(&pool, 1, None, &[]);
    let out = run(&recv_args(&l.dev, &state, &[]), &full);
    assert!(out.status.success(), "{}", stderr(&out));
    check(&l, pool.dev(1), size as usize, "full into the device");
    let vol1 = (pool.dev(1).highest_end() * BS) as usize;
    assert!(l.read(size as usize)[vol1..].iter().all(|&b| b == 0xAB), "bytes beyond the volume were touched");
    assert_eq!(state_of(&state)["complete"], true);
    assert_eq!(state_of(&state)["source"]["thin_id"], 1);

    // Incremental 1 -> 2.
    let out = run(&recv_args(&l.dev, &state, &[]), &stream(&pool, 2, Some(1), &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    check(&l, pool.dev(2), size as usize, "incremental 1->2");
    assert_eq!(state_of(&state)["source"]["thin_id"], 2);

    // Wrong base: refused before anything is written.
    let before = l.read(size as usize);
    let out = run(&recv_args(&l.dev, &state, &[]), &stream(&pool, 2, Some(1), &[]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("the target holds thin 2"), "{}", stderr(&out));
    assert!(stderr(&out).contains("nothing was written"), "{}", stderr(&out));
    assert!(l.read(size as usize) == before, "refused stream changed the device");
    assert_eq!(state_of(&state)["complete"], true);

    // Held exclusively by someone else: refused.
    {
        let _held = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_EXCL).open(&l.dev).unwrap();
        let out = run(&recv_args(&l.dev, &state, &[]), &stream(&pool, 3, Some(2), &[]));
        assert!(!out.status.success());
        assert!(stderr(&out).contains("in use"), "{}", stderr(&out));
    }

    // A volume larger than the device: refused before the first write.
    let big = (size + BS).to_string();
    let out = run(&recv_args(&l.dev, &state, &["--force"]), &stream(&pool, 1, None, &["--size", &big]));
    assert!(!out.status.success());
    assert!(stderr(&out).contains("smaller than the stream's volume"), "{}", stderr(&out));
    assert!(l.read(size as usize) == before);

    // A stream cut in the middle: the undo journal puts the device back, the state is untouched.
    let inc = stream(&pool, 3, Some(2), &[]);
    let out = run(&recv_args(&l.dev, &state, &[]), &inc[..inc.len() / 2]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("left unchanged (rolled back"), "{}", stderr(&out));
    assert!(l.read(size as usize) == before, "a cut incremental changed the device");
    assert_eq!(state_of(&state)["source"]["thin_id"], 2);
    assert!(!dir.path().join("state.json.journal").exists(), "journal left behind");
    let out = run(&recv_args(&l.dev, &state, &[]), &inc);
    assert!(out.status.success(), "{}", stderr(&out));
    check(&l, pool.dev(3), size as usize, "incremental 2->3 after a cut one");
    // A full stream cut in the middle (not journaled: it rewrites the whole device) is marked
    // incomplete, and an incremental onto it refused.
    let full3 = stream(&pool, 3, None, &[]);
    let out = run(&recv_args(&l.dev, &state, &["--force"]), &full3[..full3.len() / 2]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("INCOMPLETE"), "{}", stderr(&out));
    assert_eq!(state_of(&state)["complete"], false);
    let out = run(&recv_args(&l.dev, &state, &[]), &inc);
    assert!(!out.status.success(), "incremental accepted onto an incomplete target");
    assert!(stderr(&out).contains("marked incomplete"), "{}", stderr(&out));
    // A full stream repairs it.
    let out = run(&recv_args(&l.dev, &state, &[]), &stream(&pool, 3, None, &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    check(&l, pool.dev(3), size as usize, "full 3 after a failure");
    assert_eq!(state_of(&state)["complete"], true);
}

#[test]
fn unmap_falls_back_to_zeroing_without_discard() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(32, 100, 2));
    let size = 8u64 << 20;
    let Some(l) = setup(dir.path(), size) else {
        return;
    };
    if std::fs::write(l.sysfs("discard_max_bytes"), "0").is_err() {
        eprintln!("NOTICE: cannot disable discard on {}: test skipped", l.dev.display());
        return;
    }
    let state = dir.path().join("state.json");
    let out = run(&recv_args(&l.dev, &state, &[]), &stream(&pool, 1, None, &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    check(&l, pool.dev(1), size as usize, "full without discard");
    let out = run(&recv_args(&l.dev, &state, &[]), &stream(&pool, 2, Some(1), &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    check(&l, pool.dev(2), size as usize, "incremental without discard");
}
