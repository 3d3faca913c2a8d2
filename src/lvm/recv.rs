//! `recv vg/lv`: apply a stream to a thin LV atomically. The stream's header is read first; the
//! target is checked (not open or mounted, large enough, at the stream's base as recorded in its LVM
//! tags); the stream goes into a temporary thin LV (a snapshot of the target, or a fresh thin LV for
//! a full stream) which is synced and, only once the END record has been verified, renamed into
//! the target's place. On any failure the temporary is removed and the target is untouched.

use std::fs::OpenOptions;
use std::os::fd::RawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::process::Command;

#[path = "recv_resume.rs"]
mod resume;

pub use resume::{abort, resume_token};

use crate::cleanup::{Action, Guard};
use crate::error::{Error, Result};
use crate::lvm::error::LvmError;
use crate::lvm::{base, run, split_name, thin_lv, usage, vg_report, ThinLv};
use crate::progress;
use crate::recv::{self, BlockSink};
use crate::stream::native::{Header, Identity, Mode};
use crate::stream::{self, Located, ReadOptions, Sink, Start, Summary};

/// Tags recording which source snapshot an LV equals start with this.
pub const TAG_PREFIX: &str = "thinsend.src.";

#[derive(Debug, Clone, Default)]
pub struct Args {
    /// `vg/lv`
    pub target: String,
    /// `vg/pool` to create a missing target in.
    pub pool: Option<String>,
    /// Also keep the received state as this snapshot (a name in the target's VG).
    pub snapshot: Option<String>,
    pub force: bool,
    /// Apply an incremental to the kept base, discarding changes made to the target since.
    pub rollback: bool,
    /// Report the cost of the check for changes since the last receive on stderr.
    pub stats: bool,
    pub read: ReadOptions,
    pub progress: progress::Mode,
    /// `-s`: keep the staging LV of an interrupted stream, to be resumed.
    pub resumable: bool,
}

/// The tag that records "this LV equals that snapshot": the source's LV UUID when known, its thin
/// id, creation time and mapped block count (which a write to the snapshot would change).
pub fn state_tag(id: &Identity) -> String {
    let who = id.lv_uuid.clone().unwrap_or_else(|| format!("pool{}", id.pool_uuid));
    let clean: String = who.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    format!("{TAG_PREFIX}{clean}.t{}.c{}.m{}", id.thin_id, id.creation_time, id.mapped_blocks)
}

/// Refuses an LV that something holds open (mounted, in use by DRBD, ...).
fn check_not_open(lv: &ThinLv) -> Result<()> {
    if !lv.active() {
        return Ok(());
    }
    match OpenOptions::new().read(true).custom_flags(libc::O_EXCL).open(lv.dev_path()) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EBUSY) => Err(Error::Other(format!(
            "{} is in use (mounted or held open): refusing to receive into it; nothing was changed",
            lv.full_name()
        ))),
        Err(e) => Err(Error::io(lv.dev_path(), e)),
    }
}

struct Staged {
    tmp: String,
    /// Removes the staging LV on failure (none once a resumable receive keeps it).
    guard: Option<Guard>,
    existing: Option<ThinLv>,
    tag: Option<String>,
    /// Whether VG/LV_thinsend_base existed when the receive started.
    base_exists: bool,
}

struct LvmSink<'a> {
    args: &'a Args,
    vg: String,
    name: String,
    inner_opts: &'a recv::Options,
    inner: Option<BlockSink<'a>>,
    staged: Option<Staged>,
    partial: Option<resume::LvPartial>,
    /// The stream was refused before it was staged.
    refused: bool,
}

impl<'a> LvmSink<'a> {
    fn tmp_name(&self) -> String {
        format!("{}_thinsend_tmp", self.name)
    }

    fn stage(&mut self, start: &Start) -> Result<()> {
        let full = format!("{}/{}", self.vg, self.name);
        let report = vg_report(&self.vg)?;
        let existing = report.thin(&self.name).map_err(usage)?;
        if let Some(lv) = &existing {
            check_not_open(lv)?;
        }
        let header = start.header.as_ref();
        let tmp = format!("{}/{}", self.vg, self.tmp_name());
        if report.thin(&self.tmp_name()).map_err(usage)?.is_some() {
            eprintln!("thinsend-native: removing {tmp}, left by an interrupted receive");
            run(Command::new("lvremove").args(["-q", "-f", &tmp]))?;
        }
        if let (Some(v), Some(lv)) = (start.volume_size(), &existing) {
            if lv.size < v {
                return Err(Error::Other(format!(
                    "{full} is {} bytes, smaller than the stream's volume of {v} bytes: extend it \
                     (lvextend -L {v}b {full}) or receive into a new LV; nothing was changed",
                    lv.size
                )));
            }
        }
        let base_exists = report.thin(&base::base_lv(&self.name)).map_err(usage)?.is_some();
        let (guard, tmp_lv) = match (header, &existing) {
            (Some(h), existing) if h.mode == Mode::Full => {
                let guard = self.stage_full(h, existing.as_ref(), &tmp)?;
                (guard, thin_lv(&tmp)?)
            }
            (_, None) => {
                return Err(Error::Other(format!(
                    "{full} does not exist: an incremental (or LINBIT) stream applies to an existing LV"
                )))
            }
            (header, Some(lv)) => self.stage_onto(header, lv, base::kept(&report, lv)?.as_ref(), &tmp)?,
        };
        let tag = header.map(|h| state_tag(&h.source));
        self.staged = Some(Staged { tmp: tmp.clone(), guard: Some(guard), existing, tag, base_exists });
        self.inner = Some(BlockSink::open(&tmp_lv.dev_path(), self.inner_opts)?);
        Ok(())
    }

