//! Helpers shared by the mkmeta tests: run Debian's tools and the project's binaries on an image,
//! and the one assertion every image must pass.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Once;

use mkmeta::rng::Rng;
use thinsend::superblock::{self, SUPERBLOCK_LOCATION};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn spec_file(name: &str) -> PathBuf {
    repo().join("testdata/specs").join(name)
}

/// Runs an installed tool (thin-provisioning-tools 0.9.0), failing clearly if it is missing.
pub fn tool(name: &str, args: &[&str]) -> Output {
    Command::new(name).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run {name} ({e}): install thin-provisioning-tools (scripts/install-deps.sh)")
    })
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

pub fn native() -> &'static str {
    env!("CARGO_BIN_EXE_thinsend-native")
}

/// The mkmeta binary, built next to thinsend-native (same profile) on first use.
pub fn mkmeta_bin() -> PathBuf {
    static BUILD: Once = Once::new();
    let path = Path::new(native()).with_file_name("mkmeta");
    BUILD.call_once(|| {
        let release = Path::new(native()).parent().and_then(|p| p.file_name()).is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args(["build", "--quiet", "-p", "mkmeta", "--bin", "mkmeta"]).current_dir(repo());
        if release {
            cmd.arg("--release");
        }
        let out = cmd.output().expect("run cargo build -p mkmeta");
        assert!(out.status.success(), "cargo build -p mkmeta failed:\n{}", text(&out));
    });
    assert!(path.exists(), "mkmeta binary not found at {}", path.display());
    path
}

pub fn thin_check(img: &Path, ctx: &str) {
    let o = tool("thin_check", &[img.to_str().unwrap()]);
    assert!(o.status.success(), "{ctx}: Debian thin_check rejects {}:\n{}", img.display(), text(&o));
}

pub fn strict_check(img: &Path, ctx: &str) {
    let r = thinsend::check::check_path(img).unwrap();
    assert!(r.is_clean(), "{ctx}: strict check of {} found:\n{}", img.display(), r.lines().join("\n"));
}

pub fn thin_dump(img: &Path, snap: bool) -> String {
    let mut args = vec![img.to_str().unwrap()];
    if snap {
        args.insert(0, "-m");
    }
    let o = tool("thin_dump", &args);
    assert!(o.status.success(), "thin_dump {args:?}:\n{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

pub fn native_dump(img: &Path, snap: bool) -> String {
    let mut cmd = Command::new(native());
    cmd.arg("dump");
    if snap {
        cmd.arg("-m");
    }
    let o = cmd.arg(img).output().unwrap();
    assert!(o.status.success(), "thinsend-native dump:\n{}", text(&o));
    String::from_utf8(o.stdout).unwrap()
}

/// The first line where two texts differ, for messages.
pub fn first_difference(a: &str, b: &str) -> String {
    for (i, (x, y)) in a.lines().zip(b.lines()).enumerate() {
        if x != y {
            return format!("line {}:\n  {x}\n  {y}", i + 1);
        }
    }
    format!("lengths differ: {} vs {} lines", a.lines().count(), b.lines().count())
}

pub fn held_root(img: &Path) -> u64 {
    let dev = thinsend::block::MetadataDev::open(img).unwrap();
    superblock::read_at(&dev, SUPERBLOCK_LOCATION).unwrap().held_root
}

/// What every image must pass: Debian's thin_check, the strict check, and `thinsend-native dump`
/// identical to thin_dump (also of the metadata snapshot when one is held).
pub fn assert_valid(img: &Path, ctx: &str) {
    thin_check(img, ctx);
    strict_check(img, ctx);
    let mut modes = vec![false];
    if held_root(img) != 0 {
        modes.push(true);
    }
    for snap in modes {
        let (theirs, ours) = (thin_dump(img, snap), native_dump(img, snap));
        assert!(
            theirs == ours,
            "{ctx}: dump{} differs from thin_dump: {}",
            if snap { " -m" } else { "" },
            first_difference(&theirs, &ours)
        );
    }
}

/// Generates `spec` (text) into `dir/name.img`.
pub fn generate(dir: &Path, name: &str, spec: &str, seed: Option<u64>) -> (PathBuf, mkmeta::generate::Outcome) {
    let img = dir.join(format!("{name}.img"));
    let opts = mkmeta::generate::Options { seed, ..Default::default() };
    let o = mkmeta::generate::generate_str(spec, name, &img, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    (img, o)
}

/// A random scenario of every operation, reproducible from its seed.
pub fn random_spec(seed: u64, ops: usize) -> String {
    let mut rng = Rng::new(seed);
    let mut s = format!("pool data_block_size=128 nr_data_blocks=250000 seed={seed}\n");
    let mut devs: Vec<u64> = Vec::new();
    let mut next_id = 1;
    let mut held = false;
    for _ in 0..ops {
        let pick = |rng: &mut Rng, devs: &Vec<u64>| devs[rng.below(devs.len() as u64) as usize];
        match rng.below(12) {
            _ if devs.is_empty() => {
                writeln!(s, "create {next_id}").unwrap();
                devs.push(next_id);
                next_id += 1;
            }
            0 if devs.len() < 6 => {
                writeln!(s, "create {next_id}").unwrap();
                devs.push(next_id);
                next_id += 1;
            }
            1 | 2 if devs.len() < 8 => {
                writeln!(s, "snap {next_id} of {}", pick(&mut rng, &devs)).unwrap();
                devs.push(next_id);
                next_id += 1;
            }
            3 | 4 => {
                let (start, len) = (rng.below(60_000), rng.between(1, 3000));
                writeln!(s, "write {} {start}+{len}", pick(&mut rng, &devs)).unwrap();
            }
            5 | 6 => {
                let count = rng.between(1, 3000);
                let run = rng.between(1, 64);
                writeln!(s, "write {} random count={count} run=1..{run} within=0+70000", pick(&mut rng, &devs))
                    .unwrap();
            }
            7 => {
                let (start, len) = (rng.below(60_000), rng.between(1, 20_000));
                writeln!(s, "discard {} {start}+{len}", pick(&mut rng, &devs)).unwrap();
            }
            8 => {
                let count = rng.between(1, 5000);
                writeln!(s, "discard {} random count={count} run=1..100 within=0+70000", pick(&mut rng, &devs))
                    .unwrap();
            }
            9 if devs.len() > 1 => {
                let i = rng.below(devs.len() as u64) as usize;
                writeln!(s, "delete {}", devs.remove(i)).unwrap();
            }
            10 => {
                writeln!(s, "{}", if held { "release_metadata_snap" } else { "reserve_metadata_snap" }).unwrap();
                held = !held;
            }
            _ => {
                if rng.chance(50) {
                    writeln!(s, "commit").unwrap();
                } else {
                    writeln!(s, "transaction {}", rng.below(1000)).unwrap();
                }
            }
        }
    }
    s
}
