//! mkmeta's errors: each names the input line (spec or XML) or the file it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A spec line that cannot be parsed or played.
    #[error("{file}:{line}: {msg}")]
    Spec { file: String, line: usize, msg: String },
    /// Malformed or unacceptable thin_dump XML.
    #[error("{file}:{line}:{col}: {msg}")]
    Xml { file: String, line: usize, col: usize, msg: String },
    /// A kernel operation that failed (the caller adds the line).
    #[error("{0}")]
    Pool(String),
    #[error(
        "metadata device of {have} blocks is too small: this pool needs at least {need} blocks \
         (use --metadata-blocks {need} or more, or leave it out to size the image automatically)"
    )]
    TooSmall { have: u64, need: u64 },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
