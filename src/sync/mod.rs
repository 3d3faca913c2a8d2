//! `sync SRC DST`: replicate thin LVs to (or from) another host in one command. Each run takes a
//! snapshot of SRC, finds the newest snapshot both sides hold (by the identity `recv` records),
//! sends the incremental from it (`send | ssh HOST recv`, two processes joined here), keeps the
//! received state as a snapshot on DST, and prunes the snapshots it made on each side. With
//! `-r`, every thin LV of a VG or pool (or a list); one volume's failure does not stop the others.

pub mod agent;
pub mod pipe;
pub mod policy;
pub mod report;
pub mod side;
pub mod snapshots;
mod volume;

pub use policy::Keep;
pub use report::VolumeResult;
pub use side::Side;
pub use volume::sync_one;

use crate::error::{Error, Result};
use crate::remote::{Spec, Ssh};

/// How every volume of a run is synced.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub ssh: Ssh,
    /// Retention on each side; None prunes nothing.
    pub keep: Option<Keep>,
    /// The snapshot name on both sides instead of `<lv>_ts_<UTC time>`.
    pub snapshot_name: Option<String>,
    /// A full send where there is no common base, replacing DST if it exists.
    pub allow_full: bool,
    /// Discard changes made to DST since its last receive.
    pub rollback: bool,
    /// Discard an interrupted receive's partial state instead of resuming it.
    pub no_resume: bool,
    pub dry_run: bool,
    /// `send --compress` and `send --bwlimit`, passed through as given.
    pub compress: Option<String>,
    pub bwlimit: Option<String>,
    /// The pool a missing DST LV is created in (default: SRC's pool name), in DST's VG.
    pub dst_pool: Option<String>,
    pub progress: bool,
}

/// One volume to sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub src: Spec,
    pub dst: Spec,
}

/// SRC and DST of one volume: at most one remote, not the same volume by name.
pub fn check_pair(src: &Spec, dst: &Spec) -> Result<()> {
    if src.is_remote() && dst.is_remote() {
        return Err(Error::Usage(format!("{src} and {dst} are both remote: one side of sync must be this host")));
    }
    if src.host == dst.host && crate::lvm::split_name(&src.path)? == crate::lvm::split_name(&dst.path)? {
        return Err(Error::Usage(format!("{src} and {dst} are the same volume")));
    }
    Ok(())
}

/// Whether an LV of a `-r` listing is left out by `--exclude` (matched against `LV` and `VG/LV`).
pub fn excluded(patterns: &[glob::Pattern], vg: &str, lv: &str) -> bool {
    let full = format!("{vg}/{lv}");
    patterns.iter().any(|p| p.matches(lv) || p.matches(&full))
}

/// The jobs of a run. Without `recursive`: one SRC and DST, each `[host:]vg/lv`. With it: each
/// SRC a VG, a pool or an LV (`[host:]vg[/name]`), DST a VG (`[host:]vg`); every thin LV sync did
/// not make (and no `--exclude` pattern matches) goes to the LV of the same name in DST's VG.
pub fn jobs(o: &Options, srcs: &[String], dst: &str, recursive: bool, exclude: &[glob::Pattern]) -> Result<Vec<Job>> {
    let dst = Spec::parse(dst).map_err(|e| Error::Usage(e.to_string()))?;
    let specs: Vec<Spec> =
        srcs.iter().map(|s| Spec::parse(s).map_err(|e| Error::Usage(e.to_string()))).collect::<Result<_>>()?;
    if !recursive {
        return match specs.as_slice() {
            [src] => {
                check_pair(src, &dst)?;
                Ok(vec![Job { src: src.clone(), dst }])
            }
            _ => Err(Error::Usage("sync takes one SRC and one DST (or -r with several SRCs)".into())),
        };
    }
    if dst.path.contains('/') || dst.path.is_empty() {
        return Err(Error::Usage(format!("-r: DST {dst} must be a VG ([host:]VG), its LVs named as SRC's")));
    }
    let mut jobs = Vec::new();
    for src in specs {
        let side = Side::of(&src, &o.ssh);
        let out = side.output(&["sync-agent", "list", &src.path])?;
        let names: Vec<String> = serde_json::from_str(&out)
            .map_err(|e| Error::Other(format!("{}: unreadable LV list of {}: {e}", side.name(), src.path)))?;
        let vg = src.path.split('/').next().unwrap_or_default().to_string();
        for lv in names.into_iter().filter(|lv| !excluded(exclude, &vg, lv)) {
            let s = Spec { host: src.host.clone(), path: format!("{vg}/{lv}") };
            let d = Spec { host: dst.host.clone(), path: format!("{}/{lv}", dst.path) };
            check_pair(&s, &d)?;
            jobs.push(Job { src: s, dst: d });
        }
    }
    if jobs.is_empty() {
        return Err(Error::Usage(format!("-r {}: no thin LVs to sync", srcs.join(" "))));
    }
    Ok(jobs)
}

/// Syncs every job, one after another; each result says what happened to its volume.
pub fn run(o: &Options, jobs: &[Job]) -> Vec<VolumeResult> {
    let n = jobs.len();
    let mut results = Vec::with_capacity(n);
    for (i, job) in jobs.iter().enumerate() {
        if o.progress {
            eprintln!("thinsend-native sync [{}/{n}]: {} -> {}", i + 1, job.src, job.dst);
        }
        let r = sync_one(o, job);
        if o.progress {
            eprintln!("thinsend-native sync [{}/{n}]: {}", i + 1, r.line());
        }
        results.push(r);
    }
    results
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(s: &str) -> Spec {
        Spec::parse(s).unwrap()
    }

    #[test]
    fn pairs_that_are_refused() {
        assert!(check_pair(&spec("vg/a"), &spec("h:vg/a")).is_ok(), "same name on another host");
        assert!(check_pair(&spec("vg/a"), &spec("vg/b")).is_ok());
        for (s, d) in [("vg/a", "vg/a"), ("/dev/vg/a", "vg/a"), ("h:vg/a", "h:vg/a"), ("h:vg/a", "g:vg/b")] {
            let e = check_pair(&spec(s), &spec(d)).unwrap_err();
            assert!(matches!(e, Error::Usage(_)), "{s} {d}: {e}");
        }
        assert!(check_pair(&spec("vg"), &spec("vg/b")).is_err(), "not VG/LV");
    }

    #[test]
    fn exclude_matches_the_lv_or_vg_slash_lv() {
        let p = |s: &str| glob::Pattern::new(s).unwrap();
        assert!(excluded(&[p("scratch*")], "vg", "scratch1"));
        assert!(excluded(&[p("vg/tmp?")], "vg", "tmp1"));
        assert!(!excluded(&[p("vg/tmp?")], "vg2", "tmp1"));
        assert!(!excluded(&[], "vg", "a"));
    }

    #[test]
    fn without_r_exactly_one_src() {
        let o = Options::default();
        assert!(jobs(&o, &["vg/a".into(), "vg/b".into()], "h:vg/c", false, &[]).is_err());
        let j = jobs(&o, &["vg/a".into()], "h:vg2/a", false, &[]).unwrap();
        assert_eq!(j, vec![Job { src: spec("vg/a"), dst: spec("h:vg2/a") }]);
        assert!(jobs(&o, &["vg".into()], "h:vg2/x", true, &[]).is_err(), "-r needs a VG as DST");
    }
}
