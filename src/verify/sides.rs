//! Opening the two sides: the source snapshot (an LV, or the metadata form: a thin device of a pool
//! read from its data device or from the device itself) with the identity `send` gives it, and the
//! replica (a thin LV, mapped per its own pool's metadata, or a file or block device).

use std::path::PathBuf;

use super::volume::Volume;
use crate::cleanup::Guard;
use crate::error::{Error, Result};
use crate::lvm::{self, MetadataSnapshot, ThinLv};
use crate::pool::Pool;
use crate::remote::Spec;
use crate::send::{self, LvmIds, Plan};
use crate::stream::native::Identity;
use crate::superblock;

/// The source snapshot.
#[derive(Debug, Clone)]
pub enum Source {
    /// `vg/snap`
    Lv(String),
    /// `--metadata M [-m] (--data D | --source DEV) --thin-id N [--size S]`
    Meta {
        metadata: PathBuf,
        snap: superblock::Source,
        thin_id: u64,
        data: Option<PathBuf>,
        source: Option<PathBuf>,
        size: Option<u64>,
    },
}

/// The opened source: what to read, who it is, its pool's block size.
pub struct Sourced {
    pub vol: Volume,
    pub identity: Identity,
    /// The pool's data block size (a stream's block size).
    pub pool_block: u64,
    /// The default fine block for comparing: the pool's block, within the hashing limits.
    pub block: u64,
    _active: Option<Guard>,
}

/// The replica: a thin LV or a file/block device (`--to`), here or on another host.
#[derive(Debug, Clone)]
pub enum Replica {
    Lv(Spec),
    Path(Spec),
}

impl Replica {
    pub fn spec(&self) -> &Spec {
        match self {
            Replica::Lv(s) | Replica::Path(s) => s,
        }
    }

    pub fn host(&self) -> Option<&str> {
        self.spec().host.as_deref()
    }

    /// The words naming it to `verify --serve` / `heal --serve-recv` on its host.
    pub fn remote_args(&self) -> Vec<&str> {
        match self {
            Replica::Lv(s) => vec![s.path.as_str()],
            Replica::Path(s) => vec!["--to", s.path.as_str()],
        }
    }
}

/// The identity `send` writes in a stream's header for thin device `thin_id`.
fn identity(pool: &Pool, thin_id: u64, size: u64, lvm: LvmIds) -> Result<Identity> {
    let opts = send::Options { thin_id, size: Some(size), source_lvm: lvm, ..send::Options::default() };
    Ok(Plan::new(pool, &opts, Some(size))?.header(&opts, &[0; 16]).source)
}

fn block_of(pool: &Pool) -> u64 {
    let bs = pool.superblock().data_block_bytes();
    if bs % 4096 == 0 && bs <= super::hash::MAX_BLOCK {
        bs
    } else {
        super::DEFAULT_BLOCK
    }
}

/// A thin LV: activated if need be (the guard deactivates it again), mapped per its pool's
/// metadata, read under a metadata snapshot held only while the mappings are read.
fn open_lv(lv: &ThinLv) -> Result<(Volume, Pool, Option<Guard>)> {
    let devs = lvm::pool_devs(&lv.vg, &lv.pool)?;
    let active = lvm::activate(lv)?;
    let held = MetadataSnapshot::reserve(&devs)?;
    let pool = Pool::open(&devs.tmeta, superblock::Source::Snapshot(None))?;
    let vol = Volume::open_thin(&pool, lv.thin_id, lv.size, &lv.dev_path(), true)?;
    held.release()?;
    Ok((vol, pool, active))
}

pub fn open_source(src: &Source) -> Result<Sourced> {
    match src {
        Source::Lv(name) => {
            let lv = lvm::thin_lv(name)?;
            let (vol, pool, active) = open_lv(&lv)?;
            let ids = LvmIds {
                vg_name: Some(lv.vg.clone()),
                lv_name: Some(lv.name.clone()),
                vg_uuid: Some(lv.vg_uuid.clone()),
                lv_uuid: Some(lv.uuid.clone()),
            };
            let identity = identity(&pool, lv.thin_id, lv.size, ids)?;
            let pool_block = pool.superblock().data_block_bytes();
            Ok(Sourced { vol, identity, pool_block, block: block_of(&pool), _active: active })
        }
        Source::Meta { metadata, snap, thin_id, data, source, size } => {
            let pool = Pool::open(metadata, *snap)?;
            let (path, from_thin) = match (data, source) {
                (Some(d), None) => (d.clone(), false),
                (None, Some(s)) => (s.clone(), true),
                _ => return Err(Error::Usage("give the source's data as --data POOL_DATA or --source DEV".into())),
            };
            let size = match (size, from_thin) {
                (Some(s), _) => *s,
                (None, true) => send::size_of(&path)?,
                (None, false) => {
                    return Err(Error::Usage(
                        "the thin device's size is unknown (dm-thin metadata does not record it): give --size".into(),
                    ))
                }
            };
            let vol = Volume::open_thin(&pool, *thin_id, size, &path, from_thin)?;
            let identity = identity(&pool, *thin_id, size, LvmIds::default())?;
            let pool_block = pool.superblock().data_block_bytes();
            Ok(Sourced { vol, identity, pool_block, block: block_of(&pool), _active: None })
        }
    }
}

/// A replica on this host, opened for reading: an LV mapped per its pool (with the guard that
/// deactivates it again), or a file or block device.
pub fn open_local_replica(dst: &Replica) -> Result<(Volume, Option<Guard>)> {
    match dst {
        Replica::Lv(s) => {
            let lv = lvm::thin_lv(&s.path)?;
            let (vol, _, active) = open_lv(&lv)?;
            Ok((vol, active))
        }
        Replica::Path(s) => Ok((Volume::open_plain(std::path::Path::new(&s.path))?, None)),
    }
}