    /// A full stream goes into a fresh thin LV in the target's pool (or `--pool` for a new target).
    fn stage_full(&self, h: &Header, existing: Option<&ThinLv>, tmp: &str) -> Result<Guard> {
        let full = format!("{}/{}", self.vg, self.name);
        let pool = match (existing, &self.args.pool) {
            (Some(_), _) if !self.args.force => {
                return Err(Error::Other(format!(
                "{full} exists and a full stream replaces it entirely: use --force to replace it; nothing was changed"
            )))
            }
            (Some(lv), _) => lv.pool.clone(),
            (None, Some(p)) => {
                let (pvg, pool) = split_name(p)?;
                if pvg != self.vg {
                    return Err(Error::Usage(format!("--pool {p} is not in the target's VG {}", self.vg)));
                }
                pool
            }
            (None, None) => {
                return Err(Error::Usage(format!(
                    "{full} does not exist: give --pool {}/POOL to create it ({} bytes)",
                    self.vg, h.volume_size
                )))
            }
        };
        let size = existing.map_or(h.volume_size, |lv| lv.size);
        let guard = Guard::new(Action::RemoveLv { lv: tmp.into() });
        let (size, pool) = (format!("{size}b"), format!("{}/{pool}", self.vg));
        run(Command::new("lvcreate").args(["-q", "-V", &size, "-T", &pool, "-n", &self.tmp_name()]))?;
        Ok(guard)
    }

    /// An incremental (or LINBIT) stream goes into a snapshot of the target, once the target is
    /// known to be at the stream's base and the snapshot equal to the kept base (unmodified since
    /// the last receive); with `--rollback`, into a snapshot of the kept base instead.
    fn stage_onto(
        &self,
        header: Option<&Header>,
        lv: &ThinLv,
        kept: Option<&ThinLv>,
        tmp: &str,
    ) -> Result<(Guard, ThinLv)> {
        let full = lv.full_name();
        let (mut from, mut check) = (full.clone(), false);
        if let Some(h) = header.filter(|h| h.mode == Mode::Incremental) {
            let base = h.base.as_ref().ok_or_else(|| Error::Other("incremental stream without a base".into()))?;
            let want = state_tag(base);
            if self.args.rollback {
                from = base::for_rollback(lv, kept, &want, self.args.force)?.full_name();
                eprintln!(
                    "thinsend-native: --rollback: applying the stream to {from}, the last received state of {full}"
                );
            } else {
                if !lv.tags.contains(&want) && !self.args.force {
                    let has: Vec<&String> = lv.tags.iter().filter(|t| t.starts_with(TAG_PREFIX)).collect();
                    return Err(Error::Other(format!(
                        "{full} is not at this stream's base ({}): it records {}; refusing (--force applies it anyway); nothing was changed",
                        base.describe(),
                        if has.is_empty() { "no received state".to_string() } else { format!("{has:?}") }
                    )));
                }
                check = true;
            }
        }
        let guard = Guard::new(Action::RemoveLv { lv: tmp.into() });
        run(Command::new("lvcreate").args(["-q", "-s", "-n", &self.tmp_name(), &from]))?;
        let tmp_lv = thin_lv(tmp)?;
        if from != full {
            base::make_writable(&tmp_lv)?;
        }
        if check {
            // The temporary, not the target, is compared: it is what the stream will be applied
            // to, so a write to the target after the check cannot slip into the result.
            base::check_unmodified(lv, kept, &tmp_lv, self.args.stats)?;
        }
        run(Command::new("lvchange").args(["-q", "-ay", "-K", tmp]))?;
        Ok((guard, tmp_lv))
    }

    fn inner(&mut self) -> Result<&mut BlockSink<'a>> {
        self.inner.as_mut().ok_or_else(|| Error::Other("internal error: record before the stream's start".into()))
    }
}

impl Sink for LvmSink<'_> {
    fn start(&mut self, start: &Start) -> Result<()> {
        match self.resume_start(start) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => {
                self.refused = true;
                return Err(e);
            }
        }
        self.stage(start)?;
        self.inner()?.start(start)?;
        self.first_checkpoint(start)
    }
    fn data(&mut self, offset: u64, bytes: &[u8]) -> Result<()> {
        self.inner()?.data(offset, bytes)?;
        self.applied(offset + bytes.len() as u64, bytes.len() as u64)
    }
    fn splice_target(&mut self, offset: u64, len: u64) -> Result<Option<RawFd>> {
        self.inner()?.splice_target(offset, len)
    }
    fn spliced(&mut self, offset: u64, len: u64) {
        if let Some(i) = &mut self.inner {
            i.spliced(offset, len)
        }
    }
    fn unmap(&mut self, offset: u64, len: u64) -> Result<()> {
        self.inner()?.unmap(offset, len)?;
        self.applied(offset.saturating_add(len), len)
    }
    fn record(&mut self, rec: &Located) -> Result<()> {
        self.inner()?.record(rec)
    }
    fn finish(&mut self, summary: &Summary) -> Result<()> {
        match &mut self.inner {
            Some(i) => i.finish(summary),
            None => Ok(()),
        }
    }
}

