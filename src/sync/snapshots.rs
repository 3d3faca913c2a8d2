//! The snapshots sync makes and how the two sides' states are compared. A snapshot sync made
//! carries two LVM tags: `thinsend.sync.of.<LV>` (made by sync, for that LV: the only snapshots it
//! ever prunes) and `thinsend.sync.at.<µs>` (when the source snapshot was taken: the order, the
//! same on both sides). The common base is found by identity: a received LV or snapshot records
//! the source snapshot it equals in its `thinsend.src.<LV UUID>.t<thin id>.c<time>.m<mapped>` tag
//! (written by `recv`), never by name.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::lvm::recv::TAG_PREFIX;
use crate::lvm::ThinLv;

pub const MARK_PREFIX: &str = "thinsend.sync.of.";
pub const AT_PREFIX: &str = "thinsend.sync.at.";

pub fn mark_tag(lv: &str) -> String {
    format!("{MARK_PREFIX}{lv}")
}

pub fn at_tag(at_us: i64) -> String {
    format!("{AT_PREFIX}{at_us}")
}

/// `<lv>_ts_<UTC time>`, e.g. `data_ts_20261129T191426Z`.
pub fn snapshot_name(lv: &str, at_us: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp(at_us.div_euclid(1_000_000)).unwrap_or(OffsetDateTime::UNIX_EPOCH);
    format!(
        "{lv}_ts_{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// What a side knows of a snapshot sync made.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncSnap {
    pub name: String,
    pub uuid: String,
    pub thin_id: u64,
    /// When the source snapshot was taken (µs since the epoch, UTC).
    pub at: i64,
    /// The `thinsend.src.` tag: the source snapshot a received snapshot equals.
    pub state: Option<String>,
}

/// The received state an LV records (its `thinsend.src.` tag), if any.
pub fn state_of(tags: &[String]) -> Option<String> {
    tags.iter().find(|t| t.starts_with(TAG_PREFIX)).cloned()
}

/// The snapshots sync made for `lv` among a VG's thin LVs, oldest first.
pub fn sync_snaps(lvs: &[ThinLv], lv: &str) -> Vec<SyncSnap> {
    let mark = mark_tag(lv);
    let mut v: Vec<SyncSnap> = lvs
        .iter()
        .filter(|l| l.tags.contains(&mark))
        .filter_map(|l| {
            let at = l.tags.iter().find_map(|t| t.strip_prefix(AT_PREFIX)?.parse::<i64>().ok())?;
            Some(SyncSnap {
                name: l.name.clone(),
                uuid: l.uuid.clone(),
                thin_id: l.thin_id,
                at,
                state: state_of(&l.tags),
            })
        })
        .collect();
    v.sort_by(|a, b| (a.at, &a.name).cmp(&(b.at, &b.name)));
    v
}

/// The start of the state tag `recv` writes for a stream from this source snapshot: LV UUID and
/// thin id (creation time and mapped blocks follow, and `recv` checks the whole tag).
pub fn identity_prefix(s: &SyncSnap) -> String {
    let clean: String = s.uuid.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
    format!("{TAG_PREFIX}{clean}.t{}.c", s.thin_id)
}

/// A side's LV: what sync needs of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LvInfo {
    pub name: String,
    pub uuid: String,
    pub pool: String,
    pub size: u64,
    /// Its received state (`thinsend.src.` tag), if it was received.
    pub state: Option<String>,
}

impl LvInfo {
    pub fn of(lv: &ThinLv) -> LvInfo {
        LvInfo {
            name: lv.name.clone(),
            uuid: lv.uuid.clone(),
            pool: lv.pool.clone(),
            size: lv.size,
            state: state_of(&lv.tags),
        }
    }
}

/// Which optional flags the binary on a side has (the resume and data-path contracts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Features {
    /// `recv -s`, `recv --resume-token`, `recv --abort`, `send --resume`.
    pub resume: bool,
    /// `send --compress`.
    pub compress: bool,
    /// `send --bwlimit`.
    pub bwlimit: bool,
}

/// One side's answer to `sync-agent state VG/LV`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideState {
    pub version: String,
    pub stream_version: u32,
    pub features: Features,
    pub vg: String,
    pub lv: Option<LvInfo>,
    /// The received state the kept base `LV_thinsend_base` records.
    pub kept_base_state: Option<String>,
    /// Snapshots sync made for this LV, oldest first.
    pub snapshots: Vec<SyncSnap>,
    /// Free data bytes of the LV's pool (or of the pool a new LV would go to).
    pub pool_free_bytes: Option<u64>,
    /// Why the LV counts as modified since its last receive, if it does.
    pub modified: Option<String>,
    /// The token of an interrupted resumable receive into the LV.
    pub resume_token: Option<String>,
}

/// Where DST holds the common base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// The LV itself records it (and its kept base agrees): a plain incremental.
    Target,
    /// Only a snapshot sync kept does: DST is first returned to it.
    Snapshot(String),
}

/// The newest source snapshot DST holds too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Common {
    pub src: SyncSnap,
    pub via: Via,
}

