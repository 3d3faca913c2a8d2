//! The mkmeta and `thinsend-native check` command lines: round trips through the binaries, errors
//! that name the line, no partial output on failure, and no panic on any malformed input.

mod mkmeta_support;

use std::path::Path;
use std::process::{Command, Output};

use mkmeta::rng::Rng;
use mkmeta::spec::{Blocks, Op};
use mkmeta_support::*;

fn mkmeta(args: &[&str]) -> Output {
    Command::new(mkmeta_bin()).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Files in `dir` (to see that nothing was left behind).
fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

#[test]
fn generate_then_restore_through_the_binaries() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("snap.img");
    let o = mkmeta(&["generate", s(&spec_file("snapshot.spec")), "-o", s(&img), "--seed", "5"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("2 devices") && out.contains("seed 5"), "{out}");
    assert_valid(&img, "cli generate");
    let xml = dir.path().join("snap.xml");
    std::fs::write(&xml, thin_dump(&img, false)).unwrap();
    let back = dir.path().join("back.img");
    let o = mkmeta(&["restore", "-i", s(&xml), "-o", s(&back), "--metadata-blocks", "3000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_valid(&back, "cli restore");
    assert_eq!(std::fs::metadata(&back).unwrap().len(), 3000 * 4096);
    assert_eq!(thin_dump(&back, false), std::fs::read_to_string(&xml).unwrap());
    let check = Command::new(native()).args(["check", s(&back)]).output().unwrap();
    assert!(check.status.success());
    assert!(String::from_utf8_lossy(&check.stdout).contains("0 findings"));
}

#[test]
fn too_small_metadata_is_a_clear_error_and_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("small.img");
    let data = dir.path().join("small.data");
    let o =
        mkmeta(&["generate", s(&spec_file("data.spec")), "-o", s(&img), "--data", s(&data), "--metadata-blocks", "5"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("metadata device of 5 blocks is too small") && e.contains("needs at least"), "{e}");
    assert!(listing(dir.path()).is_empty(), "left behind: {:?}", listing(dir.path()));
    // The size it asks for works.
    let need: String = e.split("needs at least ").nth(1).unwrap().chars().take_while(|c| c.is_ascii_digit()).collect();
    let o = mkmeta(&["generate", s(&spec_file("data.spec")), "-o", s(&img), "--metadata-blocks", &need]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_valid(&img, "exactly the size asked for");
    // A failing run leaves an existing image as it was.
    let before = std::fs::read(&img).unwrap();
    let o = mkmeta(&["generate", s(&spec_file("data.spec")), "-o", s(&img), "--metadata-blocks", "10"]);
    assert!(!o.status.success());
    assert!(std::fs::read(&img).unwrap() == before);
    assert_eq!(listing(dir.path()), vec!["small.img"]);
}

#[test]
fn spec_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        ("pool data_block_size=128 nr_data_blocks=10\ncreate 1\nwrite 1 0+\n", ":3: expected a number, found ''"),
        ("pool data_block_size=128 nr_data_blocks=10\ncreate 1\nwrite 1 0+11\n", ":3: data device full"),
        ("pool data_block_size=128 nr_data_blocks=10\ncreate 1\ncreate 1\n", ":3: thin device 1 already exists"),
        ("pool data_block_size=128 nr_data_blocks=10\n\nsnap 2 of 1\n", ":3: thin device 1 does not exist"),
        ("pool data_block_size=128 nr_data_blocks=10\nrelease_metadata_snap\n", ":2: no metadata snapshot is held"),
        (
            "pool data_block_size=128 nr_data_blocks=10\nreserve_metadata_snap\nreserve_metadata_snap\n",
            ":3: a metadata snapshot is already held",
        ),
        (
            "pool data_block_size=128 nr_data_blocks=10\ncreate 1\nwrite 1 random count=5 run=1..4\n",
            ":3: random runs of up to 4 blocks need a range",
        ),
        ("# nothing\n", ":1: no 'pool' line"),
    ];
    for (i, (spec, want)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.spec"));
        std::fs::write(&p, spec).unwrap();
        let img = dir.path().join("x.img");
        let o = mkmeta(&["generate", s(&p), "-o", s(&img)]);
        assert!(!o.status.success(), "case {i} succeeded");
        let e = stderr(&o);
        assert!(e.contains(&format!("bad{i}.spec{want}")), "case {i}: {e}");
        assert!(!img.exists());
    }
}

#[test]
fn xml_errors_name_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let sb = "<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"128\" nr_data_blocks=\"100\">\n";
    let dev = "  <device dev_id=\"1\" mapped_blocks=\"1\" transaction=\"0\" creation_time=\"0\" snap_time=\"0\">\n";
    let cases = [
        (format!("{sb}{dev}    <single_mapping origin_block=\"0\" data_block=\"100\" time=\"0\"/>\n"), ":3:5: mapping beyond end of data device (100 >= 100)"),
        (format!("{sb}{dev}    <single_mapping origin_block=\"0\" data_block=\"1\"/>\n"), ":3:5: <single_mapping> needs the attribute 'time'"),
        (format!("{sb}{dev}    <single_mapping origin_block=\"0\" data_block=\"1\" time=\"0\" foo=\"1\"/>\n"), ":3:5: unknown attribute 'foo'"),
        (format!("{sb}{dev}    <bogus/>\n"), ":3:5: unexpected <bogus> in <device>"),
        (format!("{sb}{dev}    <ref name=\"7\"/>\n"), ":3:5: <ref name=\"7\"> before any <def name=\"7\">"),
        (format!("{sb}{dev}  </device>\n"), ":4:1: end of input inside <superblock>"),
        (format!("{sb}{dev}    <single_mapping origin_block=\"x\" data_block=\"1\" time=\"0\"/>\n"), ":3:5: attribute 'origin_block' of <single_mapping> is 'x'"),
        (format!("{sb}{dev}    <range_mapping origin_begin=\"5\" data_begin=\"1\" length=\"2\" time=\"0\"/>\n    <single_mapping origin_block=\"6\" data_block=\"9\" time=\"0\"/>\n"), ":4:5: mappings must be in ascending block order"),
        (format!("{sb}{dev}    <single_mapping origin_block=\"0\" data_block=\"1\" time=0/>\n"), ":3:58: expected a quoted value"),
        ("<superblock uuid=\"\" time=\"0\" transaction=\"0\" data_block_size=\"100\" nr_data_blocks=\"1\"/>\n".to_string(), ":1:1: data_block_size 100 must be a multiple of 128"),
        ("\n\n<device/>".to_string(), ":3:1: expected <superblock> as the first element"),
    ];
    for (i, (xml, want)) in cases.iter().enumerate() {
        let p = dir.path().join(format!("bad{i}.xml"));
        std::fs::write(&p, xml).unwrap();
        let img = dir.path().join("x.img");
        let o = mkmeta(&["restore", "-i", s(&p), "-o", s(&img)]);
        assert!(!o.status.success(), "case {i} succeeded");
        let e = stderr(&o);
        assert!(e.contains(&format!("bad{i}.xml{want}")), "case {i}: {e}");
        assert!(!img.exists());
    }
}

#[test]
fn check_exits_1_on_findings() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) =
        generate(dir.path(), "c", "pool data_block_size=128 nr_data_blocks=100\ncreate 1\nwrite 1 0+10\n", None);
    let mut bytes = std::fs::read(&img).unwrap();
    // A bit flipped in the superblock's time: its checksum no longer matches.
    bytes[44] ^= 1;
    let bad = dir.path().join("bad.img");
    std::fs::write(&bad, bytes).unwrap();
    let o = Command::new(native()).args(["check", s(&bad)]).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("checksum"), "{o:?}");
}

