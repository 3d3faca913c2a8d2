//! Every JSON-producing command, run on the kernel-written pools of testdata/kernel, writes documents
//! that docs/thinsend.schema.json accepts (validated with the `jsonschema` crate), each tagged
//! `"schema": "thinsend/1"`. The schema is strict: a missing key, an unknown key or a wrong type in
//! one of the documents this project defines fails, so the schema and docs/JSON.md cannot drift
//! from the writers.

use std::path::{Path, PathBuf};
use std::process::Output;

#[path = "stream_common/mod.rs"]
mod common;
use common::run;

use serde_json::Value;

const POOLS: [&str; 7] = ["snapchain", "bigchunk", "manymap", "sparse128k", "fresh", "nodevs", "manydevs"];

fn validator() -> jsonschema::Validator {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/thinsend.schema.json");
    let schema: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).expect("schema file is JSON");
    jsonschema::meta::validate(&schema).expect("the schema is a valid JSON Schema");
    jsonschema::validator_for(&schema).expect("schema compiles")
}

/// The gzipped testdata file `name` unpacked into `dir`.
fn unpack(dir: &Path, name: &str) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/kernel").join(format!("{name}.gz"));
    let dst = dir.join(name);
    let mut gz = flate2::read::GzDecoder::new(std::fs::File::open(&src).unwrap());
    std::io::copy(&mut gz, &mut std::fs::File::create(&dst).unwrap()).unwrap();
    dst
}

fn ok(args: &[&str], stdin: &[u8]) -> Output {
    let o = run(args, stdin);
    assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
    o
}

/// Parses `text` as one document, validates it and returns it.
fn valid(v: &jsonschema::Validator, what: &str, text: &[u8]) -> Value {
    let doc: Value = serde_json::from_slice(text)
        .unwrap_or_else(|e| panic!("{what}: not one JSON document ({e}): {}", String::from_utf8_lossy(text)));
    let errors: Vec<String> = v.iter_errors(&doc).map(|e| format!("{} at {}", e, e.instance_path)).collect();
    assert!(errors.is_empty(), "{what}: does not match the schema: {errors:#?}\n{doc}");
    assert_eq!(doc["schema"], "thinsend/1", "{what}");
    doc
}

/// Every line of `text` is a valid document; returns them.
fn valid_lines(v: &jsonschema::Validator, what: &str, text: &[u8]) -> Vec<Value> {
    let text = String::from_utf8_lossy(text);
    assert!(!text.trim().is_empty(), "{what}: no JSON lines");
    text.lines().map(|l| valid(v, what, l.as_bytes())).collect()
}

fn dev_ids(dump: &Value) -> Vec<u64> {
    dump["devices"].as_array().unwrap().iter().map(|d| d["dev_id"].as_u64().unwrap()).collect()
}

#[test]
fn metadata_commands_match_the_schema() {
    let v = validator();
    let dir = tempfile::tempdir().unwrap();
    let mut docs = 0;
    for pool in POOLS {
        let img = unpack(dir.path(), &format!("{pool}.tmeta"));
        let img = img.to_str().unwrap();
        let held = run(&["dump", "-m", "--skip-mappings", img], b"").status.success();
        for m in if held { &[false, true][..] } else { &[false][..] } {
            let m: &[&str] = if *m { &["-m"] } else { &[] };
            let what = |c: &str| format!("{pool} {m:?} {c}");
            let dump = valid(&v, &what("dump"), &ok(&[&["dump", "--format", "json"], m, &[img]].concat(), b"").stdout);
            assert_eq!(dump["superblock"]["metadata_snapshot"], !m.is_empty(), "{}", what("dump"));
            let skip = [&["dump", "--format", "json", "--skip-mappings"], m, &[img]].concat();
            let skipped = valid(&v, &what("dump --skip-mappings"), &ok(&skip, b"").stdout);
            assert!(skipped["devices"].as_array().unwrap().iter().all(|d| d["mappings"].is_null()));
            valid(&v, &what("ls"), &ok(&[&["ls", "--format", "json"], m, &[img]].concat(), b"").stdout);
            let ids = dev_ids(&dump);
            let pairs = match (ids.first(), ids.get(1), ids.last()) {
                (Some(&a), Some(&b), Some(&c)) => vec![(a, b), (c, a)],
                (Some(&a), None, _) => vec![(a, a)],
                _ => vec![],
            };
            for (a, b) in pairs {
                let (a, b) = (a.to_string(), b.to_string());
                for extra in [&[][..], &["--verbose"], &["--stats", "--changed-only"], &["--verbose", "--stats"]] {
                    let args = [&["diff", "--format", "json", "--snap1", &a, "--snap2", &b], extra, m, &[img]].concat();
                    valid(&v, &what(&format!("diff {a} {b} {extra:?}")), &ok(&args, b"").stdout);
                    docs += 1;
                }
            }
            let check = [&["check", "--format", "json"], m, &[img]].concat();
            let c = valid(&v, &what("check"), &run(&check, b"").stdout);
            assert_eq!(c["passed"], true, "{}: kernel-written metadata must pass: {c}", what("check"));
            docs += 5;
        }
    }
    assert!(docs > 40, "only {docs} documents checked");
}

