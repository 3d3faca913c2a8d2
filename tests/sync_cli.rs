//! `sync` on the host, with a fake `ssh` (runs the quoted remote command with `sh -c`), a fake
//! remote thinsend-native (canned answers) and a fake `lvs` for the local side: the command line's
//! refusals, the plan of a pull (full, snapshot names, exact predicted bytes, what would be pruned),
//! DST pool space, a missing remote binary, and the JSON result and exit status of each.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_thinsend-native");

fn script(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.display().to_string()
}

/// A remote side with two sync snapshots of vga/d, whose `send --dry-run` plans 5000 stream bytes
/// and 3 MiB of data; a local VG vgb with no LVs whose pool has `free_pct` percent of 256 MiB free.
fn setup(dir: &Path, free_pct: &str) -> (String, String) {
    let state = r#"{"version":"V","stream_version":1,"features":{"resume":false,"compress":false,"bwlimit":false},
      "vg":"vga","lv":{"name":"d","uuid":"UD","pool":"pool","size":67108864,"state":null},"kept_base_state":null,
      "snapshots":[{"name":"d_ts_1","uuid":"U1","thin_id":2,"at":1000000,"state":null},
                   {"name":"d_ts_2","uuid":"U2","thin_id":3,"at":2000000,"state":null}],
      "pool_free_bytes":1,"modified":null,"resume_token":null}"#
        .replace('V', env!("CARGO_PKG_VERSION"))
        .replace('\n', "");
    let remote = script(
        dir,
        "remote-tsn",
        &format!(
            "echo \"$*\" >> {log}\ncase \"$1 $2\" in\n  'sync-agent state') echo '{state}' ;;\n  \
             'send --dry-run') echo '{{\"totals\":{{\"records\":3,\"data_bytes\":3145728,\"stream_bytes\":5000}}}}' ;;\n  \
             *) echo \"unexpected: $*\" >&2; exit 9 ;;\nesac",
            log = dir.join("remote.log").display()
        ),
    );
    let ssh = script(dir, "fake-ssh", "for a; do last=$a; done\nexec sh -c \"$last\"");
    let pool = format!(r#"{{"report":[{{"lv":[{{"lv_size":"268435456","data_percent":"{free_pct}"}}]}}]}}"#);
    script(
        dir,
        "lvs",
        &format!(
            "case \"$*\" in\n  *lv_size,data_percent*) echo '{pool}' ;;\n  *) echo '{{\"report\":[{{\"lv\":[]}}]}}' ;;\nesac"
        ),
    );
    (ssh, remote)
}

fn sync(dir: &Path, ssh: &str, remote: &str, args: &[&str]) -> Output {
    let path = format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default());
    Command::new(BIN)
        .env("PATH", path)
        .args(["sync", "--ssh-cmd", ssh, "--remote-bin", remote])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn a_pull_is_planned_full_with_exact_bytes_and_what_would_be_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let (ssh, remote) = setup(dir.path(), "50.00");
    let name = "nightly-snapshot";
    let out = sync(
        dir.path(),
        &ssh,
        &remote,
        &["--dry-run", "--keep", "1", "--snapshot-name", name, "--format", "json", "host:vga/d", "vgb/d"],
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    let j: serde_json::Value = serde_json::from_str(&text).unwrap();
    let v = &j["volumes"][0];
    assert_eq!((j["ok"].as_bool(), j["failed"].as_u64()), (Some(true), Some(0)));
    assert_eq!(v["mode"], "full");
    assert_eq!(v["base"], serde_json::Value::Null);
    assert_eq!((v["snapshot"].as_str(), v["dst_snapshot"].as_str()), (Some(name), Some(name)));
    // the header names the snapshot instead of the LV "d": its name's extra length
    assert_eq!(v["stream_bytes"].as_u64(), Some(5000 + name.len() as u64 - 1));
    assert_eq!(v["data_bytes"].as_u64(), Some(3145728));
    assert_eq!(v["pruned_src"], serde_json::json!(["d_ts_1", "d_ts_2"]));
    let log = std::fs::read_to_string(dir.path().join("remote.log")).unwrap();
    assert_eq!(log, "sync-agent state vga/d\nsend --dry-run --format json vga/d\n", "a dry run changes nothing");
}

#[test]
fn too_little_space_in_dsts_pool_fails_the_volume_before_anything_moves() {
    let dir = tempfile::tempdir().unwrap();
    let (ssh, remote) = setup(dir.path(), "99.00");
    let out = sync(dir.path(), &ssh, &remote, &["--dry-run", "--format", "json", "host:vga/d", "vgb/d"]);
    assert_eq!(out.status.code(), Some(1));
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((j["ok"].as_bool(), j["failed"].as_u64()), (Some(false), Some(1)));
    let e = j["volumes"][0]["error"].as_str().unwrap();
    assert!(e.starts_with("DST pool vgb/pool has 2684354 bytes free, the stream writes 3145728 bytes"), "{e}");
}

#[test]
fn a_missing_remote_binary_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let (ssh, _) = setup(dir.path(), "50.00");
    let out = sync(dir.path(), &ssh, "/nonexistent/thinsend-native", &["host:vga/d", "vgb/d"]);
    assert_eq!(out.status.code(), Some(1));
    let line = String::from_utf8_lossy(&out.stdout);
    assert!(line.starts_with("FAILED host:vga/d -> vgb/d: host: thinsend-native sync-agent failed"), "{line}");
    assert!(line.contains("--remote-bin"), "{line}");
}

#[test]
fn usage_errors_exit_2_before_any_command_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (ssh, remote) = setup(dir.path(), "50.00");
    for (args, want) in [
        (&["vga/d", "vga/d"][..], "are the same volume"),
        (&["h:vga/d", "g:vga/e"][..], "both remote"),
        (&["--keep", "weekly=0", "vga/d", "h:vgb/d"][..], "keeps nothing"),
        (&["--keep", "yearly=3", "vga/d", "h:vgb/d"][..], "unknown kind"),
        (&["-r", "vga", "h:vgb/d"][..], "must be a VG"),
        (&["vga/a", "vga/b", "h:vgb/d"][..], "one SRC and one DST"),
        (&["--exclude", "x", "vga/d", "h:vgb/d"][..], "--recursive"),
    ] {
        let out = sync(dir.path(), &ssh, &remote, args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert!(!dir.path().join("remote.log").exists(), "nothing ran on the remote side");
}
