//! Memory and blocking limits: what the input claims (a data device of 2^31 blocks, a 15 TiB sparse
//! metadata file, data blocks spread far apart) never sizes an allocation, so each command runs
//! under a 1 GiB address-space limit to a clear result instead of aborting; and a FIFO, a character
//! device or a directory given as metadata is refused at once instead of blocking in `open`.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::*;
use thinsend::checksum::BlockKind;

const LIMIT: &str = "--as=1073741824";

/// `thinsend-native args...` under a 1 GiB address-space limit.
fn limited(args: &[&str]) -> Out {
    let mut all = vec![LIMIT, bin()];
    all.extend_from_slice(args);
    let o = run_limited("prlimit", &all, Duration::from_secs(120));
    eprintln!("{}: {:?}\n{}", args.join(" "), o.status, o.stderr);
    o
}

fn have_prlimit() -> bool {
    Command::new("prlimit").arg("--version").output().is_ok_and(|o| o.status.success())
}

/// Neither an abort nor a signal: an exit code, and no allocation failure on stderr.
fn no_abort(what: &str, o: &Out) {
    assert!(o.status.code().is_some(), "{what}: killed by a signal ({:?}): {}", o.status, o.stderr);
    assert!(!o.stderr.contains("memory allocation"), "{what}: {}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "{what}: {}", o.stderr);
}

fn small_pool() -> Vec<u8> {
    let run = |n: u64, start: u64| (0..n).map(|i| (i, start + i, 0)).collect();
    let devices = vec![
        DevXml { dev_id: 1, mappings: run(2000, 0), ..DevXml::default() },
        DevXml { dev_id: 2, mappings: run(100, 3000), ..DevXml::default() },
    ];
    let pool = PoolXml { time: 1, transaction: 1, flags: 0, data_block_size: 128, nr_data_blocks: 4000, devices };
    restore(&pool).bytes()
}

#[test]
fn check_of_an_image_claiming_2_pow_31_data_blocks_runs_in_bounded_memory() {
    if !have_oracle() || !have_prlimit() {
        return;
    }
    let mut img = small_pool();
    img.resize(4 << 20, 0);
    set64(&mut img, 0, sb::DATA_SM, 1 << 31);
    restamp(&mut img, 0, BlockKind::Superblock);
    let image = Image::from_bytes(&img);
    let o = limited(&["check", image.path().to_str().unwrap()]);
    no_abort("check", &o);
    assert_eq!(o.status.code(), Some(1), "the claim is a finding: {}", o.stdout_str());
    assert!(o.stdout_str().contains("data space map index has keys"), "{}", o.stdout_str());
    assert!(o.stdout_str().contains(": 2 devices, 2100 mappings,"), "{}", o.stdout_str());
}

#[test]
fn a_15_tib_sparse_metadata_file_is_read_in_bounded_memory() {
    if !have_oracle() || !have_prlimit() {
        return;
    }
    let image = Image::from_bytes(&small_pool());
    let path = image.path().to_str().unwrap();
    std::fs::OpenOptions::new().write(true).open(path).unwrap().set_len(15 << 40).unwrap();
    // The space maps describe the image as restored: the file's tail counts for nothing. (Images
    // thin_restore 0.9.0 writes have findings of the strict checker of their own.)
    let o = limited(&["check", path]);
    no_abort("check", &o);
    assert!(o.stdout_str().contains(": 2 devices, 2100 mappings,"), "{}", o.stdout_str());
    for args in [&["dump", path][..], &["ls", path]] {
        let o = limited(args);
        no_abort(args[0], &o);
        assert!(o.ok(), "{}: {}", args[0], o.stderr);
    }
}

#[test]
fn ls_of_mappings_far_apart_runs_in_bounded_memory() {
    if !have_oracle() || !have_prlimit() {
        return;
    }
    const N: u64 = 600_000;
    let dev = DevXml { dev_id: 1, mappings: (0..N).map(|i| (i, i, 0)).collect(), ..DevXml::default() };
    let pool =
        PoolXml { time: 1, transaction: 1, flags: 0, data_block_size: 128, nr_data_blocks: N, devices: vec![dev] };
    let mut img = restore(&pool).bytes();
    // Every mapping's data block 8192 apart: one block per chunk of a per-chunk bitmap.
    let top = RawNode::read(&img, le64(&img, 0, sb::MAPPING_ROOT));
    let levels = tree_levels(&img, top.value64(&img, 0));
    for &leaf in levels.last().unwrap() {
        let n = RawNode::read(&img, leaf);
        for i in 0..n.nr {
            let key = n.key(&img, i);
            set64(&mut img, leaf, n.value_off(i), (key * 8192) << 24);
        }
        restamp(&mut img, leaf, BlockKind::Node);
    }
    let image = Image::from_bytes(&img);
    let o =
        limited(&["ls", "-o", "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS", "--no-headers", image.path().to_str().unwrap()]);
    no_abort("ls", &o);
    assert!(o.ok(), "{}", o.stderr);
    assert_eq!(o.stdout_str().split_whitespace().collect::<Vec<_>>(), ["1", "600000", "600000"]);
}

/// A FIFO, a character device and a directory as metadata: one clear line at once, for every
/// command that reads metadata.
#[test]
fn a_fifo_char_device_or_directory_as_metadata_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
    let cases: [(&Path, &str); 3] =
        [(&fifo, "is a FIFO"), (Path::new("/dev/null"), "is a character device"), (dir.path(), "is a directory")];
    for (path, what) in cases {
        let p = path.to_str().unwrap();
        for args in [&["dump", p][..], &["ls", p], &["check", p], &["diff", "--snap1", "1", "--snap2", "2", p]] {
            let start = Instant::now();
            let o = run_limited(bin(), args, Duration::from_secs(10));
            let took = start.elapsed();
            assert!(took < Duration::from_secs(1), "{args:?}: took {took:?}");
            assert_eq!(o.status.code(), Some(1), "{args:?}: {}", o.stderr);
            assert_eq!(o.stderr.lines().count(), 1, "{args:?}: {}", o.stderr);
            assert!(o.stderr.contains(p) && o.stderr.contains(what), "{args:?}: {}", o.stderr);
            assert!(o.stderr.contains("not a regular file or block device"), "{args:?}: {}", o.stderr);
        }
    }
}