#[test]
fn ls_json_honours_the_fields_asked_for() {
    let v = validator();
    let dir = tempfile::tempdir().unwrap();
    let img = unpack(dir.path(), "snapchain.tmeta");
    let img = img.to_str().unwrap();
    for (args, keys) in [
        (&["-o", "DEV,MAPPED_BYTES,CREATE_TIME"][..], &["dev_id", "mapped_bytes", "creation_time"][..]),
        (&["--format", "EXCLUSIVE,SNAP_TIME"][..], &["exclusive", "snap_time"][..]),
    ] {
        let doc = valid(&v, "ls", &ok(&[&["ls", "--format", "json"], args, &[img]].concat(), b"").stdout);
        for d in doc["devices"].as_array().unwrap() {
            let got: Vec<&str> = d.as_object().unwrap().keys().map(String::as_str).collect();
            assert_eq!(got, keys, "{args:?}");
        }
    }
    let all = valid(&v, "ls", &ok(&["ls", "--format", "json", img], b"").stdout);
    assert_eq!(all["fields"].as_array().unwrap().len(), 16, "JSON without -o gives every field");
}

/// The file form of send (dry run and real, native and LINBIT, full and incremental), recv into a
/// file, inspect of each stream, and the --progress=json lines of both sides.
#[test]
fn stream_commands_match_the_schema() {
    let v = validator();
    let dir = tempfile::tempdir().unwrap();
    let (img, data) = (unpack(dir.path(), "bigchunk.tmeta"), unpack(dir.path(), "bigchunk.tdata"));
    let pool = ["--metadata", img.to_str().unwrap(), "--data", data.to_str().unwrap(), "--size", "24M"];
    for format in ["native", "linbit"] {
        for base in [None, Some("1")] {
            let what = format!("{format} base {base:?}");
            let mut args = [&["send", "--thin-id", "4", "--stream-format", format][..], &pool].concat();
            if let Some(b) = base {
                args.extend(["--base-id", b]);
            }
            let plan = valid(&v, &what, &ok(&[&args[..], &["--dry-run", "--format", "json"]].concat(), b"").stdout);
            let sent = ok(&[&args[..], &["--format", "json", "--progress=json"]].concat(), b"");
            let lines = valid_lines(&v, &what, &sent.stderr);
            let last = lines.last().unwrap();
            assert_eq!(last["type"], "send", "{what}: the result is the last line on stderr");
            assert_eq!(last["totals"], plan["totals"], "{what}: the result's totals are the plan's");
            assert!(lines.iter().any(|l| l["type"] == "progress" && l["final"] == true), "{what}: {lines:?}");
            let stream = sent.stdout;
            for extra in [&[][..], &["--verify"]] {
                let ins = ok(&[&["inspect", "--format", "json"], extra].concat(), &stream);
                let doc = valid(&v, &format!("{what} inspect {extra:?}"), &ins.stdout);
                assert_eq!(doc["summary"]["stream_bytes"], plan["totals"]["stream_bytes"], "{what}");
            }
            if format == "native" {
                let z = ok(&[&args[..], &["--compress", "zstd:1", "--quiet"]].concat(), b"").stdout;
                let doc =
                    valid(&v, &format!("{what} compressed inspect"), &ok(&["inspect", "--format", "json"], &z).stdout);
                let zdata = doc["records"].as_array().unwrap().iter().filter(|r| r["kind"] == "zdata").count();
                assert!(zdata > 0, "{what}: no ZDATA listed");
            }
            if base.is_none() {
                let target = dir.path().join(format!("{format}.img"));
                let args = ["recv", "--to", target.to_str().unwrap(), "--format", "json", "--progress=json"];
                let got = ok(&args, &stream);
                let doc = valid(&v, &format!("{what} recv"), &got.stdout);
                assert_eq!(doc["summary"]["stream_bytes"], plan["totals"]["stream_bytes"], "{what}");
                assert_eq!(doc["header"].is_null(), format == "linbit", "{what}");
                let progress = valid_lines(&v, &format!("{what} recv progress"), &got.stderr);
                assert!(progress.iter().all(|l| l["type"] == "progress" && l["command"] == "recv"), "{progress:?}");
                // Native HEADERs leave the DATA total out (zero blocks elided): progress is the volume
                // position, of the volume size, and ends at it.
                let last = progress.last().unwrap();
                if format == "native" {
                    assert_eq!(doc["header"]["data_bytes"], serde_json::Value::Null, "{what}");
                    assert_eq!(
                        (last["done_bytes"].as_u64(), last["total_bytes"].as_u64()),
                        (Some(24 << 20), Some(24 << 20))
                    );
                    let done: Vec<u64> = progress.iter().map(|l| l["done_bytes"].as_u64().unwrap()).collect();
                    assert!(done.windows(2).all(|w| w[0] <= w[1]), "{what}: {done:?}");
                } else {
                    assert_eq!(last["total_bytes"], serde_json::Value::Null, "{what}");
                }
            }
        }
    }
}