/// Puts the synced temporary in the target's place, with its tags, activation and snapshot.
fn commit(args: &Args, vg: &str, name: &str, staged: Staged) -> Result<()> {
    let full = format!("{vg}/{name}");
    let tmp_lv = thin_lv(&staged.tmp)?;
    // The received state: drop what the snapshot inherited, record the new source.
    let mut tag_args: Vec<String> = vec!["-q".into()];
    for t in tmp_lv.tags.iter().filter(|t| t.starts_with(TAG_PREFIX)) {
        tag_args.extend(["--deltag".into(), t.clone()]);
    }
    if let Some(t) = &staged.tag {
        tag_args.extend(["--addtag".into(), t.clone()]);
    }
    if tag_args.len() > 1 {
        tag_args.push(staged.tmp.clone());
        run(Command::new("lvchange").args(&tag_args))?;
    }
    let old = format!("{vg}/{name}_thinsend_old");
    if let Some(lv) = &staged.existing {
        check_not_open(lv)?;
        run(Command::new("lvrename").args(["-q", &full, &old]))?;
    }
    if let Err(e) = run(Command::new("lvrename").args(["-q", &staged.tmp, &full])) {
        if staged.existing.is_some() {
            let _ = run(Command::new("lvrename").args(["-q", &old, &full]));
        }
        return Err(e);
    }
    if let Some(g) = staged.guard {
        g.disarm();
    }
    // The new LV behaves as the old one did: activation-skip flag and activation state.
    let was = staged.existing.as_ref();
    let skip = was.is_some_and(|lv| lv.skip_activation());
    run(Command::new("lvchange").args(["-q", if skip { "-ky" } else { "-kn" }, &full]))?;
    if was.is_some_and(|lv| !lv.active()) {
        run(Command::new("lvchange").args(["-q", "-an", &full]))?;
    }
    if staged.existing.is_some() {
        run(Command::new("lvremove").args(["-q", "-f", &old]))?;
    }
    if let Some(snap) = &args.snapshot {
        run(Command::new("lvcreate").args(["-q", "-s", "-n", snap, &full]))?;
        if let Some(t) = &staged.tag {
            run(Command::new("lvchange").args(["-q", "--addtag", t, &format!("{vg}/{snap}")]))?;
        }
    }
    base::rotate(vg, name, staged.base_exists, staged.tag.as_deref())
}

pub fn recv(args: &Args, input: RawFd) -> Result<Summary> {
    let (vg, name) = split_name(&args.target)?;
    let state_dir = tempfile_dir()?;
    let inner_opts = recv::Options {
        to: Default::default(),
        force: true,
        read: args.read,
        progress: args.progress,
        state_file: Some(state_dir.join("state.json")),
        ..Default::default()
    };
    let mut sink = LvmSink {
        args,
        vg: vg.clone(),
        name: name.clone(),
        inner_opts: &inner_opts,
        inner: None,
        staged: None,
        partial: None,
        refused: false,
    };
    let result = stream::read(input, &args.read, &mut sink);
    let summary = match result {
        Ok(s) => s,
        Err(e) => {
            if let Some(note) = sink.keep_partial() {
                drop(sink);
                let _ = std::fs::remove_dir_all(&state_dir);
                return Err(recv::RecvError::Failed { what: e.to_string(), note }.into());
            }
            drop(sink); // removes the temporary LV
            let _ = std::fs::remove_dir_all(&state_dir);
            return Err(LvmError::Unchanged { target: format!("{vg}/{name}"), source: Box::new(e) }.into());
        }
    };
    if let Some(i) = &mut sink.inner {
        i.finish_progress(&summary, &args.target);
    }
    let staged = sink.staged.take();
    let resumable = sink.partial.is_some();
    drop(sink);
    let _ = std::fs::remove_dir_all(&state_dir);
    match staged {
        Some(st) => {
            commit(args, &vg, &name, st)?;
            if resumable {
                crate::recv::resume::remove_checkpoint(&resume::ck_target(&vg, &name))?;
            }
        }
        None => eprintln!("thinsend-native: empty input: {}/{name} left unchanged", vg),
    }
    Ok(summary)
}

fn tempfile_dir() -> Result<std::path::PathBuf> {
    let base = std::env::temp_dir();
    for i in 0..100u32 {
        let p = base.join(format!("thinsend-recv-{}-{i}", std::process::id()));
        if std::fs::create_dir(&p).is_ok() {
            return Ok(p);
        }
    }
    Err(Error::Other(format!("cannot create a temporary directory in {}", base.display())))
}
