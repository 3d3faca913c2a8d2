//! The transfer: the sending side's `send` and the receiving side's `recv` as two processes, the
//! stream copied from one to the other through this process (which counts the bytes and shows
//! progress). Each child's stderr is kept, and the last line of the one that failed becomes the
//! error: the receiver's when both fail, since its refusal is the cause of the sender's broken pipe.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::text::escape_controls;

/// What a finished transfer moved.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Moved {
    pub bytes: u64,
    pub seconds: f64,
}

fn keep_stderr(child: &mut Child) -> Option<JoinHandle<Vec<String>>> {
    let err = child.stderr.take()?;
    Some(std::thread::spawn(move || {
        let mut last = VecDeque::new();
        for line in BufReader::new(err).lines().map_while(|l| l.ok()) {
            if last.len() == 20 {
                last.pop_front();
            }
            last.push_back(line);
        }
        last.into()
    }))
}

fn spawn(cmd: &mut Command, what: &str) -> Result<Child> {
    cmd.spawn()
        .map_err(|e| Error::Other(format!("cannot start the {what} ({}): {e}", cmd.get_program().to_string_lossy())))
}

/// The error of a failed child: its last stderr line that is not blank.
fn failure(what: &str, status: ExitStatus, lines: &[String]) -> String {
    let line = lines.iter().rev().find(|l| !l.trim().is_empty()).map(|l| l.trim()).unwrap_or("");
    let line = line.strip_prefix("thinsend-native: ").unwrap_or(line);
    format!("{what} failed ({status}): {}", escape_controls(line))
}

/// Copies `from` into `to` until EOF, or until `to` is closed; returns the bytes copied and
/// whether the reader went away first.
fn copy(from: &mut dyn Read, to: &mut dyn Write, label: &str, progress: bool) -> Result<(u64, bool)> {
    let mut buf = vec![0u8; 1 << 20];
    let (mut n, t0) = (0u64, Instant::now());
    let mut next = t0 + Duration::from_secs(1);
    loop {
        let got = match from.read(&mut buf) {
            Ok(0) => return Ok((n, false)),
            Ok(g) => g,
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("<send>", e)),
        };
        match to.write_all(&buf[..got]) {
            Ok(()) => n += got as u64,
            Err(e) if e.kind() == ErrorKind::BrokenPipe => return Ok((n, true)),
            Err(e) => return Err(Error::io("<recv>", e)),
        }
        if progress && Instant::now() >= next {
            let s = t0.elapsed().as_secs_f64();
            eprintln!("{label}: {:.1} MiB sent, {:.1} MiB/s", n as f64 / 1048576.0, n as f64 / 1048576.0 / s);
            next += Duration::from_secs(1);
        }
    }
}

/// Runs `sender | receiver`; Ok when both succeed.
pub fn transfer(sender: &mut Command, receiver: &mut Command, label: &str, progress: bool) -> Result<Moved> {
    sender.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    receiver.stdin(Stdio::piped()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut recv = spawn(receiver, "receiver")?;
    let mut send = match spawn(sender, "sender") {
        Ok(s) => s,
        Err(e) => {
            let _ = recv.kill();
            let _ = recv.wait();
            return Err(e);
        }
    };
    let (send_err, recv_err) = (keep_stderr(&mut send), keep_stderr(&mut recv));
    let t0 = Instant::now();
    let (mut from, mut to) = (send.stdout.take(), recv.stdin.take());
    let copied = match (&mut from, &mut to) {
        (Some(f), Some(t)) => copy(f, t, label, progress),
        _ => Err(Error::Other("internal error: pipes not set up".into())),
    };
    // Closing both ends: the receiver sees EOF, a sender still writing gets a broken pipe.
    drop(to);
    drop(from);
    let rs = recv.wait().map_err(|e| Error::Other(format!("waiting for the receiver: {e}")))?;
    let ss = send.wait().map_err(|e| Error::Other(format!("waiting for the sender: {e}")))?;
    let join = |h: Option<JoinHandle<Vec<String>>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    let (sl, rl) = (join(send_err), join(recv_err));
    let (bytes, _) = copied?;
    if !rs.success() {
        return Err(Error::Other(failure("receive", rs, &rl)));
    }
    if !ss.success() {
        return Err(Error::Other(failure("send", ss, &sl)));
    }
    Ok(Moved { bytes, seconds: t0.elapsed().as_secs_f64() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn bytes_are_counted_and_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut recv = sh(&format!("cat > {}", out.display()));
        let m = transfer(&mut sh("head -c 3000000 /dev/zero"), &mut recv, "t", false).unwrap();
        assert_eq!(m.bytes, 3_000_000);
        assert_eq!(std::fs::metadata(&out).unwrap().len(), 3_000_000);
    }

    #[test]
    fn the_receivers_refusal_is_the_error() {
        let mut send = sh("yes; echo 'thinsend-native: broken pipe' >&2; exit 141");
        let mut recv = sh("head -c 10 >/dev/null; echo 'thinsend-native: vg/r has been modified' >&2; exit 1");
        let e = transfer(&mut send, &mut recv, "t", false).unwrap_err().to_string();
        assert!(e.starts_with("receive failed") && e.ends_with("vg/r has been modified"), "{e}");
    }

    #[test]
    fn a_failed_sender_is_an_error_even_when_the_receiver_accepts() {
        let mut send = sh("printf abc; echo 'thinsend-native: no such LV' >&2; exit 1");
        let e = transfer(&mut send, &mut sh("cat >/dev/null"), "t", false).unwrap_err().to_string();
        assert!(e.starts_with("send failed") && e.ends_with("no such LV"), "{e}");
        let e = transfer(&mut sh("true"), &mut Command::new("/nonexistent/x"), "t", false).unwrap_err();
        assert!(e.to_string().contains("cannot start the receiver"), "{e}");
    }
}
