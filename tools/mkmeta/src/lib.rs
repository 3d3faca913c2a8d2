//! mkmeta: makes dm-thin pool metadata images the kernel could have written, for tests and
//! benchmarks, from thin_dump XML (`restore`) or from a scenario of kernel operations (`generate`),
//! with complete space maps and exact reference counts. The on-disk types come from the
//! `thinsend` library.

pub mod data;
pub mod error;
pub mod generate;
pub mod image;
pub mod pool;
pub mod restore;
pub mod rng;
pub mod spec;
pub mod tm;
pub mod xml;

pub use error::{Error, Result};
