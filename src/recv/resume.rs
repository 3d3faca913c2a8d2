//! Resumable receives (`recv -s`, docs/STREAM.md §7): the partial state an interrupted receive keeps
//! beside a file target and the durable checkpoint that says how far it got.
//!
//! A new file is received into `.TAG.thinsend-partial`; an existing one in place under its undo
//! journal (kept, not played back). The checkpoint `.TAG.thinsend-resume` holds the original
//! stream's HEADER and the target offset up to which every record was applied and synced; it is
//! written atomically (an exclusive temporary, fsync, rename) after the data it covers was synced,
//! and ends in a BLAKE3 hash of its content. `recv --resume-token` prints its [`Token`];
//! `recv --abort` discards the partial state.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::state::{self, dir_of, read_plain, tag};
use super::token::{exactly, Token};
use super::RecvError;
use crate::error::{Error, Result};
use crate::stream::native::Header;

/// A checkpoint is made after at least this many target bytes were applied since the last one...
pub(crate) const INTERVAL_BYTES: u64 = 32 << 20;
/// ...or this much time passed (whichever comes first).
pub(crate) const INTERVAL: Duration = Duration::from_secs(5);
const VERSION: u32 = 1;

/// Where the partial state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// A new file: `.TAG.thinsend-partial`, renamed into place at the end.
    Temp,
    /// An existing file written in place; its undo journal holds its old contents.
    Journal,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Checkpoint {
    pub version: u32,
    pub kind: Kind,
    /// The interrupted (original) stream's HEADER.
    pub header: Header,
    /// Every record ending at or before this target offset is applied and durable.
    pub offset: u64,
    pub saved_at: u64,
}

pub(crate) fn checkpoint_path(target: &Path) -> PathBuf {
    dir_of(target).join(format!(".{}.thinsend-resume", tag(target)))
}

pub(crate) fn partial_path(target: &Path) -> PathBuf {
    dir_of(target).join(format!(".{}.thinsend-partial", tag(target)))
}

fn refuse(target: &Path, what: String) -> Error {
    RecvError::Resume { target: target.to_path_buf(), what }.into()
}

impl Checkpoint {
    pub fn new(kind: Kind, header: &Header, offset: u64) -> Checkpoint {
        Checkpoint { version: VERSION, kind, header: header.clone(), offset, saved_at: state::now() }
    }

    /// The checkpoint kept for `target`, if any (never read through a symlink).
    pub fn load(target: &Path) -> Result<Option<Checkpoint>> {
        let p = checkpoint_path(target);
        let Some(b) = read_plain(&p)? else {
            return Ok(None);
        };
        let bad = |what: &str| {
            refuse(
                target,
                format!(
                    "its checkpoint {} is damaged ({what}); discard the partial receive with `recv --abort`",
                    p.display()
                ),
            )
        };
        let nl = b.iter().position(|&c| c == b'\n').ok_or_else(|| bad("no hash line"))?;
        let (hash, body) = (&b[..nl], &b[nl + 1..]);
        if hash != blake3::hash(body).to_hex().as_bytes() {
            return Err(bad("its hash does not match its content"));
        }
        let c: Checkpoint = serde_json::from_slice(body).map_err(|e| bad(&e.to_string()))?;
        if c.version != VERSION {
            return Err(bad(&format!("version {}", c.version)));
        }
        Ok(Some(c))
    }

    /// Replaces the checkpoint atomically and durably (the data it covers must be synced first).
    pub fn store(&self, target: &Path) -> Result<()> {
        let body = serde_json::to_vec(self).map_err(|e| Error::Other(format!("checkpoint: {e}")))?;
        let mut b = blake3::hash(&body).to_hex().as_bytes().to_vec();
        b.push(b'\n');
        b.extend_from_slice(&body);
        state::write_atomically(&checkpoint_path(target), &b)
    }

    pub fn token(&self) -> Token {
        Token::of_header(&self.header, self.offset)
    }

    /// A resumed stream's HEADER against this checkpoint: the continuation of the same stream, of
    /// the same snapshots, from exactly where this receive got to.
    pub fn accepts(&self, target: &Path, lv: bool, h: &Header) -> Result<()> {
        let o = &self.header;
        let Some(r) = &h.resume else {
            return Err(self.busy(target, lv));
        };
        if r.of != o.stream_id {
            return Err(refuse(
                target,
                format!(
                    "the stream resumes stream {}, but the partial receive here is of stream {} (a token \
                     from another target?)",
                    r.of, o.stream_id
                ),
            ));
        }
        if r.from_offset != self.offset {
            return Err(refuse(
                target,
                format!(
                    "the stream resumes at byte {}, but the partial receive here got to byte {} (an older \
                     token? print the current one with `recv --resume-token`)",
                    r.from_offset, self.offset
                ),
            ));
        }
        let same_base = match (&o.base, &h.base) {
            (Some(a), Some(b)) => exactly(a, b),
            (None, None) => true,
            _ => false,
        };
        if h.mode != o.mode || h.volume_size != o.volume_size || !exactly(&h.source, &o.source) || !same_base {
            return Err(refuse(
                target,
                format!(
                    "the resumed stream carries {} ({} bytes), the partial receive here {} ({} bytes)",
                    h.source.describe(),
                    h.volume_size,
                    o.source.describe(),
                    o.volume_size
                ),
            ));
        }
        Ok(())
    }