/// The newest snapshot of `src` (oldest first) whose identity DST records: on the LV (only when
/// its kept base records the same state, so a half-finished receive never counts) or on one of
/// the snapshots sync kept there.
pub fn common_base(src: &[SyncSnap], dst: &SideState) -> Option<Common> {
    let target = dst.lv.as_ref().and_then(|l| l.state.as_ref()).filter(|s| dst.kept_base_state.as_ref() == Some(*s));
    for s in src.iter().rev() {
        let p = identity_prefix(s);
        if target.is_some_and(|t| t.starts_with(&p)) {
            return Some(Common { src: s.clone(), via: Via::Target });
        }
        let on = dst.snapshots.iter().rev().find(|d| d.state.as_ref().is_some_and(|t| t.starts_with(&p)));
        if let Some(d) = on {
            return Some(Common { src: s.clone(), via: Via::Snapshot(d.name.clone()) });
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(name: &str, id: u64, tags: &[&str]) -> ThinLv {
        ThinLv {
            vg: "vg".into(),
            vg_uuid: "VU".into(),
            name: name.into(),
            uuid: format!("U-{name}"),
            pool: "pool".into(),
            thin_id: id,
            attr: "Vri---tz-k".into(),
            size: 1 << 26,
            tags: tags.iter().map(|t| t.to_string()).collect(),
            origin: "d".into(),
        }
    }

    fn snap(name: &str, id: u64, at: i64, state: Option<&str>) -> SyncSnap {
        SyncSnap { name: name.into(), uuid: format!("UUID-{id}"), thin_id: id, at, state: state.map(Into::into) }
    }

    fn dst(target: Option<&str>, kept: Option<&str>, snaps: Vec<SyncSnap>) -> SideState {
        SideState {
            version: "0".into(),
            stream_version: 1,
            features: Features::default(),
            vg: "vgb".into(),
            lv: Some(LvInfo {
                name: "r".into(),
                uuid: "R".into(),
                pool: "pool".into(),
                size: 1,
                state: target.map(Into::into),
            }),
            kept_base_state: kept.map(Into::into),
            snapshots: snaps,
            pool_free_bytes: None,
            modified: None,
            resume_token: None,
        }
    }

    #[test]
    fn names_and_tags() {
        assert_eq!(snapshot_name("data", 1_795_979_666_123_456), "data_ts_20261129T191426Z");
        assert_eq!(mark_tag("d"), "thinsend.sync.of.d");
        assert_eq!(at_tag(5), "thinsend.sync.at.5");
    }

    #[test]
    fn only_marked_snapshots_of_the_lv_count_in_time_order() {
        let lvs = [
            lv("d_ts_b", 3, &["thinsend.sync.of.d", "thinsend.sync.at.200"]),
            lv("d_ts_a", 2, &["thinsend.sync.at.100", "thinsend.sync.of.d", "thinsend.src.X.t1.c0.m1"]),
            lv("mine", 4, &[]),
            lv("e_ts_a", 5, &["thinsend.sync.of.e", "thinsend.sync.at.50"]),
            lv("d_ts_broken", 6, &["thinsend.sync.of.d", "thinsend.sync.at.x"]),
        ];
        let s = sync_snaps(&lvs, "d");
        assert_eq!(s.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["d_ts_a", "d_ts_b"]);
        assert_eq!(s[0].state.as_deref(), Some("thinsend.src.X.t1.c0.m1"));
        assert_eq!(s[1].state, None);
    }

    #[test]
    fn the_common_base_is_found_by_identity_not_by_name() {
        let src = vec![snap("d_ts_1", 2, 1, None), snap("d_ts_2", 3, 2, None), snap("d_ts_3", 4, 3, None)];
        let tag = |_: &str, id: u64| format!("thinsend.src.UUID-{id}.t{id}.c7.m9");
        // DST has a snapshot NAMED like d_ts_3 but recording d_ts_2's identity
        let d = dst(None, None, vec![snap("d_ts_3", 9, 2, Some(&tag("d_ts_2", 3)))]);
        let c = common_base(&src, &d).unwrap();
        assert_eq!((c.src.name.as_str(), &c.via), ("d_ts_2", &Via::Snapshot("d_ts_3".into())));
        // the target records d_ts_3 and its kept base agrees: a plain incremental from d_ts_3
        let t3 = tag("d_ts_3", 4);
        let d = dst(Some(&t3), Some(&t3), vec![snap("x", 9, 2, Some(&tag("d_ts_2", 3)))]);
        assert_eq!(common_base(&src, &d).unwrap(), Common { src: src[2].clone(), via: Via::Target });
        // a target whose kept base records another state does not count
        let d = dst(Some(&t3), Some(&tag("d_ts_1", 2)), vec![snap("x", 9, 2, Some(&tag("d_ts_1", 2)))]);
        assert_eq!(common_base(&src, &d).unwrap().src.name, "d_ts_1");
        // same UUID, another thin id: not the same snapshot
        let d = dst(None, None, vec![snap("x", 9, 2, Some("thinsend.src.UUID-4.t40.c7.m9"))]);
        assert_eq!(common_base(&src, &d), None);
        assert_eq!(common_base(&[], &dst(Some(&t3), Some(&t3), vec![])), None);
    }
}
