//! LVM: typed `lvs` reports, the metadata-snapshot guard, LV send and receive. Commands run with
//! argv lists (never a shell string). `send` and `recv` put LVM names on the streams.

pub mod base;
pub mod error;
pub mod lvs;
pub mod recv;
pub mod send;
mod snapshot;

use std::path::PathBuf;
use std::process::Command;

pub use error::LvmError;
pub use snapshot::{same_pool, HeldPair, MetadataSnapshot};

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
    /// Whether the LV can be written (`w` in the attributes' permission column).
    pub fn writable(&self) -> bool {
        self.attr.as_bytes().get(1) == Some(&b'w')
    }
    pub fn dev_path(&self) -> PathBuf {
        PathBuf::from(format!("/dev/{}/{}", self.vg, self.name))
    }
    /// Whether the LV carries the skip-activation flag (thin snapshots do by default).
    pub fn skip_activation(&self) -> bool {
        self.attr.as_bytes().get(9) == Some(&b'k')
    }
}

/// `vg/lv` or `/dev/vg/lv` -> (vg, lv), each a name LVM accepts: checked here, before any command
/// runs, so that a mistyped or hostile name is one clear usage error and never reaches an LVM
/// command line (where a leading '-' would read as an option).
pub fn split_name(name: &str) -> Result<(String, String)> {
    let n = name.strip_prefix("/dev/").unwrap_or(name);
    match n.split_once('/') {
        Some((vg, lv)) if !vg.is_empty() && !lv.is_empty() && !lv.contains('/') => {
            for (what, part) in [("VG", vg), ("LV", lv)] {
                if let Some(why) = bad_name(part) {
                    return Err(Error::Usage(format!("{name}: invalid {what} name: {why}")));
                }
            }
            Ok((vg.into(), lv.into()))
        }
        _ => Err(Error::Usage(format!("{name}: expected VG/LV"))),
    }
}

/// Why LVM would refuse `part` as a VG or LV name (lvm(8), VALID NAMES), or None.
fn bad_name(part: &str) -> Option<&'static str> {
    const MAX: usize = 127;
    if part.len() > MAX {
        Some("longer than 127 characters")
    } else if part.starts_with('-') {
        Some("it may not start with '-'")
    } else if part == "." || part == ".." {
        Some("'.' and '..' are not names")
    } else if !part.bytes().all(|b| b.is_ascii_alphanumeric() || b"+_.-".contains(&b)) {
        Some("only a-z A-Z 0-9 + _ . - are allowed")
    } else {
        None
    }
}

/// The LV, or None when LVM has no such LV in that VG (one `lvs` of the VG).
pub fn find_thin_lv(name: &str) -> Result<Option<ThinLv>> {
    let (vg, lv) = split_name(name)?;
    vg_report(&vg)?.thin(&lv).map_err(usage)
}

/// Every LV of a VG, from one `lvs` call.
pub fn vg_report(vg: &str) -> Result<lvs::VgReport> {
    let out = run(Command::new("lvs").args(lvs_thin_args(vg)))?;
    Ok(lvs::VgReport::parse(&out, vg)?)
}

/// A name that is not a thin LV is the caller's mistake.
pub fn usage(e: LvmError) -> Error {
    if e.is_usage() {
        Error::Usage(e.to_string())
    } else {
        e.into()
    }
}

/// `lvs` arguments for a thin LV's facts, of `name` (VG/LV, or a VG for all its LVs).
fn lvs_thin_args(name: &str) -> [&str; 8] {
    ["--reportformat", "json", "--units", "b", "--nosuffix", "-o", lvs::THIN_LV_FIELDS, name]
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
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd.output().map_err(|source| LvmError::Spawn { program: program.clone(), source })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err.lines().rfind(|l| !l.trim().is_empty()).unwrap_or("").trim();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        return Err(LvmError::Failed { command: format!("{program} {}", args.join(" ")), stderr: line.into() }.into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `vg/lv` or `/dev/vg/lv` -> the LV's facts; refuses anything but a thin LV.
pub fn thin_lv(name: &str) -> Result<ThinLv> {
    let (vg, lv) = split_name(name)?;
    let name = format!("{vg}/{lv}");
    let out = run(Command::new("lvs").args(lvs_thin_args(&name)))?;
    match lvs::parse_thin_lv(&out, &name) {
        Ok(Some(lv)) => Ok(lv),
        Ok(None) => Err(Error::Usage(LvmError::NoSuchLv(name).to_string())),
        Err(e) => Err(usage(e)),
    }
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
    let name = format!("{vg}/{pool}");
    let out = run(Command::new("lvs").args(["--reportformat", "json", "-o", "lv_dm_path", &name]))?;
    let dm = lvs::parse_dm_path(&out, &name)?;
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
    Ok(parse_held_root(&out).ok_or_else(|| LvmError::Status { tpool: tpool.into(), status: out.trim().into() })?)
}

/// `<start> <len> thin-pool <trans> <used>/<total meta> <used>/<total data> <held root|-> ...`:
/// Some(None) for `-`, None for anything garbled.
fn parse_held_root(status: &str) -> Option<Option<u64>> {
    let f: Vec<&str> = status.split_whitespace().collect();
    if f.get(2) != Some(&"thin-pool") {
        return None;
    }
    match *f.get(6)? {
        "-" => Some(None),
        v => v.parse().ok().map(Some),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_lvm_refuses_are_usage_errors() {
        assert_eq!(split_name("vg0/data.snap-1_x+y").unwrap(), ("vg0".into(), "data.snap-1_x+y".into()));
        assert_eq!(split_name("/dev/vg/lv").unwrap(), ("vg".into(), "lv".into()));
        for (name, why) in [
            ("vg/-lv", "start with '-'"),
            ("-vg/lv", "invalid VG name"),
            ("../etc", "'.' and '..'"),
            ("vg/l v", "only a-z"),
            ("vg/lv\u{1b}[2J", "only a-z"),
            ("vg/l\u{e9}", "only a-z"),
        ] {
            let e = split_name(name).unwrap_err();
            assert!(matches!(e, Error::Usage(_)) && e.to_string().contains(why), "{name}: {e}");
        }
        assert!(split_name(&format!("vg/{}", "a".repeat(128))).is_err());
        assert!(split_name(&format!("vg/{}", "a".repeat(127))).is_ok());
    }

    #[test]
    fn held_root_is_read_strictly() {
        let st = |held: &str| format!("0 1048576 thin-pool 1 12/2048 0/4096 {held} rw discard_passdown");
        assert_eq!(parse_held_root(&st("-")), Some(None));
        assert_eq!(parse_held_root(&st("130")), Some(Some(130)));
        assert_eq!(parse_held_root(&st("13O")), None, "a garbled root is an error, not 'none'");
        assert_eq!(parse_held_root("0 1048576 thin 3"), None);
        assert_eq!(parse_held_root("0 1048576 thin-pool 1 12/2048"), None);
    }
}
