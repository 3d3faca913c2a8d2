//! Round trips through the real binary: full and incremental chains sent through a pipe into a file
//! reproduce every snapshot's image as rebuilt from its mappings.

#[path = "stream_common/mod.rs"]
mod common;

use common::*;

fn recv_to(path: &std::path::Path, extra: &[&str]) -> Vec<String> {
    let mut a = vec!["recv".to_string(), "--to".into(), s(path).into(), "--quiet".into()];
    a.extend(extra.iter().map(|x| x.to_string()));
    a
}

#[test]
fn native_chains_reproduce_every_snapshot_image() {
    if !have_thin_restore() {
        return;
    }
    for seed in 1..=3u64 {
        let dir = tempfile::tempdir().unwrap();
        let pool = build(dir.path(), chain(seed, 150, 4));
        let target = dir.path().join("target.img");
        let (snd, rcv) = pipe(&refs(&send_args(&pool, 1, None, &[])), &refs(&recv_to(&target, &[])));
        assert!(snd.status.success() && rcv.status.success(), "full: {} {}", stderr(&snd), stderr(&rcv));
        let d1 = pool.dev(1);
        assert_image(&target, &image(d1, d1.highest_end() * BS), &format!("seed {seed} full 1"));
        for id in 2..=4u64 {
            let (snd, rcv) = pipe(&refs(&send_args(&pool, id, Some(id - 1), &[])), &refs(&recv_to(&target, &[])));
            assert!(
                snd.status.success() && rcv.status.success(),
                "seed {seed} incremental {}->{id}: {} {}",
                id - 1,
                stderr(&snd),
                stderr(&rcv)
            );
            let d = pool.dev(id);
            assert_image(&target, &image(d, d.highest_end() * BS), &format!("seed {seed} after {}->{id}", id - 1));
        }
        assert!(temp_files(dir.path()).is_empty(), "temporary files left behind");
    }
}

#[test]
fn incremental_may_skip_intermediate_snapshots() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(7, 120, 3));
    let target = dir.path().join("t.img");
    let (_, r) = pipe(&refs(&send_args(&pool, 1, None, &[])), &refs(&recv_to(&target, &[])));
    assert!(r.status.success(), "{}", stderr(&r));
    let (_, r) = pipe(&refs(&send_args(&pool, 3, Some(1), &[])), &refs(&recv_to(&target, &[])));
    assert!(r.status.success(), "{}", stderr(&r));
    let d = pool.dev(3);
    assert_image(&target, &image(d, d.highest_end() * BS), "1 -> 3");
}

#[test]
fn sending_from_the_thin_device_itself_gives_the_same_images() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(11, 100, 3));
    // The thin devices as files, a little larger than their mappings.
    let size = 110 * BS;
    let mut devfiles = Vec::new();
    for id in 1..=3u64 {
        let p = dir.path().join(format!("thin{id}.dev"));
        std::fs::write(&p, image(pool.dev(id), size)).unwrap();
        devfiles.push(p);
    }
    let target = dir.path().join("t.img");
    let (s1, r) =
        pipe(&refs(&send_args(&pool, 1, None, &["--source", s(&devfiles[0])])), &refs(&recv_to(&target, &[])));
    assert!(s1.status.success() && r.status.success(), "{} {}", stderr(&s1), stderr(&r));
    assert_image(&target, &image(pool.dev(1), size), "full from --source");
    for id in 2..=3u64 {
        let (s2, r) = pipe(
            &refs(&send_args(&pool, id, Some(id - 1), &["--source", s(&devfiles[id as usize - 1])])),
            &refs(&recv_to(&target, &[])),
        );
        assert!(s2.status.success() && r.status.success(), "{} {}", stderr(&s2), stderr(&r));
        assert_image(&target, &image(pool.dev(id), size), &format!("incremental to {id} from --source"));
    }
}

#[test]
fn linbit_streams_round_trip_through_recv() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(5, 120, 3));
    let target = dir.path().join("t.img");
    // A LINBIT stream has no volume size: the first receive is given it, the next ones keep the
    // target's; every image has exactly the volume's length.
    let size = 120 * BS;
    let size_arg = size.to_string();
    for (id, base) in [(1u64, None), (2, Some(1u64)), (3, Some(2))] {
        let extra: &[&str] = if base.is_none() { &["--size", &size_arg] } else { &[] };
        let (snd, rcv) =
            pipe(&refs(&send_args(&pool, id, base, &["--stream-format", "linbit"])), &refs(&recv_to(&target, extra)));
        assert!(snd.status.success() && rcv.status.success(), "{} {}", stderr(&snd), stderr(&rcv));
        let got = std::fs::read(&target).unwrap();
        let want = image(pool.dev(id), size);
        assert_eq!(got.len(), want.len(), "linbit {id}: image length");
        assert!(got == want, "linbit chain: image of device {id} differs");
    }
    // LINBIT streams carry no identity: a native incremental on top is refused.
    let (_, r) = pipe(&refs(&send_args(&pool, 3, Some(2), &[])), &refs(&recv_to(&target, &[])));
    assert!(!r.status.success(), "native incremental accepted on a LINBIT-received target");
    assert!(stderr(&r).contains("carries no identity"), "{}", stderr(&r));
}

