//! dm-thin btrees: node decoding and packing, the validated walk, and the two thin trees.

pub mod cursor;
pub mod details;
pub mod mapping;
pub mod node;
pub mod walk;

pub use details::DeviceDetails;
pub use mapping::BlockTime;
pub use node::{Node, Value};
pub use walk::LeafWalker;
