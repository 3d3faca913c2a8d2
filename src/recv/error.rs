//! Typed errors of the receiving side. Each message names the target (or the journal or state file)
//! first; `Error::Recv` carries them.

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
    /// A resumable receive's partial state refuses what was asked (docs/STREAM.md §7).
    #[error("{}: {what}", .target.display())]
    Resume { target: PathBuf, what: String },
    /// A resume token that does not decode or does not bind to what it is used with.
    #[error("resume token refused: {0}")]
    Token(String),
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
    #[error("{}: {} is not a directory", .target.display(), .dir.display())]
    NotADirectory { target: PathBuf, dir: PathBuf },
    #[error("{}: directory {}: {source}", .target.display(), .dir.display())]
    Directory { target: PathBuf, dir: PathBuf, source: std::io::Error },
    #[error("{}: cannot create a file in {}: {source}", .target.display(), .dir.display())]
    CannotCreate { target: PathBuf, dir: PathBuf, source: std::io::Error },
    #[error("{}: {source} (writing its temporary {})", .target.display(), .temp.display())]
    Temporary { target: PathBuf, temp: PathBuf, source: std::io::Error },
    #[error("{}: appeared while receiving; not replaced", .target.display())]
    Appeared { target: PathBuf },
    #[error(
        "{}: a symbolic link to {} that leads to no file ({source}): not followed (a receive never \
         creates a file through a link); name the file itself",
        .target.display(),
        .link.display()
    )]
    DanglingLink { target: PathBuf, link: PathBuf, source: std::io::Error },
    #[error("{}: another receive into it is running (it holds {})", .target.display(), .journal.display())]
    Busy { target: PathBuf, journal: PathBuf },
    #[error("{}: target exists ({len} bytes) and a full stream replaces it entirely; use --force to replace it", .target.display())]
    FullOverExisting { target: PathBuf, len: u64 },
    #[error("{}: does not exist; an incremental stream needs the image of its base there", .target.display())]
    NoBase { target: PathBuf },
    #[error(
        "{}: changed since the last receive ({what}); refusing to apply an incremental stream to a modified \
         replica: use --rollback to return it to the received state first, or --force to apply anyway",
        .target.display()
    )]
    Modified { target: PathBuf, what: String },
    #[error(
        "{}: changed since the last receive ({what}), and no copy of the received state is kept (that needs a \
         filesystem with reflink, e.g. XFS or btrfs): --rollback cannot restore it; receive a full stream with \
         --force, or use --force to apply the incremental anyway",
        .target.display()
    )]
    NoReceivedCopy { target: PathBuf, what: String },
    #[error(
        "{}: refusing an incremental stream: {why}; the stream applies to {base}. Receive a full stream first, or \
         use --force if you know the target equals that base",
        .target.display()
    )]
    WrongBase { target: PathBuf, why: String, base: String },
    #[error("cannot encode the receive state: {0}")]
    StateEncode(serde_json::Error),
    #[error("{}: unreadable thinsend state ({source}); receive a full stream or use --force", .at.display())]
    StateUnreadable { at: PathBuf, source: serde_json::Error },
    #[error("{}: is a symbolic link, not a thinsend state file", .at.display())]
    StateSymlink { at: PathBuf },
    #[error("{}: not a thinsend state file (not a small regular file)", .at.display())]
    StateNotAFile { at: PathBuf },
    #[error("{}: is a directory, cannot record the receive state there", .at.display())]
    StateIsDirectory { at: PathBuf },
}
