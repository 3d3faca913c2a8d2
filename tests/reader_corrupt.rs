//! Bad input: `dump` and `ls` on damaged images must exit non-zero with exactly one line on stderr
//! naming the block and the fault, never panic and never hang. Each case damages one thing in a
//! small valid image with a two-level device tree (re-stamping checksums where the structural check
//! is what should catch it).

mod common;

use std::time::Duration;

use common::*;
use thinsend::checksum::BlockKind;

/// A valid image and where its blocks are.
struct Base {
    img: Vec<u8>,
    details: u64,
    top: u64,
    /// Device 1: a two-level tree.
    dev_root: u64,
    dev_leaf: u64,
    dev_leaf2: u64,
    /// Device 2: a single leaf.
    small_root: u64,
    data_sm_index: u64,
    metadata_sm_index: u64,
    bitmap: u64,
    /// thin_dump's output for the valid image.
    dump: Vec<u8>,
}

fn base() -> Option<Base> {
    if !have_oracle() {
        return None;
    }
    let mut rng = Rng::new(7);
    let run = |n: usize, start: u64| -> Vec<(u64, u64, u32)> {
        (0..n as u64).map(|i| (i + i / 7, start + i, (i / 100) as u32 % 3)).collect()
    };
    let mut devices = vec![
        DevXml { dev_id: 1, mappings: run(3000, 0), ..DevXml::default() },
        DevXml { dev_id: 2, mappings: run(200, 5000), ..DevXml::default() },
        DevXml { dev_id: 3, ..DevXml::default() },
    ];
    devices[1].mappings.truncate(150 + rng.below(50) as usize);
    let pool = PoolXml { time: 3, transaction: 9, flags: 0, data_block_size: 128, nr_data_blocks: 6000, devices };
    let img = restore(&pool).bytes();
    let top = le64(&img, 0, sb::MAPPING_ROOT);
    let t = RawNode::read(&img, top);
    let (dev_root, small_root) = (t.value64(&img, 0), t.value64(&img, 1));
    let r = RawNode::read(&img, dev_root);
    assert!(!r.is_leaf && r.nr >= 3, "device 1 should have a two-level tree");
    let metadata_sm_index = le64(&img, 0, sb::METADATA_SM + 16);
    let dump = thinsend(&["dump", Image::from_bytes(&img).path().to_str().unwrap()]).stdout;
    Some(Base {
        details: le64(&img, 0, sb::DETAILS_ROOT),
        top,
        dev_root,
        dev_leaf: r.value64(&img, 1),
        dev_leaf2: r.value64(&img, 2),
        small_root,
        data_sm_index: le64(&img, 0, sb::DATA_SM + 16),
        metadata_sm_index,
        // The first bitmap of the metadata space map, from its index block.
        bitmap: le64(&img, metadata_sm_index, 16),
        dump,
        img,
    })
}

/// Runs `dump`, `dump --format json` and `ls` (plus `extra` args before the image) on `img`:
/// each must fail with one line on stderr that contains every string of `expect`.
fn fails(what: &str, img: &[u8], extra: &[&str], expect: &[&str]) {
    let image = Image::from_bytes(img);
    let path = image.path().to_str().unwrap();
    for cmd in [&["dump"][..], &["dump", "--format", "json"], &["ls"]] {
        let args = [cmd, extra, &[path]].concat();
        let o = run_limited(bin(), &args, Duration::from_secs(20));
        let ctx = format!("{what}: {}", args.join(" "));
        eprintln!("{ctx}\n    -> {}", o.stderr.trim_end());
        assert!(!o.ok(), "{ctx}: succeeded, stdout {:?}", o.stdout_str());
        assert!(!o.stderr.contains("panicked"), "{ctx}: panicked: {}", o.stderr);
        assert_eq!(o.stderr.lines().count(), 1, "{ctx}: not one line on stderr: {:?}", o.stderr);
        for e in expect {
            assert!(o.stderr.contains(e), "{ctx}: stderr should mention {e:?}: {}", o.stderr);
        }
    }
}

fn flipped(b: &Base, block: u64, off: usize) -> Vec<u8> {
    let mut img = b.img.clone();
    block_mut(&mut img, block)[off] ^= 0x10;
    img
}

fn block_msg(b: u64) -> String {
    format!("metadata block {b}:")
}

#[test]
fn flipped_byte_in_each_block_kind_is_a_checksum_error() {
    let Some(b) = base() else { return };
    let cases = [
        ("superblock", 0, 50),
        ("details leaf", b.details, 40),
        ("top-level mapping leaf", b.top, 2100),
        ("bottom-level internal node", b.dev_root, 40),
        ("bottom-level leaf", b.dev_leaf, 3000),
        ("bottom-level leaf header", b.dev_leaf, 17),
    ];
    for (what, block, off) in cases {
        fails(what, &flipped(&b, block, off), &[], &[&block_msg(block), "checksum mismatch"]);
    }
}

