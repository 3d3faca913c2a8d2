//! Errors of the LVM layer: running commands, reading their reports, and refusals of a receive.

use crate::error::Error;

#[derive(Debug, thiserror::Error)]
pub enum LvmError {
    /// An LVM or dmsetup program could not be started.
    #[error("cannot run {program}: {source}")]
    Spawn { program: String, source: std::io::Error },
    /// It ran and failed; its stderr, trimmed.
    #[error("{command} failed: {stderr}")]
    Failed { command: String, stderr: String },
    /// `lvs --reportformat json` printed something that is not its report.
    #[error("cannot parse lvs output for {what}: {source}")]
    Json { what: String, source: serde_json::Error },
    /// A report field that does not parse (never read as a default).
    #[error("lvs output for {what}: bad {field} {value:?}")]
    Field { what: String, field: &'static str, value: String },
    #[error("{name}: not a thin volume (attr {attr})")]
    NotThin { name: String, attr: String },
    #[error("{0}: no such logical volume")]
    NoSuchLv(String),
    /// `dmsetup status` of the pool is not a thin-pool status line.
    #[error("unexpected dmsetup status for {tpool}: {status}")]
    Status { tpool: String, status: String },
    #[error("releasing the metadata snapshot: {0}")]
    Release(String),
    /// The target was written after the last receive (found by diffing it against the kept base).
    #[error(
        "{target} has been modified since the last receive: {ranges} range(s), {bytes} bytes differ from {base}, \
         the first at byte {first}; refusing (--rollback discards the changes and applies the stream)"
    )]
    Modified { target: String, base: String, ranges: u64, bytes: u64, first: u64 },
    #[error("--rollback: {target} has no kept received state ({base} is missing)")]
    NoBase { target: String, base: String },
    #[error("--rollback: {base} is not at this stream's base ({want}): it records {has}")]
    BaseMismatch { base: String, want: String, has: String },
    /// A receive failed before the target was touched.
    #[error("{source}; {target} left unchanged")]
    Unchanged { target: String, source: Box<Error> },
}

impl LvmError {
    /// Whether this is the caller's mistake (a name that is not a thin LV), reported as usage.
    pub fn is_usage(&self) -> bool {
        matches!(self, LvmError::NotThin { .. } | LvmError::NoSuchLv(_))
    }
}
