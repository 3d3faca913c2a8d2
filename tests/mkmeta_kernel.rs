//! mkmeta and the strict checker against metadata a real kernel wrote (testdata/kernel): the checker
//! finds nothing wrong in any kernel image, and restoring the kernel pools' thin_dump XML gives
//! images that dump back to the same XML.

mod mkmeta_support;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::path::{Path, PathBuf};

use mkmeta_support::*;
use thinsend::btree::node::read_node;
use thinsend::pool::Pool;
use thinsend::superblock::Source;

fn kernel_pools() -> Vec<(String, PathBuf)> {
    let dir = repo().join("testdata/kernel");
    let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p.file_name()?.to_str()?.strip_suffix(".tmeta.gz")?.to_string();
            Some((name, p))
        })
        .collect();
    v.sort();
    assert!(v.len() >= 5, "testdata/kernel has too few images");
    v
}

fn unpack(dir: &Path, name: &str, gz: &Path) -> PathBuf {
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(gz).unwrap()).read_to_end(&mut bytes).unwrap();
    let img = dir.join(format!("{name}.img"));
    std::fs::write(&img, bytes).unwrap();
    img
}

#[test]
fn strict_check_accepts_every_kernel_written_image() {
    let dir = tempfile::tempdir().unwrap();
    for (name, gz) in kernel_pools() {
        let img = unpack(dir.path(), &name, &gz);
        strict_check(&img, &format!("kernel image {name}"));
    }
}

/// Per device: the leaf blocks of its tree (in key order).
fn device_leaves(img: &Path, source: Source) -> BTreeMap<u64, Vec<u64>> {
    fn walk(pool: &Pool, b: u64, root: bool, out: &mut Vec<u64>) {
        let n = read_node(&pool.dev, b, 8, root).unwrap();
        if n.is_leaf {
            out.push(b);
        } else {
            (0..n.len()).for_each(|i| walk(pool, n.child(i), false, out));
        }
    }
    let pool = Pool::open(img, source).unwrap();
    pool.devices
        .iter()
        .map(|d| {
            let mut v = Vec::new();
            walk(&pool, d.root, true, &mut v);
            (d.id, v)
        })
        .collect()
}

/// (device, leaves) for each device, and ((device a, device b), leaves they share) for each pair.
type Sharing = (Vec<(u64, usize)>, Vec<((u64, u64), usize)>);

/// Leaves per device and leaves shared by each pair of devices: the shape copy-on-write leaves.
fn sharing(img: &Path, source: Source) -> Sharing {
    let leaves = device_leaves(img, source);
    let counts = leaves.iter().map(|(id, l)| (*id, l.len())).collect();
    let mut pairs = Vec::new();
    for (a, la) in &leaves {
        for (b, lb) in leaves.range(a + 1..) {
            let sa: HashSet<&u64> = la.iter().collect();
            pairs.push(((*a, *b), lb.iter().filter(|x| sa.contains(x)).count()));
        }
    }
    (counts, pairs)
}

#[test]
fn replaying_a_kernel_scenario_gives_the_kernels_pool() {
    let dir = tempfile::tempdir().unwrap();
    let kernel = unpack(dir.path(), "manymap", &repo().join("testdata/kernel/manymap.tmeta.gz"));
    let text = std::fs::read_to_string(spec_file("kernel_manymap.spec")).unwrap();
    let (ours, _) = generate(dir.path(), "ours", &text, None);
    assert_valid(&ours, "kernel_manymap.spec");
    // The same mappings, data blocks, times and details, live and in the held snapshot.
    for (snap, file) in [(false, "manymap.thin_dump.xml"), (true, "manymap.thin_dump-m.xml")] {
        let want = std::fs::read_to_string(repo().join("testdata/kernel").join(file)).unwrap();
        let got = thin_dump(&ours, snap);
        assert!(got == want, "{file}: {}", first_difference(&want, &got));
    }
    // The same tree shapes and the same leaves shared between devices (13 leaves per device,
    // 7 to 13 shared per pair), and as many metadata blocks in use.
    for source in [Source::Live, Source::Snapshot(None)] {
        assert_eq!(sharing(&ours, source), sharing(&kernel, source), "{source:?}");
    }
    let (k, o) = (thinsend::check::check_path(&kernel).unwrap(), thinsend::check::check_path(&ours).unwrap());
    assert_eq!(o.stats, k.stats);
}

#[test]
fn restore_round_trips_kernel_thin_dump_xml() {
    let dir = tempfile::tempdir().unwrap();
    for (name, _) in kernel_pools() {
        let xml_path = repo().join(format!("testdata/kernel/{name}.thin_dump.xml"));
        let xml = std::fs::read_to_string(&xml_path).unwrap();
        let img = dir.path().join(format!("{name}.img"));
        mkmeta::restore::restore(xml.as_bytes(), &name, &img, None).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_valid(&img, &format!("restore of kernel pool {name}"));
        let again = thin_dump(&img, false);
        assert!(again == xml, "{name}: {}", first_difference(&xml, &again));
    }
}