/// The reader does not read the space maps (thin_dump doesn't either): damage there changes nothing.
#[test]
fn space_map_blocks_are_not_read() {
    let Some(b) = base() else { return };
    for (what, block) in
        [("data space map index", b.data_sm_index), ("metadata index", b.metadata_sm_index), ("bitmap", b.bitmap)]
    {
        let img = Image::from_bytes(&flipped(&b, block, 100));
        let o = thinsend(&["dump", img.path().to_str().unwrap()]);
        assert!(o.ok(), "{what}: {}", o.stderr);
        assert_eq!(o.stdout, b.dump, "{what}: output changed");
    }
}

/// A structural edit to `block`, with the checksum re-stamped so the structural check is reached.
fn edited(b: &Base, block: u64, kind: BlockKind, edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut img = b.img.clone();
    edit(&mut img);
    restamp(&mut img, block, kind);
    img
}

#[test]
fn wrong_block_number() {
    let Some(b) = base() else { return };
    let img = edited(&b, b.dev_leaf, BlockKind::Node, |i| set64(i, b.dev_leaf, 8, b.dev_leaf + 1));
    let found = format!("records block number {}", b.dev_leaf + 1);
    fails("leaf block number", &img, &[], &[&block_msg(b.dev_leaf), &found]);
    let img = edited(&b, 0, BlockKind::Superblock, |i| set64(i, 0, 8, 3));
    fails("superblock block number", &img, &[], &[&block_msg(0), "records block number 3"]);
}

#[test]
fn child_pointer_past_the_end() {
    let Some(b) = base() else { return };
    let n = (b.img.len() / BLOCK) as u64;
    let r = RawNode::read(&b.img, b.dev_root);
    let img = edited(&b, b.dev_root, BlockKind::Node, |i| set64(i, b.dev_root, r.value_off(1), n + 10));
    fails("child past the end", &img, &[], &[&block_msg(b.dev_root), &format!("{}", n + 10), "past the end"]);
    // A device root past the end, in the top-level leaf.
    let t = RawNode::read(&b.img, b.top);
    let img = edited(&b, b.top, BlockKind::Node, |i| set64(i, b.top, t.value_off(1), u64::MAX));
    fails("device root past the end", &img, &[], &[&block_msg(b.top), &format!("{}", u64::MAX), "past the end"]);
}

#[test]
fn pointer_cycles() {
    let Some(b) = base() else { return };
    let r = RawNode::read(&b.img, b.dev_root);
    // A child pointing back at its parent, the root of the device tree.
    for i in [0, 1, r.nr - 1] {
        let img = edited(&b, b.dev_root, BlockKind::Node, |img| set64(img, b.dev_root, r.value_off(i), b.dev_root));
        fails(&format!("child {i} -> its parent"), &img, &[], &[&block_msg(b.dev_root), "cycle"]);
    }
    // A device root pointing back at the top-level leaf that holds it.
    let t = RawNode::read(&b.img, b.top);
    let img = edited(&b, b.top, BlockKind::Node, |img| set64(img, b.top, t.value_off(1), b.top));
    fails("device root -> top-level leaf", &img, &[], &[&block_msg(b.top), "cycle"]);
    // Two siblings pointing at one child: the second copy's keys are outside its range.
    let img = edited(&b, b.dev_root, BlockKind::Node, |img| set64(img, b.dev_root, r.value_off(2), b.dev_leaf));
    fails("two parents", &img, &[], &[&block_msg(b.dev_leaf), "outside the range"]);
}

#[test]
fn bad_node_headers() {
    let Some(b) = base() else { return };
    let img = edited(&b, b.dev_leaf, BlockKind::Node, |i| set32(i, b.dev_leaf, 24, 16));
    fails("value size", &img, &[], &[&block_msg(b.dev_leaf), "value size 16, expected 8"]);
    let img = edited(&b, b.details, BlockKind::Node, |i| set32(i, b.details, 24, 8));
    fails("details value size", &img, &[], &[&block_msg(b.details), "value size 8, expected 24"]);
    let img = edited(&b, b.dev_leaf, BlockKind::Node, |i| set32(i, b.dev_leaf, 16, 253));
    fails("nr_entries", &img, &[], &[&block_msg(b.dev_leaf), "nr_entries 253 exceeds max_entries 252"]);
    let img = edited(&b, b.dev_leaf, BlockKind::Node, |i| set32(i, b.dev_leaf, 16, u32::MAX));
    fails("nr_entries huge", &img, &[], &[&block_msg(b.dev_leaf), "exceeds max_entries"]);
    let img = edited(&b, b.dev_leaf, BlockKind::Node, |i| set32(i, b.dev_leaf, 16, 0));
    fails("empty leaf", &img, &[], &[&block_msg(b.dev_leaf), "empty btree node"]);
    let img = edited(&b, b.dev_leaf, BlockKind::Node, |i| set32(i, b.dev_leaf, 20, 600));
    fails("max_entries", &img, &[], &[&block_msg(b.dev_leaf), "max_entries 600 too large"]);
    let img = edited(&b, b.dev_leaf, BlockKind::Node, |i| set32(i, b.dev_leaf, 4, 3));
    fails("flags", &img, &[], &[&block_msg(b.dev_leaf), "flags 0x3"]);
    // A leaf where an internal node belongs, and the reverse.
    let img = edited(&b, b.dev_leaf, BlockKind::Node, |i| set32(i, b.dev_leaf, 4, 1));
    fails("leaf marked internal", &img, &[], &[&block_msg(b.dev_leaf)]);
    // (An internal root marked as a leaf is not detectable: it reads as a valid leaf whose values
    // are block numbers, for thin_dump as for us.)
}

