//! Progress on stderr for send and recv: bytes done of the total, rate and ETA, redrawn at most a few
//! times a second on a terminal (one line a second otherwise), and a final one-line summary.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::io as sys;

/// Whether to show progress (`--progress` forces it, `--quiet` silences it; otherwise only on a tty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Auto,
    Always,
    Never,
}

pub struct Progress {
    enabled: bool,
    tty: bool,
    verb: &'static str,
    total: Option<u64>,
    done: u64,
    start: Instant,
    last: Instant,
    drawn: bool,
}

/// `1.5 GiB` style sizes.
pub fn human(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{v:.0} {}", UNITS[u])
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

fn duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

impl Progress {
    pub fn new(mode: Mode, verb: &'static str, total: Option<u64>) -> Self {
        let tty = sys::is_tty(2);
        let enabled = match mode {
            Mode::Auto => tty,
            Mode::Always => true,
            Mode::Never => false,
        };
        let now = Instant::now();
        Progress { enabled, tty, verb, total, done: 0, start: now, last: now, drawn: false }
    }

    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
    }

    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// `n` more bytes done.
    pub fn add(&mut self, n: u64) {
        self.done += n;
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        let every = if self.tty { Duration::from_millis(250) } else { Duration::from_secs(1) };
        if now.duration_since(self.last) >= every {
            self.last = now;
            self.draw(now);
        }
    }

    fn draw(&mut self, now: Instant) {
        let secs = now.duration_since(self.start).as_secs_f64().max(1e-6);
        let rate = self.done as f64 / secs;
        let mut line = format!("{} {}", self.verb, human(self.done as f64));
        if let Some(t) = self.total {
            let pct = if t == 0 { 100.0 } else { self.done as f64 * 100.0 / t as f64 };
            line.push_str(&format!(" of {} ({pct:.0}%)", human(t as f64)));
            line.push_str(&format!(", {}/s", human(rate)));
            if rate > 0.0 && t >= self.done {
                line.push_str(&format!(", ETA {}", duration((t - self.done) as f64 / rate)));
            }
        } else {
            line.push_str(&format!(", {}/s", human(rate)));
        }
        let mut e = std::io::stderr().lock();
        let _ = if self.tty { write!(e, "\r\x1b[K{line}") } else { writeln!(e, "{line}") };
        self.drawn = true;
    }

    /// Clears the progress line and prints `summary` (when enabled).
    pub fn finish(&mut self, summary: &str) {
        if !self.enabled {
            return;
        }
        let mut e = std::io::stderr().lock();
        if self.tty && self.drawn {
            let _ = write!(e, "\r\x1b[K");
        }
        let _ = writeln!(e, "{summary}");
    }

    /// Clears the progress line without a summary (before an error message).
    pub fn abandon(&mut self) {
        if self.enabled && self.tty && self.drawn {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    /// Bytes per second so far.
    pub fn rate(&self) -> f64 {
        self.done as f64 / self.elapsed().max(1e-6)
    }
}
