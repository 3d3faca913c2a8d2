//! Typed errors of the library. Every error that comes from metadata names the block it was found in;
//! every error from a stream names the byte offset. Messages are one line.

use std::path::PathBuf;

/// What was wrong with a metadata block.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Fault {
    #[error("checksum mismatch for {kind} (stored {stored:#010x}, computed {computed:#010x})")]
    Checksum { kind: &'static str, stored: u32, computed: u32 },
    #[error("{kind} records block number {found}, expected {expected}")]
    BlockNumber { kind: &'static str, found: u64, expected: u64 },
    #[error("block is past the end of the metadata device ({nr_blocks} blocks)")]
    OutOfRange { nr_blocks: u64 },
    #[error("child pointer {child} is past the end of the metadata device ({nr_blocks} blocks)")]
    PointerPastEnd { child: u64, nr_blocks: u64 },
    #[error("child pointer {child} points back to an ancestor node (pointer cycle)")]
    Cycle { child: u64 },
    #[error("bad btree node flags {0:#x}")]
    NodeFlags(u32),
    #[error("btree node max_entries {max} too large for value size {value_size}")]
    MaxEntries { max: u32, value_size: u32 },
    #[error("btree node max_entries {max} is not a multiple of 3")]
    MaxEntriesNotMultipleOf3 { max: u32 },
    #[error("btree node nr_entries {nr} exceeds max_entries {max}")]
    NrEntries { nr: u32, max: u32 },
    #[error("btree node has {nr} entries, fewer than the minimum {min} of a non-root node")]
    Underfull { nr: u32, min: u32 },
    #[error("btree node value size {found}, expected {expected}")]
    ValueSize { found: u32, expected: u32 },
    #[error("btree node keys not strictly ascending at entry {index} ({prev} then {key})")]
    KeysUnsorted { index: u32, prev: u64, key: u64 },
    #[error("btree key {key} outside the range [{lo}, {hi}) given by the parent node")]
    KeyOutOfParentRange { key: u64, lo: u64, hi: u64 },
    #[error("btree node at depth {depth} is {what}; leaves must all be at the same depth {leaf_depth}")]
    Depth { depth: u32, leaf_depth: u32, what: &'static str },
    #[error("btree deeper than {0} levels (pointer cycle?)")]
    TooDeep(u32),
    #[error("empty btree node (only the root leaf of an empty tree may be empty)")]
    EmptyInternal,
    #[error("bad superblock magic {0:#x} (not dm-thin metadata)")]
    Magic(u64),
    #[error("unsupported metadata version {0}")]
    Version(u32),
    #[error("bad data block size {0} sectors (must be a multiple of 128 in 128..=2097152)")]
    DataBlockSize(u32),
    #[error("bad metadata block size {0} sectors (must be 8)")]
    MetadataBlockSize(u32),
    #[error("unsupported incompat flags {0:#x}")]
    Incompat(u32),
    #[error("{0}")]
    Other(String),
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: metadata block {block}: {fault}")]
    Block { path: PathBuf, block: u64, fault: Fault },
    #[error("{path}: {what}")]
    Metadata { path: PathBuf, what: String },
    #[error("{0}")]
    Usage(String),
    #[error("stream byte {offset}: {what}")]
    Stream { offset: u64, what: String },
    /// The receiving side (the target, not the stream) failed while applying a record.
    #[error("{source} (applying the {kind} record at stream byte {at})")]
    Apply { at: u64, kind: String, source: Box<Error> },
    #[error(transparent)]
    Lvm(#[from] crate::lvm::LvmError),
    #[error(transparent)]
    Recv(#[from] crate::recv::RecvError),
    #[error("{0}")]
    Other(String),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
