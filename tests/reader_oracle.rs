//! `dump` and `ls` against the reference tools (Debian's thin_dump / thin_ls 0.9.0) on pools built by
//! `thin_restore` from generated XML and on kernel-written images: the output must be byte-identical.

mod common;

use std::ffi::OsStr;
use std::path::Path;

use common::*;

const ALL_FIELDS: &str = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BLOCKS,SHARED_BLOCKS,MAPPED_SECTORS,\
EXCLUSIVE_SECTORS,SHARED_SECTORS,MAPPED_BYTES,EXCLUSIVE_BYTES,SHARED_BYTES,MAPPED,EXCLUSIVE,SHARED,\
TRANSACTION,CREATE_TIME,SNAP_TIME";

/// Runs `thinsend-native CMD args.. IMAGE` and `TOOL args.. IMAGE`, asserting identical output.
fn same(ctx: &str, cmd: &str, tool_name: &str, args: &[&str], img: &Path) -> Out {
    let mut ours = vec![OsStr::new(cmd)];
    ours.extend(args.iter().map(OsStr::new));
    ours.push(img.as_os_str());
    let mut theirs: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    theirs.push(img.as_os_str());
    let (o, t) = (thinsend(&ours), run(tool(tool_name), &theirs));
    assert_same(&format!("{ctx}: {cmd} {}", args.join(" ")), &o, &t);
    o
}

/// The device ids of an image, as thin_ls lists them.
fn dev_ids(img: &Path, snap: bool) -> Vec<String> {
    let mut args = vec!["--no-headers", "-o", "DEV"];
    if snap {
        args.push("-m");
    }
    let mut a: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    a.push(img.as_os_str());
    let o = run(tool("thin_ls"), &a);
    assert!(o.ok(), "thin_ls failed: {}", o.stderr);
    o.stdout_str().split_whitespace().map(String::from).collect()
}

fn cat<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<&'a str> {
    [a, b].concat()
}

/// Every comparison of `dump` and `ls` on one image: all devices, skip-mappings, device selections
/// (single, several out of order with a repeat, unknown), and ls with default, all and random fields.
/// With `snap`, the same again reading the held metadata snapshot.
fn check_image(ctx: &str, img: &Path, rng: &mut Rng, snap: Option<u64>) {
    let mut modes = vec![vec![]];
    if let Some(s) = snap {
        modes.push(vec!["-m".to_string()]);
        modes.push(vec![format!("--metadata-snap={s}")]);
    }
    for mode in &modes {
        let m: Vec<&str> = mode.iter().map(String::as_str).collect();
        let ids = dev_ids(img, !m.is_empty());
        same(ctx, "dump", "thin_dump", &cat(&m, &[]), img);
        same(ctx, "dump", "thin_dump", &cat(&m, &["--skip-mappings"]), img);
        let unknown = ids.iter().map(|i| i.parse::<u64>().unwrap() + 1).max();
        let unknown = unknown.unwrap_or(0).to_string();
        same(ctx, "dump", "thin_dump", &cat(&m, &["--dev-id", &unknown]), img);
        if !ids.is_empty() {
            let a = rng.pick(&ids).clone();
            let b = rng.pick(&ids).clone();
            let c = rng.pick(&ids).clone();
            same(ctx, "dump", "thin_dump", &cat(&m, &["--dev-id", &a]), img);
            let several = ["--dev-id", &b, "--dev-id", &a, "--dev-id", &c, "--dev-id", &b];
            same(ctx, "dump", "thin_dump", &cat(&m, &several), img);
            let mut v = cat(&m, &several[..4]);
            v.push("--skip-mappings");
            same(ctx, "dump", "thin_dump", &v, img);
        }
        // thin_ls -m takes no block number.
        if mode.first().is_some_and(|a| a.starts_with("--metadata-snap=")) {
            continue;
        }
        same(ctx, "ls", "thin_ls", &cat(&m, &[]), img);
        same(ctx, "ls", "thin_ls", &cat(&m, &["-o", ALL_FIELDS]), img);
        same(ctx, "ls", "thin_ls", &cat(&m, &["--no-headers", "-o", ALL_FIELDS]), img);
        let fields: Vec<&str> = ALL_FIELDS.split(',').collect();
        let some: Vec<&str> = (0..rng.between(1, 6)).map(|_| *rng.pick(&fields)).collect();
        same(ctx, "ls", "thin_ls", &cat(&m, &["-o", &some.join(",")]), img);
    }
}

