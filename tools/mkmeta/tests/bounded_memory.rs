//! mkmeta's memory does not grow with the pool: a 50M-mapping pool (an origin, its snapshot, 100
//! single blocks of the origin rewritten: ~1 GiB of metadata, which mkmeta once held whole in
//! memory) is built with a peak RSS far below the image's size, and the image checks clean. The
//! only test in this binary, so the process's peak is mkmeta's (the 10^9-mapping pool is
//! `HUGE=1 bench/meta-cold.sh`).

use std::path::Path;

/// Mappings of the origin (and of its snapshot).
const N: u64 = 50_000_000;

/// Peak resident memory of this process (VmHWM: anonymous memory and the pages of mapped files
/// it touched), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_50m_mapping_pool_is_built_in_bounded_memory() {
    const LIMIT_MIB: u64 = 160;
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("big.img");
    let spec = format!(
        "pool data_block_size=128 nr_data_blocks={} seed=1\ncreate 1\nwrite 1 0+{N}\nsnap 2 of 1\n\
         write 1 random count=100 run=1..1 within=0+{N}\n",
        N + N / 50 + 1000
    );
    let before = peak_rss_kib();
    let o = mkmeta::generate::generate_str(&spec, "big.spec", &img, &Default::default()).unwrap();
    let peak_mib = peak_rss_kib() / 1024;
    eprintln!("peak RSS {peak_mib} MiB");
    let image_mib = std::fs::metadata(&img).unwrap().len() >> 20;
    assert_eq!(o.mappings, 2 * N);
    assert!(image_mib > 900, "image {image_mib} MiB");
    assert!(
        peak_mib < LIMIT_MIB,
        "peak RSS {peak_mib} MiB (before the build {} MiB) for an image of {image_mib} MiB: over {LIMIT_MIB} MiB",
        before / 1024
    );
    clean(&img);
}

fn clean(img: &Path) {
    let r = thinsend::check::check_path(img).unwrap();
    assert!(r.findings.is_empty(), "findings:\n{}", r.lines().join("\n"));
    assert_eq!(r.stats.mappings, 2 * N);
}