    /// The refusal of any stream but this receive's continuation.
    pub fn busy(&self, target: &Path, lv: bool) -> Error {
        let t = arg(target, lv);
        refuse(
            target,
            format!(
                "it has a partial receive of {} (stream {}, {} of {} bytes): continue it with `thinsend-native \
                 send --resume TOKEN <the same sources>` (`thinsend-native recv --resume-token {t}` prints \
                 TOKEN), or discard it with `thinsend-native recv --abort {t}`",
                self.header.source.describe(),
                self.header.stream_id,
                self.offset,
                self.header.volume_size
            ),
        )
    }
}

/// How recv is told the target: `--to PATH`, or `VG/LV` (then `target` is that name).
fn arg(target: &Path, lv: bool) -> String {
    match lv {
        true => target.display().to_string(),
        false => format!("--to {}", target.display()),
    }
}

/// Removes the checkpoint (the partial state it described is gone or complete).
pub(crate) fn remove_checkpoint(target: &Path) -> Result<()> {
    state::remove_if_exists(&checkpoint_path(target))?;
    let _ = crate::io::sync_dir_of(target);
    Ok(())
}

/// What a receive that stopped with its partial state kept prints: the token and the command.
pub(crate) fn kept_note(target: &Path, lv: bool, ck: &Checkpoint) -> String {
    let (t, a) = (target.display(), arg(target, lv));
    let tok = ck.token().encode();
    format!(
        "the partial receive into {t} is kept ({} of {} bytes applied); resume token: {tok} ; continue \
         with: thinsend-native send --resume {tok} <the same sources as before> | thinsend-native recv {a} ; \
         or discard it: thinsend-native recv --abort {a}",
        ck.offset, ck.header.volume_size
    )
}

/// When the next checkpoint is due.
pub(crate) struct Clock {
    since: u64,
    at: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        Clock { since: 0, at: Instant::now() }
    }

    /// `n` more bytes applied: whether a checkpoint is due.
    pub fn due(&mut self, n: u64) -> bool {
        self.since += n;
        self.since >= INTERVAL_BYTES || self.at.elapsed() >= INTERVAL
    }

    pub fn reset(&mut self) {
        *self = Clock::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::native::{Identity, Mode, Resume};

    fn header() -> Header {
        Header {
            version: 1,
            stream_id: "ab".repeat(16),
            mode: Mode::Full,
            volume_size: 1 << 20,
            block_size: 65536,
            created: 0,
            sender: String::new(),
            source: Identity { thin_id: 1, ..Default::default() },
            base: None,
            data_bytes: None,
            resume: None,
        }
    }

    #[test]
    fn a_checkpoint_round_trips_and_a_changed_byte_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let t = d.path().join("t.img");
        assert_eq!(Checkpoint::load(&t).unwrap(), None);
        let c = Checkpoint::new(Kind::Temp, &header(), 4096);
        c.store(&t).unwrap();
        assert_eq!(Checkpoint::load(&t).unwrap(), Some(c));
        let p = checkpoint_path(&t);
        let mut b = std::fs::read(&p).unwrap();
        let i = b.len() - 5;
        b[i] ^= 1;
        std::fs::write(&p, b).unwrap();
        let e = Checkpoint::load(&t).unwrap_err().to_string();
        assert!(e.contains("is damaged") && e.contains("--abort"), "{e}");
    }

    #[test]
    fn only_the_exact_continuation_is_accepted() {
        let t = Path::new("t.img");
        let c = Checkpoint::new(Kind::Temp, &header(), 8192);
        let mut h = header();
        h.stream_id = "cd".repeat(16);
        assert!(c.accepts(t, false, &h).unwrap_err().to_string().contains("has a partial receive"));
        h.resume = Some(Resume { of: "ab".repeat(16), from_offset: 8192 });
        c.accepts(t, false, &h).unwrap();
        let mut o = h.clone();
        o.resume = Some(Resume { of: "ef".repeat(16), from_offset: 8192 });
        assert!(c.accepts(t, false, &o).unwrap_err().to_string().contains("another target"));
        let mut o = h.clone();
        o.resume = Some(Resume { of: "ab".repeat(16), from_offset: 4096 });
        assert!(c.accepts(t, false, &o).unwrap_err().to_string().contains("older"));
        let mut o = h;
        o.source.creation_time = 9;
        assert!(c.accepts(t, false, &o).is_err());
    }
}
