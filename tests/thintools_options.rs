//! thin-provisioning-tools compatibility, option by option: for each thin_dump, thin_delta, thin_ls
//! and thin_check 0.9.0 option the README's table marks as supported, the same arguments given to
//! `thinsend-native dump|diff|ls|check` and to Debian's tool on the kernel-written pools of
//! testdata/kernel give the same output (byte for byte where the tool's output is a format:
//! thin_dump, thin_delta, thin_ls) or the same verdict (thin_check, whose wording differs).

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::*;
use thinsend::checksum::{self, BlockKind};
use thinsend::pool::Pool;
use thinsend::spacemap::{bitmap_set, MetadataIndex, ENTRIES_PER_BITMAP};
use thinsend::superblock::{Source, Superblock};

const POOLS: [&str; 7] = ["snapchain", "bigchunk", "manymap", "sparse128k", "fresh", "nodevs", "manydevs"];

/// The kernel pools unpacked: (name, image, held metadata snapshot block if any).
struct Pools {
    dir: tempfile::TempDir,
    list: Vec<(&'static str, PathBuf, Option<u64>)>,
}

fn pools() -> Option<Pools> {
    if !have_oracle() {
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let list = POOLS
        .iter()
        .map(|&name| {
            let src = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("testdata/kernel/{name}.tmeta.gz"));
            let img = dir.path().join(format!("{name}.img"));
            let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(&src).unwrap());
            std::io::copy(&mut gz, &mut std::fs::File::create(&img).unwrap()).unwrap();
            let bytes = std::fs::read(&img).unwrap();
            let held = Superblock::unpack(&bytes[..4096]).unwrap().held_root;
            (name, img, (held != 0).then_some(held))
        })
        .collect();
    Some(Pools { dir, list })
}

fn os<'a>(args: &'a [&'a str], img: &'a Path) -> Vec<&'a OsStr> {
    args.iter().map(OsStr::new).chain([img.as_os_str()]).collect()
}

/// `thinsend-native CMD args IMG` against `TOOL args IMG`: same status and same stdout.
fn same(cmd: &str, tool_name: &str, args: &[&str], img: &Path) -> Out {
    let ours = [&[OsStr::new(cmd)][..], &os(args, img)].concat();
    let (o, t) = (thinsend(&ours), run(tool(tool_name), &os(args, img)));
    assert_same(&format!("{}: {cmd} / {tool_name} {}", img.display(), args.join(" ")), &o, &t);
    o
}

/// Both fail (the arguments are wrong for both).
fn both_refuse(cmd: &str, tool_name: &str, args: &[&str]) {
    let ours = [&[cmd][..], args].concat();
    let (o, t) = (thinsend(&ours), run(tool(tool_name), args));
    assert!(!t.ok(), "{tool_name} {args:?} succeeded: the test's premise is wrong");
    assert!(!o.ok(), "{cmd} {args:?} succeeded where {tool_name} fails: {}", o.stdout_str());
}

#[test]
fn dump_format_xml_and_human_readable() {
    let Some(p) = pools() else { return };
    for (_, img, held) in &p.list {
        for m in if held.is_some() { &[false, true][..] } else { &[false][..] } {
            let m: &[&str] = if *m { &["-m"] } else { &[] };
            for f in [&["-f", "xml"][..], &["--format", "xml"], &["-f", "human_readable"], &["--format=human_readable"]]
            {
                same("dump", "thin_dump", &[f, m].concat(), img);
                same("dump", "thin_dump", &[f, m, &["--skip-mappings"]].concat(), img);
            }
        }
    }
}

