//! A receive into a file interrupted by a signal: the process exits 128+signal, the target is
//! unchanged, and the temporary it was writing is removed.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

#[path = "stream_common/mod.rs"]
mod common;

use common::temp_files;

const BIN: &str = env!("CARGO_BIN_EXE_thinsend-native");

#[test]
fn interrupted_file_receive_removes_its_temporary_and_keeps_the_target() {
    let stream = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/testdata/linbit/full.stream")).unwrap();
    for (sig, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM"), (libc::SIGHUP, "SIGHUP")] {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("image");
        std::fs::write(&target, b"the old image").unwrap();
        let mut child = Command::new(BIN)
            .args(["recv", "--quiet", "--to"])
            .arg(&target)
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        // Half a stream, and the pipe stays open: the receiver waits for the rest.
        stdin.write_all(&stream[..stream.len() / 2]).unwrap();
        stdin.flush().unwrap();
        let mut waited = 0;
        while temp_files(dir.path()).is_empty() && waited < 100 {
            std::thread::sleep(Duration::from_millis(20));
            waited += 1;
        }
        assert!(!temp_files(dir.path()).is_empty(), "{name}: the receiver never created its temporary");
        // SAFETY: sending a signal to our own child process, whose pid is valid until we wait on it.
        assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
        let out = child.wait_with_output().unwrap();
        drop(stdin);
        assert_eq!(out.status.code(), Some(128 + sig), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(&target).unwrap(), b"the old image", "{name}: target changed");
        assert!(temp_files(dir.path()).is_empty(), "{name}: temporary left behind: {:?}", temp_files(dir.path()));
    }
}
