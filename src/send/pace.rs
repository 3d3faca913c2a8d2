//! `--bwlimit`: the stream's bytes paced to a rate. Each write waits until the bytes before it have
//! had their time at the rate; a write that comes late (a busy machine oversleeps) may catch up by at
//! most a quarter second's worth, idle time earns no more, and writes are cut to a sixteenth of a
//! second's worth, so the rate holds within every second.

use std::time::{Duration, Instant};

/// How far behind its schedule the pacer may catch up (the largest burst).
const SLACK: Duration = Duration::from_millis(250);

#[derive(Debug)]
pub(crate) struct Pacer {
    /// Bytes per second.
    rate: u64,
    /// When the bytes let through so far have had their time.
    free_at: Instant,
}

impl Pacer {
    pub fn new(rate: u64) -> Self {
        Pacer { rate: rate.max(1), free_at: Instant::now() }
    }

    /// The largest write to pace as one piece.
    pub fn chunk(&self) -> usize {
        (self.rate / 16).clamp(4096, 1 << 20) as usize
    }

    /// Before writing `n` bytes: waits for the link to be free, then books `n` bytes of it.
    pub fn take(&mut self, n: usize) {
        let now = Instant::now();
        let start = self.free_at.max(now.checked_sub(SLACK).unwrap_or(now));
        if start > now {
            std::thread::sleep(start - now);
        }
        self.free_at = start + Duration::from_secs_f64(n as f64 / self.rate as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_let_through_at_the_rate_and_idle_time_earns_at_most_the_slack() {
        let mut p = Pacer::new(1 << 20);
        assert_eq!(p.chunk(), 65536);
        let t = Instant::now();
        for _ in 0..13 {
            p.take(65536); // 13 x 1/16 s: the first at once, the last after 12/16 s
        }
        let e = t.elapsed().as_secs_f64();
        assert!((0.7..0.95).contains(&e), "{e}");
        std::thread::sleep(Duration::from_millis(600));
        let t = Instant::now();
        for _ in 0..8 {
            p.take(65536); // half a second's worth after idling: a quarter second goes at once
        }
        let e = t.elapsed().as_secs_f64();
        assert!((0.15..0.4).contains(&e), "burst after idling bounded: {e}");
    }
}
