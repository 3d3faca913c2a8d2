//! The LV form of resumable receives (`recv -s VG/LV`, docs/STREAM.md §7). The stream is staged in
//! the temporary LV `VG/LV_thinsend_tmp` as always, and the target is untouched until the END; with
//! `-s` an interruption keeps that LV (instead of removing it) and a checkpoint in the state
//! directory (`$THINSEND_STATE_DIR`, default `/var/lib/thinsend-native`) says how far it got. A
//! resumed stream is applied to the kept LV from its checkpoint on; `--abort` removes it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use super::{state_tag, LvmSink, Staged};
use crate::cleanup::Hook;
use crate::error::{Error, Result};
use crate::lvm::{base, run, split_name, usage, vg_report};
use crate::recv::resume::{kept_note, remove_checkpoint, Checkpoint, Clock, Kind};
use crate::recv::{BlockSink, RecvError};
use crate::stream::{Sink, Start};

/// What a resumable LV receive tracks once its checkpoint stands.
pub(super) struct LvPartial {
    last: Checkpoint,
    offset: u64,
    /// Records were applied in this run.
    active: bool,
    clock: Clock,
    shown: Arc<Mutex<Option<String>>>,
    _hook: Hook,
}

/// The path the checkpoint of `vg/name` is kept beside (in the state directory).
pub(super) fn ck_target(vg: &str, name: &str) -> PathBuf {
    let dir = std::env::var_os("THINSEND_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/thinsend-native"));
    dir.join(format!("lvm_{vg}_{name}"))
}

fn refuse(shown: &Path, what: String) -> Error {
    RecvError::Resume { target: shown.to_path_buf(), what }.into()
}

impl LvPartial {
    fn new(last: Checkpoint, shown: &Path) -> LvPartial {
        let note = Arc::new(Mutex::new(Some(kept_note(shown, true, &last))));
        let n = Arc::clone(&note);
        let hook = Hook::new(move || {
            if let Some(n) = n.lock().unwrap_or_else(|e| e.into_inner()).take() {
                eprintln!("thinsend-native: {n}");
            }
            Ok(())
        });
        LvPartial { offset: last.offset, last, active: false, clock: Clock::new(), shown: note, _hook: hook }
    }
}

