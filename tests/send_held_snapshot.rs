//! A send planned from a held metadata snapshot (`-m`, as the LVM form always does): the kernel
//! clears the space-map roots of the snapshot's superblock copy, so the data-area bound must come
//! from the live superblock (testdata/kernel/snapchain holds a metadata snapshot).

use std::io::Read;
use std::path::PathBuf;
use std::process::Command;

#[test]
fn a_send_from_a_held_metadata_snapshot_is_planned() {
    let gz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/kernel/snapchain.tmeta.gz");
    if !gz.exists() {
        eprintln!("NOTICE: {} not found: test skipped", gz.display());
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("tmeta");
    let mut v = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()).read_to_end(&mut v).unwrap();
    std::fs::write(&meta, v).unwrap();
    for base in [None, Some("1")] {
        let mut c = Command::new(env!("CARGO_BIN_EXE_thinsend-native"));
        c.args(["send", "--metadata"]).arg(&meta).args(["-m", "--thin-id", "4", "--size", "50331648", "--dry-run"]);
        if let Some(b) = base {
            c.args(["--base-id", b]);
        }
        let out = c.output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "base {base:?}: {stderr}");
        assert!(stdout.contains("DATA") && stdout.contains("stream bytes"), "base {base:?}: {stdout}");
    }
}
