//! A bounded mutation fuzzer over the reader, run in-process: valid images get random damage (bit
//! flips, header fields and pointers overwritten with interesting values such as other blocks'
//! numbers, words swapped, blocks copied over others, truncation), mostly with checksums re-stamped
//! so the structural checks are what is exercised; then the pool is opened and dumped (XML, JSON,
//! one device) and listed. Any panic, or a case running longer than a few seconds, fails the test.
//!
//! Runs for THINSEND_FUZZ_SECS seconds (default 15). The run's seed is printed; a failing case's
//! seed too, and THINSEND_FUZZ_CASE=<case seed> replays just that case.

mod common;

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use thinsend::block::MetadataDev;
use thinsend::checksum::{self, BlockKind};
use thinsend::superblock::Source;
use thinsend::{dump, ls, pool::Pool};

/// A case taking longer than this is a hang (the largest base image dumps in milliseconds).
const CASE_LIMIT: Duration = Duration::from_secs(10);

struct Base {
    name: String,
    img: Vec<u8>,
    /// Blocks holding a valid superblock or btree node, with their kind.
    blocks: Vec<(u64, BlockKind)>,
}

/// `img` without its zero blocks at the end (thin_restore sizes generously): smaller images, more cases.
fn trimmed(mut img: Vec<u8>) -> Vec<u8> {
    let used = img.chunks(BLOCK).rposition(|b| b.iter().any(|&x| x != 0)).map_or(1, |i| i + 1);
    img.truncate(used * BLOCK);
    img
}

impl Base {
    fn new(name: &str, img: Vec<u8>) -> Base {
        let img = trimmed(img);
        let blocks = img
            .chunks(BLOCK)
            .enumerate()
            .filter_map(|(i, b)| {
                checksum::detect(b)
                    .filter(|k| matches!(k, BlockKind::Superblock | BlockKind::Node))
                    .map(|k| (i as u64, k))
            })
            .collect();
        Base { name: name.to_string(), img, blocks }
    }
}

fn bases() -> Vec<Base> {
    let mut rng = Rng::new(42);
    let mut out = Vec::new();
    let shape = Shape { nr_devices: 3, mappings: (300, 900), max_run: 6, empty_percent: 0, ..Shape::default() };
    out.push(Base::new("multi-level", restore(&random_pool(&mut rng, &shape)).bytes()));
    let shape = Shape { nr_devices: 260, mappings: (0, 2), empty_percent: 60, ..Shape::default() };
    out.push(Base::new("260 devices", restore(&random_pool(&mut rng, &shape)).bytes()));
    let shape = Shape { nr_devices: 3, mappings: (100, 600), snapshot_percent: 60, ..Shape::default() };
    let old = trimmed(restore(&random_pool(&mut rng, &shape)).bytes());
    let new = trimmed(restore(&random_pool(&mut rng, &shape)).bytes());
    out.push(Base::new("held snapshot", with_held_snapshot(&new, &old)));
    // Two devices sharing one bottom-level tree, as after the kernel's create_snap.
    let mut img = restore(&random_pool(&mut rng, &shape)).bytes();
    let top = RawNode::read(&img, le64(&img, 0, sb::MAPPING_ROOT));
    let shared = top.value64(&img, 0);
    set64(&mut img, top.block, top.value_off(1), shared);
    restamp(&mut img, top.block, BlockKind::Node);
    out.push(Base::new("shared subtree", img));
    // Kernel-written images with held snapshots and shared subtrees (see testdata/kernel/README.md).
    for name in ["fresh", "snapchain", "manymap"] {
        let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("testdata/kernel/{name}.tmeta.gz"));
        let Ok(f) = std::fs::File::open(&p) else { continue };
        let mut img = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(f), &mut img).expect("gunzip");
        out.push(Base::new(name, img));
    }
    out
}