/// The depth of the top-level mapping tree and the greatest depth of a device's tree (1 = a leaf).
fn depths(img: &Path) -> (usize, usize) {
    let b = &std::fs::read(img).unwrap()[..];
    let top = tree_levels(b, le64(b, 0, sb::MAPPING_ROOT));
    let bottom = top
        .last()
        .unwrap()
        .iter()
        .flat_map(|&leaf| {
            let n = RawNode::read(b, leaf);
            (0..n.nr).map(move |i| n.value64(b, i))
        })
        .map(|root| tree_levels(b, root).len())
        .max()
        .unwrap_or(0);
    (top.len(), bottom)
}

/// Checks a random pool of `shape`; returns its tree depths.
fn check_random_pool(ctx: &str, rng: &mut Rng, shape: &Shape) -> (usize, usize) {
    let pool = random_pool(rng, shape);
    let img = restore(&pool);
    check_image(
        &format!(
            "{ctx} ({} devices, {} mappings, block size {})",
            pool.devices.len(),
            pool.nr_mappings(),
            pool.data_block_size
        ),
        img.path(),
        rng,
        None,
    );
    depths(img.path())
}

#[test]
fn empty_pool_matches() {
    if !have_oracle() {
        return;
    }
    let mut rng = Rng::new(seed("empty_pool_matches"));
    let shape = Shape { nr_devices: 0, ..Shape::default() };
    check_random_pool("no devices", &mut rng, &shape);
    let shape = Shape { nr_devices: 5, empty_percent: 100, ..Shape::default() };
    check_random_pool("empty devices", &mut rng, &shape);
}

#[test]
fn small_pools_match_across_block_sizes() {
    if !have_oracle() {
        return;
    }
    let mut rng = Rng::new(seed("small_pools_match_across_block_sizes"));
    let sizes = [128, 256, 384, 1024, 2048, 8192, 65536, 2_097_152];
    for (i, &data_block_size) in sizes.iter().enumerate() {
        let shape = Shape {
            nr_devices: rng.between(1, 12) as usize,
            mappings: (0, rng.between(1, 250) as usize),
            data_block_size,
            max_run: rng.between(1, 40),
            needs_check: i % 3 == 0,
            ..Shape::default()
        };
        check_random_pool(&format!("small pool {i}"), &mut rng, &shape);
    }
}

#[test]
fn two_level_trees_and_dozens_of_devices_match() {
    if !have_oracle() {
        return;
    }
    let mut rng = Rng::new(seed("two_level_trees_and_dozens_of_devices_match"));
    let shape = Shape { nr_devices: 4, mappings: (253, 5000), data_block_size: 256, max_run: 8, ..Shape::default() };
    let (_, bottom) = check_random_pool("two-level trees", &mut rng, &shape);
    assert_eq!(bottom, 2, "device trees should have two levels");
    let shape =
        Shape { nr_devices: 40, mappings: (0, 600), data_block_size: 1024, snapshot_percent: 40, ..Shape::default() };
    check_random_pool("40 devices", &mut rng, &shape);
    // Over 252 devices: the top-level and details trees get internal nodes too.
    let shape = Shape { nr_devices: 300, mappings: (0, 3), empty_percent: 50, snapshot_percent: 5, ..Shape::default() };
    let (top, _) = check_random_pool("300 devices", &mut rng, &shape);
    assert_eq!(top, 2, "the top-level tree should have two levels");
}

#[test]
fn three_level_trees_of_300k_mappings_match() {
    if !have_oracle() {
        return;
    }
    let mut rng = Rng::new(seed("three_level_trees_of_300k_mappings_match"));
    // An origin of 150k mappings and a diverged snapshot of it: 3-level bottom trees, shared blocks.
    let shape = Shape {
        nr_devices: 2,
        mappings: (150_000, 150_000),
        data_block_size: 128,
        max_run: 12,
        snapshot_percent: 100,
        empty_percent: 0,
        ..Shape::default()
    };
    let (_, bottom) = check_random_pool("300k mappings", &mut rng, &shape);
    assert_eq!(bottom, 3, "device trees should have three levels");
}

#[test]
fn extreme_values_match() {
    if !have_oracle() {
        return;
    }
    let mut rng = Rng::new(seed("extreme_values_match"));
    let top = (1u32 << 24) - 1;
    let mappings =
        vec![(0, 0, 0), (1, 1, top), (2, 2, top), (u32::MAX as u64 - 1, 9_999_998, 1), (u32::MAX as u64, 9_999_999, 1)];
    let pool = PoolXml {
        time: u32::MAX,
        transaction: u64::MAX,
        flags: 1,
        data_block_size: 2_097_152,
        nr_data_blocks: 10_000_000,
        devices: vec![
            DevXml { dev_id: 0, ..DevXml::default() },
            DevXml { dev_id: top, transaction: u64::MAX, creation_time: u32::MAX, snap_time: u32::MAX, mappings },
        ],
    };
    let img = restore(&pool);
    check_image("extreme values", img.path(), &mut rng, None);
}