#[test]
fn broken_and_empty_streams_still_give_a_valid_document() {
    let v = validator();
    let dir = tempfile::tempdir().unwrap();
    let (img, data) = (unpack(dir.path(), "bigchunk.tmeta"), unpack(dir.path(), "bigchunk.tdata"));
    let args = ["send", "--metadata", img.to_str().unwrap(), "--data", data.to_str().unwrap(), "--thin-id", "1"];
    let stream = ok(&[&args[..], &["--size", "24M"]].concat(), b"").stdout;
    for (what, input) in [("truncated", &stream[..stream.len() / 2]), ("empty", &[][..]), ("garbage", &[7u8; 64][..])] {
        for extra in [&[][..], &["--verify"]] {
            let o = run(&[&["inspect", "--format", "json"], extra].concat(), input);
            assert!(!o.status.success(), "{what}: accepted");
            let doc = valid(&v, what, &o.stdout);
            assert_eq!(doc["valid"], false, "{what}");
            assert!(doc["error"].is_string() && doc["summary"].is_null(), "{what}: {doc}");
        }
    }
}

/// The schema is not a rubber stamp: each way a writer could break the contract is refused.
#[test]
fn the_schema_refuses_what_the_contract_forbids() {
    let v = validator();
    let dir = tempfile::tempdir().unwrap();
    let img = unpack(dir.path(), "bigchunk.tmeta");
    let dump: Value =
        serde_json::from_slice(&ok(&["dump", "--format", "json", img.to_str().unwrap()], b"").stdout).unwrap();
    assert!(v.is_valid(&dump));
    type Break = fn(&mut Value);
    let broken: [(&str, Break); 6] = [
        ("a null left out", |d| {
            d["superblock"].as_object_mut().unwrap().remove("held_root");
        }),
        ("an unknown key", |d| d["devices"][0]["dev"] = 1.into()),
        ("an old name", |d| {
            let m = d["devices"][0]["mappings"][0].as_object_mut().unwrap();
            let n = m.remove("length_blocks").unwrap();
            m.insert("length".into(), n);
        }),
        ("another schema version", |d| d["schema"] = "thinsend/2".into()),
        ("no type", |d| {
            d.as_object_mut().unwrap().remove("type");
        }),
        ("a number as a string", |d| d["devices"][0]["dev_id"] = "1".into()),
    ];
    for (what, f) in broken {
        let mut d = dump.clone();
        f(&mut d);
        assert!(!v.is_valid(&d), "the schema accepts a dump with {what}");
    }
}