impl LvmSink<'_> {
    fn shown(&self) -> PathBuf {
        PathBuf::from(format!("{}/{}", self.vg, self.name))
    }

    /// Checks the stream against a kept partial receive; `true` if it continues it (then the kept
    /// staging LV is opened at its checkpoint).
    pub(super) fn resume_start(&mut self, start: &Start) -> Result<bool> {
        let shown = self.shown();
        let h = start.header.as_ref();
        let Some(c) = Checkpoint::load(&ck_target(&self.vg, &self.name))? else {
            if let Some(r) = h.and_then(|h| h.resume.as_ref()) {
                let what = format!(
                    "the stream resumes stream {} at byte {}, but no partial receive is kept here (it completed \
                     or was aborted)",
                    r.of, r.from_offset
                );
                return Err(refuse(&shown, what));
            }
            if self.args.resumable && h.is_none() {
                let what = "recv -s needs a native stream: a LINBIT stream carries no identity to resume against";
                return Err(refuse(&shown, what.into()));
            }
            return Ok(false);
        };
        let Some(h) = h else {
            return Err(c.busy(&shown, true));
        };
        c.accepts(&shown, true, h)?;
        let report = vg_report(&self.vg)?;
        let tmp = format!("{}/{}", self.vg, self.tmp_name());
        let Some(tmp_lv) = report.thin(&self.tmp_name()).map_err(usage)? else {
            return Err(refuse(
                &shown,
                format!("its staging LV {tmp} is gone: discard the partial receive with `recv --abort`"),
            ));
        };
        run(Command::new("lvchange").args(["-q", "-ay", "-K", &tmp]))?;
        let existing = report.thin(&self.name).map_err(usage)?;
        let base_exists = report.thin(&base::base_lv(&self.name)).map_err(usage)?.is_some();
        let tag = Some(state_tag(&h.source));
        self.staged = Some(Staged { tmp, guard: None, existing, tag, base_exists });
        let mut inner = BlockSink::open(&tmp_lv.dev_path(), self.inner_opts)?;
        inner.start(start)?;
        inner.resume_at(c.offset);
        self.inner = Some(inner);
        self.partial = Some(LvPartial::new(c, &shown));
        Ok(true)
    }

    /// A new resumable receive: the staging LV is kept from now on; checkpoint 0.
    pub(super) fn first_checkpoint(&mut self, start: &Start) -> Result<()> {
        let (Some(h), true) = (&start.header, self.args.resumable) else {
            return Ok(());
        };
        self.inner()?.sync()?;
        if let Some(g) = self.staged.as_mut().and_then(|s| s.guard.take()) {
            g.disarm();
        }
        let c = Checkpoint::new(Kind::Temp, h, 0);
        c.store(&ck_target(&self.vg, &self.name))?;
        self.partial = Some(LvPartial::new(c, &self.shown()));
        Ok(())
    }

    /// A record ending at `end` (`n` bytes) was applied: a checkpoint when one is due.
    pub(super) fn applied(&mut self, end: u64, n: u64) -> Result<()> {
        let Some(p) = &mut self.partial else {
            return Ok(());
        };
        p.offset = end;
        p.active = true;
        if p.clock.due(n) {
            self.checkpoint()?;
        }
        Ok(())
    }

    fn checkpoint(&mut self) -> Result<()> {
        self.inner()?.sync()?;
        let shown = self.shown();
        let target = ck_target(&self.vg, &self.name);
        let Some(p) = &mut self.partial else {
            return Ok(());
        };
        let c = Checkpoint::new(Kind::Temp, &p.last.header, p.offset);
        c.store(&target)?;
        *p.shown.lock().unwrap_or_else(|e| e.into_inner()) = Some(kept_note(&shown, true, &c));
        p.last = c;
        p.clock.reset();
        Ok(())
    }

    /// After a failure: the staging LV is kept at a fresh checkpoint; says how to continue.
    pub(super) fn keep_partial(&mut self) -> Option<String> {
        if self.partial.is_none() {
            // A kept partial receive this run did not get to (its input ended before the HEADER).
            let c = Checkpoint::load(&ck_target(&self.vg, &self.name)).ok().flatten()?;
            return (!self.refused).then(|| kept_note(&self.shown(), true, &c));
        }
        if self.partial.as_ref()?.active {
            if let Err(e) = self.checkpoint() {
                eprintln!("thinsend-native: the checkpoint could not be brought up to date ({e}); the last one stands");
            }
        }
        let shown = self.shown();
        let p = self.partial.as_ref()?;
        p.shown.lock().unwrap_or_else(|e| e.into_inner()).take();
        Some(kept_note(&shown, true, &p.last))
    }
}

/// `recv --resume-token VG/LV`.
pub fn resume_token(target: &str) -> Result<String> {
    let (vg, name) = split_name(target)?;
    match Checkpoint::load(&ck_target(&vg, &name))? {
        Some(c) => Ok(c.token().encode()),
        None => Err(refuse(Path::new(target), "no partial receive is kept for it".into())),
    }
}

/// `recv --abort VG/LV`: removes the kept staging LV and its checkpoint; the target is untouched.
pub fn abort(target: &str) -> Result<String> {
    let (vg, name) = split_name(target)?;
    let ck = ck_target(&vg, &name);
    if Checkpoint::load(&ck)?.is_none() {
        return Err(refuse(Path::new(target), "no partial receive is kept for it: nothing to abort".into()));
    }
    let tmp = format!("{name}_thinsend_tmp");
    if vg_report(&vg)?.thin(&tmp).map_err(usage)?.is_some() {
        run(Command::new("lvremove").args(["-q", "-f", &format!("{vg}/{tmp}")]))?;
    }
    remove_checkpoint(&ck)?;
    Ok(format!("{target}: partial receive discarded ({vg}/{tmp} removed; {target} unchanged)"))
}