fn interesting_u64(rng: &mut Rng, img: &[u8], base: &Base) -> u64 {
    let n = (img.len() / BLOCK) as u64;
    match rng.below(12) {
        0 => 0,
        1 => 1,
        2 => u64::MAX,
        3 => n.wrapping_sub(1),
        4 => n,
        5 => n + 1,
        6 | 7 => rng.pick(&base.blocks).0,
        8 => 1 << rng.below(64),
        9 => (rng.below(1 << 40) << 24) | rng.below(1 << 24),
        10 => rng.below(300),
        _ => rng.next_u64(),
    }
}

fn interesting_u32(rng: &mut Rng) -> u32 {
    *rng.pick(&[0, 1, 2, 3, 4, 8, 16, 24, 83, 84, 125, 126, 127, 251, 252, 253, 336, 337, 1 << 31, u32::MAX])
}

/// Applies 1 to 4 random mutations to a copy of `base`.
fn mutate(rng: &mut Rng, base: &Base) -> Vec<u8> {
    let mut img = base.img.clone();
    let n = (img.len() / BLOCK) as u64;
    for _ in 0..rng.between(1, 4) {
        let (block, kind) = if rng.chance(85) { *rng.pick(&base.blocks) } else { (rng.below(n), BlockKind::Node) };
        let b = block as usize * BLOCK;
        match rng.below(9) {
            0 => img[b + rng.below(32) as usize] ^= 1 << rng.below(8),
            1 => img[b + rng.below(BLOCK as u64) as usize] ^= 1 << rng.below(8),
            // A header field: flags, nr_entries, max_entries, value_size (or superblock words).
            2 | 3 => {
                let off = *rng.pick(&[4usize, 16, 20, 24, 40, 44, 336, 340, 352, 360]);
                set32(&mut img, block, off, interesting_u32(rng));
            }
            // A key, a value or child pointer, or a superblock root / field.
            4..=6 => {
                let off = if kind == BlockKind::Superblock && rng.chance(70) {
                    *rng.pick(&[8usize, 48, 56, 64, 72, 320, 328, 344])
                } else {
                    8 * rng.between(1, (BLOCK / 8 - 1) as u64) as usize
                };
                let v = interesting_u64(rng, &img, base);
                set64(&mut img, block, off, v);
            }
            7 => {
                let (i, j) = (rng.between(4, 260) as usize * 8, rng.between(4, 511) as usize * 8);
                for k in 0..8 {
                    img.swap(b + i + k, b + j + k);
                }
            }
            _ => {
                let (from, _) = *rng.pick(&base.blocks);
                let src = img[from as usize * BLOCK..][..BLOCK].to_vec();
                img[b..b + BLOCK].copy_from_slice(&src);
            }
        }
        if rng.chance(80) {
            restamp(&mut img, block, kind);
        }
    }
    if rng.chance(5) {
        let keep = rng.below(img.len() as u64 + 1) as usize;
        img.truncate(keep);
    }
    img
}

/// Everything the commands do with a pool, output discarded; errors are fine, panics are not.
/// Returns whether the live pool opened (to show how deep the cases get).
fn exercise(img: Vec<u8>) -> bool {
    let mut opened = false;
    for source in [Source::Live, Source::Snapshot(None)] {
        let Ok(dev) = MetadataDev::from_bytes("fuzz", img.clone()) else { return false };
        let Ok(pool) = Pool::from_dev(dev, source) else { continue };
        opened |= source == Source::Live;
        let mut sink = std::io::sink();
        let first = pool.devices.first().map(|d| d.id);
        for (format, dev_ids) in [
            (dump::Format::Xml, vec![]),
            (dump::Format::Json, vec![]),
            (dump::Format::HumanReadable, vec![]),
            (dump::Format::Xml, first.into_iter().collect()),
        ] {
            let _ = dump::dump(&pool, &dump::Options { format, dev_ids, ..Default::default() }, &mut sink);
        }
        if let Ok(rows) = ls::rows(&pool) {
            let fields: Vec<ls::Field> = ls::ALL_FIELDS.iter().map(|(_, f)| *f).collect();
            let _ = ls::write_table(&pool, &rows, &fields, true, &mut sink);
            let _ = ls::write_json(&pool, &rows, &fields, &mut sink);
        }
    }
    opened
}

