//! Round trips on pools a real kernel wrote (testdata/kernel, with their data devices): every live
//! thin LV sent in full, and every ordered pair of them sent as an incremental onto the first, gives
//! an image whose sha256 is the one the guest computed by reading the LV.

#[path = "stream_common/mod.rs"]
mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata/kernel")
}

fn gunzip(from: &Path, to: &Path) {
    let mut d = flate2::read::GzDecoder::new(std::fs::File::open(from).unwrap());
    let mut v = Vec::new();
    d.read_to_end(&mut v).unwrap();
    std::fs::write(to, v).unwrap();
}

fn sha256(p: &Path) -> String {
    let out = Command::new("sha256sum").arg(p).output().expect("sha256sum");
    String::from_utf8_lossy(&out.stdout).split_whitespace().next().unwrap_or("").to_string()
}

/// (sha256, thin id, name, size) of every live LV of `pool`.
fn lvs(pool: &str) -> Vec<(String, u64, String, u64)> {
    std::fs::read_to_string(testdata().join(format!("{pool}.sha256")))
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[0].to_string(), f[1].parse().unwrap(), f[2].to_string(), f[3].parse().unwrap())
        })
        .collect()
}

fn kernel_pool_round_trips(pool: &str) {
    if !testdata().join(format!("{pool}.tdata.gz")).exists() {
        eprintln!("NOTICE: testdata/kernel/{pool} not found: test skipped");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("tmeta");
    let data = dir.path().join("tdata");
    gunzip(&testdata().join(format!("{pool}.tmeta.gz")), &meta);
    gunzip(&testdata().join(format!("{pool}.tdata.gz")), &data);
    let send = |id: u64, base: Option<u64>, size: u64| {
        let mut a = vec![
            "send".to_string(),
            "--metadata".into(),
            s(&meta).into(),
            "--data".into(),
            s(&data).into(),
            "--thin-id".into(),
            id.to_string(),
            "--size".into(),
            size.to_string(),
            "--quiet".into(),
        ];
        if let Some(b) = base {
            // Every pair, backward ones too: --force allows a base newer than the device.
            a.extend(["--base-id".to_string(), b.to_string(), "--force".to_string()]);
        }
        a
    };
    let lvs = lvs(pool);
    for (sum, id, name, size) in &lvs {
        let t = dir.path().join(format!("{name}.full"));
        let (snd, rcv) = pipe(&refs(&send(*id, None, *size)), &["recv", "--to", s(&t), "--quiet"]);
        assert!(snd.status.success() && rcv.status.success(), "{pool}/{name}: {} {}", stderr(&snd), stderr(&rcv));
        assert_eq!(&sha256(&t), sum, "{pool}/{name} (thin {id}): full send gives another image");
    }
    for (_, a_id, a_name, _) in &lvs {
        for (b_sum, b_id, b_name, b_size) in &lvs {
            if a_id == b_id {
                continue;
            }
            let t = dir.path().join(format!("{a_name}-{b_name}.img"));
            std::fs::copy(dir.path().join(format!("{a_name}.full")), &t).unwrap();
            // fs::copy does not carry the state xattr: the target is at A by construction.
            let (snd, rcv) =
                pipe(&refs(&send(*b_id, Some(*a_id), *b_size)), &["recv", "--to", s(&t), "--quiet", "--force"]);
            assert!(
                snd.status.success() && rcv.status.success(),
                "{pool} {a_name}->{b_name}: {} {}",
                stderr(&snd),
                stderr(&rcv)
            );
            assert_eq!(&sha256(&t), b_sum, "{pool}: {a_name} + incremental to {b_name} gives another image");
        }
    }
}

#[test]
fn snapchain_lvs_round_trip_full_and_incremental() {
    kernel_pool_round_trips("snapchain");
}

#[test]
fn bigchunk_lvs_round_trip_full_and_incremental() {
    kernel_pool_round_trips("bigchunk");
}
