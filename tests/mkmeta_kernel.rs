//! mkmeta and the strict checker against metadata a real kernel wrote (testdata/kernel): the checker
//! finds nothing wrong in any kernel image, and restoring the kernel pools' thin_dump XML gives
//! images that dump back to the same XML.

mod mkmeta_support;

use std::io::Read;
use std::path::PathBuf;

use mkmeta_support::*;

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

#[test]
fn strict_check_accepts_every_kernel_written_image() {
    let dir = tempfile::tempdir().unwrap();
    for (name, gz) in kernel_pools() {
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(std::fs::File::open(&gz).unwrap()).read_to_end(&mut bytes).unwrap();
        let img = dir.path().join(format!("{name}.img"));
        std::fs::write(&img, bytes).unwrap();
        strict_check(&img, &format!("kernel image {name}"));
    }
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
