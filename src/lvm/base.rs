//! The kept received state of an LV target: after every native receive into `vg/lv`, a read-only,
//! activation-skipped thin snapshot `vg/lv_thinsend_base` tagged with the received state. Before an
//! incremental is applied, the target is compared against it with the changed-only diff of the
//! receiving pool's metadata (under a held metadata snapshot): a target written since the last
//! receive is refused, or with `--rollback` the stream is applied to a snapshot of the kept base.

use std::process::Command;
use std::time::Instant;

use super::error::LvmError;
use super::lvs::VgReport;
use super::recv::TAG_PREFIX;
use super::{pool_devs, run, MetadataSnapshot, ThinLv};
use crate::diff;
use crate::error::Result;
use crate::pool::Pool;
use crate::superblock::Source;

/// The kept base of `vg/name` (an LV name in the same VG).
pub fn base_name(vg: &str, name: &str) -> String {
    format!("{vg}/{}", base_lv(name))
}

fn state_tags(lv: &ThinLv) -> Vec<&String> {
    lv.tags.iter().filter(|t| t.starts_with(TAG_PREFIX)).collect()
}

/// The LV name of the kept base of `name`.
pub fn base_lv(name: &str) -> String {
    format!("{name}_thinsend_base")
}

/// The kept base of `target` in the VG's report, if one exists in the target's pool.
pub fn kept(report: &VgReport, target: &ThinLv) -> Result<Option<ThinLv>> {
    let kept = report.thin(&base_lv(&target.name)).map_err(super::usage)?;
    Ok(kept.filter(|b| b.pool == target.pool))
}

/// What differs between the kept base and the target, and what finding it cost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Changes {
    pub ranges: u64,
    pub bytes: u64,
    pub first: Option<u64>,
    pub metadata_blocks_read: u64,
}

impl Changes {
    /// Adds one changed range of `length` blocks at block `begin`.
    fn add(&mut self, begin: u64, length: u64, block_bytes: u64) {
        self.ranges += 1;
        self.bytes = self.bytes.saturating_add(length.saturating_mul(block_bytes));
        self.first.get_or_insert(begin.saturating_mul(block_bytes));
    }
}

/// Diffs two thin LVs of one pool (changed ranges only; shared subtrees are not read) under a
/// metadata snapshot of the pool, held only while the diff runs.
fn changes(base: &ThinLv, target: &ThinLv) -> Result<Changes> {
    let devs = pool_devs(&target.vg, &target.pool)?;
    let held = MetadataSnapshot::reserve(&devs)?;
    let pool = Pool::open(&devs.tmeta, Source::Snapshot(None))?;
    let block_bytes = pool.superblock().data_block_bytes();
    let (left, right) = (pool.device(base.thin_id)?, pool.device(target.thin_id)?);
    let mut deltas = diff::delta(&pool, left, right, diff::Options { changed_only: true, ..Default::default() })?;
    let mut c = Changes::default();
    for d in deltas.by_ref() {
        let d = d?;
        if d.kind != diff::Kind::Same {
            c.add(d.begin, d.length, block_bytes);
        }
    }
    c.metadata_blocks_read = deltas.stats().metadata_blocks_read;
    drop(deltas);
    drop(pool);
    held.release()?;
    Ok(c)
}

/// Refuses a target written since the last receive: `copy` (a snapshot of `target` just taken)
/// must equal the kept base. Without a kept base (an LV received before bases were kept, or one
/// whose base does not record the target's state) there is nothing to compare against, and the
/// target is taken as it is.
pub fn check_unmodified(target: &ThinLv, kept: Option<&ThinLv>, copy: &ThinLv, stats: bool) -> Result<()> {
    let Some(base) = kept else {
        if stats {
            eprintln!("thinsend-native: {} has no kept received state to check against", target.full_name());
        }
        return Ok(());
    };
    if state_tags(base) != state_tags(target) {
        if stats {
            eprintln!(
                "thinsend-native: {} records another state than {}: not checked",
                base.full_name(),
                target.full_name()
            );
        }
        return Ok(());
    }
    let t0 = Instant::now();
    let c = changes(base, copy)?;
    if stats {
        eprintln!(
            "thinsend-native: checked {} against {}: {} changed range(s), {} metadata blocks read, {} ms",
            target.full_name(),
            base.full_name(),
            c.ranges,
            c.metadata_blocks_read,
            t0.elapsed().as_millis()
        );
    }
    match c.first {
        None => Ok(()),
        Some(first) => Err(LvmError::Modified {
            target: target.full_name(),
            base: base.full_name(),
            ranges: c.ranges,
            bytes: c.bytes,
            first,
        }
        .into()),
    }
}

/// The kept base to apply an incremental to instead of the target (`--rollback`): it must exist
/// and record the stream's base `want` (unless `force`).
pub fn for_rollback(target: &ThinLv, kept: Option<&ThinLv>, want: &str, force: bool) -> Result<ThinLv> {
    let name = base_name(&target.vg, &target.name);
    let base = kept.cloned().ok_or_else(|| LvmError::NoBase { target: target.full_name(), base: name })?;
    if !force && !base.tags.iter().any(|t| t == want) {
        let has = state_tags(&base);
        let has = if has.is_empty() { "no received state".to_string() } else { format!("{has:?}") };
        return Err(LvmError::BaseMismatch { base: base.full_name(), want: want.into(), has }.into());
    }
    Ok(base)
}

/// Replaces the kept base of `vg/name` (`exists`: whether there is one) with a read-only snapshot
/// of it as it is now, tagged `tag`; without a tag (a LINBIT stream) only removes the old one,
/// which no longer describes the target.
pub fn rotate(vg: &str, name: &str, exists: bool, tag: Option<&str>) -> Result<()> {
    let base = base_name(vg, name);
    if exists {
        run(Command::new("lvremove").args(["-q", "-f", &base]))?;
    }
    let Some(tag) = tag else { return Ok(()) };
    let (lv, origin) = (base_lv(name), format!("{vg}/{name}"));
    run(Command::new("lvcreate").args(["-q", "-s", "-ky", "-p", "r", "--addtag", tag, "-n", &lv, &origin]))?;
    Ok(())
}

/// A snapshot of a read-only base is made writable before the stream is applied to it.
pub fn make_writable(tmp: &ThinLv) -> Result<()> {
    if !tmp.writable() {
        run(Command::new("lvchange").args(["-q", "-p", "rw", &tmp.full_name()]))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_count_ranges_bytes_and_the_first_offset() {
        let mut c = Changes::default();
        c.add(3, 2, 65536);
        c.add(10, 1, 65536);
        assert_eq!(c, Changes { ranges: 2, bytes: 3 * 65536, first: Some(3 * 65536), metadata_blocks_read: 0 });
        c.add(u64::MAX, u64::MAX, 65536);
        assert_eq!(c.bytes, u64::MAX, "saturates instead of overflowing");
    }

    #[test]
    fn modified_message_names_the_change() {
        let e = LvmError::Modified {
            target: "vg/r".into(),
            base: "vg/r_thinsend_base".into(),
            ranges: 2,
            bytes: 131072,
            first: 196608,
        };
        let m = e.to_string();
        for want in ["vg/r has been modified", "2 range(s)", "131072 bytes", "byte 196608", "--rollback"] {
            assert!(m.contains(want), "{want:?} missing in {m}");
        }
    }
}
