//! Each volume's result, as a line of text or a JSON object (`--format json` prints
//! `{"schema": "thinsend/1", "type": "sync", "ok": ..., "failed": N, "volumes": [...]}`).

use serde::Serialize;

use super::Job;

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct VolumeResult {
    pub src: String,
    pub dst: String,
    pub ok: bool,
    /// Why the volume failed (one line).
    pub error: Option<String>,
    pub dry_run: bool,
    /// `full`, `incremental` or `resumed`.
    pub mode: Option<String>,
    /// The common base the incremental was sent from (SRC's snapshot name).
    pub base: Option<String>,
    /// Where DST held the base when it was not the LV itself: the snapshot it was returned to.
    pub rewound_to: Option<String>,
    /// SRC's snapshot sent, and the snapshot of the received state kept on DST.
    pub snapshot: Option<String>,
    pub dst_snapshot: Option<String>,
    /// The stream's bytes: counted on the wire (a real run) or predicted (`--dry-run`).
    pub stream_bytes: Option<u64>,
    /// DATA payload bytes as planned.
    pub data_bytes: Option<u64>,
    pub seconds: f64,
    /// Snapshots removed (or, with `--dry-run`, that would be) on each side.
    pub pruned_src: Vec<String>,
    pub pruned_dst: Vec<String>,
    pub warnings: Vec<String>,
}

impl VolumeResult {
    pub fn new(job: &Job, dry_run: bool) -> VolumeResult {
        VolumeResult { src: job.src.to_string(), dst: job.dst.to_string(), dry_run, ..Default::default() }
    }

    /// One line for the text report.
    pub fn line(&self) -> String {
        let head = format!("{} -> {}", self.src, self.dst);
        if let Some(e) = &self.error {
            return format!("FAILED {head}: {e}");
        }
        let what = match (&self.mode, &self.base) {
            (Some(m), Some(b)) => format!("{m} from {b}"),
            (Some(m), None) => m.clone(),
            _ => "nothing".into(),
        };
        let verb = if self.dry_run { "would send" } else { "sent" };
        let mut s = format!(
            "ok {head}: {what}, {verb} {} as {} ({} stream bytes, {} data bytes)",
            self.snapshot.as_deref().unwrap_or("?"),
            self.dst_snapshot.as_deref().unwrap_or("?"),
            self.stream_bytes.map_or("?".into(), |b| b.to_string()),
            self.data_bytes.map_or("?".into(), |b| b.to_string()),
        );
        if let Some(r) = &self.rewound_to {
            s.push_str(&format!(", DST returned to {r} first"));
        }
        if !self.dry_run {
            s.push_str(&format!(" in {:.1} s", self.seconds));
        }
        let p = if self.dry_run { "would prune" } else { "pruned" };
        s.push_str(&format!("; {p} {:?} on SRC, {:?} on DST", self.pruned_src, self.pruned_dst));
        for w in &self.warnings {
            s.push_str(&format!("; warning: {w}"));
        }
        s
    }
}

#[derive(Serialize)]
struct Run<'a> {
    schema: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    ok: bool,
    failed: usize,
    volumes: &'a [VolumeResult],
}

/// The JSON document of a run (one line; fields in a fixed order).
pub fn json(results: &[VolumeResult]) -> String {
    let failed = results.iter().filter(|r| !r.ok).count();
    serde_json::to_string(&Run {
        schema: crate::report::SCHEMA,
        kind: "sync",
        ok: failed == 0,
        failed,
        volumes: results,
    })
    .unwrap_or_else(|_| "null".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remote::Spec;

    #[test]
    fn failed_volumes_are_counted_and_named() {
        let job = Job { src: Spec::parse("vga/a").unwrap(), dst: Spec::parse("h:vgb/a").unwrap() };
        let mut bad = VolumeResult::new(&job, false);
        bad.error = Some("DST pool vgb/pool has 10 bytes free".into());
        let mut good = VolumeResult::new(&job, false);
        good.ok = true;
        good.mode = Some("full".into());
        let text = json(&[good.clone(), bad.clone()]);
        assert!(
            text.starts_with(r#"{"schema":"thinsend/1","type":"sync","ok":false,"failed":1,"volumes":[{"src":"vga/a","dst":"h:vgb/a","ok":true"#),
            "{text}"
        );
        let j: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(j["ok"], false);
        assert_eq!(j["failed"], 1);
        assert_eq!(j["volumes"][1]["error"], "DST pool vgb/pool has 10 bytes free");
        assert_eq!(j["volumes"][1]["dst"], "h:vgb/a");
        assert!(bad.line().starts_with("FAILED vga/a -> h:vgb/a: DST pool"));
        assert!(good.line().starts_with("ok vga/a -> h:vgb/a: full, sent"));
        assert!(json(&[good]).starts_with(r#"{"schema":"thinsend/1","type":"sync","ok":true,"failed":0,"#));
    }
}
