//! `recv`: applies a stream to a regular file ([`file`]) or a block device ([`block`]).
//!
//! The target is checked before the stream is read. An existing target is written in place under
//! an undo journal ([`journal`]): the old contents of every range are saved durably before it
//! changes, so a failure, or the next run after a crash, puts the target back exactly; the receive
//! commits by syncing the target and its recorded [`State`], then removing the journal. A new file
//! is received into a short-named temporary beside it, renamed into place once complete.

mod beside;
mod block;
mod error;
mod file;
mod journal;
mod pending;
mod playback;
pub(crate) mod resume;
pub mod state;
mod target;
pub mod token;
mod undo;

use std::io;
use std::os::fd::RawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

pub use block::BlockSink;
pub use error::RecvError;
pub use state::{default_state_file, read_state, Fingerprint, State, SIDECAR_SUFFIX, XATTR};

use crate::error::{Error, Result};
use crate::progress::{self, human, Progress};
use crate::stream::{self, ReadOptions, Sink, Start, Summary};
use file::FileSink;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub to: PathBuf,
    /// Apply an incremental stream whatever the target records (or however it changed since), and
    /// replace an existing file with a full stream.
    pub force: bool,
    /// A file target changed since the last receive: return it to the received state first (from
    /// the reflink copy kept where the filesystem has reflink), then apply.
    pub rollback: bool,
    /// The volume size for a stream that does not carry it (LINBIT); must match a native stream's.
    pub size: Option<u64>,
    pub read: ReadOptions,
    pub progress: progress::Mode,
    /// Where a block device target's state is kept (default: `$THINSEND_STATE_DIR` or
    /// `/var/lib/thinsend-native`, one JSON file per target path).
    pub state_file: Option<PathBuf>,
    /// Keep the partial state of an interrupted stream, to be resumed (`-s`, docs/STREAM.md §7).
    pub resumable: bool,
}

/// The length the received target must have: the native header's volume size; for a stream without
/// one (LINBIT), `--size`, else the existing target's length (`existing`), else a refusal.
pub(crate) fn volume_size(start: &Start, opts: &Options, target: &Path, existing: Option<u64>) -> Result<u64> {
    match (start.volume_size(), opts.size, existing) {
        (Some(v), Some(s), _) if s != v => {
            Err(RecvError::SizeMismatch { target: target.to_path_buf(), given: s, stream: v }.into())
        }
        (Some(v), _, _) => Ok(v),
        (None, Some(s), _) => Ok(s),
        (None, None, Some(len)) => Ok(len),
        (None, None, None) => {
            Err(RecvError::SizeUnknown { target: target.to_path_buf(), format: start.format.name() }.into())
        }
    }
}

/// Refuses `[offset, offset+len)` past the volume.
pub(crate) fn check_range(target: &Path, offset: u64, len: u64, limit: u64) -> Result<()> {
    match offset.checked_add(len) {
        Some(e) if e <= limit => Ok(()),
        _ => Err(RecvError::PastEnd { target: target.to_path_buf(), offset, len, limit }.into()),
    }
}

/// A sink that applies a stream to a target and can say, after a failure, what the target holds.
pub(crate) trait Apply: Sink {
    /// Undoes what can be undone after a failed stream and says what state the target is in.
    fn abort(&mut self) -> String;
    fn progress(&mut self) -> &mut Progress;
    /// The last error the sink itself raised (about the target, not the stream), already naming
    /// the target.
    fn target_error(&mut self) -> Option<String>;
}

/// Remembers a sink's own error, so it is reported as a target error rather than a stream one.
pub(crate) fn track<T>(slot: &mut Option<String>, r: Result<T>) -> Result<T> {
    if let Err(e) = &r {
        *slot = Some(e.to_string());
    }
    r
}

pub(crate) fn finish_line(p: &mut Progress, summary: &Summary, what: &str) {
    let secs = p.elapsed();
    p.finish(&format!(
        "received {} ({} records: {} DATA, {} UNMAP) into {what} in {:.1}s, {}/s",
        human(summary.stream_bytes as f64),
        summary.records,
        summary.data_records,
        summary.unmap_records,
        secs,
        human(summary.stream_bytes as f64 / secs.max(1e-6))
    ));
}

fn apply(sink: &mut dyn Apply, input: RawFd, opts: &Options, to: &Path) -> Result<Summary> {
    match stream::read(input, &opts.read, sink) {
        Ok(summary) => {
            finish_line(sink.progress(), &summary, &to.display().to_string());
            Ok(summary)
        }
        Err(e) => {
            sink.progress().abandon();
            let what = sink.target_error().unwrap_or_else(|| e.to_string());
            let note = sink.abort();
            Err(RecvError::Failed { what, note }.into())
        }
    }
}