#[test]
fn unsorted_keys() {
    let Some(b) = base() else { return };
    let n = RawNode::read(&b.img, b.dev_leaf);
    let (k3, k4) = (n.key(&b.img, 3), n.key(&b.img, 4));
    let img = edited(&b, b.dev_leaf, BlockKind::Node, |i| {
        set64(i, b.dev_leaf, n.key_off(3), k4);
        set64(i, b.dev_leaf, n.key_off(4), k3);
    });
    fails("swapped keys", &img, &[], &[&block_msg(b.dev_leaf), "not strictly ascending at entry 4"]);
    let img = edited(&b, b.dev_leaf, BlockKind::Node, |i| set64(i, b.dev_leaf, n.key_off(4), k3));
    fails("repeated key", &img, &[], &[&block_msg(b.dev_leaf), "not strictly ascending"]);
    // Keys in order within the leaf but outside the range the parent gives it.
    let r = RawNode::read(&b.img, b.dev_root);
    let img = edited(&b, b.dev_root, BlockKind::Node, |i| {
        set64(i, b.dev_root, r.value_off(1), b.dev_leaf2);
        set64(i, b.dev_root, r.value_off(2), b.dev_leaf);
    });
    fails("swapped children", &img, &[], &[&block_msg(b.dev_leaf2), "outside the range"]);
}

#[test]
fn pointers_into_other_trees() {
    let Some(b) = base() else { return };
    let r = RawNode::read(&b.img, b.dev_root);
    let img = edited(&b, b.dev_root, BlockKind::Node, |i| set64(i, b.dev_root, r.value_off(1), b.details));
    fails("child -> details leaf", &img, &[], &[&block_msg(b.details), "value size 24, expected 8"]);
    let img = edited(&b, b.dev_root, BlockKind::Node, |i| set64(i, b.dev_root, r.value_off(1), b.small_root));
    fails("child -> other device's root", &img, &[], &[&block_msg(b.small_root)]);
    let img = edited(&b, b.dev_root, BlockKind::Node, |i| set64(i, b.dev_root, r.value_off(1), 0));
    fails("child -> superblock", &img, &[], &[&block_msg(0), "checksum mismatch for btree node"]);
    let img = edited(&b, 0, BlockKind::Superblock, |i| set64(i, 0, sb::DETAILS_ROOT, b.top));
    fails("details root -> top-level tree", &img, &[], &[&block_msg(b.top), "value size 8, expected 24"]);
}

#[test]
fn bad_superblock_fields() {
    let Some(b) = base() else { return };
    let img = edited(&b, 0, BlockKind::Superblock, |i| set64(i, 0, 32, 12345));
    fails("magic", &img, &[], &[&block_msg(0), "magic"]);
    let img = edited(&b, 0, BlockKind::Superblock, |i| set32(i, 0, 336, 100));
    fails("data block size", &img, &[], &[&block_msg(0), "data block size 100"]);
    let img = edited(&b, 0, BlockKind::Superblock, |i| set32(i, 0, 360, 1));
    fails("incompat flags", &img, &[], &[&block_msg(0), "incompat"]);
}

#[test]
fn truncated_empty_and_foreign_files() {
    let Some(b) = base() else { return };
    let cut = b.dev_leaf.max(b.dev_leaf2) as usize * BLOCK + 100;
    fails("truncated", &b.img[..cut], &[], &["past the end"]);
    fails("truncated to the superblock", &b.img[..BLOCK], &[], &["past the end"]);
    fails("truncated within the superblock", &b.img[..1000], &[], &["too small"]);
    fails("empty", &[], &[], &["0 bytes", "too small"]);
    let zeros = vec![0u8; 1 << 20];
    fails("zeros", &zeros, &[], &[&block_msg(0), "not dm-thin metadata"]);
    let mut rng = Rng::new(1);
    let noise: Vec<u8> = (0..1 << 20).map(|_| rng.next_u64() as u8).collect();
    fails("random bytes", &noise, &[], &[&block_msg(0), "not dm-thin metadata"]);
    let text = "<superblock uuid=\"\">\n".repeat(1000);
    fails("XML instead of metadata", text.as_bytes(), &[], &[&block_msg(0), "not dm-thin metadata"]);
}