#[test]
fn dry_run_reports_the_exact_stream() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(3, 100, 2));
    for fmt in ["native", "linbit"] {
        for base in [None, Some(1u64)] {
            let id = if base.is_some() { 2 } else { 1 };
            let actual = stream(&pool, id, base, &["--stream-format", fmt]);
            let out = run(
                &refs(&send_args(&pool, id, base, &["--stream-format", fmt, "--dry-run", "--format", "json"])),
                b"",
            );
            assert!(out.status.success(), "{}", stderr(&out));
            let plan: serde_json::Value = serde_json::from_slice(&out.stdout).expect("dry-run JSON");
            assert_eq!(
                plan["totals"]["stream_bytes"].as_u64(),
                Some(actual.len() as u64),
                "{fmt} {base:?}: dry-run size"
            );
            let recs = plan["records"].as_array().unwrap();
            assert_eq!(
                recs.len() as u64 + 2,
                plan["totals"]["records"].as_u64().unwrap(),
                "{fmt} {base:?}: records listed"
            );
            // inspect reads the same records back
            let ins = run(&["inspect", "--format", "json"], &actual);
            assert!(ins.status.success(), "{}", stderr(&ins));
            let v: serde_json::Value = serde_json::from_slice(&ins.stdout).expect("inspect JSON");
            assert_eq!(v["summary"]["records"], plan["totals"]["records"]);
            assert_eq!(v["summary"]["data_bytes"], plan["totals"]["data_bytes"]);
            assert_eq!(v["summary"]["unmap_records"], plan["totals"]["unmap_records"]);
        }
    }
}

#[test]
fn full_stream_does_not_replace_an_existing_file_without_force() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(9, 60, 2));
    let target = dir.path().join("t.img");
    std::fs::write(&target, b"precious").unwrap();
    let st = stream(&pool, 1, None, &[]);
    let out = run(&refs(&recv_to(&target, &[])), &st);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--force"), "{}", stderr(&out));
    assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    let out = run(&refs(&recv_to(&target, &["--force"])), &st);
    assert!(out.status.success(), "{}", stderr(&out));
    let d = pool.dev(1);
    assert_image(&target, &image(d, d.highest_end() * BS), "forced full");
}

#[test]
fn volume_size_comes_from_size_option_and_is_checked() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(4, 50, 1));
    let d = pool.dev(1);
    let big = (d.highest_end() + 10) * BS;
    let target = dir.path().join("t.img");
    let st = stream(&pool, 1, None, &["--size", &big.to_string()]);
    let out = run(&refs(&recv_to(&target, &[])), &st);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_image(&target, &image(d, big), "--size larger than the mappings");
    let small = (d.highest_end() - 1) * BS;
    let out = run(&refs(&send_args(&pool, 1, None, &["--size", &small.to_string()])), b"");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("smaller than"), "{}", stderr(&out));
}

#[test]
fn a_device_without_mappings_needs_a_size() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut devs = chain(2, 40, 1);
    devs.push(Dev { id: 9, transaction: 0, creation_time: 0, snap_time: 0, map: vec![] });
    let pool = build(dir.path(), devs);
    let out = run(&refs(&send_args(&pool, 9, None, &[])), b"");
    assert!(!out.status.success());
    assert!(stderr(&out).contains("--size"), "{}", stderr(&out));
    // With a size it is a stream of holes only.
    let target = dir.path().join("t.img");
    let st = stream(&pool, 9, None, &["--size", "1048576"]);
    let out = run(&refs(&recv_to(&target, &[])), &st);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(&target).unwrap(), vec![0u8; 1 << 20]);
}

#[test]
fn progress_and_summary_go_to_stderr_when_forced() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(12, 60, 1));
    let target = dir.path().join("t.img");
    let mut sa = send_args(&pool, 1, None, &["--progress"]);
    sa.retain(|a| a != "--quiet");
    let (snd, rcv) = pipe(&refs(&sa), &["recv", "--to", s(&target), "--progress"]);
    assert!(snd.status.success() && rcv.status.success(), "{} {}", stderr(&snd), stderr(&rcv));
    assert!(stderr(&snd).contains("sent "), "no send summary: {}", stderr(&snd));
    assert!(stderr(&rcv).contains("received "), "no recv summary: {}", stderr(&rcv));
    // --quiet: nothing at all
    let (snd, rcv) = pipe(&refs(&send_args(&pool, 1, None, &[])), &["recv", "--to", s(&target), "--quiet", "--force"]);
    assert!(snd.stderr.is_empty() && rcv.stderr.is_empty(), "{} {}", stderr(&snd), stderr(&rcv));
}

#[test]
fn send_into_an_appended_file_falls_back_from_splice() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(13, 60, 2));
    for fmt in ["native", "linbit"] {
        let out_path = dir.path().join(format!("stream.{fmt}"));
        let f = std::fs::OpenOptions::new().create(true).append(true).open(&out_path).unwrap();
        let a = send_args(&pool, 2, Some(1), &["--stream-format", fmt]);
        let st = std::process::Command::new(BIN).args(&a).stdout(f).output().unwrap();
        assert!(st.status.success(), "{fmt} send >> file: {}", stderr(&st));
        let want = stream(&pool, 2, Some(1), &["--stream-format", fmt]);
        let got = std::fs::read(&out_path).unwrap();
        assert_eq!(got.len(), want.len(), "{fmt}: appended stream size");
        let ins = run(&["inspect", "--verify"], &got);
        assert!(ins.status.success(), "{fmt}: {}", stderr(&ins));
    }
}

#[test]
fn relative_target_paths_and_symlinks_work() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(14, 60, 2));
    let real = dir.path().join("real.img");
    let st = stream(&pool, 1, None, &[]);
    let out = std::process::Command::new(BIN)
        .args(["recv", "--to", "real.img", "--quiet"])
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(&st)?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let link = dir.path().join("link.img");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    let out = run(&["recv", "--to", s(&link), "--quiet"], &stream(&pool, 2, Some(1), &[]));
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "symlink replaced");
    let d = pool.dev(2);
    assert_image(&real, &image(d, d.highest_end() * BS), "through a symlink");
}
