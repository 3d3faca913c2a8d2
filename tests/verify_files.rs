//! `verify` and `heal` on files, here and through ssh (a fake ssh running the remote side
//! locally): a replica with 100 scattered blocks changed, 10 ranges zeroed and its tail cut is
//! reported range for range as a byte comparison finds it; `heal` sends only those ranges, the
//! replica then equals the source byte for byte, and an incremental from the source is accepted.

#[path = "verify_common/mod.rs"]
mod vc;

use std::fs::OpenOptions;

use vc::*;

fn heal_case(remote: bool) {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = source(dir.path());
    let rep = dir.path().join("replica.img");
    let size = SIZE.to_string();
    let o = run(&["recv", "--to", s(&rep), "--quiet"], &stream(&pool, 1, None, &["--size", &size]));
    assert!(o.status.success(), "full receive: {}", stderr(&o));
    let ssh = fake_ssh(dir.path());
    let to = if remote { format!("h:{}", s(&rep)) } else { s(&rep).to_string() };
    let via: Vec<&str> = if remote { vec!["--ssh-cmd", s(&ssh), "--remote-bin", BIN] } else { vec![] };
    let o = cmd("verify", &pool, &to, &via);
    assert_eq!(o.status.code(), Some(0), "fresh replica: {} {}", String::from_utf8_lossy(&o.stdout), stderr(&o));
    assert!(o.stdout.starts_with(b"equal"));

    let f = OpenOptions::new().write(true).open(&rep).unwrap();
    damage(&f, 1000, 5);
    f.set_len(1000 * BS).unwrap();
    drop(f);
    let want = image(pool.dev(1), SIZE);
    let expected = oracle(&want, &std::fs::read(&rep).unwrap());
    assert!(expected.len() > 50, "the damage shows: {expected:?}");
    let inc = stream(&pool, 2, Some(1), &["--size", &size]);
    assert!(!run(&["recv", "--to", s(&rep), "--quiet"], &inc).status.success(), "a damaged replica refuses");

    let o = cmd("verify", &pool, &to, &[&["--format", "json"][..], &via].concat());
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let r = json(&o);
    assert_eq!(ranges(&r), expected, "verify names exactly the damaged ranges");
    assert_eq!(r["equal"], false);

    let o = cmd("heal", &pool, &to, &[&["--format", "json"][..], &via].concat());
    assert!(o.status.success(), "heal: {}", stderr(&o));
    let h = json(&o);
    let (data, stream_bytes, records) =
        (h["data_bytes"].as_u64().unwrap(), h["stream_bytes"].as_u64().unwrap(), h["records"].as_u64().unwrap());
    let differing = h["before"]["differing_bytes"].as_u64().unwrap();
    let hashes = h["before"]["hash_bytes"].as_u64().unwrap();
    assert!(data <= differing, "sends at most the differing blocks: {data} > {differing}");
    assert!(stream_bytes <= data + 64 * records + 4096, "framing only on top: {stream_bytes} for {data}");
    assert!(hashes < SIZE / 100, "hash traffic {hashes} is under 1% of the volume");
    eprintln!("heal: {differing} bytes differed, {stream_bytes} stream bytes, {hashes} bytes of digests");
    assert_image(&rep, &want, "healed replica");

    let o = cmd("verify", &pool, &to, &via);
    assert_eq!(o.status.code(), Some(0), "after heal: {}", String::from_utf8_lossy(&o.stdout));
    let o = run(&["recv", "--to", s(&rep), "--quiet"], &inc);
    assert!(o.status.success(), "the healed replica takes the incremental from its new base: {}", stderr(&o));
    assert_image(&rep, &image(pool.dev(2), SIZE), "after the incremental");
}

#[test]
fn verify_names_the_damage_and_heal_repairs_a_file() {
    heal_case(false);
}

#[test]
fn verify_and_heal_a_file_through_ssh() {
    heal_case(true);
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
