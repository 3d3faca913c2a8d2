//! dm-thin btrees: node decoding and packing, the one validated walk (`cursor`) and what is built on
//! it (`walk` for every leaf, `seen` for the checker), the two thin trees, and the run-coalescer.

pub mod cursor;
pub mod details;
pub mod mapping;
pub mod node;
pub mod prefetch;
pub mod runs;
pub mod seen;
#[cfg(test)]
pub(crate) mod testimg;
pub mod walk;

pub use details::DeviceDetails;
pub use mapping::BlockTime;
pub use node::{Node, Value};
pub use walk::LeafWalker;
