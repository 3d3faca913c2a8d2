//! `diff` against Debian's thin_delta 0.9.0 on randomized pools (seeded; the seed is printed on
//! failure). Pools come from thin_restore (no shared subtrees) and, where present, from the
//! kernel-written images in testdata/kernel.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_thinsend-native");

use mkmeta::rng::Rng;

fn have_oracle() -> bool {
    let ok = Command::new("thin_delta").arg("-V").output().is_ok_and(|o| o.status.success());
    if !ok && std::env::var_os("CI").is_some() {
        panic!("thin_delta (Debian thin-provisioning-tools) is required in CI but not installed");
    }
    if !ok {
        eprintln!("skipping: thin_delta not installed");
    }
    ok
}

/// A base device and variants of it: block -> data block. Variants keep some of the base's mappings,
/// remap some (different), drop some (left_only) and add some (right_only), in runs.
fn random_pool(rng: &mut Rng) -> (String, Vec<u64>) {
    let nr_data = 2_000_000u64;
    let mut next_data = 1 + rng.below(1000);
    let mut alloc = |rng: &mut Rng, n: u64| {
        let d = next_data;
        next_data += n + rng.below(3);
        d
    };
    let size = [0u64, 1, 10, 300, 3000, 40_000][rng.below(6) as usize];
    let mut base: Vec<(u64, u64)> = Vec::new();
    let mut k = rng.below(5);
    while (base.len() as u64) < size {
        let run = 1 + rng.below(20);
        let d = alloc(rng, run);
        for i in 0..run {
            base.push((k + i, d + i));
        }
        k += run + rng.below(4) * rng.below(3);
    }
    let mut devs: Vec<Vec<(u64, u64)>> = vec![base.clone()];
    for _ in 0..(1 + rng.below(4)) {
        let from = devs[rng.below(devs.len() as u64) as usize].clone();
        let mut m: std::collections::BTreeMap<u64, u64> = from.into_iter().collect();
        let edits = rng.below(8);
        let span = m.keys().last().copied().unwrap_or(100) + 50;
        for _ in 0..edits {
            let at = rng.below(span);
            let long = rng.below(4) == 0;
            let len = 1 + rng.below(if long { 600 } else { 20 });
            match rng.below(3) {
                0 => {
                    let d = alloc(rng, len);
                    for i in 0..len {
                        m.insert(at + i, d + i);
                    }
                }
                1 => {
                    for i in 0..len {
                        m.remove(&(at + i));
                    }
                }
                _ => {
                    for i in 0..len {
                        if m.contains_key(&(at + i)) {
                            let d = alloc(rng, 1);
                            m.insert(at + i, d);
                        }
                    }
                }
            }
        }
        devs.push(m.into_iter().collect());
    }
    let mut xml = String::new();
    let bs = [128u32, 256, 1024][rng.below(3) as usize];
    writeln!(
        xml,
        "<superblock uuid=\"\" time=\"3\" transaction=\"7\" data_block_size=\"{bs}\" nr_data_blocks=\"{nr_data}\">"
    )
    .unwrap();
    let mut ids = Vec::new();
    for (i, d) in devs.iter().enumerate() {
        let id = ids.last().map_or(rng.below(3), |l: &u64| l + 1 + rng.below(3));
        let _ = i;
        ids.push(id);
        writeln!(
            xml,
            "  <device dev_id=\"{id}\" mapped_blocks=\"{}\" transaction=\"0\" creation_time=\"0\" snap_time=\"1\">",
            d.len()
        )
        .unwrap();
        for (k, v) in d {
            writeln!(xml, "    <single_mapping origin_block=\"{k}\" data_block=\"{v}\" time=\"{}\"/>", k % 3).unwrap();
        }
        writeln!(xml, "  </device>").unwrap();
    }
    xml.push_str("</superblock>\n");
    (xml, ids)
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let o = cmd.output().expect("run");
    assert!(o.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&o.stderr));
    o.stdout
}

