//! `--compress zstd[:LEVEL]`: the level the native data path compresses DATA at (ZDATA records,
//! docs/STREAM.md §1.8).

/// zstd's level when `--compress zstd` names none.
pub const DEFAULT_LEVEL: i32 = 3;
/// Levels above 19 (zstd's "ultra" levels) need windows larger than a record: they gain nothing.
pub const MAX_LEVEL: i32 = 19;

/// Parses `zstd` or `zstd:LEVEL` (1 to 19) into the level (a clap value parser).
pub fn parse(s: &str) -> Result<i32, String> {
    let (algo, level) = match s.split_once(':') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    if algo != "zstd" {
        return Err(format!("unknown compression {algo:?}: the one supported is zstd (zstd or zstd:LEVEL)"));
    }
    match level {
        None => Ok(DEFAULT_LEVEL),
        Some(l) => match l.parse::<i32>() {
            Ok(n) if (1..=MAX_LEVEL).contains(&n) => Ok(n),
            _ => Err(format!("zstd level {l:?} is not a number from 1 to {MAX_LEVEL}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_with_or_without_a_level_and_nothing_else() {
        assert_eq!(parse("zstd"), Ok(3));
        assert_eq!(parse("zstd:1"), Ok(1));
        assert_eq!(parse("zstd:19"), Ok(19));
        for bad in ["zstd:0", "zstd:20", "zstd:", "zstd:x", "gzip", "gzip:3", ""] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
