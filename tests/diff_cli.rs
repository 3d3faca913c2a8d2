//! The `diff` command line: formats, statistics and errors, on a small restored pool.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_thinsend-native");

const POOL: &str = r#"<superblock uuid="" time="2" transaction="5" data_block_size="128" nr_data_blocks="1000">
  <device dev_id="1" mapped_blocks="6" transaction="0" creation_time="0" snap_time="1">
    <range_mapping origin_begin="0" data_begin="100" length="5" time="0"/>
    <single_mapping origin_block="20" data_block="300" time="1"/>
  </device>
  <device dev_id="7" mapped_blocks="5" transaction="3" creation_time="1" snap_time="2">
    <range_mapping origin_begin="0" data_begin="100" length="3" time="0"/>
    <single_mapping origin_block="3" data_block="400" time="1"/>
    <single_mapping origin_block="30" data_block="500" time="1"/>
  </device>
</superblock>
"#;

fn pool() -> Option<(tempfile::TempDir, std::path::PathBuf)> {
    if Command::new("thin_restore").arg("-V").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "thin_restore is required in CI");
        eprintln!("skipping: thin_restore not installed");
        return None;
    }
    let d = tempfile::tempdir().unwrap();
    let (x, img) = (d.path().join("p.xml"), d.path().join("p.img"));
    std::fs::write(&x, POOL).unwrap();
    std::fs::File::create(&img).unwrap().set_len(4 << 20).unwrap();
    assert!(Command::new("thin_restore").arg("-i").arg(&x).arg("-o").arg(&img).status().unwrap().success());
    Some((d, img))
}

fn diff(img: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let o = Command::new(BIN).arg("diff").args(args).arg(img).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8(o.stdout).unwrap(), String::from_utf8(o.stderr).unwrap())
}

#[test]
fn ranges_format_is_one_line_per_range() {
    let Some((_d, img)) = pool() else { return };
    let (rc, out, _) = diff(&img, &["--snap1", "1", "--snap2", "7", "--format", "ranges"]);
    assert_eq!(rc, 0);
    assert_eq!(out, "same 0 3\ndifferent 3 1\nleft_only 4 1\nleft_only 20 1\nright_only 30 1\n");
    let (_, out, _) =
        diff(&img, &["--thin1", "1", "--thin2", "7", "--format", "ranges", "--verbose", "--changed-only"]);
    assert_eq!(out, "different 3 1 103 400\nleft_only 4 1 104 -\nleft_only 20 1 300 -\nright_only 30 1 - 500\n");
}

#[test]
fn json_carries_ranges_data_blocks_and_stats() {
    let Some((_d, img)) = pool() else { return };
    let (rc, out, err) = diff(&img, &["--snap1", "1", "--snap2", "7", "--format", "json", "--verbose", "--stats"]);
    assert_eq!(rc, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["left_dev_id"], 1);
    assert_eq!(v["right_dev_id"], 7);
    let r = v["ranges"].as_array().unwrap();
    assert_eq!(r.len(), 5);
    assert_eq!(r[1]["kind"], "different");
    assert_eq!(r[1]["left_data_begin"], 103);
    assert_eq!(r[1]["right_data_begin"], 400);
    assert_eq!(v["stats"]["same_blocks"], 3);
    assert_eq!(v["stats"]["left_only_blocks"], 2);
    assert!(v["stats"]["metadata_blocks_read"].as_u64().unwrap() >= 2);
}

#[test]
fn stats_go_to_stderr_and_stdout_stays_clean() {
    let Some((_d, img)) = pool() else { return };
    let (rc, out, err) = diff(&img, &["--snap1", "7", "--snap2", "7", "--changed-only", "--stats"]);
    assert_eq!(rc, 0);
    assert!(out.contains("<diff left=\"7\" right=\"7\">\n  </diff>"), "{out}");
    assert!(err.contains("metadata_blocks_read=0 shared_subtrees_skipped=1"), "{err}");
}

#[test]
fn unknown_device_is_a_one_line_error() {
    let Some((_d, img)) = pool() else { return };
    let (rc, out, err) = diff(&img, &["--snap1", "1", "--snap2", "9"]);
    assert_ne!(rc, 0);
    assert!(out.is_empty());
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("thin device 9 not found (devices: 1, 7)"), "{err}");
}

#[test]
fn metadata_snap_without_one_held_is_refused() {
    let Some((_d, img)) = pool() else { return };
    let (rc, _, err) = diff(&img, &["-m", "--snap1", "1", "--snap2", "7"]);
    assert_ne!(rc, 0);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("no metadata snapshot is held"), "{err}");
}

fn run(args: &[&str]) -> (i32, String) {
    let o = Command::new(BIN).args(args).output().unwrap();
    (o.status.code().unwrap_or(-1), String::from_utf8(o.stderr).unwrap())
}

#[test]
fn usage_errors_exit_2_and_other_errors_1() {
    let Some((_d, img)) = pool() else { return };
    let img = img.to_str().unwrap();
    // the library's usage errors, as clap's own
    let (rc, err) = run(&["diff", "--snap1", "1", "--snap2", "7", img, img]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("diff takes --snap1 A --snap2 B METADATA"), "{err}");
    let (rc, err) = run(&["ls", "-o", "DEV,BOGUS", img]);
    assert_eq!(rc, 2, "{err}");
    assert!(err.contains("unknown field 'BOGUS'"), "{err}");
    let (rc, _) = run(&["diff", "--snap1", "1", img]);
    assert_eq!(rc, 2, "clap's usage error");
    let (rc, err) = run(&["diff", "--snap1", "1", "--snap2", "9", img]);
    assert_eq!(rc, 1, "{err}");
}

#[test]
fn control_characters_in_an_error_are_escaped() {
    let d = tempfile::tempdir().unwrap();
    let evil = d.path().join("x\nthinsend-native: received OK\x1b[2J");
    let (rc, err) = run(&["dump", evil.to_str().unwrap()]);
    assert_eq!(rc, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    assert!(!err.trim_end_matches('\n').chars().any(char::is_control), "{err:?}");
    assert!(err.contains("x\\nthinsend-native: received OK\\x1b[2J"), "{err:?}");
}
