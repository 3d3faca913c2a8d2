//! thinsend-native: reads dm-thin pool metadata natively, diffs thin devices, and sends and receives
//! thin volumes as streams.
//!
//! Data flows one way: metadata device ([`block`]) -> validated btree nodes ([`btree`]) -> mappings
//! ([`pool`], [`dump`], [`ls`]) -> ranges ([`diff`]) -> stream records ([`send`], [`stream`]) ->
//! receiver ([`recv`]).

pub mod block;
pub mod btree;
pub mod checksum;
pub mod compat;
pub mod error;
pub mod inspect;
pub mod lvm;
pub mod ondisk;
pub mod pool;
pub mod recv;
pub mod send;
pub mod spacemap;
pub mod stream;
pub mod superblock;
pub mod sys;
pub mod text;

pub use error::{Error, Fault, Result};
pub use inspect::{check, diff, dump, ls};
/// Kept at their old paths for their users.
pub use sys::{cleanup, io, progress};