/// thin_ls's human sizes (MAPPED, EXCLUSIVE, SHARED) across units, near its unit and rounding
/// boundaries: devices of one run each, with lengths from 1 to 20000 blocks of several sizes.
#[test]
fn human_sizes_match_across_magnitudes() {
    if !have_oracle() {
        return;
    }
    let mut rng = Rng::new(seed("human_sizes_match_across_magnitudes"));
    for data_block_size in [128, 1024, 1_048_576, 2_097_152] {
        let mut next = 0;
        let devices = (0..40)
            .map(|i| {
                let len = match rng.below(3) {
                    0 => 1u64 << rng.between(0, 14),
                    1 => (1u64 << rng.between(0, 14)) + rng.between(0, 3) - 1,
                    _ => rng.between(1, 20_000),
                }
                .max(1);
                let d =
                    DevXml { dev_id: i, mappings: (0..len).map(|v| (v, next + v, 0)).collect(), ..DevXml::default() };
                next += len;
                d
            })
            .collect();
        let pool = PoolXml { time: 0, transaction: 0, flags: 0, data_block_size, nr_data_blocks: next, devices };
        let img = restore(&pool);
        let ctx = format!("block size {data_block_size}");
        same(&ctx, "ls", "thin_ls", &["-o", ALL_FIELDS], img.path());
    }
}

/// `(block, byte offset in it)` of every leaf value of the tree at `root`, in key order.
fn leaf_values(img: &[u8], root: u64) -> Vec<(u64, usize)> {
    tree_levels(img, root)
        .last()
        .unwrap()
        .iter()
        .flat_map(|&b| {
            let n = RawNode::read(img, b);
            (0..n.nr).map(move |i| (b, n.value_off(i)))
        })
        .collect()
}

/// What the kernel's `create_snap` leaves behind, which thin_restore never writes: two devices
/// sharing one bottom-level tree. Also details whose mapped_blocks disagree with the tree, which
/// thin_ls prints as they are.
#[test]
fn shared_subtrees_and_recorded_counts_match() {
    if !have_oracle() {
        return;
    }
    use thinsend::checksum::BlockKind::Node;
    let mut rng = Rng::new(seed("shared_subtrees_and_recorded_counts_match"));
    for i in 0..3 {
        let shape =
            Shape { nr_devices: rng.between(3, 8) as usize, mappings: (0, 600), empty_percent: 0, ..Shape::default() };
        let pool = random_pool(&mut rng, &shape);
        let mut img = restore(&pool).bytes();
        let top = leaf_values(&img, le64(&img, 0, sb::MAPPING_ROOT));
        let details = leaf_values(&img, le64(&img, 0, sb::DETAILS_ROOT));
        // Device `to` becomes a fresh snapshot of device `from`.
        let (from, to) = (rng.below(top.len() as u64) as usize, rng.below(top.len() as u64) as usize);
        let root = le64(&img, top[from].0, top[from].1);
        set64(&mut img, top[to].0, top[to].1, root);
        restamp(&mut img, top[to].0, Node);
        let mapped = le64(&img, details[from].0, details[from].1);
        set64(&mut img, details[to].0, details[to].1, mapped);
        // Another device's details count too many mappings.
        let over = rng.below(details.len() as u64) as usize;
        let (b, off) = details[over];
        let more = le64(&img, b, off) + rng.between(1, 1000);
        set64(&mut img, b, off, more);
        restamp(&mut img, details[to].0, Node);
        restamp(&mut img, b, Node);
        let img = Image::from_bytes(&img);
        check_image(&format!("shared subtree {i}"), img.path(), &mut rng, None);
    }
}

/// Non-root leaves with fewer than max/3 entries (which kernels have left behind) read as thin_dump
/// reads them. Deliberate difference: thin_ls refuses them ("metadata contains errors") when its
/// fields need a walk of the mappings; `ls` reads them like `dump` does.
#[test]
fn underfull_leaves_match() {
    if !have_oracle() {
        return;
    }
    let mut rng = Rng::new(seed("underfull_leaves_match"));
    let shape = Shape { nr_devices: 2, mappings: (2000, 4000), empty_percent: 0, ..Shape::default() };
    let pool = random_pool(&mut rng, &shape);
    let mut img = restore(&pool).bytes();
    for (b, off) in leaf_values(&img, le64(&img, 0, sb::MAPPING_ROOT)) {
        let levels = tree_levels(&img, le64(&img, b, off));
        for &leaf in levels.last().unwrap().iter().skip(1).step_by(2) {
            set32(&mut img, leaf, 16, rng.between(1, 83) as u32);
            restamp(&mut img, leaf, thinsend::checksum::BlockKind::Node);
        }
    }
    let img = Image::from_bytes(&img);
    let ctx = "underfull leaves";
    same(ctx, "dump", "thin_dump", &[], img.path());
    same(ctx, "dump", "thin_dump", &["--dev-id", &pool.devices[1].dev_id.to_string()], img.path());
    same(ctx, "ls", "thin_ls", &[], img.path());
    let theirs = run(tool("thin_ls"), &[OsStr::new("-o"), OsStr::new(ALL_FIELDS), img.path().as_os_str()]);
    assert!(!theirs.ok() && theirs.stderr.contains("metadata contains errors"), "thin_ls now reads them");
    let ours = thinsend(&[OsStr::new("ls"), OsStr::new("-o"), OsStr::new(ALL_FIELDS), img.path().as_os_str()]);
    assert!(ours.ok(), "{}", ours.stderr);
}

