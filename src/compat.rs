//! Drop-in for LINBIT thin-send-recv 1.1.3 (what LINSTOR runs): invoked as `thin_send` or
//! `thin_recv`, take its options and positionals, write and read its 1.1 stream format, and exit
//! with its codes (0, or 10 for every error). Differences, all on the safe side: the mode comes from
//! the program's file name (not from a substring of the whole path), the receive is atomic and
//! checks the target is not in use, and a native stream is accepted too.

use std::io::Write;

use crate::io as sys;
use crate::lvm;
use crate::progress;
use crate::send::StreamFormat;
use crate::stream::{Accept, ReadOptions};

pub const VERSION: &str = "1.1.3";
const EXIT_ERROR: u8 = 10;

/// Whether `argv0` names the drop-in (`thin_send`, `thin_recv`, ...).
pub fn is_compat_name(argv0: &str) -> bool {
    let base = std::path::Path::new(argv0).file_name().and_then(|n| n.to_str()).unwrap_or("");
    base.starts_with("thin_send") || base.starts_with("thin_recv") || base.starts_with("thin_receive")
}

fn usage(err: &mut dyn Write) {
    let _ = writeln!(
        err,
        "USAGE: thin_send [options] [VG/BASE] VG/SNAP\n       thin_recv [options] VG/LV\n\
         Options:\n  --version | -v\n  --send | -s\n  --receive | -r\n  --allow-tty | -t\n  --about | -a\n  \
         --accept-stream-format=auto|1.0|1.1"
    );
}

/// What the command line asked for.
struct Opts {
    send: bool,
    recv: bool,
    allow_tty: bool,
    accept: String,
    positional: Vec<String>,
}

/// Sets the mode or the tty flag for one short option letter; false for an unknown one.
fn short(c: char, o: &mut Opts) -> bool {
    match c {
        's' => (o.send, o.recv) = (true, false),
        'r' => (o.send, o.recv) = (false, true),
        't' => o.allow_tty = true,
        _ => return false,
    }
    true
}

/// Parses thin-send-recv's options; Err(exit code) once the run is over (version, about, errors).
fn parse(args: Vec<String>, base: &str, err: &mut dyn Write) -> Result<Opts, u8> {
    let mut o = Opts {
        send: base.contains("send"),
        recv: base.contains("recv") || base.contains("receive"),
        allow_tty: false,
        accept: "auto".to_string(),
        positional: Vec::new(),
    };
    let mut it = args.into_iter().skip(1);
    let mut only_positional = false;
    while let Some(a) = it.next() {
        if only_positional || !a.starts_with('-') || a == "-" {
            o.positional.push(a);
            continue;
        }
        match a.as_str() {
            "--" => only_positional = true,
            "-v" | "--version" => {
                println!("{VERSION} (thinsend-native {})", env!("CARGO_PKG_VERSION"));
                return Err(0);
            }
            "-a" | "--about" => {
                println!("thinsend-native {}: a drop-in for thin_send/thin_recv {VERSION}", env!("CARGO_PKG_VERSION"));
                return Err(0);
            }
            "-s" | "--send" => _ = short('s', &mut o),
            "-r" | "--receive" => _ = short('r', &mut o),
            "-t" | "--allow-tty" => _ = short('t', &mut o),
            "--accept-stream-format" => match it.next() {
                Some(v) => o.accept = v,
                None => {
                    let _ = writeln!(err, "option '--accept-stream-format' requires an argument");
                    usage(err);
                    return Err(EXIT_ERROR);
                }
            },
            s if s.starts_with("--accept-stream-format=") => {
                o.accept = s["--accept-stream-format=".len()..].to_string()
            }
            // bundled short options: -st
            s if s.starts_with('-') && !s.starts_with("--") && s.len() > 2 => {
                if let Some(c) = s[1..].chars().find(|&c| !short(c, &mut o)) {
                    let _ = writeln!(err, "unknown option '-{c}'");
                    usage(err);
                    return Err(EXIT_ERROR);
                }
            }
            _ => {
                let _ = writeln!(err, "unknown option '{a}'");
                usage(err);
                return Err(EXIT_ERROR);
            }
        }
    }
    Ok(o)
}

fn send(o: &Opts, err: &mut dyn Write) -> Result<crate::Result<()>, u8> {
    if sys::is_tty(1) && !o.allow_tty {
        let _ = writeln!(err, "Not dumping the data stream onto your terminal. Use --allow-tty to override.");
        return Err(EXIT_ERROR);
    }
    let (base, snap) = match o.positional.as_slice() {
        [snap] => (None, snap.clone()),
        [base, snap] => (Some(base.clone()), snap.clone()),
        _ => {
            usage(err);
            return Err(EXIT_ERROR);
        }
    };
    let args = lvm::send::Args {
        base,
        snap,
        format: StreamFormat::Linbit,
        read_from: lvm::send::ReadFrom::Lv,
        progress: progress::Mode::Never,
        allow_backward: false,
        resume: None,
    };
    Ok(lvm::send::send(&args, 1).map(|_| ()))
}

fn recv(o: &Opts, read: ReadOptions, err: &mut dyn Write) -> Result<crate::Result<()>, u8> {
    if sys::is_tty(0) && !o.allow_tty {
        let _ = writeln!(err, "Expecting a data stream on stdin. Use --allow-tty to override.");
        return Err(EXIT_ERROR);
    }
    let [target] = o.positional.as_slice() else {
        usage(err);
        return Err(EXIT_ERROR);
    };
    let args = lvm::recv::Args {
        target: target.clone(),
        read,
        progress: progress::Mode::Never,
        // thin_recv applies streams without base checks (LINBIT streams carry no identity).
        force: false,
        ..Default::default()
    };
    Ok(lvm::recv::recv(&args, 0).map(|_| ()))
}

/// Runs the drop-in; returns the exit code.
pub fn main(args: Vec<String>) -> u8 {
    let mut err = std::io::stderr();
    let argv0 = args.first().cloned().unwrap_or_default();
    let base = std::path::Path::new(&argv0).file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
    let o = match parse(args, &base, &mut err) {
        Ok(o) => o,
        Err(code) => return code,
    };
    let read = match o.accept.as_str() {
        "auto" => ReadOptions { accept: Accept::Auto, allow_empty: true },
        "1.1" => ReadOptions { accept: Accept::Linbit11, allow_empty: false },
        "1.0" => ReadOptions { accept: Accept::Linbit10, allow_empty: true },
        other => {
            let _ = writeln!(err, "unknown stream format '{other}' (auto, 1.0 or 1.1)");
            return EXIT_ERROR;
        }
    };
    let result = match (o.send, o.recv) {
        (true, false) => send(&o, &mut err),
        (false, true) => recv(&o, read, &mut err),
        _ => {
            let _ = writeln!(err, "Use --send or --receive");
            return EXIT_ERROR;
        }
    };
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            let _ = writeln!(err, "{base}: {e}");
            EXIT_ERROR
        }
        Err(code) => code,
    }
}