fn compare(img: &Path, a: u64, b: u64, m: bool, what: &str) {
    for verbose in [false, true] {
        let mut ours = Command::new(BIN);
        ours.arg("diff");
        let mut theirs = Command::new("thin_delta");
        for c in [&mut ours, &mut theirs] {
            if m {
                c.arg("-m");
            }
            if verbose {
                c.arg("--verbose");
            }
            c.args(["--snap1", &a.to_string(), "--snap2", &b.to_string()]).arg(img);
        }
        let (o, t) = (run(&mut ours), run(&mut theirs));
        assert!(o == t, "{what}: diff {a} {b} (verbose={verbose}, -m={m}) differs from thin_delta:\n--- ours\n{}\n--- thin_delta\n{}",
            String::from_utf8_lossy(&o), String::from_utf8_lossy(&t));
    }
    // --changed-only is the simple output without the `same` ranges.
    let t = String::from_utf8(run(Command::new("thin_delta")
        .args(if m { vec!["-m"] } else { vec![] })
        .args(["--snap1", &a.to_string(), "--snap2", &b.to_string()])
        .arg(img)))
    .unwrap();
    let expect: String = t.lines().filter(|l| !l.contains("<same ")).map(|l| format!("{l}\n")).collect();
    let o = String::from_utf8(run(Command::new(BIN)
        .arg("diff")
        .args(if m { vec!["-m"] } else { vec![] })
        .args(["--changed-only", "--snap1", &a.to_string(), "--snap2", &b.to_string()])
        .arg(img)))
    .unwrap();
    assert_eq!(o, expect, "{what}: --changed-only {a} {b}");
}

#[test]
fn diff_equals_thin_delta_on_restored_pools() {
    if !have_oracle() {
        return;
    }
    let base_seed = std::env::var("THINSEND_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_0001u64);
    let dir = tempfile::tempdir().unwrap();
    let n = 40;
    for i in 0..n {
        let seed = base_seed + i;
        let mut rng = Rng::new(seed);
        let (xml, ids) = random_pool(&mut rng);
        let xp = dir.path().join("p.xml");
        let img = dir.path().join("p.img");
        std::fs::write(&xp, xml).unwrap();
        std::fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
        run(Command::new("thin_restore").arg("-i").arg(&xp).arg("-o").arg(&img));
        for _ in 0..3 {
            let a = ids[rng.below(ids.len() as u64) as usize];
            let b = ids[rng.below(ids.len() as u64) as usize];
            compare(&img, a, b, false, &format!("seed {seed} (THINSEND_SEED={seed} reproduces)"));
        }
    }
}

#[test]
fn diff_equals_thin_delta_on_kernel_images() {
    if !have_oracle() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/kernel");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut images = 0;
    for e in entries {
        let p = e.unwrap().path();
        if !p.to_string_lossy().ends_with(".tmeta.gz") {
            continue;
        }
        let img = tmp.path().join("k.img");
        let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap());
        std::io::copy(&mut gz, &mut std::fs::File::create(&img).unwrap()).unwrap();
        images += 1;
        for m in [false, true] {
            let mut cmd = Command::new(BIN);
            cmd.args(["dump", "--skip-mappings", "--format", "json"]);
            if m {
                cmd.arg("-m");
            }
            let o = cmd.arg(&img).output().unwrap();
            if !o.status.success() {
                assert!(m, "{}: dump failed: {}", p.display(), String::from_utf8_lossy(&o.stderr));
                continue; // no held snapshot in this image
            }
            let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
            let ids: Vec<u64> =
                v["devices"].as_array().unwrap().iter().map(|d| d["dev_id"].as_u64().unwrap()).collect();
            // Every pair on small pools; on pools with dozens of devices, neighbours and a sample.
            let mut pairs: Vec<(u64, u64)> = Vec::new();
            if ids.len() <= 12 {
                pairs.extend(ids.iter().flat_map(|&a| ids.iter().map(move |&b| (a, b))));
            } else {
                pairs.extend(ids.windows(2).take(20).map(|w| (w[0], w[1])));
                pairs.extend((0..20).map(|i| (ids[i * 7 % ids.len()], ids[(i * 13 + 5) % ids.len()])));
            }
            for (a, b) in pairs {
                compare(&img, a, b, m, &p.display().to_string());
            }
        }
    }
    eprintln!("compared {images} kernel images");
}