fn case_seed(run: u64, i: u64) -> u64 {
    Rng::new(run ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next_u64()
}

/// Runs one case from its seed: which base, which mutations.
fn run_case(bases: &[Base], case: u64) -> bool {
    let mut rng = Rng::new(case);
    let base = rng.pick(bases);
    exercise(mutate(&mut rng, base))
}

enum Msg {
    Start(u64),
    Panicked(u64),
    /// Cases run, and in how many the damaged pool still opened.
    Done(u64, u64),
}

#[test]
fn mutated_images_never_panic_or_hang() {
    if !have_oracle() {
        return;
    }
    let bases = bases();
    let names: Vec<String> = bases
        .iter()
        .map(|b| format!("{} ({} blocks, {} nodes)", b.name, b.img.len() / BLOCK, b.blocks.len()))
        .collect();
    eprintln!("bases: {}", names.join(", "));
    if let Ok(c) = std::env::var("THINSEND_FUZZ_CASE") {
        run_case(&bases, c.parse().expect("THINSEND_FUZZ_CASE must be a u64"));
        return;
    }
    let run = seed("mutated_images_never_panic_or_hang");
    let secs = std::env::var("THINSEND_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let (mut i, mut opened) = (0, 0);
        while Instant::now() < deadline {
            let case = case_seed(run, i);
            let _ = tx.send(Msg::Start(case));
            match std::panic::catch_unwind(|| run_case(&bases, case)) {
                Ok(o) => opened += o as u64,
                Err(_) => {
                    let _ = tx.send(Msg::Panicked(case));
                    return;
                }
            }
            i += 1;
        }
        let _ = tx.send(Msg::Done(i, opened));
    });
    let mut current = None;
    loop {
        match rx.recv_timeout(CASE_LIMIT) {
            Ok(Msg::Start(c)) => current = Some(c),
            Ok(Msg::Panicked(c)) => panic!("case panicked; replay with THINSEND_FUZZ_CASE={c}"),
            Ok(Msg::Done(n, opened)) => {
                eprintln!("{n} cases in {secs} s ({opened} still opened), no panic, no hang");
                assert!(n > 100, "too few cases ran");
                return;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                panic!("case ran over {CASE_LIMIT:?} (hang?); replay with THINSEND_FUZZ_CASE={current:?}")
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("fuzz thread died"),
        }
    }
}

/// Every block of the small base images, each word overwritten in turn with each interesting pointer
/// (checksums re-stamped): a systematic sweep of the header and the first keys and values.
#[test]
fn every_header_word_sweep() {
    if !have_oracle() {
        return;
    }
    let bases = bases();
    let mut cases = 0;
    for base in bases.iter().filter(|b| ["held snapshot", "shared subtree", "fresh"].contains(&b.name.as_str())) {
        let n = (base.img.len() / BLOCK) as u64;
        let blocks: BTreeSet<u64> = base.blocks.iter().map(|b| b.0).collect();
        for &(block, kind) in &base.blocks {
            for off in (8..64).step_by(4).chain([320, 328, 2048, 2056]) {
                for v in [0, 1, n - 1, n, u32::MAX as u64, u64::MAX, *blocks.first().unwrap(), *blocks.last().unwrap()]
                {
                    let mut img = base.img.clone();
                    if off % 8 == 0 {
                        set64(&mut img, block, off, v);
                    } else {
                        set32(&mut img, block, off, v as u32);
                    }
                    restamp(&mut img, block, kind);
                    exercise(img);
                    cases += 1;
                }
            }
        }
    }
    eprintln!("{cases} cases");
}
