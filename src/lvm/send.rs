//! `send [vg/base] vg/snap`: resolve the LVs, hold a metadata snapshot of their pool just long enough
//! to plan the stream from the diff, release it, then stream the data from the snapshot LV (kept
//! open, so LVM refuses to remove it mid-send) or from the pool's data device.

use std::io::Write;
use std::os::fd::RawFd;

use crate::error::{Error, Result};
use crate::lvm::{activate, pool_devs, same_pool, thin_lv, MetadataSnapshot, ThinLv};
use crate::pool::Pool;
use crate::progress;
use crate::send::{self, LvmIds, Plan, StreamFormat, Totals};
use crate::superblock::Source;

/// Where DATA is read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ReadFrom {
    /// The snapshot LV itself (activated with -K if needed, its state restored afterwards).
    #[default]
    Lv,
    /// The pool's data device at each mapping's data block: no activation needed.
    PoolData,
}

#[derive(Debug, Clone, Default)]
pub struct Args {
    pub base: Option<String>,
    pub snap: String,
    pub format: StreamFormat,
    pub read_from: ReadFrom,
    pub progress: progress::Mode,
    /// Allow a base newer than the snapshot (`send --force`): a backward incremental.
    pub allow_backward: bool,
    /// `send --resume TOKEN`: continue an interrupted receive.
    pub resume: Option<crate::recv::token::Token>,
}

fn ids(lv: &ThinLv) -> LvmIds {
    LvmIds {
        vg_name: Some(lv.vg.clone()),
        lv_name: Some(lv.name.clone()),
        vg_uuid: Some(lv.vg_uuid.clone()),
        lv_uuid: Some(lv.uuid.clone()),
    }
}

/// Resolves both names and checks they share a pool.
pub fn resolve(base: Option<&str>, snap: &str) -> Result<(Option<ThinLv>, ThinLv)> {
    let snap = thin_lv(snap)?;
    let base = base.map(thin_lv).transpose()?;
    if let Some(b) = &base {
        same_pool(b, &snap)?;
    }
    Ok((base, snap))
}

fn options(args: &Args, base: Option<&ThinLv>, snap: &ThinLv) -> send::Options {
    send::Options {
        thin_id: snap.thin_id,
        base_id: base.map(|b| b.thin_id),
        format: args.format,
        size: Some(snap.size),
        progress: args.progress,
        source_lvm: ids(snap),
        base_lvm: base.map(ids).unwrap_or_default(),
        allow_backward: args.allow_backward,
        resume: args.resume.clone(),
        ..send::Options::default()
    }
}

/// What `send --dry-run` prints, planned under a metadata snapshot like a real send.
pub fn dry_run(args: &Args, json: bool, out: &mut dyn Write) -> Result<Totals> {
    let (base, snap) = resolve(args.base.as_deref(), &args.snap)?;
    let devs = pool_devs(&snap.vg, &snap.pool)?;
    let msnap = MetadataSnapshot::reserve(&devs)?;
    let pool = Pool::open(&devs.tmeta, Source::Snapshot(None))?;
    let totals = send::dry_run(&pool, &options(args, base.as_ref(), &snap), json, out)?;
    drop(pool);
    msnap.release()?;
    Ok(totals)
}

pub fn send(args: &Args, out: RawFd) -> Result<Totals> {
    let (base, snap) = resolve(args.base.as_deref(), &args.snap)?;
    if base.as_ref().is_some_and(|b| b.thin_id == snap.thin_id) {
        return Err(Error::Usage(format!("{} is both the base and the snapshot to send", snap.full_name())));
    }
    let devs = pool_devs(&snap.vg, &snap.pool)?;
    let mut opts = options(args, base.as_ref(), &snap);
    // Activate before reserving: the metadata snapshot is held only while planning.
    let _active = match args.read_from {
        ReadFrom::Lv => {
            let g = activate(&snap)?;
            opts.source = Some(snap.dev_path());
            g
        }
        ReadFrom::PoolData => {
            opts.data = Some(devs.tdata.clone());
            None
        }
    };
    let msnap = MetadataSnapshot::reserve(&devs)?;
    let pool = Pool::open(&devs.tmeta, Source::Snapshot(None))?;
    let mut plan = Plan::new(&pool, &opts, Some(snap.size))?;
    plan.record()?;
    msnap.release()?;
    let (path, what, from_thin) = match args.read_from {
        ReadFrom::Lv => (snap.dev_path(), "snapshot LV", true),
        ReadFrom::PoolData => (devs.tdata.clone(), "pool data device", false),
    };
    send::send_plan(&plan, &opts, &path, what, from_thin, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(name: &str, thin_id: u64) -> ThinLv {
        ThinLv {
            vg: "vg".into(),
            vg_uuid: "vg-uuid".into(),
            name: name.into(),
            uuid: format!("{name}-uuid"),
            pool: "pool".into(),
            thin_id,
            attr: "Vwi---tz-k".into(),
            size: 1 << 30,
            tags: Vec::new(),
            origin: String::new(),
        }
    }

    #[test]
    fn force_reaches_the_plan_as_allow_backward() {
        let (base, snap) = (lv("new", 3), lv("old", 2));
        let mut args = Args { base: Some("vg/new".into()), snap: "vg/old".into(), ..Args::default() };
        let o = options(&args, Some(&base), &snap);
        assert!(!o.allow_backward, "a backward incremental is refused unless asked for");
        assert_eq!((o.thin_id, o.base_id), (2, Some(3)));
        args.allow_backward = true;
        assert!(options(&args, Some(&base), &snap).allow_backward, "send --force must reach send::Options");
    }
}
