//! `lvs --reportformat json`, typed: one serde struct per query, every requested field required,
//! numbers parsed strictly. A garbled report is an error naming the LV and the field, never a
//! default.

use serde::Deserialize;

use super::error::LvmError;
use super::ThinLv;

/// `{"report": [{"lv": [ROW, ...]}]}`
#[derive(Deserialize)]
struct Report<R> {
    report: Vec<Section<R>>,
}

#[derive(Deserialize)]
struct Section<R> {
    lv: Vec<R>,
}

fn rows<R: for<'de> Deserialize<'de>>(json: &str, what: &str) -> Result<Vec<R>, LvmError> {
    let r: Report<R> = serde_json::from_str(json).map_err(|e| LvmError::Json { what: what.into(), source: e })?;
    Ok(r.report.into_iter().flat_map(|s| s.lv).collect())
}

/// The fields `thin_lv` asks for (`lvs -o FIELDS`).
pub const THIN_LV_FIELDS: &str = "vg_name,vg_uuid,lv_name,lv_uuid,pool_lv,thin_id,lv_attr,lv_size,lv_tags,origin";

#[derive(Deserialize, Clone)]
struct ThinRow {
    vg_name: String,
    vg_uuid: String,
    lv_name: String,
    lv_uuid: String,
    pool_lv: String,
    thin_id: String,
    lv_attr: String,
    lv_size: String,
    lv_tags: String,
    origin: String,
}

fn number(what: &str, field: &'static str, value: &str) -> Result<u64, LvmError> {
    value.parse().map_err(|_| LvmError::Field { what: what.into(), field, value: value.into() })
}

fn thin_from_row(r: ThinRow, name: &str) -> Result<ThinLv, LvmError> {
    if r.pool_lv.is_empty() || r.thin_id.is_empty() {
        return Err(LvmError::NotThin { name: name.into(), attr: r.lv_attr });
    }
    if r.lv_attr.len() < 10 {
        return Err(LvmError::Field { what: name.into(), field: "lv_attr", value: r.lv_attr });
    }
    Ok(ThinLv {
        thin_id: number(name, "thin_id", &r.thin_id)?,
        size: number(name, "lv_size", &r.lv_size)?,
        tags: r.lv_tags.split(',').filter(|t| !t.is_empty()).map(str::to_string).collect(),
        vg: r.vg_name,
        vg_uuid: r.vg_uuid,
        name: r.lv_name,
        uuid: r.lv_uuid,
        pool: r.pool_lv,
        attr: r.lv_attr,
        origin: r.origin,
    })
}

/// The first LV of a report for `name` (`lvs -o THIN_LV_FIELDS VG/LV`): None when the report
/// lists none; `NotThin` for an LV that is not a thin volume.
pub fn parse_thin_lv(json: &str, name: &str) -> Result<Option<ThinLv>, LvmError> {
    let Some(r) = rows::<ThinRow>(json, name)?.into_iter().next() else { return Ok(None) };
    thin_from_row(r, name).map(Some)
}

/// The thin-LV facts of every LV of a VG (`lvs -o THIN_LV_FIELDS VG`): one `lvs` call answers
/// every question a receive has about the VG's LVs.
pub struct VgReport {
    vg: String,
    rows: Vec<ThinRow>,
}

impl VgReport {
    pub fn parse(json: &str, vg: &str) -> Result<VgReport, LvmError> {
        Ok(VgReport { vg: vg.into(), rows: rows::<ThinRow>(json, vg)? })
    }

    /// The LV named `lv`, if the VG has one; `NotThin` for an LV that is not a thin volume.
    pub fn thin(&self, lv: &str) -> Result<Option<ThinLv>, LvmError> {
        let name = format!("{}/{lv}", self.vg);
        self.rows.iter().find(|r| r.lv_name == lv).map(|r| thin_from_row(r.clone(), &name)).transpose()
    }

    /// Every thin LV of the VG (other LVs, such as pools, are left out); a garbled one is an error.
    pub fn thin_lvs(&self) -> Result<Vec<ThinLv>, LvmError> {
        let thin = |r: &&ThinRow| !r.pool_lv.is_empty() && !r.thin_id.is_empty();
        self.rows.iter().filter(thin).map(|r| thin_from_row(r.clone(), &format!("{}/{}", self.vg, r.lv_name))).collect()
    }
}

#[derive(Deserialize)]
struct NameRow {
    lv_name: String,
}

/// The LV names of a report (`lvs -o lv_name VG`).
pub fn parse_names(json: &str, vg: &str) -> Result<Vec<String>, LvmError> {
    Ok(rows::<NameRow>(json, vg)?.into_iter().map(|r| r.lv_name).collect())
}

#[derive(Deserialize)]
struct DmPathRow {
    lv_dm_path: String,
}