/// A held metadata snapshot whose live trees have moved on: C++ thin_restore stores the XML's
/// `metadata_snap` but writes no snapshot superblock there, so the image is assembled from two
/// restored pools (see `with_held_snapshot`).
#[test]
fn held_metadata_snapshot_matches() {
    if !have_oracle() {
        return;
    }
    let mut rng = Rng::new(seed("held_metadata_snapshot_matches"));
    for i in 0..3 {
        let shape = Shape {
            nr_devices: rng.between(1, 8) as usize,
            mappings: (0, 2000),
            data_block_size: *rng.pick(&[128, 512, 4096]),
            ..Shape::default()
        };
        let old = random_pool(&mut rng, &shape);
        let mut new = old.clone();
        // The live pool moved on: time, transaction, a new device, a deleted one, new mappings.
        new.time += 2;
        new.transaction += 3;
        new.nr_data_blocks += 5000;
        if i != 0 && !new.devices.is_empty() {
            new.devices.remove(0);
        }
        let mut added = random_pool(&mut rng, &Shape { nr_devices: 2, ..shape.clone() });
        let last = new.devices.last().map_or(0, |d| d.dev_id + 1);
        for (j, d) in added.devices.iter_mut().enumerate() {
            d.dev_id = last + j as u32;
            for m in &mut d.mappings {
                m.1 = (m.1 + old.nr_data_blocks).min(new.nr_data_blocks - 1);
            }
            d.mappings.dedup_by_key(|m| m.1);
        }
        new.devices.extend(added.devices);
        let img = Image::from_bytes(&with_held_snapshot(&restore(&new).bytes(), &restore(&old).bytes()));
        let held = le64(&img.bytes(), 0, sb::HELD_ROOT);
        let dump = |m: &[&str]| thinsend(&[&["dump"], m, &[img.path().to_str().unwrap()]].concat());
        assert_ne!(dump(&[]).stdout, dump(&["-m"]).stdout, "snapshot and live pool should differ");
        check_image(&format!("held snapshot {i}"), img.path(), &mut rng, Some(held));
    }
}

/// Images written by a real kernel (testdata/kernel/*.tmeta.gz, see the README there), some with a
/// held metadata snapshot.
#[test]
fn kernel_images_match() {
    if !have_oracle() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/kernel");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        eprintln!("no {} yet", dir.display());
        return;
    };
    let mut rng = Rng::new(seed("kernel_images_match"));
    let mut paths: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".tmeta.gz"))
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no images in {}", dir.display());
    for p in paths {
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(std::fs::File::open(&p).unwrap()), &mut bytes)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let held = le64(&bytes, 0, sb::HELD_ROOT);
        let img = Image::from_bytes(&bytes);
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        eprintln!("{name}: held root {held}");
        check_image(&name, img.path(), &mut rng, (held != 0).then_some(held));
    }
}

/// Both tools refuse `-m` on an image without a held metadata snapshot, and a `-m=BLOCK` that is
/// not the held root.
#[test]
fn metadata_snapshot_errors_match_in_exit_status() {
    if !have_oracle() {
        return;
    }
    let mut rng = Rng::new(seed("metadata_snapshot_errors_match_in_exit_status"));
    let pool = random_pool(&mut rng, &Shape::default());
    let plain = restore(&pool);
    let o = same("no snapshot", "dump", "thin_dump", &["-m"], plain.path());
    assert!(o.stderr.contains("no metadata snapshot"), "{}", o.stderr);
    same("no snapshot", "ls", "thin_ls", &["-m"], plain.path());
    let img = Image::from_bytes(&with_held_snapshot(&plain.bytes(), &plain.bytes()));
    let held = le64(&img.bytes(), 0, sb::HELD_ROOT);
    let wrong = format!("--metadata-snap={}", held + 1);
    let o = same("wrong snapshot block", "dump", "thin_dump", &[&wrong], img.path());
    assert_eq!(o.stderr.lines().count(), 1, "{}", o.stderr);
}