#[test]
fn metadata_snapshot_problems() {
    let Some(b) = base() else { return };
    fails("-m without a snapshot", &b.img, &["-m"], &["no metadata snapshot"]);
    let n = (b.img.len() / BLOCK) as u64;
    let img = edited(&b, 0, BlockKind::Superblock, |i| set64(i, 0, sb::HELD_ROOT, n + 1));
    fails("held root past the end", &img, &["-m"], &[&block_msg(n + 1), "past the end"]);
    let img = edited(&b, 0, BlockKind::Superblock, |i| set64(i, 0, sb::HELD_ROOT, b.dev_leaf));
    fails("held root at a btree node", &img, &["-m"], &[&block_msg(b.dev_leaf), "not dm-thin metadata"]);
    let snap = with_held_snapshot(&b.img, &b.img);
    let held = le64(&snap, 0, sb::HELD_ROOT);
    let o = thinsend(&["dump", "-m", Image::from_bytes(&snap).path().to_str().unwrap()]);
    assert!(o.ok(), "{}", o.stderr);
    fails("-m=BLOCK not the held root", &snap, &[&format!("--metadata-snap={}", held + 1)], &[&held.to_string()]);
}

#[test]
fn inconsistent_device_trees() {
    let Some(b) = base() else { return };
    // The details tree lists device 1 as device 9.
    let d = RawNode::read(&b.img, b.details);
    let img = edited(&b, b.details, BlockKind::Node, |i| set64(i, b.details, d.key_off(0), 0));
    fails("details ids differ", &img, &[], &["inconsistent device ids"]);
}

/// `check` on `img`: its stdout lines (it must fail, with findings, not an error or a panic).
fn check_lines(what: &str, img: &[u8]) -> Vec<String> {
    let image = Image::from_bytes(img);
    let o = run_limited(bin(), &["check", image.path().to_str().unwrap()], Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(1), "{what}: check should report findings: {}", o.stderr);
    assert!(o.stderr.is_empty(), "{what}: {}", o.stderr);
    let lines: Vec<String> = o.stdout_str().lines().map(String::from).collect();
    eprintln!("{what}:\n  {}", lines.join("\n  "));
    lines
}

/// The strict checker walks through the same validated walk as the readers: a pointer cycle is its
/// first finding, naming the block that holds the bad pointer, as `dump` names it.
#[test]
fn check_names_a_pointer_cycle() {
    let Some(b) = base() else { return };
    let r = RawNode::read(&b.img, b.dev_root);
    for i in [0, 1, r.nr - 1] {
        let img = edited(&b, b.dev_root, BlockKind::Node, |img| set64(img, b.dev_root, r.value_off(i), b.dev_root));
        let lines = check_lines(&format!("child {i} -> its parent"), &img);
        let first = &lines[0];
        assert!(first.starts_with("structure: device mapping tree: "), "{first}");
        assert!(first.contains(&block_msg(b.dev_root)) && first.contains("cycle"), "{first}");
        assert!(first.contains(&format!("child pointer {}", b.dev_root)), "{first}");
    }
}

/// A device root pointing back at the top-level root (here the leaf that holds it) is that cycle,
/// not a tree with no devices.
#[test]
fn check_names_a_device_root_pointing_at_the_top_level_root() {
    let Some(b) = base() else { return };
    let t = RawNode::read(&b.img, b.top);
    let img = edited(&b, b.top, BlockKind::Node, |img| set64(img, b.top, t.value_off(1), b.top));
    let lines = check_lines("device root -> top-level root", &img);
    let first = &lines[0];
    assert!(first.contains(&block_msg(b.top)) && first.contains("cycle"), "{first}");
    assert!(first.contains(&format!("child pointer {}", b.top)), "{first}");
    assert!(!lines.iter().any(|l| l.starts_with("device ids:")), "devices misreported: {lines:?}");
    // Devices 1 and 3 are whole; what else is reported follows from the cycle: device 2's own tree
    // and its data blocks are referenced by nothing.
    assert!(lines.last().unwrap().contains(": 2 devices, 3000 mappings,"), "{lines:?}");
    let kinds = ["structure:", "data leak:", "metadata leak:"];
    assert!(lines[..lines.len() - 1].iter().all(|l| kinds.iter().any(|k| l.starts_with(k))), "{lines:?}");
}
