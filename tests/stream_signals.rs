//! A receive interrupted by a signal exits 128+signal. Into a new file: its temporary is removed.
//! Into an existing file (written in place under the undo journal): the target is rolled back, at
//! the latest by the next receive into it, which says so.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "stream_common/mod.rs"]
mod common;

use common::{temp_files, BS};

const BIN: &str = env!("CARGO_BIN_EXE_thinsend-native");

/// Starts `recv --to target`, feeds half of `stream` and keeps the pipe open, waits until a
/// temporary or journal exists, sends `sig`; returns the exit code.
fn interrupt(target: &Path, stream: &[u8], extra: &[&str], sig: i32) -> Option<i32> {
    let dir = target.parent().unwrap();
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
    while temp_files(dir).is_empty() && waited < 100 {
        std::thread::sleep(Duration::from_millis(20));
        waited += 1;
    }
    assert!(!temp_files(dir).is_empty(), "the receiver never created its temporary or journal");
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
fn interrupted_receive_into_an_existing_file_is_rolled_back() {
    let old: Vec<u8> = (0..101 * BS).map(|i| (i % 253) as u8).collect();
    for (sig, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM"), (libc::SIGKILL, "SIGKILL")] {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("image");
        std::fs::write(&target, &old).unwrap();
        assert_eq!(interrupt(&target, &stream(), &[], sig), Some(128 + sig), "{name}");
        // The next receive into the target (here of an empty stream) finishes any rollback.
        let out = Command::new(BIN)
            .args(["recv", "--quiet", "--allow-empty", "--to"])
            .arg(&target)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(std::fs::read(&target).unwrap() == old, "{name}: target changed");
        assert!(temp_files(dir.path()).is_empty(), "{name}: left behind: {:?}", temp_files(dir.path()));
    }
}