/// The device-mapper path of the one LV of a report (`lvs -o lv_dm_path VG/LV`); empty when the
/// LV is not active.
pub fn parse_dm_path(json: &str, lv: &str) -> Result<String, LvmError> {
    rows::<DmPathRow>(json, lv)?.into_iter().next().map(|r| r.lv_dm_path).ok_or_else(|| LvmError::NoSuchLv(lv.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"{"report":[{"lv":[{"vg_name":"vg","vg_uuid":"VU","lv_name":"r","lv_uuid":"LU",
        "pool_lv":"pool","thin_id":"3","lv_attr":"Vwi-a-tz-k","lv_size":"67108864",
        "lv_tags":"a,thinsend.src.x.t1.c0.m5","origin":""}]}]}"#;

    #[test]
    fn thin_lv_report_is_read_field_by_field() {
        let lv = parse_thin_lv(GOOD, "vg/r").unwrap().unwrap();
        assert_eq!((lv.vg.as_str(), lv.name.as_str(), lv.pool.as_str()), ("vg", "r", "pool"));
        assert_eq!((lv.thin_id, lv.size), (3, 64 << 20));
        assert_eq!(lv.tags, ["a", "thinsend.src.x.t1.c0.m5"]);
        assert!(lv.active() && lv.skip_activation());
    }

    #[test]
    fn empty_report_is_no_lv() {
        assert_eq!(parse_thin_lv(r#"{"report":[{"lv":[]}]}"#, "vg/x").unwrap(), None);
    }

    #[test]
    fn garbled_thin_lv_fields_are_errors() {
        for (from, to, field) in [
            (r#""thin_id":"3""#, r#""thin_id":"3x""#, "thin_id"),
            (r#""lv_size":"67108864""#, r#""lv_size":"64m""#, "lv_size"),
            (r#""lv_size":"67108864""#, r#""lv_size":67108864"#, "invalid type"),
            (r#""origin":"""#, r#""origin2":"""#, "missing field `origin`"),
            (r#""lv_attr":"Vwi-a-tz-k""#, r#""lv_attr":"Vw""#, "lv_attr"),
        ] {
            let json = GOOD.replace(from, to);
            assert_ne!(json, GOOD);
            let e = parse_thin_lv(&json, "vg/r").unwrap_err().to_string();
            assert!(e.contains("vg/r") && e.contains(field), "{field}: {e}");
        }
        assert!(parse_thin_lv("{\"report\":", "vg/r").is_err());
        assert!(parse_thin_lv(r#"{"report":[{}]}"#, "vg/r").is_err());
    }

    fn parse_vg_thin_lv(json: &str, vg: &str, lv: &str) -> Result<Option<ThinLv>, LvmError> {
        VgReport::parse(json, vg)?.thin(lv)
    }

    #[test]
    fn an_lv_is_found_by_name_in_a_vg_report() {
        let two = GOOD.replace(
            "}]}]}",
            r#"},{"vg_name":"vg","vg_uuid":"VU","lv_name":"pool","lv_uuid":"PU",
            "pool_lv":"","thin_id":"","lv_attr":"twi-aotz--","lv_size":"268435456","lv_tags":"","origin":""}]}]}"#,
        );
        assert_eq!(parse_vg_thin_lv(&two, "vg", "r").unwrap().unwrap().thin_id, 3);
        assert_eq!(parse_vg_thin_lv(&two, "vg", "x").unwrap(), None);
        assert!(matches!(parse_vg_thin_lv(&two, "vg", "pool"), Err(LvmError::NotThin { .. })));
        let garbled = two.replace(r#""thin_id":"3""#, r#""thin_id":"-3""#);
        assert!(parse_vg_thin_lv(&garbled, "vg", "r").is_err());
    }

    #[test]
    fn a_thick_lv_is_not_thin() {
        let json = GOOD.replace(r#""pool_lv":"pool","thin_id":"3""#, r#""pool_lv":"","thin_id":"""#);
        let e = parse_thin_lv(&json, "vg/r").unwrap_err();
        assert!(matches!(e, LvmError::NotThin { .. }), "{e}");
    }

    #[test]
    fn names_and_dm_path() {
        let json = r#"{"report":[{"lv":[{"lv_name":"a"},{"lv_name":"b"}]}]}"#;
        assert_eq!(parse_names(json, "vg").unwrap(), ["a", "b"]);
        assert!(parse_names(r#"{"report":[{"lv":[{"lv_name":7}]}]}"#, "vg").is_err());
        let json = r#"{"report":[{"lv":[{"lv_dm_path":"/dev/mapper/vg-pool"}]}]}"#;
        assert_eq!(parse_dm_path(json, "vg/pool").unwrap(), "/dev/mapper/vg-pool");
        assert!(parse_dm_path(r#"{"report":[{"lv":[]}]}"#, "vg/pool").is_err());
    }
}