/// A symlink to an image file: receive into the image, keep the link. (Block devices keep the
/// name given: /dev/vg/lv is stable where /dev/dm-N is not, and it names their state file.) A link
/// that leads to no file (missing, a loop of links) is refused before any byte is read: the file
/// would have to be created through it.
fn resolve(to: &Path) -> Result<PathBuf> {
    match (std::fs::symlink_metadata(to), std::fs::metadata(to)) {
        (Ok(l), Ok(m)) if l.file_type().is_symlink() && m.is_file() => {
            std::fs::canonicalize(to).map_err(|e| Error::io(to, e))
        }
        (Ok(l), Err(source)) if l.file_type().is_symlink() => {
            let link = std::fs::read_link(to).map_err(|e| Error::io(to, e))?;
            Err(RecvError::DanglingLink { target: to.to_path_buf(), link, source }.into())
        }
        _ => Ok(to.to_path_buf()),
    }
}

/// `recv --resume-token --to PATH`: the token of the partial receive kept for `to`.
pub fn resume_token(to: &Path) -> Result<String> {
    let to = resolve(to)?;
    match resume::Checkpoint::load(&to)? {
        Some(c) => Ok(c.token().encode()),
        None => Err(RecvError::Resume { target: to, what: "no partial receive is kept for it".into() }.into()),
    }
}

/// `recv --abort --to PATH`: discards the partial receive kept for `to`; says what was done.
pub fn abort(to: &Path) -> Result<String> {
    file::abort(&resolve(to)?)
}

/// Receives the stream on `input` into `opts.to`.
pub fn recv(input: RawFd, opts: &Options) -> Result<Summary> {
    let resolved = resolve(&opts.to)?;
    let to = &resolved;
    let meta = match std::fs::metadata(to) {
        Ok(m) => Some(m),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(Error::io(to, e)),
    };
    match &meta {
        Some(m) if m.file_type().is_block_device() && opts.resumable => Err(RecvError::Resume {
            target: to.clone(),
            what: "recv -s keeps a partial state for file targets and LVs, not yet for a block device given \
                   by --to; receive without -s"
                .into(),
        }
        .into()),
        Some(m) if m.file_type().is_block_device() => {
            let mut sink = BlockSink::open_journaled(to, opts)?;
            apply(&mut sink, input, opts, to)
        }
        Some(m) if !m.is_file() => Err(RecvError::NotATarget { target: to.clone() }.into()),
        _ => {
            let mut sink = FileSink::open(to, opts, meta.is_some())?;
            apply(&mut sink, input, opts, to)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Format;

    fn linbit() -> Start {
        Start::new(Format::Linbit11, None, None)
    }

    #[test]
    fn a_link_to_a_file_is_followed_and_a_link_to_nothing_refused() {
        let d = tempfile::tempdir().unwrap();
        let (img, link, dangling) = (d.path().join("a.img"), d.path().join("l"), d.path().join("x"));
        std::fs::write(&img, b"x").unwrap();
        std::os::unix::fs::symlink(&img, &link).unwrap();
        std::os::unix::fs::symlink(d.path().join("missing"), &dangling).unwrap();
        assert_eq!(resolve(&link).unwrap(), std::fs::canonicalize(&img).unwrap());
        let e = resolve(&dangling).unwrap_err().to_string();
        assert!(e.contains("a symbolic link to") && e.contains("missing") && e.contains("not followed"), "{e}");
        // A loop of links leads to no file either.
        let (a, b) = (d.path().join("la"), d.path().join("lb"));
        std::os::unix::fs::symlink(&b, &a).unwrap();
        std::os::unix::fs::symlink(&a, &b).unwrap();
        let e = resolve(&a).unwrap_err().to_string();
        assert!(e.contains("leads to no file") && e.contains("lb"), "{e}");
        assert_eq!(resolve(&d.path().join("new.img")).unwrap(), d.path().join("new.img"));
    }

    #[test]
    fn a_linbit_stream_needs_a_size_from_the_options_or_the_target() {
        let p = Path::new("t.img");
        let o = Options::default();
        let e = volume_size(&linbit(), &o, p, None).unwrap_err().to_string();
        assert!(e.contains("give --size") && e.contains("t.img"), "{e}");
        assert_eq!(volume_size(&linbit(), &o, p, Some(4096)).unwrap(), 4096);
        let o = Options { size: Some(8192), ..Options::default() };
        assert_eq!(volume_size(&linbit(), &o, p, Some(4096)).unwrap(), 8192);
        let sized = Start::new(Format::Linbit11, None, Some(12288));
        assert_eq!(volume_size(&sized, &Options::default(), p, Some(4096)).unwrap(), 12288);
        let e = volume_size(&sized, &o, p, None).unwrap_err().to_string();
        assert!(e.contains("differs from the stream's volume size 12288"), "{e}");
    }

    #[test]
    fn ranges_past_the_volume_are_refused() {
        assert!(check_range(Path::new("t"), 0, 10, 10).is_ok());
        assert!(check_range(Path::new("t"), 1, 10, 10).is_err());
        assert!(check_range(Path::new("t"), u64::MAX, 2, 10).is_err());
    }
}
