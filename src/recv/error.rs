//! Typed errors of the receiving side (the ones not yet typed stay `Error::Other`). Each message
//! names the target first.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    #[error("{}: --size {given} differs from the stream's volume size {stream} bytes", .target.display())]
    SizeMismatch { target: PathBuf, given: u64, stream: u64 },
    #[error(
        "{}: this {format} stream does not carry the volume size: give --size BYTES to create the target",
        .target.display()
    )]
    SizeUnknown { target: PathBuf, format: &'static str },
    #[error("{}: range [{offset}, +{len}) is past the end of the volume ({limit} bytes)", .target.display())]
    PastEnd { target: PathBuf, offset: u64, len: u64, limit: u64 },
    /// A failed receive: what went wrong, then what the target holds now.
    #[error("{what}; {note}")]
    Failed { what: String, note: String },
    #[error("{}: not a regular file or block device", .target.display())]
    NotATarget { target: PathBuf },
    #[error("{}: device is in use (mounted, or held by another process): not writing to it", .target.display())]
    DeviceBusy { target: PathBuf },
    #[error("{}: device is {size} bytes, smaller than the stream's volume of {want} bytes: nothing written", .target.display())]
    DeviceTooSmall { target: PathBuf, size: u64, want: u64 },
    #[error("{}: not a usable thinsend undo journal: {what}", .journal.display())]
    BadJournal { journal: PathBuf, what: String },
    #[error("{}: another receive into it is running (it holds {}); nothing was changed", .target.display(), .journal.display())]
    JournalHeld { target: PathBuf, journal: PathBuf },
    #[error(
        "{}: the undo journal {} was written for another file (device {dev} inode {ino}); move it away after \
         checking the target",
        .target.display(),
        .journal.display()
    )]
    ForeignJournal { target: PathBuf, journal: PathBuf, dev: u64, ino: u64 },
    #[error("{}: {saving} the undo journal {}: {source}", .target.display(), .journal.display())]
    Save { target: PathBuf, journal: PathBuf, saving: &'static str, source: std::io::Error },
    #[error("{}: applying journaled writes: {source}", .target.display())]
    JournaledWrite { target: PathBuf, source: std::io::Error },
    #[error("restoring from the undo journal {}: {source}", .journal.display())]
    Restore { journal: PathBuf, source: std::io::Error },
}