#[test]
fn dump_metadata_snap_forms_follow_getopt() {
    let Some(p) = pools() else { return };
    for (_, img, held) in &p.list {
        let Some(h) = held else {
            same("dump", "thin_dump", &["-m"], img); // both refuse: no snapshot held
            continue;
        };
        let (glued, eq) = (format!("-m{h}"), format!("--metadata-snap={h}"));
        for args in [&["-m"][..], &["--metadata-snap"], &[&glued], &[&eq]] {
            let o = same("dump", "thin_dump", args, img);
            assert!(o.ok(), "{args:?}");
        }
        let wrong = format!("-m{}", h + 1);
        same("dump", "thin_dump", &[&wrong], img);
        // getopt: `-m 200` is -m without a block, 200 the device; both refuse it.
        let (hs, i) = (h.to_string(), img.to_str().unwrap());
        both_refuse("dump", "thin_dump", &["-m", &hs, i]);
        both_refuse("dump", "thin_dump", &["--metadata-snap", &hs, i]);
    }
}

#[test]
fn dump_dev_id_and_skip_mappings() {
    let Some(p) = pools() else { return };
    for (_, img, _) in &p.list {
        same("dump", "thin_dump", &["--skip-mappings"], img);
        same("dump", "thin_dump", &["--dev-id", "1"], img);
        same("dump", "thin_dump", &["--dev-id", "5", "--dev-id", "2", "--dev-id", "999"], img);
        same("dump", "thin_dump", &["--dev-id", "2", "--skip-mappings", "-f", "human_readable"], img);
    }
}

#[test]
fn dump_superblock_overrides() {
    let Some(p) = pools() else { return };
    for (_, img, _) in &p.list {
        for f in ["xml", "human_readable"] {
            same("dump", "thin_dump", &["-f", f, "--transaction-id", "77"], img);
            same("dump", "thin_dump", &["-f", f, "--data-block-size", "256", "--nr-data-blocks", "12345"], img);
        }
    }
}

#[test]
fn dump_output_file() {
    let Some(p) = pools() else { return };
    for (name, img, _) in &p.list {
        let (ours, theirs) =
            (p.dir.path().join(format!("{name}.ours.xml")), p.dir.path().join(format!("{name}.ref.xml")));
        let o = thinsend(&[OsStr::new("dump"), OsStr::new("-o"), ours.as_os_str(), img.as_os_str()]);
        let t = run(tool("thin_dump"), &[OsStr::new("-o"), theirs.as_os_str(), img.as_os_str()]);
        assert!(o.ok() && t.ok(), "{name}: {} / {}", o.stderr, t.stderr);
        assert!(o.stdout.is_empty(), "{name}: dump -o wrote to stdout too");
        assert_eq!(std::fs::read(&ours).unwrap(), std::fs::read(&theirs).unwrap(), "{name}: -o FILE differs");
    }
    // Unlike thin_dump, an existing file is not overwritten and a symlink is not followed.
    let (_, img, _) = &p.list[0];
    let kept = p.dir.path().join("kept");
    std::fs::write(&kept, b"precious").unwrap();
    let link = p.dir.path().join("link");
    std::os::unix::fs::symlink(&kept, &link).unwrap();
    for target in [&kept, &link] {
        let o = thinsend(&[OsStr::new("dump"), OsStr::new("-o"), target.as_os_str(), img.as_os_str()]);
        assert!(!o.ok() && o.stderr.lines().count() == 1, "{}: {}", target.display(), o.stderr);
        assert_eq!(std::fs::read(&kept).unwrap(), b"precious");
    }
}

/// A pair of devices of each pool with a held snapshot (for -m) and without.
fn pairs(img: &Path, snap: bool) -> Vec<(String, String)> {
    let m: &[&str] = if snap { &["-m"] } else { &[] };
    let o = run(tool("thin_ls"), &os(&[&["--no-headers", "-o", "DEV"], m].concat(), img));
    let ids: Vec<String> = o.stdout_str().split_whitespace().map(String::from).collect();
    match (ids.first(), ids.last()) {
        (Some(a), Some(b)) => vec![(a.clone(), b.clone()), (b.clone(), a.clone())],
        _ => vec![],
    }
}