/// Random damage to valid inputs: truncation, deleted and inserted characters.
fn mutate(rng: &mut Rng, text: &str) -> String {
    let mut b = text.as_bytes().to_vec();
    match rng.below(3) {
        0 => b.truncate(rng.below(b.len() as u64) as usize),
        1 => {
            for _ in 0..rng.between(1, 5) {
                if !b.is_empty() {
                    b.remove(rng.below(b.len() as u64) as usize);
                }
            }
        }
        _ => {
            let junk =
                [b"<".as_slice(), b">", b"\"", b"=", b"/", b"9", b"-1", b"&", b"\n", b" ", b"99999999999999999999999"];
            for _ in 0..rng.between(1, 5) {
                let at = rng.below(b.len() as u64 + 1) as usize;
                let j = junk[rng.below(junk.len() as u64) as usize];
                b.splice(at..at, j.iter().copied());
            }
        }
    }
    String::from_utf8_lossy(&b).into_owned()
}

#[test]
fn malformed_xml_and_specs_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = generate(
        dir.path(),
        "src",
        "pool data_block_size=128 nr_data_blocks=5000\ncreate 1\nwrite 1 0+300\nsnap 2 of 1\nwrite 2 3+4\n",
        None,
    );
    let xml = thin_dump(&img, false);
    let spec = std::fs::read_to_string(spec_file("snapshot.spec")).unwrap();
    let seed = 4242;
    let mut rng = Rng::new(seed);
    let out = dir.path().join("m.img");
    for round in 0..150 {
        let x = mutate(&mut rng, &xml);
        // Ok or Err are both fine; a panic fails the test.
        if let Ok(o) = mkmeta::restore::restore(x.as_bytes(), "m.xml", &out, None) {
            assert!(o.image.nr_blocks >= 1024, "seed {seed} round {round}");
            strict_check(&out, &format!("seed {seed} round {round}: restore of mutated xml"));
        }
        let sp = mutate(&mut rng, &spec);
        // Play only what stays small (a mutated count can ask for billions of block writes).
        if let Ok(parsed) = mkmeta::spec::parse(&sp, "m.spec") {
            let work: u64 = parsed
                .ops
                .iter()
                .map(|(_, op)| match op {
                    Op::Write { blocks: Blocks::Random { count, .. }, .. } => *count,
                    Op::Write { blocks: Blocks::Extent(e), .. } => e.len,
                    _ => 0,
                })
                .sum();
            if work < 1_000_000 && parsed.pool.nr_data_blocks < 10_000_000 {
                let _ = mkmeta::generate::generate_str(&sp, "m.spec", &out, &Default::default());
            }
        }
    }
}
