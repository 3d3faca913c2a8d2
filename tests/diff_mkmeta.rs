//! `diff` against thin_delta 0.9.0 on 500 randomized mkmeta pools per run: snapshot chains with
//! shared subtrees, unrelated devices, a device against itself, empty devices, discards, deletes and
//! diverged metadata snapshots. Seeded: `DIFF_TEST_SEED=N` reruns from N; the seed and spec are printed
//! on failure.

mod mkmeta_support;

use std::process::Command;

use mkmeta::rng::Rng;
use mkmeta_support::random_spec;
use thinsend::diff::{self, output, Options};
use thinsend::pool::Pool;
use thinsend::superblock::Source;

fn ours(img: &std::path::Path, a: u64, b: u64, m: bool, verbose: bool, changed_only: bool) -> Result<Vec<u8>, String> {
    let pool = Pool::open(img, if m { Source::Snapshot(None) } else { Source::Live }).map_err(|e| e.to_string())?;
    let (l, r) = (pool.device(a).map_err(|e| e.to_string())?, pool.device(b).map_err(|e| e.to_string())?);
    let it = diff::delta(&pool, l, r, Options { changed_only, ..Default::default() }).map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    output::write(&pool, &output::Header { left: a, right: b }, it, output::Format::Xml, verbose, &mut out)
        .map_err(|e| e.to_string())?;
    Ok(out)
}

fn thin_delta(img: &std::path::Path, a: u64, b: u64, m: bool, verbose: bool) -> Result<Vec<u8>, String> {
    let mut c = Command::new("thin_delta");
    if m {
        c.arg("-m");
    }
    if verbose {
        c.arg("--verbose");
    }
    let o = c.args(["--snap1", &a.to_string(), "--snap2", &b.to_string()]).arg(img).output().unwrap();
    if o.status.success() {
        Ok(o.stdout)
    } else {
        Err(String::from_utf8_lossy(&o.stderr).into_owned())
    }
}

fn ids(img: &std::path::Path, m: bool) -> Option<Vec<u64>> {
    let pool = Pool::open(img, if m { Source::Snapshot(None) } else { Source::Live }).ok()?;
    Some(pool.devices.iter().map(|d| d.id).collect())
}

#[test]
fn diff_equals_thin_delta_on_500_random_mkmeta_pools() {
    if Command::new("thin_delta").arg("-V").output().is_err() {
        assert!(std::env::var_os("CI").is_none(), "thin_delta is required in CI");
        return;
    }
    let base: u64 = std::env::var("DIFF_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000);
    let n: u64 = std::env::var("DIFF_TEST_POOLS").ok().and_then(|s| s.parse().ok()).unwrap_or(500);
    let dir = tempfile::tempdir().unwrap();
    let compared = std::sync::atomic::AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..2u64 {
            let (dir, compared) = (dir.path(), &compared);
            s.spawn(move || {
                for seed in (base..base + n).filter(|s| s % 2 == t) {
                    let spec = random_spec(seed, 14);
                    let ctx = format!("seed {seed} (rerun: DIFF_TEST_SEED={seed} DIFF_TEST_POOLS=1)\n{spec}");
                    let img = dir.join(format!("p{t}.img"));
                    if let Err(e) = mkmeta::generate::generate_str(&spec, "random", &img, &Default::default()) {
                        panic!("{ctx}\ngenerate failed: {e}");
                    }
                    let mut rng = Rng::new(seed ^ 0xd1ff);
                    for m in [false, true] {
                        let Some(ids) = ids(&img, m) else { continue };
                        if ids.is_empty() {
                            continue;
                        }
                        let pick = |rng: &mut Rng| ids[rng.below(ids.len() as u64) as usize];
                        let mut pairs = vec![(pick(&mut rng), pick(&mut rng)), (pick(&mut rng), pick(&mut rng))];
                        if rng.below(4) == 0 {
                            let a = pick(&mut rng);
                            pairs.push((a, a));
                        }
                        for (a, b) in pairs {
                            let mut simple = Vec::new();
                            for verbose in [false, true] {
                                let want = thin_delta(&img, a, b, m, verbose)
                                    .unwrap_or_else(|e| panic!("{ctx}\nthin_delta: {e}"));
                                let got =
                                    ours(&img, a, b, m, verbose, false).unwrap_or_else(|e| panic!("{ctx}\nours: {e}"));
                                assert!(
                                    got == want,
                                    "{ctx}\ndiff {a} {b} -m={m} verbose={verbose}:\n--- ours\n{}\n--- thin_delta\n{}",
                                    String::from_utf8_lossy(&got),
                                    String::from_utf8_lossy(&want)
                                );
                                if !verbose {
                                    simple = want;
                                }
                            }
                            let simple = String::from_utf8(simple).unwrap();
                            let want: String =
                                simple.lines().filter(|l| !l.contains("<same ")).map(|l| format!("{l}\n")).collect();
                            let got = String::from_utf8(ours(&img, a, b, m, false, true).unwrap()).unwrap();
                            assert_eq!(got, want, "{ctx}\n--changed-only {a} {b} -m={m}");
                            compared.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            });
        }
    });
    eprintln!("compared {} device pairs on {n} pools", compared.into_inner());
}
