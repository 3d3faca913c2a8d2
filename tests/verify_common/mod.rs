//! Helpers for the verify/heal tests: a thin source (a pool made with thin_restore), a replica
//! received from it and then damaged (scattered blocks changed, ranges zeroed, the tail cut), the
//! differing ranges worked out by comparing bytes (the oracle), and a fake `ssh` that runs the
//! remote command locally.
#![allow(dead_code)]

#[path = "../stream_common/mod.rs"]
pub mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub use common::*;

/// Thin blocks of the test volume (64 MiB of 64 KiB blocks).
pub const BLOCKS: u64 = 1024;
pub const SIZE: u64 = BLOCKS * BS;

/// `(offset, length)` ranges, merged where adjacent.
pub type Ranges = Vec<(u64, u64)>;

/// A pool with device 1 (about 70% mapped) and its snapshot 2 (some blocks rewritten).
pub fn source(dir: &Path) -> Pool {
    build(dir, chain(13, BLOCKS, 2))
}

/// `--metadata ... --thin-id ID --size SIZE` for `verify` and `heal`.
pub fn src_args(pool: &Pool, id: u64) -> Vec<String> {
    let mut v: Vec<String> = vec!["--metadata".into(), s(&pool.meta).into(), "--data".into(), s(&pool.data).into()];
    v.extend(["--thin-id".into(), id.to_string(), "--size".into(), SIZE.to_string()]);
    v
}

/// Runs `thinsend-native CMD SRC_ARGS --to TO EXTRA`.
pub fn cmd(what: &str, pool: &Pool, to: &str, extra: &[&str]) -> Output {
    let mut a = vec![what.to_string()];
    a.extend(src_args(pool, 1));
    a.extend(["--to".into(), to.into()]);
    a.extend(extra.iter().map(|x| x.to_string()));
    run(&refs(&a), b"")
}

/// Changes 100 scattered blocks (a few random bytes each), zeroes 10 ranges of 1-3 blocks, all
/// below block `keep`, through `f` (a file or a block device).
pub fn damage(f: &std::fs::File, keep: u64, seed: u64) {
    let mut rng = Rng::new(seed);
    let mut changed = std::collections::BTreeSet::new();
    while changed.len() < 100 {
        changed.insert(rng.below(keep));
    }
    for b in &changed {
        let noise: Vec<u8> = (0..64).map(|_| rng.next() as u8 | 1).collect();
        f.write_all_at(&noise, b * BS + rng.below(BS - 64)).unwrap();
    }
    for _ in 0..10 {
        let (start, len) = (rng.below(keep - 3), 1 + rng.below(3));
        f.write_all_at(&vec![0u8; (len * BS) as usize], start * BS).unwrap();
    }
}

/// The ranges where `got` differs from `want`, per 64 KiB block, plus the size difference.
pub fn oracle(want: &[u8], got: &[u8]) -> Ranges {
    let mut r: Ranges = Vec::new();
    let mut add = |o: u64, l: u64| match r.last_mut() {
        Some(last) if last.0 + last.1 == o => last.1 += l,
        _ => r.push((o, l)),
    };
    let common = want.len().min(got.len());
    for (i, (a, b)) in want[..common].chunks(BS as usize).zip(got[..common].chunks(BS as usize)).enumerate() {
        if a != b {
            add(i as u64 * BS, a.len() as u64);
        }
    }
    if want.len() != got.len() {
        add(common as u64, (want.len().max(got.len()) - common) as u64);
    }
    r
}

/// The ranges of a `--format json` report.
pub fn ranges(json: &serde_json::Value) -> Ranges {
    json["ranges"]
        .as_array()
        .expect("ranges")
        .iter()
        .map(|x| (x["offset"].as_u64().unwrap(), x["length"].as_u64().unwrap()))
        .collect()
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} / {}", String::from_utf8_lossy(&o.stdout), stderr(o)))
}

/// A fake `ssh` in `dir`: skips its options up to `--` and the host, runs the command with sh.
pub fn fake_ssh(dir: &Path) -> PathBuf {
    let p = dir.join("fake-ssh");
    std::fs::write(&p, "#!/bin/sh\nwhile [ \"$1\" != -- ]; do shift; done\nshift 2\nexec sh -c \"$1\"\n").unwrap();
    Command::new("chmod").arg("+x").arg(&p).status().unwrap();
    p
}

/// Thin block -> data block of `dev` over `blocks` blocks (None: unmapped).
pub fn block_map(dev: &Dev, blocks: u64) -> Vec<Option<u64>> {
    let mut m = vec![None; blocks as usize];
    for &(o, d, _) in &dev.map {
        if o < blocks {
            m[o as usize] = Some(d);
        }
    }
    m
}

fn expected_block(map: &[Option<u64>], i: usize) -> Vec<u8> {
    match map.get(i).copied().flatten() {
        Some(d) => block_content(d),
        None => vec![0u8; BS as usize],
    }
}

/// The ranges where the file at `got` differs from the volume `map` describes, block by block,
/// without holding either in memory, plus the size difference.
pub fn oracle_stream(map: &[Option<u64>], got: &Path) -> Ranges {
    let f = std::fs::File::open(got).unwrap();
    let len = f.metadata().unwrap().len().max(crate_blockdev_len(got));
    let size = map.len() as u64 * BS;
    let common = size.min(len);
    let mut r: Ranges = Vec::new();
    let mut buf = vec![0u8; BS as usize];
    for i in 0..common.div_ceil(BS) {
        let n = BS.min(common - i * BS) as usize;
        f.read_exact_at(&mut buf[..n], i * BS).unwrap();
        if buf[..n] != expected_block(map, i as usize)[..n] {
            match r.last_mut() {
                Some(last) if last.0 + last.1 == i * BS => last.1 += n as u64,
                _ => r.push((i * BS, n as u64)),
            }
        }
    }
    if size != len {
        r.push((common, size.max(len) - common));
    }
    r
}

fn crate_blockdev_len(p: &Path) -> u64 {
    use std::io::{Seek, SeekFrom};
    std::fs::File::open(p).and_then(|mut f| f.seek(SeekFrom::End(0))).unwrap_or(0)
}

/// Writes the volume `map` describes to `path`, block by block.
pub fn write_image(map: &[Option<u64>], path: &Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..map.len() {
        std::io::Write::write_all(&mut f, &expected_block(map, i)).unwrap();
    }
}

/// `sha256sum` of a file.
pub fn sha256(path: &Path) -> String {
    let o = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&o.stdout).split_whitespace().next().unwrap_or("").to_string()
}
