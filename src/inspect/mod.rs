//! The analyses of a pool's metadata: `dump` (every mapping), `ls` (per-device usage), `check` (the
//! strict checker) and `diff` (the delta engine and its writers). All read through `crate::btree`'s
//! one validated walker.

pub mod check;
mod counts;
pub mod diff;
pub mod dump;
pub mod ls;
