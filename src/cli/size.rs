//! Sizes and rates on the command line: `48M`, `1.5G`, `4096`, `2TiB`. Binary units (K = 1024), as
//! LVM and zfs read them; a plain number is bytes. Parsed by the `parse-size` crate.

/// Parses a size argument (`--size 48M`, `--bwlimit 50M`). Used as a clap `value_parser`.
pub fn parse(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s.trim())
        .map_err(|e| format!("{s:?} is not a size ({e}); give bytes or a number with K, M, G, T, P (binary units)"))
}

/// Like [`parse`], refusing zero (a rate or a size of nothing).
pub fn parse_nonzero(s: &str) -> Result<u64, String> {
    match parse(s)? {
        0 => Err(format!("{s:?}: must be more than zero")),
        n => Ok(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes_are_binary_units() {
        assert_eq!(parse("4096"), Ok(4096));
        assert_eq!(parse("48M"), Ok(48 << 20));
        assert_eq!(parse("48m"), Ok(48 << 20));
        assert_eq!(parse("1.5G"), Ok(3 << 29));
        assert_eq!(parse("2TiB"), Ok(2 << 40));
        assert_eq!(parse("64k"), Ok(64 << 10));
    }

    #[test]
    fn garbage_and_overflow_are_refused() {
        for bad in ["", "M", "12X", "-1", "1e99999", "99999999999999999999999"] {
            assert!(parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_nonzero("0").is_err());
    }
}
