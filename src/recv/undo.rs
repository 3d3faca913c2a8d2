//! An in-place receive's undo: the journal, the DATA held back to share its syncs, and how the
//! target's state record is put back. Shared by the file and block-device targets, which differ
//! only in where the journal lives and where the state record is kept.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use super::journal::{Ident, Journal};
use super::pending::Pending;
use super::RecvError;
use crate::error::{Error, Result};

/// Puts back the state record a journal saved (`None`: removes the one this receive wrote).
pub(crate) type RestoreState = Arc<dyn Fn(Option<&[u8]>) -> Result<()> + Send + Sync>;

pub(crate) struct Undo {
    journal: Journal,
    pending: Pending,
    restore: RestoreState,
    /// How a failed save is told: "{target}: {saving} the undo journal {journal}: {error}".
    saving: &'static str,
}

/// How a rollback ended.
pub(crate) enum Outcome {
    /// The target and its state record are as before the receive.
    Restored,
    /// The target's bytes are back, its state record is not.
    StateLost(Error),
    /// Rolling back failed; the journal is kept for the next receive.
    Kept(Error),
}

impl Undo {
    /// Creates the journal at `jp` and arms it, so that a signal ending the process rolls `target`
    /// back first. Nothing has changed yet, so on failure the journal goes again.
    pub fn begin(
        jp: &Path,
        ident: Ident,
        old: Option<&[u8]>,
        target: &File,
        restore: RestoreState,
        saving: &'static str,
        arm: bool,
    ) -> Result<Undo> {
        let mut journal = Journal::create(jp, ident, old)?;
        let r = Arc::clone(&restore);
        if arm {
            if let Err(e) = journal.arm(target, Box::new(move |old| r(old))) {
                let _ = journal.commit();
                return Err(e);
            }
        }
        Ok(Undo { journal, pending: Pending::default(), restore, saving })
    }

    /// Continues the journal a resumable receive kept (not armed: an interrupted resumable receive
    /// keeps its partial state).
    pub fn resume(jp: &Path, ident: &Ident, what: &Path, restore: RestoreState, saving: &'static str) -> Result<Undo> {
        let journal = Journal::reopen(jp, ident, what)?;
        Ok(Undo { journal, pending: Pending::default(), restore, saving })
    }

    /// Leaves the journal as it is, for a later resumed receive (the held DATA must be flushed).
    pub fn keep(self) {}

    pub fn path(&self) -> &Path {
        self.journal.path()
    }

    /// Saves `[offset, offset+len)` of `target` durably before it changes.
    pub fn save(&mut self, target: &File, what: &Path, offset: u64, len: u64) -> Result<()> {
        self.journal.save(target, offset, len).map_err(|source| {
            let (target, journal) = (what.to_path_buf(), self.journal.path().to_path_buf());
            RecvError::Save { target, journal, saving: self.saving, source }.into()
        })
    }

    /// DATA: held, and applied with the rest of its batch once the batch is full.
    pub fn write(&mut self, target: &File, what: &Path, offset: u64, bytes: &[u8]) -> Result<()> {
        if self.pending.push(offset, bytes) {
            self.flush(target, what)?;
        }
        Ok(())
    }

    /// Journals and writes the held DATA.
    pub fn flush(&mut self, target: &File, what: &Path) -> Result<()> {
        self.pending
            .flush(&mut self.journal, target)
            .map_err(|source| RecvError::JournaledWrite { target: what.to_path_buf(), source }.into())
    }

    /// The receive is committed (target and state durable): the journal goes.
    pub fn commit(self) -> Result<()> {
        self.journal.commit()
    }

    /// Puts `target` and its state record back as they were before the receive.
    pub fn rollback(self, target: &File) -> Outcome {
        match self.journal.rollback(target) {
            Ok(r) => match (self.restore)(r.old_state.as_deref()) {
                Ok(()) => Outcome::Restored,
                Err(e) => Outcome::StateLost(e),
            },
            Err(e) => Outcome::Kept(e),
        }
    }
}

/// What a failed receive says of a target whose rollback ended `outcome` (`record`: what its state
/// record is called), `jp` its journal.
pub(crate) fn outcome_note(outcome: Outcome, p: &Path, jp: &Path, record: &str) -> String {
    let p = p.display();
    match outcome {
        Outcome::Restored => format!("{p} left unchanged (rolled back from the undo journal)"),
        Outcome::StateLost(e) => format!("{p} has its old contents back, but its {record} could not be restored ({e})"),
        Outcome::Kept(e) => format!(
            "{p} is PARTIALLY WRITTEN: rolling back failed ({e}); its undo journal {} is kept and the next \
             receive into {p} rolls it back",
            jp.display()
        ),
    }
}
