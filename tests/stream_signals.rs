//! A receive interrupted by a signal exits 128+signal. Into a new file: its temporary is removed.
//! Into an existing file or a block device (written in place under the undo journal): on SIGINT,
//! SIGTERM or SIGHUP the target is rolled back before the process exits; after SIGKILL, by the next
//! receive into it, which says so.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "stream_common/mod.rs"]
mod common;

use common::{temp_files, BS};

const BIN: &str = env!("CARGO_BIN_EXE_thinsend-native");

/// Starts `recv --to target`, feeds half of `stream` and keeps the pipe open, waits until a
/// temporary or journal exists beside the target, sends `sig`; returns the exit code.
fn interrupt(target: &Path, stream: &[u8], extra: &[&str], sig: i32) -> Option<i32> {
    let dir = target.parent().unwrap();
    interrupt_when(target, &|| !temp_files(dir).is_empty(), stream, extra, sig)
}

/// [`interrupt`], signalling once `ready()` (the receiver has begun to write).
fn interrupt_when(target: &Path, ready: &dyn Fn() -> bool, stream: &[u8], extra: &[&str], sig: i32) -> Option<i32> {
    let mut child = Command::new(BIN)
        .args(["recv", "--quiet", "--to"])
        .arg(target)
        .args(extra)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&stream[..stream.len() / 2]).unwrap();
    stdin.flush().unwrap();
    let mut waited = 0;
    while !ready() && waited < 100 {
        std::thread::sleep(Duration::from_millis(20));
        waited += 1;
    }
    assert!(ready(), "the receiver never began to write");
    // Past the first DATA record.
    std::thread::sleep(Duration::from_millis(100));
    // SAFETY: sending a signal to our own child process, whose pid is valid until we wait on it.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
    let out = child.wait_with_output().unwrap();
    drop(stdin);
    out.status.code().or_else(|| std::os::unix::process::ExitStatusExt::signal(&out.status).map(|s| 128 + s))
}

fn stream() -> Vec<u8> {
    std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/linbit/full.stream")).unwrap()
}

#[test]
fn interrupted_receive_into_a_new_file_removes_its_temporary() {
    let size = (101 * BS).to_string();
    for (sig, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP")] {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("image");
        assert_eq!(interrupt(&target, &stream(), &["--size", &size], sig), Some(128 + sig), "{name}");
        assert!(!target.exists(), "{name}: target created");
        assert!(temp_files(dir.path()).is_empty(), "{name}: temporary left behind: {:?}", temp_files(dir.path()));
    }
}

#[test]
fn a_killed_receive_into_an_existing_file_is_rolled_back_by_the_next() {
    let old: Vec<u8> = (0..101 * BS).map(|i| (i % 253) as u8).collect();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("image");
    std::fs::write(&target, &old).unwrap();
    assert_eq!(interrupt(&target, &stream(), &[], libc::SIGKILL), Some(128 + libc::SIGKILL));
    // The next receive into the target (here of an empty stream) finishes the rollback.
    let out = Command::new(BIN)
        .args(["recv", "--quiet", "--allow-empty", "--to"])
        .arg(&target)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(std::fs::read(&target).unwrap() == old, "target changed");
    assert!(temp_files(dir.path()).is_empty(), "left behind: {:?}", temp_files(dir.path()));
}

const CATCHABLE: [(i32, &str); 3] = [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP")];

/// A LINBIT stream (journaled into an existing file and into a block device alike) of about 4 MiB
/// of DATA, several batches of journaled writes, over a 100-block volume.
fn big_stream(dir: &Path) -> Option<Vec<u8>> {
    if !common::have_thin_restore() {
        return None;
    }
    let pool = common::build(dir, common::chain(71, 100, 1));
    Some(common::stream(&pool, 1, None, &["--stream-format", "linbit"]))
}

/// The next receive into the target (of an empty stream) finds nothing to roll back.
fn assert_nothing_to_recover(extra: &[&str], name: &str) {
    let out =
        Command::new(BIN).args(["recv", "--quiet", "--allow-empty"]).args(extra).stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name}: {err}");
    assert!(!err.contains("rolled back"), "{name}: the next receive still had to recover: {err}");
}

/// The signal comes once the receiver has changed the target: its bytes differ from `old`.
fn changed(path: &Path, old: &[u8]) -> bool {
    std::fs::read(path).is_ok_and(|mut b| {
        b.truncate(old.len());
        b != old
    })
}

#[test]
fn a_signal_rolls_back_an_existing_file_before_the_receiver_exits() {
    let pool_dir = tempfile::tempdir().unwrap();
    let Some(st) = big_stream(pool_dir.path()) else {
        return;
    };
    let old: Vec<u8> = (0..100 * BS).map(|i| (i % 251) as u8).collect();
    let mtime = std::time::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    for (sig, name) in CATCHABLE {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("image");
        std::fs::write(&target, &old).unwrap();
        std::fs::File::options().write(true).open(&target).unwrap().set_modified(mtime).unwrap();
        assert_eq!(interrupt_when(&target, &|| changed(&target, &old), &st, &[], sig), Some(128 + sig), "{name}");
        let m = std::fs::metadata(&target).unwrap();
        assert_eq!(m.len(), old.len() as u64, "{name}: length changed");
        assert!(std::fs::read(&target).unwrap() == old, "{name}: target left partly written at exit");
        assert_eq!(m.modified().unwrap(), mtime, "{name}: mtime not restored");
        assert!(temp_files(dir.path()).is_empty(), "{name}: left behind: {:?}", temp_files(dir.path()));
        assert_nothing_to_recover(&["--to", target.to_str().unwrap()], name);
    }
}

/// A loop device over a file (needs root and losetup), detached on drop.
struct Loop(String);

impl Loop {
    fn attach(backing: &Path) -> Option<Loop> {
        let out = Command::new("losetup").args(["-f", "--show"]).arg(backing).output().ok()?;
        out.status.success().then(|| Loop(String::from_utf8_lossy(&out.stdout).trim().to_string()))
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["-d", &self.0]).status();
    }
}

#[test]
fn a_signal_rolls_back_a_block_device_before_the_receiver_exits() {
    let pool_dir = tempfile::tempdir().unwrap();
    let Some(st) = big_stream(pool_dir.path()) else {
        return;
    };
    let old: Vec<u8> = (0..100 * BS).map(|i| (i % 247) as u8).collect();
    for (sig, name) in CATCHABLE {
        let dir = tempfile::tempdir().unwrap();
        let backing = dir.path().join("backing");
        std::fs::write(&backing, &old).unwrap();
        let Some(dev) = Loop::attach(&backing) else {
            eprintln!("NOTICE: cannot attach a loop device (needs root and losetup): test skipped");
            return;
        };
        let (devp, state) = (Path::new(&dev.0), dir.path().join("state.json"));
        let extra = ["--state-file", state.to_str().unwrap()];
        let code = interrupt_when(devp, &|| changed(devp, &old), &st, &extra, sig);
        assert_eq!(code, Some(128 + sig), "{name}");
        assert!(std::fs::read(devp).unwrap() == old, "{name}: device left partly written at exit");
        assert!(!state.exists(), "{name}: a state was recorded");
        assert!(!dir.path().join("state.json.journal").exists(), "{name}: the undo journal was left behind");
        assert_nothing_to_recover(&["--to", &dev.0, "--state-file", state.to_str().unwrap()], name);
    }
}
