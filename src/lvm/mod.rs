//! LVM names and the metadata-snapshot guard. Commands run with argv lists (never a shell string);
//! LV facts come from `lvs --reportformat json`. `send` and `recv` put LVM names on the streams.

pub mod recv;
pub mod send;

use std::fs::File;
use std::path::PathBuf;
use std::process::Command;

use crate::cleanup::{Action, Guard};
use crate::error::{Error, Result};

/// What thinsend-native needs to know of a thin LV.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThinLv {
    pub vg: String,
    pub vg_uuid: String,
    pub name: String,
    pub uuid: String,
    pub pool: String,
    pub thin_id: u64,
    pub attr: String,
    pub size: u64,
    pub tags: Vec<String>,
    pub origin: String,
}

impl ThinLv {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.vg, self.name)
    }
    pub fn active(&self) -> bool {
        self.attr.as_bytes().get(4) == Some(&b'a')
    }
    pub fn dev_path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/{}/{}", self.vg, self.name))
    }
    /// Whether the LV carries the skip-activation flag (thin snapshots do by default).
    pub fn skip_activation(&self) -> bool {
        self.attr.as_bytes().get(9) == Some(&b'k')
    }
}

/// `vg/lv` or `/dev/vg/lv` -> (vg, lv).
pub fn split_name(name: &str) -> Result<(String, String)> {
    let n = name.strip_prefix("/dev/").unwrap_or(name);
    match n.split_once('/') {
        Some((vg, lv)) if !vg.is_empty() && !lv.is_empty() && !lv.contains('/') => Ok((vg.into(), lv.into())),
        _ => Err(Error::Usage(format!("{name}: expected VG/LV"))),
    }
}

/// The LV, or None when LVM has no such LV in that VG.
pub fn find_thin_lv(name: &str) -> Result<Option<ThinLv>> {
    let (vg, lv) = split_name(name)?;
    let out = Command::new("lvs")
        .args(["--reportformat", "json", "-o", "lv_name", &vg])
        .output()
        .map_err(|e| Error::Other(format!("cannot run lvs: {e}")))?;
    if !out.status.success() {
        return Err(Error::Other(format!(
            "lvs {vg} failed: {}",
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("").trim()
        )));
    }
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|e| Error::Other(format!("lvs: {e}")))?;
    let exists = v["report"][0]["lv"].as_array().is_some_and(|a| a.iter().any(|l| l["lv_name"] == lv.as_str()));
    if exists {
        thin_lv(name).map(Some)
    } else {
        Ok(None)
    }
}

/// Makes the LV active for the duration of the returned guard (which deactivates it again if it
/// was inactive before), activating skip-activation snapshots with `-K`.
pub fn activate(lv: &ThinLv) -> Result<Option<Guard>> {
    if lv.active() {
        return Ok(None);
    }
    let guard = Guard::new(Action::DeactivateLv { lv: lv.full_name() });
    run(Command::new("lvchange").args(["-q", "-ay", "-K", &lv.full_name()]))?;
    Ok(Some(guard))
}

/// Runs an LVM or device-mapper command; its stderr's last line becomes the error.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().map_err(|e| Error::Other(format!("cannot run {:?}: {e}", cmd.get_program())))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        return Err(Error::Other(format!("{} {} failed: {line}", cmd.get_program().to_string_lossy(), args.join(" "))));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `vg/lv` or `/dev/vg/lv` -> the LV's facts; refuses anything but a thin LV.
pub fn thin_lv(name: &str) -> Result<ThinLv> {
    let name = name.strip_prefix("/dev/").unwrap_or(name);
    let out = run(Command::new("lvs").args([
        "--reportformat",
        "json",
        "--units",
        "b",
        "--nosuffix",
        "-o",
        "vg_name,vg_uuid,lv_name,lv_uuid,pool_lv,thin_id,lv_attr,lv_size,lv_tags,origin",
        name,
    ]))?;
    let v: serde_json::Value =
        serde_json::from_str(&out).map_err(|e| Error::Other(format!("cannot parse lvs output for {name}: {e}")))?;
    let lv = v["report"][0]["lv"]
        .as_array()
        .and_then(|a| a.first())
        .ok_or_else(|| Error::Usage(format!("{name}: no such logical volume")))?;
    let s = |k: &str| lv[k].as_str().unwrap_or("").to_string();
    let thin_id = s("thin_id");
    if s("pool_lv").is_empty() || thin_id.is_empty() {
        return Err(Error::Usage(format!("{name}: not a thin volume (attr {})", s("lv_attr"))));
    }
    Ok(ThinLv {
        vg: s("vg_name"),
        vg_uuid: s("vg_uuid"),
        name: s("lv_name"),
        uuid: s("lv_uuid"),
        pool: s("pool_lv"),
        thin_id: thin_id.parse().map_err(|_| Error::Other(format!("{name}: bad thin_id {thin_id:?}")))?,
        attr: s("lv_attr"),
        size: s("lv_size").parse().map_err(|_| Error::Other(format!("{name}: bad size {:?}", s("lv_size"))))?,
        tags: s("lv_tags").split(',').filter(|t| !t.is_empty()).map(str::to_string).collect(),
        origin: s("origin"),
    })
}

/// The device-mapper devices of a thin pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDevs {
    pub vg: String,
    pub pool: String,
    /// dm name of the pool target, e.g. `vg-pool-tpool`.
    pub tpool: String,
    pub tmeta: PathBuf,
    pub tdata: PathBuf,
}

pub fn pool_devs(vg: &str, pool: &str) -> Result<PoolDevs> {
    let out = run(Command::new("lvs").args(["--reportformat", "json", "-o", "lv_dm_path", &format!("{vg}/{pool}")]))?;
    let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| Error::Other(format!("lvs: {e}")))?;
    let dm = v["report"][0]["lv"][0]["lv_dm_path"].as_str().unwrap_or("").to_string();
    let base = dm.strip_prefix("/dev/mapper/").filter(|b| !b.is_empty()).ok_or_else(|| {
        Error::Other(format!("thin pool {vg}/{pool} has no device-mapper path; is it active? (vgchange -ay {vg})"))
    })?;
    let devs = PoolDevs {
        vg: vg.into(),
        pool: pool.into(),
        tpool: format!("{base}-tpool"),
        tmeta: PathBuf::from(format!("/dev/mapper/{base}_tmeta")),
        tdata: PathBuf::from(format!("/dev/mapper/{base}_tdata")),
    };
    if !devs.tmeta.exists() {
        return Err(Error::Other(format!("thin pool {vg}/{pool} is not active ({} missing)", devs.tmeta.display())));
    }
    Ok(devs)
}

/// The held metadata root as `dmsetup status` reports it, if any.
pub fn held_root(tpool: &str) -> Result<Option<u64>> {
    let out = run(Command::new("dmsetup").args(["status", tpool]))?;
    // <start> <len> thin-pool <trans> <used>/<total meta> <used>/<total data> <held root|-> ...
    let f: Vec<&str> = out.split_whitespace().collect();
    match f.get(6) {
        Some(&"-") => Ok(None),
        Some(v) => Ok(v.parse().ok()),
        None => Err(Error::Other(format!("unexpected dmsetup status for {tpool}: {}", out.trim()))),
    }
}

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
            Some(g) => g.run().map_err(Error::Other),
            None => Ok(()),
        }
    }
}
