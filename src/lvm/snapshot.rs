//! The metadata-snapshot guard: `reserve_metadata_snap` on a pool, released however the process
//! ends, and a per-pool lock so two runs on one pool take turns.

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

use super::error::LvmError;
use super::{held_root, run, thin_lv, PoolDevs};
use crate::cleanup::{Action, Guard};
use crate::error::{Error, Result};
use crate::pool::Pool;
use crate::superblock::Source;

/// A reserved metadata snapshot, released on drop, on error paths, on panic and on SIGINT/SIGTERM/
/// SIGHUP. Holds a per-pool lock so two thinsend-native runs on one pool take turns, while runs on
/// different pools proceed in parallel.
pub struct MetadataSnapshot {
    guard: Option<Guard>,
    _lock: nix::fcntl::Flock<File>,
    pub devs: PoolDevs,
}

impl MetadataSnapshot {
    pub fn reserve(devs: &PoolDevs) -> Result<Self> {
        let dir = PathBuf::from("/run/lock");
        let dir = if dir.is_dir() { dir } else { std::env::temp_dir() };
        let lock_path = dir.join(format!("thinsend-native.{}.lock", devs.tpool));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))?;
        let lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, e)| Error::io(&lock_path, e.into()))?;
        // Register the release before asking, so a signal during the message cannot leak it.
        let guard = Guard::new(Action::ReleaseMetadataSnap { tpool: devs.tpool.clone() });
        let res = run(Command::new("dmsetup").args(["message", &devs.tpool, "0", "reserve_metadata_snap"]));
        if let Err(e) = res {
            guard.disarm();
            let held = held_root(&devs.tpool).ok().flatten();
            return Err(match held {
                Some(root) => Error::Other(format!(
                    "a metadata snapshot is already held on pool {}/{} (root block {root}): another tool is using it, \
                     or a previous run was killed. If nothing else is running, release it with: \
                     dmsetup message {} 0 release_metadata_snap",
                    devs.vg, devs.pool, devs.tpool
                )),
                None => e,
            });
        }
        // Test hook (tests/vm): hold the snapshot this many seconds, so that signals can be sent
        // while it is held.
        if let Some(secs) = std::env::var("THINSEND_TEST_HOLD_SECS").ok().and_then(|s| s.parse::<u64>().ok()) {
            eprintln!(
                "thinsend-native: holding the metadata snapshot of {} for {secs} s (THINSEND_TEST_HOLD_SECS)",
                devs.tpool
            );
            std::thread::sleep(std::time::Duration::from_secs(secs));
        }
        Ok(MetadataSnapshot { guard: Some(guard), _lock: lock, devs: devs.clone() })
    }

    /// Releases now (also done on drop), reporting failure.
    pub fn release(mut self) -> Result<()> {
        match self.guard.take() {
            Some(g) => g.run().map_err(|e| LvmError::Release(e).into()),
            None => Ok(()),
        }
    }
}

/// Two thin LVs of one pool, with the pool's metadata opened at a snapshot held until drop.
pub struct HeldPair {
    pub pool: Pool,
    pub left: u64,
    pub right: u64,
    pub held: MetadataSnapshot,
}

impl HeldPair {
    /// Resolves `vg/a` and `vg/b` (which must share a pool), reserves a metadata snapshot of the
    /// pool and opens it.
    pub fn open(left: &str, right: &str) -> Result<HeldPair> {
        let (left, right) = (thin_lv(left)?, thin_lv(right)?);
        same_pool(&left, &right)?;
        let devs = super::pool_devs(&right.vg, &right.pool)?;
        let held = MetadataSnapshot::reserve(&devs)?;
        let pool = Pool::open(&devs.tmeta, Source::Snapshot(None))?;
        Ok(HeldPair { pool, left: left.thin_id, right: right.thin_id, held })
    }
}

/// Refuses two LVs of different pools.
pub fn same_pool(a: &super::ThinLv, b: &super::ThinLv) -> Result<()> {
    if (&a.vg, &a.pool) != (&b.vg, &b.pool) {
        return Err(Error::Usage(format!(
            "{} is in pool {}/{} and {} in pool {}/{}: an incremental needs both snapshots in the same pool",
            a.full_name(),
            a.vg,
            a.pool,
            b.full_name(),
            b.vg,
            b.pool
        )));
    }
    Ok(())
}
