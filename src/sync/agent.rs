//! What sync does on one side's LVM, run there as `thinsend-native sync-agent OP ...` (locally, or
//! over ssh): report the side's state, take the source snapshot, mark a received snapshot, prune,
//! and return DST to an older common snapshot. Every removal is checked against the sync mark
//! here, on the side itself: a snapshot sync did not make is never removed.

use std::process::Command;

use super::snapshots::{at_tag, mark_tag, state_of, sync_snaps, Features, LvInfo, SideState, AT_PREFIX, MARK_PREFIX};
use crate::error::{Error, Result};
use crate::lvm::{base, run, split_name, usage, vg_report, LvmError, ThinLv};
use crate::stream::native::VERSION;

fn lvs_error(e: LvmError) -> Error {
    usage(e)
}

/// The free data bytes of `vg/pool` (`lv_size` x (100 - `data_percent`) / 100).
fn pool_free(vg: &str, pool: &str) -> Result<Option<u64>> {
    let name = format!("{vg}/{pool}");
    let out = run(Command::new("lvs").args([
        "--reportformat",
        "json",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        "lv_size,data_percent",
        &name,
    ]))?;
    Ok(parse_pool_free(&out))
}

fn parse_pool_free(json: &str) -> Option<u64> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let row = v.get("report")?.get(0)?.get("lv")?.get(0)?;
    let size: u64 = row.get("lv_size")?.as_str()?.parse().ok()?;
    let pct: f64 = row.get("data_percent")?.as_str()?.parse().ok()?;
    if !(0.0..=100.0).contains(&pct) {
        return None;
    }
    Some((size as f64 * (100.0 - pct) / 100.0) as u64)
}

/// The token of an interrupted resumable receive into `name` (`recv --resume-token`), if any.
fn resume_token(name: &str) -> Result<Option<String>> {
    let exe = std::env::current_exe().map_err(|e| Error::io("/proc/self/exe", e))?;
    let out = Command::new(exe)
        .args(["recv", "--resume-token", name])
        .output()
        .map_err(|e| Error::Other(format!("cannot run recv --resume-token: {e}")))?;
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    Ok((out.status.success() && !token.is_empty()).then_some(token))
}

/// The state of `vg/lv` on this side. `pool`: where a missing LV would be created; `dst`: also
/// check the LV against its kept base (modified since the last receive?) and look for a partial
/// resumable receive.
pub fn state(name: &str, pool: Option<&str>, dst: bool, features: Features) -> Result<SideState> {
    let (vg, lv_name) = split_name(name)?;
    let report = vg_report(&vg)?;
    let lvs = report.thin_lvs().map_err(lvs_error)?;
    let lv = report.thin(&lv_name).map_err(lvs_error)?;
    let kept = match &lv {
        Some(l) => base::kept(&report, l)?,
        None => None,
    };
    let mut modified = None;
    if let (true, Some(l)) = (dst, &lv) {
        match base::check_unmodified(l, kept.as_ref(), l, false) {
            Ok(()) => {}
            Err(Error::Lvm(e @ LvmError::Modified { .. })) => modified = Some(e.to_string()),
            Err(e) => return Err(e),
        }
    }
    let pool_name = lv.as_ref().map(|l| l.pool.clone()).or(pool.map(str::to_string));
    let pool_free_bytes = match &pool_name {
        Some(p) => pool_free(&vg, p)?,
        None => None,
    };
    // A partial receive may exist before the LV does (an interrupted first, full, receive).
    let resume_token = if dst && features.resume { resume_token(name)? } else { None };
    Ok(SideState {
        version: env!("CARGO_PKG_VERSION").into(),
        stream_version: VERSION,
        features,
        vg,
        lv: lv.as_ref().map(LvInfo::of),
        kept_base_state: kept.as_ref().and_then(|k| state_of(&k.tags)),
        snapshots: sync_snaps(&lvs, &lv_name),
        pool_free_bytes,
        modified,
        resume_token,
    })
}

/// Takes the source snapshot: thin, read-only, skipped at activation, marked.
pub fn snapshot(name: &str, snap: &str, at: i64) -> Result<()> {
    let (vg, lv) = split_name(name)?;
    check_lv_name(snap)?;
    let (mark, at) = (mark_tag(&lv), at_tag(at));
    run(Command::new("lvcreate").args([
        "-q",
        "-s",
        "-ky",
        "-p",
        "r",
        "--addtag",
        &mark,
        "--addtag",
        &at,
        "-n",
        snap,
        &format!("{vg}/{lv}"),
    ]))?;
    Ok(())
}

/// Marks a received snapshot of `vg/lv` as made by sync (and read-only).
pub fn mark(name: &str, snap: &str, at: i64) -> Result<()> {
    let (vg, lv) = split_name(name)?;
    check_lv_name(snap)?;
    let full = format!("{vg}/{snap}");
    run(Command::new("lvchange").args(["-q", "--addtag", &mark_tag(&lv), "--addtag", &at_tag(at), &full]))?;
    run(Command::new("lvchange").args(["-q", "-p", "r", &full]))?;
    Ok(())
}

fn check_lv_name(n: &str) -> Result<()> {
    let ok = !n.is_empty()
        && !n.starts_with('-')
        && n.chars().all(|c| c.is_ascii_alphanumeric() || "+_.-".contains(c))
        && n.len() <= 127;
    if ok {
        Ok(())
    } else {
        Err(Error::Usage(format!("{n:?}: not a valid LV name")))
    }
}

