//! One volume's sync: the checks before anything moves, the plan (base, snapshots, resume), the
//! transfer, marking the received snapshot, and pruning each side.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::pipe::transfer;
use super::report::VolumeResult;
use super::snapshots::{common_base, snapshot_name, Common, SideState, SyncSnap, Via};
use super::{Job, Options, Side};
use crate::error::{Error, Result};
use crate::stream::native::VERSION;

/// What this run of one volume will do.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Plan {
    base: Option<Common>,
    /// SRC's snapshot to send, when it was taken (µs), and whether this run takes it.
    snap: String,
    at: i64,
    fresh: bool,
    dst_snap: String,
    /// The token of the partial receive to continue.
    resume: Option<String>,
    /// Discard a partial receive first (`--no-resume`, or one that cannot be continued).
    abort_partial: bool,
}

fn now_us() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

fn name_of(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The checks that need both sides' states: stream format, same volume, modified DST, features.
fn preflight(o: &Options, job: &Job, src: &SideState, dst: &SideState, r: &mut VolumeResult) -> Result<()> {
    for (side, st) in [("SRC", src), ("DST", dst)] {
        if st.stream_version != VERSION {
            return Err(Error::Other(format!(
                "{side} runs thinsend-native {} with stream format {}, this one {} writes format {VERSION}: \
                 install the same version on both hosts",
                st.version,
                st.stream_version,
                env!("CARGO_PKG_VERSION")
            )));
        }
        if st.version != env!("CARGO_PKG_VERSION") {
            r.warnings.push(format!(
                "{side} runs thinsend-native {}, this one {}",
                st.version,
                env!("CARGO_PKG_VERSION")
            ));
        }
    }
    if let (Some(s), Some(d)) = (&src.lv, &dst.lv) {
        if s.uuid == d.uuid {
            return Err(Error::Usage(format!("{} and {} are the same volume (LV UUID {})", job.src, job.dst, s.uuid)));
        }
    }
    if let Some(m) = &dst.modified {
        if !o.rollback {
            return Err(Error::Other(format!("DST {m}")));
        }
        r.warnings.push(format!("--rollback: discarding changes on DST ({m})"));
    }
    if o.compress.is_some() && !src.features.compress {
        return Err(Error::Usage("--compress: the sending side's thinsend-native has no send --compress".into()));
    }
    if o.bwlimit.is_some() && !src.features.bwlimit {
        return Err(Error::Usage("--bwlimit: the sending side's thinsend-native has no send --bwlimit".into()));
    }
    Ok(())
}

/// No common base: a full send, refused over an existing DST unless `--allow-full`.
fn no_base_message(job: &Job, src: &SideState, dst: &SideState) -> String {
    let records = dst.lv.as_ref().and_then(|l| l.state.clone()).unwrap_or_else(|| "no received state".into());
    format!(
        "no common snapshot: none of SRC's {} sync snapshot(s) is held by DST {} (it records {records}, \
         {} sync snapshot(s)); --allow-full replaces DST with a full send",
        src.snapshots.len(),
        job.dst,
        dst.snapshots.len()
    )
}

fn plan(o: &Options, job: &Job, src: &SideState, dst: &SideState) -> Result<Plan> {
    let base = common_base(&src.snapshots, dst);
    if base.is_none() && dst.lv.is_some() && !o.allow_full {
        return Err(Error::Other(no_base_message(job, src, dst)));
    }
    let newer = |s: &&SyncSnap| match &base {
        Some(b) => s.at > b.src.at,
        None => true,
    };
    let pending = src.snapshots.iter().rev().find(newer);
    let token = dst.resume_token.clone();
    let resume = match (&token, pending) {
        (Some(t), Some(_)) if !o.no_resume => Some(t.clone()),
        _ => None,
    };
    let abort_partial = token.is_some() && resume.is_none();
    let (snap, at, fresh) = match (&resume, pending) {
        (Some(_), Some(p)) => (p.name.clone(), p.at, false),
        _ => {
            let at = now_us();
            let lv = name_of(&job.src.path);
            (o.snapshot_name.clone().unwrap_or_else(|| snapshot_name(lv, at)), at, true)
        }
    };
    let dst_snap = match (&o.snapshot_name, fresh) {
        (Some(n), true) => n.clone(),
        _ => snapshot_name(name_of(&job.dst.path), at),
    };
    Ok(Plan { base, snap, at, fresh, dst_snap, resume, abort_partial })
}

/// `send --dry-run --format json [BASE] LV` on SRC: (stream bytes, data bytes). `origin`: LV is
/// the origin, older than its snapshots by creation time, planned in place of the snapshot to be
/// taken (`--force` lets `send` plan from a newer base).
fn predict(side: &Side, vg: &str, base: Option<&str>, lv: &str, origin: bool) -> Result<(u64, u64)> {
    let full = |n: &str| format!("{vg}/{n}");
    let mut args = vec!["send".to_string(), "--dry-run".into(), "--format".into(), "json".into()];
    if origin && base.is_some() {
        args.push("--force".into());
    }
    args.extend(base.map(full));
    args.push(full(lv));
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = side.output(&argv)?;
    let v: serde_json::Value = serde_json::from_str(&out)
        .map_err(|e| Error::Other(format!("{}: unreadable send --dry-run output: {e}", side.name())))?;
    let t = &v["totals"];
    match (t["stream_bytes"].as_u64(), t["data_bytes"].as_u64()) {
        (Some(s), Some(d)) => Ok((s, d)),
        _ => Err(Error::Other(format!("{}: send --dry-run gave no totals", side.name()))),
    }
}

/// The snapshots `keep` leaves out on one side, after this run added `added` (never those in
/// `protect`, never a snapshot sync did not make: `snaps` are the marked ones).
fn to_prune(o: &Options, snaps: &[SyncSnap], added: Option<(&str, i64)>, protect: &[&str]) -> Vec<String> {
    let Some(keep) = o.keep else { return Vec::new() };
    let mut all: Vec<(String, i64)> = snaps.iter().map(|s| (s.name.clone(), s.at)).collect();
    if let Some((n, at)) = added {
        if !all.iter().any(|(m, _)| m == n) {
            all.push((n.to_string(), at));
        }
    }
    let ats: Vec<i64> = all.iter().map(|a| a.1).collect();
    let kept = keep.select(&ats);
    all.into_iter()
        .enumerate()
        .filter(|(i, (n, _))| !kept.contains(i) && !protect.contains(&n.as_str()))
        .map(|(_, (n, _))| n)
        .collect()
}

/// Syncs one volume; never panics, every failure ends in the result.
pub fn sync_one(o: &Options, job: &Job) -> VolumeResult {
    let mut r = VolumeResult::new(job, o.dry_run);
    let t0 = Instant::now();
    match run(o, job, &mut r) {
        Ok(()) => r.ok = true,
        Err(e) => r.error = Some(crate::text::escape_controls(&e.to_string())),
    }
    r.seconds = t0.elapsed().as_secs_f64();
    r
}

fn run(o: &Options, job: &Job, r: &mut VolumeResult) -> Result<()> {
    let (ss, ds) = (Side::of(&job.src, &o.ssh), Side::of(&job.dst, &o.ssh));
    let src = ss.state(&job.src.path, None, false)?;
    let src_lv = src.lv.clone().ok_or_else(|| Error::Usage(format!("SRC {}: no such thin LV", job.src)))?;
    let pool = o.dst_pool.clone().unwrap_or_else(|| src_lv.pool.clone());
    let dst = ds.state(&job.dst.path, Some(&pool), true)?;
    preflight(o, job, &src, &dst, r)?;
    let p = plan(o, job, &src, &dst)?;
    r.mode = Some(
        if p.resume.is_some() {
            "resumed"
        } else if p.base.is_some() {
            "incremental"
        } else {
            "full"
        }
        .into(),
    );
    r.base = p.base.as_ref().map(|b| b.src.name.clone());
    r.rewound_to = match p.base.as_ref().map(|b| &b.via) {
        Some(Via::Snapshot(d)) => Some(d.clone()),
        _ => None,
    };
    r.snapshot = Some(p.snap.clone());
    r.dst_snapshot = Some(p.dst_snap.clone());
    let added_src = p.fresh.then_some((p.snap.as_str(), p.at));
    r.pruned_src = to_prune(o, &src.snapshots, added_src, &[&p.snap]);
    r.pruned_dst = to_prune(o, &dst.snapshots, Some((&p.dst_snap, p.at)), &[&p.dst_snap]);
    if o.dry_run {
        if p.resume.is_none() {
            // Planned from SRC as it is now: the snapshot about to be taken has the same blocks,
            // and the header names the snapshot instead of the LV.
            let (lv, delta) = match p.fresh {
                true => (&src_lv.name, p.snap.len() as i64 - src_lv.name.len() as i64),
                false => (&p.snap, 0),
            };
            check_bytes(&ss, &src, &dst, &pool, r.base.clone().as_deref(), lv, delta, r)?;
        }
        return Ok(());
    }
    execute(o, job, &p, (&ss, &src), (&ds, &dst), r, &pool)
}

fn execute(
    o: &Options,
    job: &Job,
    p: &Plan,
    (ss, src): (&Side, &SideState),
    (ds, dst): (&Side, &SideState),
    r: &mut VolumeResult,
    pool: &str,
) -> Result<()> {
    let at = p.at.to_string();
    if p.fresh {
        ss.agent(&["snapshot", &job.src.path, &p.snap, &at])?;
    }
    if p.resume.is_none() {
        // Planned from the snapshot itself: exactly the stream about to be sent.
        check_bytes(ss, src, dst, pool, r.base.clone().as_deref(), &p.snap, 0, r)?;
    }
    if p.abort_partial {
        ds.output(&["recv", "--abort", &job.dst.path])?;
    }
    let mut rollback = o.rollback;
    if let (Some(Via::Snapshot(d)), Some(_)) = (p.base.as_ref().map(|b| &b.via), &dst.lv) {
        let mut a = vec!["rewind", job.dst.path.as_str(), d.as_str()];
        if o.rollback {
            a.push("--rollback");
        }
        ds.agent(&a)?;
        rollback = true;
    }
    let full = |n: &str| format!("{}/{n}", src.vg);
    let mut send: Vec<String> = vec!["send".into()];
    for (flag, v) in [("--compress", &o.compress), ("--bwlimit", &o.bwlimit), ("--resume", &p.resume)] {
        if let Some(v) = v {
            send.extend([flag.to_string(), v.clone()]);
        }
    }
    send.extend(p.base.as_ref().map(|b| full(&b.src.name)));
    send.push(full(&p.snap));
    let mut recv: Vec<String> = vec!["recv".into()];
    if dst.features.resume {
        recv.push("-s".into());
    }
    recv.extend(["--snapshot".into(), p.dst_snap.clone()]);
    match &dst.lv {
        None => {
            recv.extend(["--pool".into(), format!("{}/{}", dst.vg, o.dst_pool.as_deref().unwrap_or(&pool_of(src)))])
        }
        Some(_) if p.base.is_none() => recv.push("--force".into()),
        Some(_) => {}
    }
    if rollback && dst.lv.is_some() && p.base.is_some() {
        recv.push("--rollback".into());
    }
    recv.push(job.dst.path.clone());
    let (sv, rv): (Vec<&str>, Vec<&str>) =
        (send.iter().map(String::as_str).collect(), recv.iter().map(String::as_str).collect());
    let label = format!("{} -> {}", job.src, job.dst);
    let moved = transfer(&mut ss.command(&sv)?, &mut ds.command(&rv)?, &label, o.progress)?;
    if let Some(planned) = r.stream_bytes.filter(|&b| b != moved.bytes && o.compress.is_none()) {
        r.warnings.push(format!("planned {planned} stream bytes, {} went over the wire", moved.bytes));
    }
    r.stream_bytes = Some(moved.bytes);
    ds.agent(&["mark", &job.dst.path, &p.dst_snap, &at])?;
    prune(ss, &job.src.path, &r.pruned_src)?;
    prune(ds, &job.dst.path, &r.pruned_dst)
}

/// The stream's size (`send --dry-run` of `lv` on SRC, `delta` bytes more) and DST's pool space.
#[allow(clippy::too_many_arguments)]
fn check_bytes(
    ss: &Side,
    src: &SideState,
    dst: &SideState,
    pool: &str,
    base: Option<&str>,
    lv: &str,
    delta: i64,
    r: &mut VolumeResult,
) -> Result<()> {
    let (stream, data) = predict(ss, &src.vg, base, lv, lv == src_name(src))?;
    r.stream_bytes = Some(stream.saturating_add_signed(delta));
    r.data_bytes = Some(data);
    let pool = dst.lv.as_ref().map_or(pool, |l| l.pool.as_str());
    match dst.pool_free_bytes.filter(|&f| f < data) {
        Some(free) => Err(Error::Other(format!(
            "DST pool {}/{pool} has {free} bytes free, the stream writes {data} bytes of data; nothing was sent",
            dst.vg
        ))),
        None => Ok(()),
    }
}

fn src_name(src: &SideState) -> &str {
    src.lv.as_ref().map_or("", |l| l.name.as_str())
}

fn pool_of(src: &SideState) -> String {
    src.lv.as_ref().map(|l| l.pool.clone()).unwrap_or_default()
}

fn prune(side: &Side, lv: &str, names: &[String]) -> Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let mut a = vec!["prune", lv];
    a.extend(names.iter().map(String::as_str));
    side.agent(&a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::Spec;
    use crate::sync::snapshots::{Features, LvInfo};
    use crate::sync::Keep;

    fn snap(name: &str, at: i64, state: Option<&str>) -> SyncSnap {
        SyncSnap { name: name.into(), uuid: format!("U-{at}"), thin_id: at as u64, at, state: state.map(Into::into) }
    }

    fn side(lv: Option<(&str, Option<&str>)>, snaps: Vec<SyncSnap>) -> SideState {
        SideState {
            version: env!("CARGO_PKG_VERSION").into(),
            stream_version: VERSION,
            features: Features { resume: true, ..Features::default() },
            vg: "vg".into(),
            lv: lv.map(|(n, s)| LvInfo {
                name: n.into(),
                uuid: format!("L-{n}"),
                pool: "pool".into(),
                size: 1,
                state: s.map(Into::into),
            }),
            kept_base_state: lv.and_then(|(_, s)| s.map(Into::into)),
            snapshots: snaps,
            pool_free_bytes: None,
            modified: None,
            resume_token: None,
        }
    }

    fn job() -> Job {
        Job { src: Spec::parse("vg/d").unwrap(), dst: Spec::parse("h:vg/r").unwrap() }
    }

    fn tag(_: &str, at: i64) -> String {
        format!("thinsend.src.U-{at}.t{at}.c0.m0")
    }

    #[test]
    fn first_run_is_full_and_an_existing_dst_needs_allow_full() {
        let o = Options::default();
        let p = plan(&o, &job(), &side(Some(("d", None)), vec![]), &side(None, vec![])).unwrap();
        assert!(p.base.is_none() && p.fresh && p.resume.is_none() && !p.abort_partial);
        assert!(p.snap.starts_with("d_ts_") && p.dst_snap.starts_with("r_ts_"), "{p:?}");
        let e = plan(&o, &job(), &side(Some(("d", None)), vec![]), &side(Some(("r", None)), vec![])).unwrap_err();
        assert!(e.to_string().contains("no common snapshot") && e.to_string().contains("--allow-full"), "{e}");
        let o = Options { allow_full: true, snapshot_name: Some("nightly".into()), ..Options::default() };
        let p = plan(&o, &job(), &side(Some(("d", None)), vec![]), &side(Some(("r", None)), vec![])).unwrap();
        assert_eq!((p.snap.as_str(), p.dst_snap.as_str()), ("nightly", "nightly"));
    }

    #[test]
    fn a_partial_receive_is_resumed_with_the_pending_snapshot_or_aborted() {
        let src = side(Some(("d", None)), vec![snap("d_ts_1", 1, None), snap("d_ts_2", 2, None)]);
        let t1 = tag("d_ts_1", 1);
        let mut dst = side(Some(("r", Some(&t1))), vec![snap("r_ts_1", 1, Some(&t1))]);
        dst.resume_token = Some("TOKEN".into());
        let p = plan(&Options::default(), &job(), &src, &dst).unwrap();
        assert_eq!((p.snap.as_str(), p.fresh, p.resume.as_deref()), ("d_ts_2", false, Some("TOKEN")));
        assert_eq!(p.base.unwrap().src.name, "d_ts_1");
        assert_eq!(p.dst_snap, snapshot_name("r", 2), "named after the pending snapshot's time");
        let p = plan(&Options { no_resume: true, ..Options::default() }, &job(), &src, &dst).unwrap();
        assert!(p.fresh && p.resume.is_none() && p.abort_partial);
        // nothing newer than the base to continue: the partial state is discarded
        let src = side(Some(("d", None)), vec![snap("d_ts_1", 1, None)]);
        let p = plan(&Options::default(), &job(), &src, &dst).unwrap();
        assert!(p.fresh && p.abort_partial);
    }

    #[test]
    fn pruning_keeps_the_policy_and_the_protected_and_only_marked_snapshots() {
        let o = Options { keep: Some(Keep::parse("2").unwrap()), ..Options::default() };
        let snaps = vec![snap("a", 1, None), snap("b", 2, None), snap("c", 3, None)];
        assert_eq!(to_prune(&o, &snaps, Some(("new", 4)), &["new"]), ["a", "b"]);
        assert_eq!(to_prune(&o, &snaps, None, &["a"]), Vec::<String>::new(), "b, c kept by policy, a protected");
        assert!(to_prune(&Options::default(), &snaps, Some(("new", 4)), &[]).is_empty(), "no --keep: no pruning");
    }

    #[test]
    fn modified_dst_and_same_volume_are_refused_before_anything_moves() {
        let (o, mut r) = (Options::default(), VolumeResult::default());
        let mut dst = side(Some(("r", None)), vec![]);
        dst.modified = Some("vg/r has been modified since the last receive".into());
        let src = side(Some(("d", None)), vec![]);
        let e = preflight(&o, &job(), &src, &dst, &mut r).unwrap_err();
        assert!(e.to_string().contains("has been modified"), "{e}");
        let o2 = Options { rollback: true, ..Options::default() };
        assert!(preflight(&o2, &job(), &src, &dst, &mut r).is_ok());
        let same = side(Some(("d", None)), vec![]);
        assert!(preflight(&o, &job(), &src, &same, &mut r).unwrap_err().to_string().contains("same volume"));
        let mut old = side(Some(("r", None)), vec![]);
        old.stream_version = VERSION + 1;
        assert!(preflight(&o, &job(), &src, &old, &mut r).unwrap_err().to_string().contains("stream format"));
        let oc = Options { compress: Some("zstd".into()), ..Options::default() };
        assert!(preflight(&oc, &job(), &src, &side(None, vec![]), &mut r).is_err(), "no send --compress");
    }
}