#[test]
fn diff_snap_and_thin_names_and_verbose() {
    let Some(p) = pools() else { return };
    for (_, img, held) in &p.list {
        for snap in if held.is_some() { &[false, true][..] } else { &[false][..] } {
            let m: &[&str] = if *snap { &["-m"] } else { &[] };
            for (a, b) in pairs(img, *snap) {
                for names in [["--snap1", "--snap2"], ["--thin1", "--thin2"]] {
                    for v in [&[][..], &["--verbose"]] {
                        let args = [&[names[0], &a, names[1], &b][..], v, m].concat();
                        same("diff", "thin_delta", &args, img);
                    }
                }
            }
        }
    }
}

#[test]
fn diff_metadata_snap_forms_follow_getopt() {
    let Some(p) = pools() else { return };
    for (_, img, held) in &p.list {
        let Some(h) = held else { continue };
        let Some((a, b)) = pairs(img, true).into_iter().next() else { continue };
        let (glued, eq) = (format!("-m{h}"), format!("--metadata-snap={h}"));
        for m in [&["-m"][..], &["--metadata-snap"], &[&glued], &[&eq]] {
            let o = same("diff", "thin_delta", &[&["--snap1", &a, "--snap2", &b][..], m].concat(), img);
            assert!(o.ok(), "{m:?}");
        }
        let (hs, i) = (h.to_string(), img.to_str().unwrap());
        both_refuse("diff", "thin_delta", &["--snap1", &a, "--snap2", &b, "-m", &hs, i]);
    }
}

#[test]
fn ls_fields_as_o_and_format() {
    let Some(p) = pools() else { return };
    let fields = "DEV,MAPPED_BLOCKS,EXCLUSIVE_BYTES,SHARED_SECTORS,MAPPED,SHARED,TRANSACTION,CREATE_TIME,SNAP_TIME";
    for (_, img, held) in &p.list {
        for m in if held.is_some() { &[false, true][..] } else { &[false][..] } {
            let m: &[&str] = if *m { &["-m"] } else { &[] };
            for o in ["-o", "--format"] {
                same("ls", "thin_ls", &[&[o, fields][..], m].concat(), img);
                same("ls", "thin_ls", &[&[o, "DEV,EXCLUSIVE"][..], m, &["--no-headers"]].concat(), img);
            }
            same("ls", "thin_ls", &[&["--no-headers"][..], m].concat(), img);
        }
    }
}

/// thin_check's verdict (exit status) and ours on `img` with `args`; both quiet with -q.
fn same_verdict(args: &[&str], img: &Path) -> bool {
    let ours = [&[OsStr::new("check")][..], &os(args, img)].concat();
    let (o, t) = (thinsend(&ours), run(tool("thin_check"), &os(args, img)));
    assert_eq!(
        o.ok(),
        t.ok(),
        "check {args:?} {}: ours {} ({}), thin_check {} ({})",
        img.display(),
        o.status,
        o.stderr,
        t.status,
        t.stderr
    );
    if args.contains(&"-q") || args.contains(&"--quiet") {
        assert!(o.stdout.is_empty() && o.stderr.is_empty(), "check -q printed {:?} {:?}", o.stdout_str(), o.stderr);
        assert!(t.stdout.is_empty() && t.stderr.is_empty(), "thin_check -q printed");
    }
    o.ok()
}

/// `img` with the root of device 1's mapping tree overwritten (a bad checksum), saved as `name`.
fn broken_mappings(dir: &Path, img: &Path, name: &str) -> PathBuf {
    let pool = Pool::open(img, Source::Live).unwrap();
    let root = pool.device(pool.devices[0].id).unwrap().root as usize;
    let mut bytes = std::fs::read(img).unwrap();
    bytes[root * 4096 + 100] ^= 0xff;
    let out = dir.join(name);
    std::fs::write(&out, bytes).unwrap();
    out
}

