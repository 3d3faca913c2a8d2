//! Progress on stderr for send and recv: bytes done of the total, rate and ETA, redrawn at most a few
//! times a second on a terminal (one line a second otherwise), and a final one-line summary.
//!
//! `--progress=json` prints one JSON line a second instead (docs/JSON.md, `"type": "progress"`), and
//! a last one with `"final": true` in place of the summary.
//!
//! `send | recv` puts two progress lines on one terminal. Only one side redraws in place: the
//! receiver (or a sender writing to a file). A sender writing into a pipe prints whole lines, every
//! few seconds, each erasing the receiver's line first, so the receiver's line stays at the bottom
//! and nothing is overwritten. Each line starts with its verb ("sent" or "received").

use std::io::Write;
use std::time::{Duration, Instant};

use crate::io as sys;
use crate::report;

/// Whether to show progress (`--progress` forces it, `--quiet` silences it; otherwise only on a tty).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Auto,
    Always,
    Never,
    /// One JSON line per update on stderr, whatever stderr is.
    Json,
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
    /// Whole lines instead of redrawing in place (the other side of a pipe owns the line).
    lines: bool,
    /// JSON lines (`--progress=json`).
    json: bool,
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
            Mode::Always | Mode::Json => true,
            Mode::Never => false,
        };
        let now = Instant::now();
        let json = mode == Mode::Json;
        Progress { enabled, tty, verb, total, done: 0, start: now, last: now, drawn: false, lines: false, json }
    }

    /// Prints whole lines instead of redrawing one in place when `lines` (a sender writing into a
    /// pipe, whose receiver may draw on the same terminal).
    pub fn lines_only(mut self, lines: bool) -> Self {
        self.lines = lines;
        self
    }

    fn interval(&self) -> Duration {
        if self.json {
            return Duration::from_secs(1);
        }
        match (self.tty, self.lines) {
            (true, false) => Duration::from_millis(250),
            (true, true) => Duration::from_secs(5),
            (false, _) => Duration::from_secs(1),
        }
    }

    /// The bytes that show `line`: redrawn in place, or a whole line that first clears what another
    /// process may have drawn in place.
    fn frame(&self, line: &str) -> String {
        match (self.tty, self.lines) {
            (true, false) => format!("\r\x1b[K{line}"),
            (true, true) => format!("\r\x1b[K{line}\n"),
            (false, _) => format!("{line}\n"),
        }
    }

    pub fn set_total(&mut self, total: u64) {
        self.total = Some(total);
    }

    /// Bytes done so far.
    pub fn done(&self) -> u64 {
        self.done
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
        if now.duration_since(self.last) >= self.interval() {
            self.last = now;
            self.draw(now);
        }
    }

    /// One `"type": "progress"` JSON line.
    fn json_line(&self, now: Instant, last: bool) -> String {
        let secs = now.duration_since(self.start).as_secs_f64();
        let rate = self.done as f64 / secs.max(1e-6);
        let eta = match self.total {
            Some(t) if rate > 0.0 && t >= self.done => Some((t - self.done) as f64 / rate),
            _ => None,
        };
        let command = match self.verb {
            "sent" => "send",
            "received" => "recv",
            v => v,
        };
        let mut m = serde_json::Map::new();
        m.insert("command".into(), command.into());
        m.insert("done_bytes".into(), self.done.into());
        m.insert("total_bytes".into(), self.total.into());
        m.insert("elapsed_seconds".into(), report::seconds(secs));
        m.insert("bytes_per_second".into(), report::rate(self.done, secs));
        m.insert("eta_seconds".into(), eta.map_or(serde_json::Value::Null, report::seconds));
        m.insert("final".into(), last.into());
        let mut line = report::to_json(&report::document("progress", m)).unwrap_or_default();
        line.push('\n');
        line
    }

    fn draw(&mut self, now: Instant) {
        if self.json {
            let _ = std::io::stderr().lock().write_all(self.json_line(now, false).as_bytes());
            return;
        }
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
        let _ = std::io::stderr().lock().write_all(self.frame(&line).as_bytes());
        self.drawn = !self.lines;
    }

    /// Clears the progress line and prints `summary` (when enabled).
    pub fn finish(&mut self, summary: &str) {
        if !self.enabled {
            return;
        }
        if self.json {
            let _ = std::io::stderr().lock().write_all(self.json_line(Instant::now(), true).as_bytes());
            return;
        }
        let mut e = std::io::stderr().lock();
        // On a terminal the line may hold this side's or the other side's progress: clear it.
        if self.tty {
            let _ = write!(e, "\r\x1b[K");
        }
        let _ = writeln!(e, "{summary}");
    }

    /// Clears the progress line without a summary (before an error message).
    pub fn abandon(&mut self) {
        if self.enabled && self.tty && self.drawn && !self.json {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }

    /// Seconds since the start.
    pub fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(tty: bool, lines: bool) -> Progress {
        let now = Instant::now();
        Progress {
            enabled: true,
            tty,
            verb: "sent",
            total: None,
            done: 0,
            start: now,
            last: now,
            drawn: false,
            lines,
            json: false,
        }
    }

    #[test]
    fn json_lines_carry_the_schema_and_byte_counts() {
        let mut p = on(false, false);
        p.json = true;
        p.total = Some(1000);
        p.done = 250;
        let line = p.json_line(p.start + Duration::from_secs(2), false);
        assert!(line.ends_with('\n') && line.matches('\n').count() == 1, "{line:?}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["schema"], crate::report::SCHEMA);
        assert_eq!(v["type"], "progress");
        assert_eq!(v["command"], "send");
        assert_eq!((v["done_bytes"].as_u64(), v["total_bytes"].as_u64()), (Some(250), Some(1000)));
        assert_eq!(v["bytes_per_second"], 125);
        assert_eq!(v["eta_seconds"], 6.0);
        assert_eq!(v["final"], false);
        p.total = None;
        assert!(
            serde_json::from_str::<serde_json::Value>(&p.json_line(p.start, true)).unwrap()["total_bytes"].is_null()
        );
    }

    #[test]
    fn only_the_in_place_side_redraws_and_the_other_prints_whole_lines() {
        // The receiver's line: redrawn in place, never a newline.
        assert_eq!(on(true, false).frame("received 1 GiB"), "\r\x1b[Kreceived 1 GiB");
        // A sender into a pipe on the same terminal: clears the receiver's line, then a whole line,
        // so the receiver redraws below it instead of both overwriting one line.
        assert_eq!(on(true, true).frame("sent 1 GiB"), "\r\x1b[Ksent 1 GiB\n");
        assert!(on(true, true).interval() > on(true, false).interval());
        assert_eq!(on(false, true).frame("sent 1 GiB"), "sent 1 GiB\n");
        assert_eq!(on(false, false).frame("sent 1 GiB"), "sent 1 GiB\n");
    }
}
