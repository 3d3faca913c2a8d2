//! Zero-block elision: a record's payload cut at target offsets that are multiples of a grain (the
//! data block size), each piece all zeros or not. The cut depends only on the offsets and the bytes,
//! so the same source always gives the same records.

/// `len` payload bytes at `at` (from the record's start), all zeros or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub at: usize,
    pub len: usize,
    pub zero: bool,
}

/// Whether every byte of `b` is 0 (64-byte lanes the compiler vectorizes, out at the first non-zero).
pub(crate) fn is_zero(b: &[u8]) -> bool {
    let mut lanes = b.chunks_exact(64);
    lanes.all(|c| c.iter().fold(0u8, |a, x| a | x) == 0) && lanes.remainder().iter().all(|x| *x == 0)
}

/// The runs of `buf` (target bytes from `offset`), cut at multiples of `grain` and joined where
/// neighbours are of the same kind, into `out` (cleared first).
pub(crate) fn runs(offset: u64, buf: &[u8], grain: u64, out: &mut Vec<Run>) {
    out.clear();
    let grain = grain.max(1);
    let mut at = 0usize;
    while at < buf.len() {
        let pos = offset + at as u64;
        let to_edge = (grain - pos % grain).min((buf.len() - at) as u64) as usize;
        let zero = is_zero(&buf[at..at + to_edge]);
        match out.last_mut() {
            Some(r) if r.zero == zero => r.len += to_edge,
            _ => out.push(Run { at, len: to_edge, zero }),
        }
        at += to_edge;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(at: usize, len: usize, zero: bool) -> Run {
        Run { at, len, zero }
    }

    #[test]
    fn zero_grains_are_found_at_target_aligned_edges_and_neighbours_joined() {
        let g = 4096usize;
        let mut buf = vec![0u8; 6 * g];
        buf[g + 100] = 1; // grain 1
        buf[2 * g] = 1; // grain 2
        buf[5 * g + g - 1] = 1; // the last byte of grain 5
        let mut out = Vec::new();
        runs(0, &buf, g as u64, &mut out);
        assert_eq!(out, [r(0, g, true), r(g, 2 * g, false), r(3 * g, 2 * g, true), r(5 * g, g, false)]);
        // The same bytes at an offset that is not grain-aligned are cut at the target's grain edges.
        runs(g as u64 / 2, &buf[..2 * g], g as u64, &mut out);
        assert_eq!(out, [r(0, g / 2, true), r(g / 2, g, false), r(3 * g / 2, g / 2, true)]);
        runs(0, &[], g as u64, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn is_zero_sees_a_non_zero_byte_anywhere() {
        assert!(is_zero(&[0u8; 1000]));
        assert!(is_zero(&[]));
        for i in [0, 63, 64, 999] {
            let mut b = vec![0u8; 1000];
            b[i] = 0x80;
            assert!(!is_zero(&b), "{i}");
        }
    }
}