/// `img` with one metadata block counted in use that nothing references: a leak, non-fatal.
fn leaked_metadata_block(dir: &Path, img: &Path) -> PathBuf {
    let mut bytes = std::fs::read(img).unwrap();
    let mut sb = Superblock::unpack(&bytes[..4096]).unwrap();
    let leaked = sb.metadata_nr_blocks - 1;
    let idx = sb.metadata_sm.bitmap_root as usize;
    let nr = sb.metadata_sm.nr_blocks.div_ceil(ENTRIES_PER_BITMAP) as usize;
    let index = MetadataIndex::unpack(&bytes[idx * 4096..(idx + 1) * 4096], nr).unwrap();
    let slot = (leaked / ENTRIES_PER_BITMAP) as usize;
    let bm = index.entries[slot].blocknr as usize;
    let block = &mut bytes[bm * 4096..(bm + 1) * 4096];
    bitmap_set(block, (leaked % ENTRIES_PER_BITMAP) as usize, 1);
    checksum::stamp(block, BlockKind::Bitmap);
    let off = idx * 4096 + 16 + 16 * slot + 8;
    let nr_free = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap());
    bytes[off..off + 4].copy_from_slice(&(nr_free - 1).to_le_bytes());
    checksum::stamp(&mut bytes[idx * 4096..(idx + 1) * 4096], BlockKind::Index);
    sb.metadata_sm.nr_allocated += 1;
    bytes[..4096].copy_from_slice(&sb.pack());
    let out = dir.join("leak.img");
    std::fs::write(&out, bytes).unwrap();
    let report = thinsend::check::check_path(&out).unwrap();
    assert_eq!(
        report.totals.keys().collect::<Vec<_>>(),
        [&thinsend::check::Kind::MetadataLeak],
        "{:?}",
        report.lines()
    );
    out
}

#[test]
fn check_quiet() {
    let Some(p) = pools() else { return };
    for (_, img, _) in &p.list {
        assert!(same_verdict(&["-q"], img));
        assert!(same_verdict(&["--quiet"], img));
    }
    let bad = broken_mappings(p.dir.path(), &p.list[0].1, "bad.img");
    assert!(!same_verdict(&["-q"], &bad));
}

#[test]
fn check_super_block_only_and_skip_mappings() {
    let Some(p) = pools() else { return };
    for (name, img, _) in &p.list {
        if *name == "nodevs" {
            continue; // no mapping tree to break
        }
        let bad = broken_mappings(p.dir.path(), img, &format!("{name}.bad"));
        assert!(!same_verdict(&[], &bad), "{name}: a broken mapping tree must fail the full check");
        assert!(same_verdict(&["--super-block-only"], &bad), "{name}");
        assert!(same_verdict(&["--skip-mappings"], &bad), "{name}");
        assert!(same_verdict(&["--super-block-only"], img) && same_verdict(&["--skip-mappings"], img));
    }
    // A broken superblock fails even --super-block-only.
    let mut bytes = std::fs::read(&p.list[0].1).unwrap();
    bytes[40] ^= 0xff;
    let sb_bad = p.dir.path().join("sb.img");
    std::fs::write(&sb_bad, bytes).unwrap();
    assert!(!same_verdict(&["--super-block-only"], &sb_bad));
}

#[test]
fn check_ignore_non_fatal_errors() {
    let Some(p) = pools() else { return };
    let leak = leaked_metadata_block(p.dir.path(), &p.list[1].1);
    assert!(!same_verdict(&[], &leak), "without the option a leak fails the check");
    assert!(same_verdict(&["--ignore-non-fatal-errors"], &leak), "a leak is not fatal");
    let bad = broken_mappings(p.dir.path(), &p.list[1].1, "bad.img");
    assert!(!same_verdict(&["--ignore-non-fatal-errors"], &bad), "a broken tree is fatal");
}

#[test]
fn check_metadata_snap() {
    let Some(p) = pools() else { return };
    for (_, img, _) in &p.list {
        same_verdict(&["-m"], img);
        same_verdict(&["--metadata-snap"], img);
    }
}
