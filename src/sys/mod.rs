//! The process and the operating system: thin wrappers over the Linux calls the data path needs
//! ([`io`]), undo actions run however the process ends ([`cleanup`]), and progress lines on stderr
//! ([`progress`]).

pub mod cleanup;
pub mod io;
pub mod progress;