/// The marked snapshot `snap` of `vg/lv`, or an error saying why it is not one sync made.
fn marked(report: &crate::lvm::lvs::VgReport, vg: &str, lv: &str, snap: &str) -> Result<ThinLv> {
    let s = report.thin(snap).map_err(lvs_error)?.ok_or_else(|| Error::Other(format!("{vg}/{snap}: no such LV")))?;
    if !s.tags.contains(&mark_tag(lv)) {
        return Err(Error::Other(format!(
            "{vg}/{snap} was not made by sync for {vg}/{lv} (no tag {}): not touching it",
            mark_tag(lv)
        )));
    }
    Ok(s)
}

/// Removes snapshots sync made for `vg/lv`; refuses any other LV before removing anything.
pub fn prune(name: &str, snaps: &[String]) -> Result<()> {
    let (vg, lv) = split_name(name)?;
    let report = vg_report(&vg)?;
    for s in snaps {
        marked(&report, &vg, &lv, s)?;
    }
    for s in snaps {
        run(Command::new("lvremove").args(["-q", "-f", &format!("{vg}/{s}")]))?;
    }
    Ok(())
}

/// Prepares an incremental from an older common snapshot: checks `vg/lv` is unmodified since its
/// last receive (unless `rollback`), then replaces its kept base with a read-only copy of the
/// marked snapshot `snap`, so that `recv --rollback` applies the stream to that state.
pub fn rewind(name: &str, snap: &str, rollback: bool) -> Result<()> {
    let (vg, lv_name) = split_name(name)?;
    let report = vg_report(&vg)?;
    let lv = report.thin(&lv_name).map_err(lvs_error)?.ok_or_else(|| Error::Other(format!("{name}: no such LV")))?;
    let from = marked(&report, &vg, &lv_name, snap)?;
    let state = state_of(&from.tags).ok_or_else(|| Error::Other(format!("{vg}/{snap} records no received state")))?;
    let kept = base::kept(&report, &lv)?;
    if !rollback {
        base::check_unmodified(&lv, kept.as_ref(), &lv, false)?;
    }
    let base_lv = base::base_lv(&lv_name);
    if kept.is_some() {
        run(Command::new("lvremove").args(["-q", "-f", &format!("{vg}/{base_lv}")]))?;
    }
    run(Command::new("lvcreate").args(["-q", "-s", "-ky", "-p", "r", "-n", &base_lv, &format!("{vg}/{snap}")]))?;
    let made = crate::lvm::thin_lv(&format!("{vg}/{base_lv}"))?;
    let mut args: Vec<String> = vec!["-q".into()];
    for t in made.tags.iter().filter(|t| t.starts_with(MARK_PREFIX) || t.starts_with(AT_PREFIX)) {
        args.extend(["--deltag".into(), t.clone()]);
    }
    if !made.tags.contains(&state) {
        args.extend(["--addtag".into(), state]);
    }
    if args.len() > 1 {
        args.push(format!("{vg}/{base_lv}"));
        run(Command::new("lvchange").args(&args))?;
    }
    Ok(())
}

/// The LVs `-r` syncs for `vg`, `vg/pool` or `vg/lv`: thin LVs that sync did not make (no sync
/// mark, no kept base, temporary or old state of a receive).
pub fn list(name: &str) -> Result<Vec<String>> {
    let (vg, rest) = match name.split_once('/') {
        Some((v, r)) => (v, Some(r)),
        None => (name, None),
    };
    let lvs = vg_report(vg)?.thin_lvs().map_err(lvs_error)?;
    let ours = |l: &ThinLv| {
        l.tags.iter().any(|t| t.starts_with(MARK_PREFIX))
            || ["_thinsend_base", "_thinsend_tmp", "_thinsend_old"].iter().any(|s| l.name.ends_with(s))
    };
    let names: Vec<String> = match rest {
        Some(r) if lvs.iter().any(|l| l.name == r) => vec![r.to_string()],
        Some(r) => lvs.iter().filter(|l| l.pool == r && !ours(l)).map(|l| l.name.clone()).collect(),
        None => lvs.iter().filter(|l| !ours(l)).map(|l| l.name.clone()).collect(),
    };
    if names.is_empty() {
        return Err(Error::Usage(format!("{name}: no thin LVs to sync (not a VG, thin pool or thin LV with any)")));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_free_space_from_lvs() {
        let j = r#"{"report":[{"lv":[{"lv_size":"268435456","data_percent":"25.00"}]}]}"#;
        assert_eq!(parse_pool_free(j), Some(201326592));
        for bad in [r#""data_percent":"x""#, r#""data_percent":"101""#, r#""data_percent":"""#] {
            assert_eq!(parse_pool_free(&j.replace(r#""data_percent":"25.00""#, bad)), None, "{bad}");
        }
    }

    #[test]
    fn lv_names_are_checked_before_lvm_sees_them() {
        assert!(check_lv_name("d_ts_20261129T191426Z").is_ok());
        for bad in ["", "-n", "a/b", "a b", "x\n", &"a".repeat(128)] {
            assert!(check_lv_name(bad).is_err(), "{bad:?}");
        }
    }
}
