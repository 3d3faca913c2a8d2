//! thinsend-native: reads dm-thin pool metadata natively, diffs thin devices, and sends and receives
//! thin volumes as streams.
//!
//! The modules in the order the data flows through them:
//! metadata device -> btree nodes -> mappings -> diff -> plan -> records -> pipe -> receiver -> target.

// The metadata device and its on-disk types: blocks, checksums, one declaration per layout.
pub mod block;
pub mod checksum;
pub mod ondisk;
pub mod spacemap;
pub mod superblock;

// Validated btree nodes and the one walker; an opened pool and its devices.
pub mod btree;
pub mod pool;

// What reads a pool and reports: dump, ls, check, and the diff engine.
pub mod inspect;

// The sender's plan and data path, the wire formats, the receivers.
pub mod recv;
pub mod send;
pub mod stream;

// Comparing a replica with its source, and repairing it.
pub mod verify;

// LVM around it all, the other host (ssh), and the thin_send/thin_recv drop-in.
pub mod compat;
pub mod lvm;
pub mod remote;
pub mod sync;

// The one JSON schema of every command's machine-readable output.
pub mod report;

// Errors, syscall wrappers, signal undo, progress, escaping of untrusted text.
pub mod error;
pub mod sys;
pub mod text;

pub use error::{Error, Fault, Result};
pub use inspect::{check, diff, dump, ls};
/// Kept at their old paths for their users.
pub use sys::{cleanup, io, progress};
