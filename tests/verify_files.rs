//! `verify` and `heal` on files, here and through ssh (a fake ssh running the remote side
//! locally): a replica with 100 scattered blocks changed, 10 ranges zeroed and its tail cut is
//! reported range for range as a byte comparison finds it; `heal` sends only those ranges, the
//! replica then equals the source byte for byte, and an incremental from the source is accepted.

#[path = "verify_common/mod.rs"]
mod vc;

use std::fs::OpenOptions;

use vc::*;

fn heal_case(remote: bool, blocks: u64) {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir_in(std::env::var_os("VERIFY_TEST_DIR").unwrap_or("/tmp".into())).unwrap();
    let pool = build(dir.path(), chain(13, blocks, 2));
    let rep = dir.path().join("replica.img");
    let vol = blocks * BS;
    let size = vol.to_string();
    let src = |what: &str, extra: &[&str]| {
        let mut a = vec![what.to_string()];
        a.extend(src_args(&pool, 1).into_iter().take(6));
        a.extend(["--size".into(), size.clone(), "--to".into()]);
        a.into_iter()
            .chain([if remote { format!("h:{}", s(&rep)) } else { s(&rep).to_string() }])
            .chain(extra.iter().map(|x| x.to_string()))
            .collect::<Vec<_>>()
    };
    let o = run(&["recv", "--to", s(&rep), "--quiet"], &stream(&pool, 1, None, &["--size", &size]));
    assert!(o.status.success(), "full receive: {}", stderr(&o));
    let ssh = fake_ssh(dir.path());
    let via: Vec<&str> = if remote { vec!["--ssh-cmd", s(&ssh), "--remote-bin", BIN] } else { vec![] };
    let cmd = |what: &str, extra: &[&str]| run(&refs(&src(what, &[extra, &via].concat())), b"");
    let o = cmd("verify", &[]);
    assert_eq!(o.status.code(), Some(0), "fresh replica: {} {}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.stdout.starts_with(b"equal"));

    let f = OpenOptions::new().write(true).open(&rep).unwrap();
    let keep = blocks - blocks / 40;
    damage(&f, keep, 5);
    f.set_len(keep * BS).unwrap();
    drop(f);
    let map = block_map(pool.dev(1), blocks);
    let expected = oracle_stream(&map, &rep);
    assert!(expected.len() > 50, "the damage shows: {expected:?}");
    let inc = stream(&pool, 2, Some(1), &["--size", &size]);
    assert!(!run(&["recv", "--to", s(&rep), "--quiet"], &inc).status.success(), "a damaged replica refuses");

    let o = cmd("verify", &["--format", "json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(ranges(&r), expected, "verify names exactly the damaged ranges");
    assert_eq!(r["equal"], false);

    let o = cmd("heal", &["--format", "json"]);
    assert!(o.status.success(), "heal: {}", stderr(&o));
    let h = json(&o);
    let (data, stream_bytes, records) =
        (h["data_bytes"].as_u64().unwrap(), h["stream_bytes"].as_u64().unwrap(), h["records"].as_u64().unwrap());
    let differing = h["before"]["differing_bytes"].as_u64().unwrap();
    let hashes = h["before"]["hash_bytes"].as_u64().unwrap();
    assert!(data <= differing, "sends at most the differing blocks: {data} > {differing}");
    assert!(stream_bytes <= data + 64 * records + 4096, "framing only on top: {stream_bytes} for {data}");
    assert!(hashes < vol / 100, "hash traffic {hashes} is under 1% of the volume");
    eprintln!(
        "heal of {vol} bytes: {differing} bytes differed, {stream_bytes} stream bytes, {hashes} bytes of digests"
    );
    let want = dir.path().join("want.img");
    write_image(&map, &want);
    assert_eq!(sha256(&rep), sha256(&want), "healed replica: sha256");
    assert!(oracle_stream(&map, &rep).is_empty());

    let o = cmd("verify", &[]);
    assert_eq!(o.status.code(), Some(0), "after heal: {}", String::from_utf8_lossy(&o.stdout));
    let o = run(&["recv", "--to", s(&rep), "--quiet"], &inc);
    assert!(o.status.success(), "the healed replica takes the incremental from its new base: {}", stderr(&o));
    assert!(oracle_stream(&block_map(pool.dev(2), blocks), &rep).is_empty(), "after the incremental");
}

#[test]
fn verify_names_the_damage_and_heal_repairs_a_file() {
    heal_case(false, BLOCKS);
}

#[test]
fn verify_and_heal_a_file_through_ssh() {
    heal_case(true, BLOCKS);
}

/// The 4 GiB case, run by hand: `cargo test --release --test verify_files -- --ignored
/// --nocapture` (needs about 12 GiB in $VERIFY_TEST_DIR, default /tmp).
#[test]
#[ignore]
fn verify_and_heal_a_4_gib_file() {
    heal_case(false, 65536);
}

#[test]
fn exit_codes_say_usage_and_errors_apart() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = source(dir.path());
    let missing = dir.path().join("missing.img");
    let o = cmd("verify", &pool, s(&missing), &[]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("missing.img"), "{}", stderr(&o));
    let o = run(&["verify", "vg/snap"], b"");
    assert_eq!(o.status.code(), Some(2), "no replica: {}", stderr(&o));
    let o = cmd("verify", &pool, "x.img", &["--block-size", "1000"]);
    assert_eq!(o.status.code(), Some(2), "bad block size: {}", stderr(&o));
}

#[test]
fn a_replica_side_that_talks_nonsense_is_an_error_not_an_allocation() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = source(dir.path());
    // The "remote" answers with a frame that claims 4 GiB.
    let liar = dir.path().join("liar");
    std::fs::write(&liar, "#!/bin/sh\ncat >/dev/null &\nprintf '\\377\\377\\377\\377\\002'\nsleep 1\n").unwrap();
    std::process::Command::new("chmod").arg("+x").arg(&liar).status().unwrap();
    let o = cmd("verify", &pool, "h:/x.img", &["--ssh-cmd", s(&liar)]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stderr(&o).contains("frame of 4294967295 bytes"), "{}", stderr(&o));
}
