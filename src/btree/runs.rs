//! The one run-coalescer: adjacent items merged while a rule accepts, for `dump`'s runs, the diff's
//! pieces and its simple form, and `send`'s steps.

/// Merges items pushed in order into runs: `join(run, next)` extends `run` by `next` and returns
/// true, or returns false to end the run.
pub struct Coalescer<T, F> {
    cur: Option<T>,
    join: F,
}

impl<T, F: FnMut(&mut T, &T) -> bool> Coalescer<T, F> {
    pub fn new(join: F) -> Self {
        Coalescer { cur: None, join }
    }

    /// Adds `next`: the run it ended, if it did not extend the current one.
    #[inline]
    pub fn push(&mut self, next: T) -> Option<T> {
        if let Some(c) = &mut self.cur {
            if (self.join)(c, &next) {
                return None;
            }
        }
        self.cur.replace(next)
    }

    /// The last run, at the end of the input.
    pub fn finish(&mut self) -> Option<T> {
        self.cur.take()
    }

    /// Forgets the current run (after an error in the input).
    pub fn clear(&mut self) {
        self.cur = None;
    }
}

/// The runs of a fallible stream. An error is passed on at once and drops the run in progress.
pub fn coalesce<T, E, I, F>(mut items: I, join: F) -> impl Iterator<Item = Result<T, E>>
where
    I: Iterator<Item = Result<T, E>>,
    F: FnMut(&mut T, &T) -> bool,
{
    let mut c = Coalescer::new(join);
    std::iter::from_fn(move || loop {
        match items.next() {
            Some(Ok(x)) => {
                if let Some(done) = c.push(x) {
                    return Some(Ok(done));
                }
            }
            Some(Err(e)) => {
                c.clear();
                return Some(Err(e));
            }
            None => return c.finish().map(Ok),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (start, length) runs of consecutive numbers.
    fn join(run: &mut (u64, u64), next: &(u64, u64)) -> bool {
        let ok = run.0 + run.1 == next.0;
        if ok {
            run.1 += next.1;
        }
        ok
    }

    #[test]
    fn adjacent_items_merge_and_gaps_end_runs() {
        let items = [1, 2, 3, 7, 8, 10].map(|k| Ok::<_, ()>((k, 1)));
        let runs: Vec<_> = coalesce(items.into_iter(), join).collect();
        assert_eq!(runs, vec![Ok((1, 3)), Ok((7, 2)), Ok((10, 1))]);
    }

    #[test]
    fn an_error_is_passed_on_at_once_and_drops_the_open_run() {
        let items = vec![Ok((1, 1)), Ok((2, 1)), Err("bad"), Ok((3, 1))];
        let runs: Vec<_> = coalesce(items.into_iter(), join).collect();
        assert_eq!(runs, vec![Err("bad"), Ok((3, 1))]);
    }

    #[test]
    fn push_returns_each_finished_run_once() {
        let mut c = Coalescer::new(join);
        assert_eq!(c.push((5, 1)), None);
        assert_eq!(c.push((6, 2)), None);
        assert_eq!(c.push((9, 1)), Some((5, 3)));
        assert_eq!(c.finish(), Some((9, 1)));
        assert_eq!(c.finish(), None);
    }
}
