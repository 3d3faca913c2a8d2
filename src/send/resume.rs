//! `send --resume TOKEN`: the stream that continues an interrupted receive (docs/STREAM.md §7). The
//! token only says where to start: the sources given are read as for any send, their identities
//! must be exactly those the token names, and the plan is cut at the token's offset, so a token can
//! never make the sender read another device or another range than the original stream would have.

use super::plan::{Step, Steps};
use super::{Options, StreamFormat};
use crate::error::{Error, Result};
use crate::recv::token::Token;
use crate::stream::native::{Header, Resume};

/// The steps past `from`: those ending at or before it are dropped, one straddling it starts there.
pub(crate) fn clip(steps: Steps<'_>, from: u64) -> Steps<'_> {
    if from == 0 {
        return steps;
    }
    Box::new(steps.filter_map(move |s| match s {
        Ok(Step::Data { offset, len, src }) => {
            cut(offset, len, from).map(|(o, l)| Ok(Step::Data { offset: o, len: l, src: src + (o - offset) }))
        }
        Ok(Step::Unmap { offset, len }) => cut(offset, len, from).map(|(o, l)| Ok(Step::Unmap { offset: o, len: l })),
        Err(e) => Some(Err(e)),
    }))
}

/// The part of `[offset, offset+len)` at or past `from`.
fn cut(offset: u64, len: u64, from: u64) -> Option<(u64, u64)> {
    let end = offset.saturating_add(len);
    (end > from).then(|| {
        let o = offset.max(from);
        (o, end - o)
    })
}

/// Where the plan starts: the token's offset (0 for a normal send).
pub(crate) fn start_offset(opts: &Options) -> u64 {
    opts.resume.as_ref().map_or(0, |t| t.from_offset)
}

/// Checks that this send is the token's stream made again from the same sources, and marks the
/// HEADER as its continuation.
pub(crate) fn bind(opts: &Options, header: &mut Header) -> Result<()> {
    let Some(t) = &opts.resume else {
        return Ok(());
    };
    if opts.format != StreamFormat::Native {
        return Err(Error::Usage("--resume sends a native stream: LINBIT streams cannot be resumed".into()));
    }
    if let Some(why) = t.mismatch(header) {
        return Err(refused(t, &why));
    }
    header.resume = Some(Resume { of: t.of.clone(), from_offset: t.from_offset });
    Ok(())
}

fn refused(t: &Token, why: &str) -> Error {
    Error::Usage(format!(
        "resume token refused: it belongs to stream {} of other sources than the ones given: {why} \
         (a snapshot removed and recreated under the same name is another snapshot; send in full, after \
         `recv --abort` on the receiving side)",
        t.of
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_before_the_checkpoint_are_dropped_and_a_straddling_one_is_cut() {
        let steps: Vec<Result<Step>> = vec![
            Ok(Step::Data { offset: 0, len: 100, src: 1000 }),
            Ok(Step::Unmap { offset: 100, len: 50 }),
            Ok(Step::Data { offset: 200, len: 100, src: 5000 }),
        ];
        let got: Vec<Step> = clip(Box::new(steps.into_iter()), 250).map(|s| s.unwrap()).collect();
        assert_eq!(got, vec![Step::Data { offset: 250, len: 50, src: 5050 }]);
        let steps: Vec<Result<Step>> = vec![Ok(Step::Unmap { offset: 100, len: 50 })];
        let got: Vec<Step> = clip(Box::new(steps.into_iter()), 120).map(|s| s.unwrap()).collect();
        assert_eq!(got, vec![Step::Unmap { offset: 120, len: 30 }]);
        let steps: Vec<Result<Step>> = vec![Ok(Step::Unmap { offset: 100, len: 50 })];
        assert_eq!(clip(Box::new(steps.into_iter()), 150).count(), 0, "a step ending at the offset stays");
    }
}
