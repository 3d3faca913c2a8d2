//! `verify` and `heal` on a loop block device: a replica received into it, then 100 scattered
//! blocks changed, 10 ranges zeroed and its tail zeroed (a block device cannot be cut) is reported
//! range for range as a byte comparison finds it; `heal` writes only those ranges in place under
//! the undo journal, after which the device equals the source and takes the next incremental.
//! Needs root and losetup; skipped with a notice otherwise.

#[path = "verify_common/mod.rs"]
mod vc;

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::process::{Command, Output};

use vc::*;

struct Loop(PathBuf);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

fn attach(file: &std::path::Path) -> Option<Loop> {
    let out = Command::new("losetup").args(["-f", "--show"]).arg(file).output().ok()?;
    if !out.status.success() {
        eprintln!("NOTICE: cannot attach a loop device (needs root and losetup): test skipped");
        return None;
    }
    Some(Loop(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())))
}

fn bin(args: &[&str], stdin: &[u8], state: &std::path::Path) -> Output {
    let mut c = Command::new(BIN);
    c.args(args).env("THINSEND_STATE_DIR", state);
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let t = std::thread::spawn(move || std::io::Write::write_all(&mut input, &data));
    let out = child.wait_with_output().unwrap();
    let _ = t.join();
    out
}

#[test]
fn verify_names_the_damage_and_heal_repairs_a_loop_device() {
    if !have_thin_restore() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let pool = source(dir.path());
    let backing = dir.path().join("backing");
    std::fs::write(&backing, vec![0xABu8; SIZE as usize]).unwrap();
    let Some(lo) = attach(&backing) else { return };
    let (dev, state) = (s(&lo.0).to_string(), dir.path().join("state"));
    std::fs::create_dir(&state).unwrap();
    let size = SIZE.to_string();
    let o = bin(&["recv", "--to", &dev, "--quiet"], &stream(&pool, 1, None, &["--size", &size]), &state);
    assert!(o.status.success(), "full receive: {}", stderr(&o));
    let mut a: Vec<String> = vec!["verify".into()];
    a.extend(src_args(&pool, 1));
    a.extend(["--to".into(), dev.clone(), "--format".into(), "json".into()]);
    let verify = refs(&a);
    let o = bin(&verify, b"", &state);
    assert_eq!(o.status.code(), Some(0), "fresh replica: {}", stderr(&o));

    let f = OpenOptions::new().write(true).open(&lo.0).unwrap();
    damage(&f, 1000, 9);
    f.write_all_at(&vec![0u8; (24 * BS) as usize], 1000 * BS).unwrap();
    f.sync_all().unwrap();
    drop(f);
    let want = image(pool.dev(1), SIZE);
    let expected = oracle(&want, &std::fs::read(&lo.0).unwrap());
    assert!(expected.len() > 50, "the damage shows: {expected:?}");
    let o = bin(&verify, b"", &state);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(ranges(&json(&o)), expected, "verify names exactly the damaged ranges");

    let mut h = a.clone();
    h[0] = "heal".into();
    let o = bin(&refs(&h), b"", &state);
    assert!(o.status.success(), "heal: {}", stderr(&o));
    let j = json(&o);
    assert!(j["data_bytes"].as_u64().unwrap() <= j["before"]["differing_bytes"].as_u64().unwrap());
    assert!(j["before"]["hash_bytes"].as_u64().unwrap() < SIZE / 100);
    assert_image(&lo.0, &want, "healed device");
    assert_eq!(bin(&verify, b"", &state).status.code(), Some(0), "equal after heal");
    let inc = stream(&pool, 2, Some(1), &["--size", &size]);
    let o = bin(&["recv", "--to", &dev, "--quiet"], &inc, &state);
    assert!(o.status.success(), "the incremental from the healed base: {}", stderr(&o));
    assert_image(&lo.0, &image(pool.dev(2), SIZE), "after the incremental");
}
