//! Retention: `--keep N` (the newest N) or `--keep hourly=24,daily=7,weekly=4` (the newest snapshot
//! of each of the last 24 hours, 7 days, 4 weeks that have one; `last=N` and `monthly=N` too), applied
//! to the snapshots sync made on one side. Buckets are UTC hours, days, ISO weeks (Monday) and months.

use std::collections::BTreeSet;

use time::OffsetDateTime;

/// How many snapshots to keep, per kind of bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Keep {
    pub last: u32,
    pub hourly: u32,
    pub daily: u32,
    pub weekly: u32,
    pub monthly: u32,
}

impl Keep {
    /// `N`, or a comma-separated list of `last|hourly|daily|weekly|monthly=N`. At least one
    /// snapshot must be kept.
    pub fn parse(s: &str) -> Result<Keep, String> {
        let mut k = Keep::default();
        if let Ok(n) = s.trim().parse::<u32>() {
            k.last = n;
        } else {
            for part in s.split(',') {
                let (key, value) = part
                    .split_once('=')
                    .ok_or_else(|| format!("--keep {s:?}: expected N or KIND=N[,KIND=N...] (got {part:?})"))?;
                let n: u32 = value.trim().parse().map_err(|_| format!("--keep {s:?}: {value:?} is not a count"))?;
                let slot = match key.trim() {
                    "last" => &mut k.last,
                    "hourly" => &mut k.hourly,
                    "daily" => &mut k.daily,
                    "weekly" => &mut k.weekly,
                    "monthly" => &mut k.monthly,
                    other => {
                        return Err(format!(
                            "--keep {s:?}: unknown kind {other:?} (last, hourly, daily, weekly, monthly)"
                        ))
                    }
                };
                *slot = n;
            }
        }
        if k == Keep::default() {
            return Err(format!("--keep {s:?}: keeps nothing; keep at least one snapshot"));
        }
        Ok(k)
    }

    /// Which of the snapshots taken at `at` (microseconds since the epoch, UTC; any order) the
    /// policy keeps: their indices.
    pub fn select(&self, at: &[i64]) -> BTreeSet<usize> {
        let mut order: Vec<usize> = (0..at.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(at[i]));
        let mut keep: BTreeSet<usize> = order.iter().take(self.last as usize).copied().collect();
        let kinds: [(u32, Bucket); 4] =
            [(self.hourly, hour), (self.daily, day), (self.weekly, week), (self.monthly, month)];
        for (count, bucket) in kinds {
            let mut seen = BTreeSet::new();
            for &i in &order {
                if seen.len() >= count as usize {
                    break;
                }
                if seen.insert(bucket(at[i])) {
                    keep.insert(i);
                }
            }
        }
        keep
    }
}

/// The bucket a time (µs) falls in.
type Bucket = fn(i64) -> i64;

const HOUR_US: i64 = 3_600_000_000;

fn hour(us: i64) -> i64 {
    us.div_euclid(HOUR_US)
}

fn day(us: i64) -> i64 {
    us.div_euclid(24 * HOUR_US)
}

/// Weeks starting on Monday (1970-01-01 was a Thursday).
fn week(us: i64) -> i64 {
    (day(us) + 3).div_euclid(7)
}

fn month(us: i64) -> i64 {
    match OffsetDateTime::from_unix_timestamp(us.div_euclid(1_000_000)) {
        Ok(t) => i64::from(t.year()) * 12 + i64::from(u8::from(t.month())),
        Err(_) => i64::MIN,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = HOUR_US;

    #[test]
    fn parse_count_and_policy() {
        assert_eq!(Keep::parse("2").unwrap(), Keep { last: 2, ..Keep::default() });
        let k = Keep::parse("hourly=24,daily=7,weekly=4").unwrap();
        assert_eq!((k.hourly, k.daily, k.weekly, k.last), (24, 7, 4, 0));
        for bad in ["0", "", "daily", "daily=x", "yearly=1", "hourly=0", "-1"] {
            assert!(Keep::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn keep_n_keeps_the_newest_whatever_the_order() {
        let at = [5 * H, H, 9 * H, 3 * H];
        let k = Keep::parse("2").unwrap();
        assert_eq!(k.select(&at).into_iter().collect::<Vec<_>>(), vec![0, 2]);
        assert_eq!(Keep::parse("10").unwrap().select(&at).len(), 4);
    }

    #[test]
    fn hourly_keeps_the_newest_of_each_hour() {
        // two snapshots in hour 0, two in hour 1, one in hour 3
        let at = [H / 4, H / 2, H + 1, H + H / 2, 3 * H + 5];
        let k = Keep::parse("hourly=2").unwrap();
        assert_eq!(k.select(&at).into_iter().collect::<Vec<_>>(), vec![3, 4], "hours 3 and 1, their newest");
        let k = Keep::parse("hourly=3").unwrap();
        assert_eq!(k.select(&at).into_iter().collect::<Vec<_>>(), vec![1, 3, 4]);
    }

    #[test]
    fn daily_weekly_monthly_buckets() {
        let d = 24 * H;
        // 1970-01-05 was a Monday: days 4..=10 are one week
        assert_eq!(week(4 * d), week(10 * d + H));
        assert_ne!(week(3 * d), week(4 * d));
        assert_eq!(month(30 * d), month(0));
        assert_ne!(month(31 * d), month(0), "February");
        let at = [0, d / 2, 2 * d, 40 * d];
        let k = Keep::parse("daily=2,monthly=2").unwrap();
        assert_eq!(k.select(&at).into_iter().collect::<Vec<_>>(), vec![2, 3]);
        let k = Keep::parse("last=1,weekly=9").unwrap();
        assert_eq!(k.select(&at).into_iter().collect::<Vec<_>>(), vec![2, 3], "the newest of each week");
    }
}
