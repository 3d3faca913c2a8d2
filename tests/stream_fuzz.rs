//! A bounded, seeded mutation fuzzer over `recv --to FILE` and `inspect` (text and JSON): valid
//! native streams (full, incremental, with zero elision, compressed) and LINBIT 1.1/1.0 streams
//! (the shared test vectors and `send --stream-format linbit`) get record-aware damage
//! (tests/stream_common/fuzz_mut.rs), mostly with checksums, sequence numbers and END re-stamped,
//! and are fed to the release binary under a 2 GiB address-space limit and a timeout.
//!
//! A case fails on: a panic (exit 101, "panicked"), a kill by a signal (an allocation the limit
//! refused aborts), a hang, a failure whose stderr is not one line, raw control bytes on stderr (or
//! in inspect's output), inspect's JSON not one document saying whether the stream was valid, and,
//! when recv failed, a target whose bytes or recorded state changed or a file left beside it.
//!
//! The same streams go into a loop device too (`recv --to /dev/loopN`), where a refused stream must
//! leave the device's bytes as they were or, a native full stream only, say it is INCOMPLETE.
//!
//! Runs for THINSEND_FUZZ_SECS seconds (default 15; the loop device half of that); the run's seed is printed
//! (THINSEND_TEST_SEED replays a run), a failing case's seed too, and THINSEND_FUZZ_CASE=<seed>
//! replays just that case, printing what it does.

#[path = "stream_common/mod.rs"]
mod common;
#[path = "stream_common/fuzz_mut.rs"]
mod fuzz_mut;

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::*;
use fuzz_mut::*;

/// A child running longer than this hangs (the streams are a few MiB: they take milliseconds).
const CHILD_LIMIT: Duration = Duration::from_secs(20);
/// The address-space limit of every child: a reader allocating what a hostile length claims aborts.
const MEM_LIMIT: u64 = 2 << 30;
/// Thin blocks of the fuzzed volumes (64 KiB each): small streams, many cases.
const BLOCKS: u64 = 24;

#[derive(Clone, Copy, PartialEq, Debug)]
enum Format {
    Native,
    Linbit,
}

struct Base {
    name: &'static str,
    bytes: Vec<u8>,
    format: Format,
    /// A full stream: recv into an existing file needs --force; it may also go to a new file.
    full: bool,
    volume: u64,
    /// Byte offsets where records start (for cuts at boundaries).
    bounds: Vec<usize>,
    /// A resumed stream (HEADER "resume"): received into a fresh partial state of `World::partial`.
    resumes: bool,
}

struct World {
    _dir: tempfile::TempDir,
    bases: Vec<Base>,
    frames: Frames,
    /// The stream that makes a worker's target: a full stream of device 1.
    full1: Vec<u8>,
    /// The first half of `full1`: fed to `recv -s`, it leaves the partial state "native resumed" continues.
    partial: Vec<u8>,
}

fn native_bounds(st: &[u8]) -> Vec<usize> {
    let mut at = 8;
    let mut v = vec![0, 8];
    for r in parse_native(st) {
        at += 40 + r.payload.len();
        v.push(at);
    }
    v
}

fn linbit_bounds(st: &[u8]) -> Vec<usize> {
    let mut at = 0;
    let mut v = vec![0];
    for c in parse_linbit(st) {
        at += 28 + c.payload.len();
        v.push(at);
    }
    v
}

fn base(name: &'static str, bytes: Vec<u8>, format: Format, full: bool, volume: u64) -> Base {
    let bounds = match format {
        Format::Native => native_bounds(&bytes),
        Format::Linbit => linbit_bounds(&bytes),
    };
    Base { name, bytes, format, full, volume, bounds, resumes: false }
}

/// Every data block `dev` maps at an even thin block, zeroed in the pool's data file.
fn zero_some(pool: &Pool, id: u64) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new().write(true).open(&pool.data).unwrap();
    for m in pool.dev(id).map.iter().filter(|m| m.0 % 2 == 0) {
        f.write_all_at(&vec![0u8; BS as usize], m.1 * BS).unwrap();
    }
}

fn linbit_1_0(v11: &[u8]) -> Vec<u8> {
    let mut chunks: Vec<Chunk> = parse_linbit(v11).into_iter().filter(|c| c.cmd <= 1).collect();
    for c in &mut chunks {
        c.magic = M10;
    }
    write_linbit(&mut chunks, false)
}

/// `send --resume TOKEN` for device 1 after `partial` was received with `recv -s`.
fn resumed_stream(pool: &Pool, partial: &[u8], sized: &[&str]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let t = dir.path().join("t.img");
    assert!(!run(&["recv", "-s", "--quiet", "--to", s(&t)], partial).status.success());
    let tok = run(&["recv", "--resume-token", "--to", s(&t)], b"");
    assert!(tok.status.success(), "no resume token: {}", stderr(&tok));
    let tok = String::from_utf8(tok.stdout).unwrap().trim().to_string();
    stream(pool, 1, None, &[sized, &["--resume", tok.as_str()]].concat())
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let pool = build(dir.path(), chain(7, BLOCKS, 3));
    let size = (BLOCKS * BS).to_string();
    let vol = BLOCKS * BS;
    let sized = ["--size", size.as_str()];
    let full1 = stream(&pool, 1, None, &sized);
    let mut bases = vec![
        base("native full", full1.clone(), Format::Native, true, vol),
        base("native incremental", stream(&pool, 2, Some(1), &sized), Format::Native, false, vol),
        base(
            "native full zstd",
            stream(&pool, 3, None, &[&sized[..], &["--compress", "zstd"]].concat()),
            Format::Native,
            true,
            vol,
        ),
        base(
            "native incremental zstd",
            stream(&pool, 3, Some(1), &[&sized[..], &["--compress", "zstd:1"]].concat()),
            Format::Native,
            false,
            vol,
        ),
        base(
            "linbit 1.1 full",
            stream(&pool, 2, None, &["--stream-format", "linbit", "--size", &size]),
            Format::Linbit,
            true,
            vol,
        ),
        base(
            "linbit 1.1 incremental",
            stream(&pool, 3, Some(1), &["--stream-format", "linbit"]),
            Format::Linbit,
            false,
            vol,
        ),
    ];
    let partial = full1[..full1.len() / 2].to_vec();
    let mut resumed = base("native resumed", resumed_stream(&pool, &partial, &sized), Format::Native, true, vol);
    resumed.resumes = true;
    bases.push(resumed);
    let l10 = linbit_1_0(&bases[5].bytes);
    bases.push(base("linbit 1.0", l10, Format::Linbit, false, vol));
    // Zero blocks: elided in a full stream, UNMAP in an incremental.
    zero_some(&pool, 2);
    bases.push(base("native full, zeros elided", stream(&pool, 2, None, &sized), Format::Native, true, vol));
    bases.push(base(
        "native incremental, zeros as UNMAP",
        stream(&pool, 2, Some(1), &sized),
        Format::Native,
        false,
        vol,
    ));
    // thin_send 1.1.3's own streams (testdata/linbit, copied from the shared vectors).
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata/linbit");
    for (name, file) in
        [("vector full", "full.stream"), ("vector diff", "diff.stream"), ("vector minimal", "minimal.stream")]
    {
        let b = std::fs::read(vectors.join(file)).unwrap_or_else(|e| panic!("testdata/linbit/{file}: {e}"));
        bases.push(base(name, b, Format::Linbit, file == "full.stream", 301 * BS));
    }
    World { _dir: dir, bases, frames: Frames::new(), full1, partial }
}

/// One mutated stream and what was done to it.
fn mutated(w: &World, case: u64) -> (&Base, Vec<u8>, Vec<String>) {
    let mut rng = Rng::new(case);
    let b = &w.bases[rng.below(w.bases.len() as u64) as usize];
    let mut what = vec![b.name.to_string()];
    let mut st = match b.format {
        Format::Native => {
            let mut recs = parse_native(&b.bytes);
            for _ in 0..1 + rng.below(3) {
                what.push(mutate_native(&mut rng, &mut recs, b.volume, &w.frames));
            }
            let fix = *pick(
                &mut rng,
                &[Fix::All, Fix::All, Fix::All, Fix::All, Fix::All, Fix::All, Fix::Crc, Fix::Crc, Fix::None],
            );
            what.push(format!("{fix:?} re-stamped"));
            write_native(&mut recs, fix)
        }
        Format::Linbit => {
            let mut chunks = parse_linbit(&b.bytes);
            for _ in 0..1 + rng.below(3) {
                what.push(mutate_linbit(&mut rng, &mut chunks, b.volume));
            }
            let fix = chance(&mut rng, 80);
            what.push(if fix { "END recounted" } else { "END as it was" }.into());
            write_linbit(&mut chunks, fix)
        }
    };
    if chance(&mut rng, 20) {
        what.push(raw_damage(&mut rng, &mut st, &b.bounds));
    }
    (b, st, what)
}

struct Out {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs the binary with `args` on `stdin` under the memory limit; `Err` on a timeout.
fn run_limited(args: &[&str], stdin: &[u8]) -> Result<Out, String> {
    run_limited_in(args, stdin, None)
}

/// As [`run_limited`], with block device targets' state kept in `state_dir` when given.
fn run_limited_in(args: &[&str], stdin: &[u8], state_dir: Option<&Path>) -> Result<Out, String> {
    let mut cmd = Command::new(BIN);
    cmd.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    if let Some(d) = state_dir {
        cmd.env("THINSEND_STATE_DIR", d);
    }
    // SAFETY: between fork and exec the closure makes one setrlimit call on a local struct.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit { rlim_cur: MEM_LIMIT, rlim_max: MEM_LIMIT };
            if libc::setrlimit(libc::RLIMIT_AS, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn thinsend-native");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let mut so = child.stdout.take().unwrap();
    let mut se = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = so.read_to_end(&mut v);
        v
    });
    let err_t = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = se.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > CHILD_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("`{}` ran over {CHILD_LIMIT:?} (hang)", args.join(" ")));
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    let _ = feeder.join();
    let (stdout, stderr) = (out_t.join().unwrap(), err_t.join().unwrap());
    Ok(Out { code: status.code(), signal: status.signal(), stdout, stderr })
}

/// Control bytes a terminal would interpret: C0 except newline, DEL, C1 (as UTF-8).
fn raw_control(b: &[u8]) -> Option<usize> {
    let s = String::from_utf8_lossy(b);
    s.chars().position(|c| (c.is_control() && c != '\n') || ('\u{80}'..='\u{9f}').contains(&c))
}

/// Lines a failing run may print before its error (docs/STREAM.md §2.1: thin_recv's messages).
const WARNINGS: &[&str] = &["thinsend-native: Unrecognized optional chunk 0x", "thinsend-native: Empty input."];

/// The checks every run shares: no panic, no signal, a one-line escaped error on failure.
fn check_run(what: &str, o: &Out, text_stdout: bool) -> Result<(), String> {
    let err = String::from_utf8_lossy(&o.stderr);
    if o.code == Some(101) || err.contains("panicked") {
        return Err(format!("{what}: panicked: {err}"));
    }
    if let Some(sig) = o.signal {
        return Err(format!("{what}: killed by signal {sig} (an allocation over the limit aborts): {err}"));
    }
    if let Some(i) = raw_control(&o.stderr) {
        return Err(format!("{what}: raw control byte in stderr at char {i}: {err:?}"));
    }
    if text_stdout {
        if let Some(i) = raw_control(&o.stdout) {
            let s = String::from_utf8_lossy(&o.stdout);
            return Err(format!(
                "{what}: raw control byte in stdout at char {i}: {:?}",
                s.chars().skip(i.saturating_sub(80)).take(160).collect::<String>()
            ));
        }
    }
    // A failure is one line; the only lines allowed before it are the reader's documented warnings.
    let lines: Vec<&str> = err.trim_end().lines().collect();
    let warning = |l: &&str| WARNINGS.iter().any(|w| l.starts_with(w));
    if o.code != Some(0) && (lines.is_empty() || !lines[..lines.len() - 1].iter().all(warning)) {
        return Err(format!("{what}: exit {:?}, error is not one line: {err:?}", o.code));
    }
    Ok(())
}

/// A worker's target: a file holding device 1 as received, with its recorded state.
struct Target {
    dir: PathBuf,
    path: PathBuf,
    bytes: Vec<u8>,
    state: Option<thinsend::recv::State>,
    listing: Vec<String>,
}

fn listing(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    v.sort();
    v
}

impl Target {
    fn make(dir: &Path, full1: &[u8]) -> Target {
        for e in std::fs::read_dir(dir).unwrap() {
            std::fs::remove_file(e.unwrap().path()).unwrap();
        }
        let path = dir.join("target.img");
        let out = run(&["recv", "--to", s(&path), "--quiet"], full1);
        assert!(out.status.success(), "making the target failed: {}", stderr(&out));
        let state = thinsend::recv::read_state(&path, None).unwrap();
        Target { dir: dir.to_path_buf(), bytes: std::fs::read(&path).unwrap(), state, listing: listing(dir), path }
    }

    /// After a failed recv: everything as it was.
    fn unchanged(&self, what: &str) -> Result<(), String> {
        if std::fs::read(&self.path).map_err(|e| format!("{what}: target gone: {e}"))? != self.bytes {
            return Err(format!("{what}: recv failed but the target's bytes changed"));
        }
        if thinsend::recv::read_state(&self.path, None).map_err(|e| format!("{what}: state: {e}"))? != self.state {
            return Err(format!("{what}: recv failed but the target's recorded state changed"));
        }
        let now = listing(&self.dir);
        if now != self.listing {
            return Err(format!("{what}: recv failed and the directory changed: {:?} -> {now:?}", self.listing));
        }
        Ok(())
    }
}

/// What recv said, digits and hex folded, for the summary of how deep the cases got.
fn outcome(r: &Out) -> String {
    if r.code == Some(0) {
        return "accepted".into();
    }
    let err = String::from_utf8_lossy(&r.stderr);
    let last = err.trim_end().lines().last().unwrap_or("").to_string();
    let last = last.split("; /").next().unwrap_or("");
    let words = last.split_whitespace().map(|w| {
        if w.starts_with('/') {
            "PATH"
        } else if w.chars().any(|c| c.is_ascii_digit()) {
            "N"
        } else {
            w
        }
    });
    words.collect::<Vec<_>>().join(" ").chars().take(90).collect()
}

/// Runs one case against `t`; `Ok(what recv said)`. `t` is remade when a receive changed it.
fn run_case(w: &World, t: &mut Target, case: u64, verbose: bool) -> Result<String, String> {
    let (b, st, what) = mutated(w, case);
    let what = format!("case {case} ({})", what.join("; "));
    if verbose {
        eprintln!("{what}: {} bytes", st.len());
    }
    let r = recv_case(w, t, b, &st, case, &what, verbose)?;
    inspect_case(&st, &what)?;
    Ok(outcome(&r))
}

/// `recv --to` into the worker's target (a full stream also into a new file; sometimes with `-s`,
/// then `recv --abort`; a resumed stream into a fresh partial state, then `--abort`): on failure
/// everything must be as it was.
fn recv_case(
    w: &World,
    t: &mut Target,
    b: &Base,
    st: &[u8],
    case: u64,
    what: &str,
    verbose: bool,
) -> Result<Out, String> {
    let mut rng = Rng::new(case ^ 0x5eed);
    let new_file = b.resumes || (b.full && chance(&mut rng, 30));
    let to = t.dir.join(if b.resumes {
        "resume.img"
    } else if new_file {
        "new.img"
    } else {
        "target.img"
    });
    if b.resumes {
        let p = run(&["recv", "-s", "--quiet", "--to", s(&to)], &w.partial);
        assert!(
            !p.status.success() && to.parent().is_some_and(|d| listing(d).len() > t.listing.len()),
            "no partial state"
        );
    }
    let mut args = vec!["recv", "--to", s(&to), "--quiet"];
    let size = b.volume.to_string();
    if b.full && !new_file {
        args.push("--force");
    }
    if b.format == Format::Linbit && chance(&mut rng, 50) {
        args.extend(["--size", size.as_str()]);
    }
    let resumable = b.format == Format::Native && !b.resumes && chance(&mut rng, 25);
    if resumable {
        args.push("-s");
    }
    let r = run_limited(&args, st).map_err(|e| format!("{what}: {e}"))?;
    check_run(&format!("{what}: {}", args.join(" ")), &r, true)?;
    if verbose {
        eprintln!("{}: exit {:?}: {}", args.join(" "), r.code, String::from_utf8_lossy(&r.stderr).trim_end());
    }
    if r.code == Some(0) {
        if b.format == Format::Native && !b.resumes {
            check_applied(what, st, &t.bytes, &to)?;
        }
        if b.format == Format::Linbit && !new_file {
            let size = args.contains(&"--size").then_some(b.volume);
            check_applied_linbit(what, st, &t.bytes, size, &to)?;
        }
        *t = Target::make(&t.dir, &w.full1);
        return Ok(r);
    }
    if resumable || b.resumes {
        let a = run_limited(&["recv", "--abort", "--to", s(&to)], b"").map_err(|e| format!("{what}: {e}"))?;
        check_run(&format!("{what}: recv --abort"), &a, true)?;
    }
    if new_file && to.exists() {
        return Err(format!("{what}: recv failed but left the new file {}", to.display()));
    }
    t.unchanged(what)?;
    Ok(r)
}

/// `inspect` and `inspect --format json`: the same verdict, JSON one document saying it.
fn inspect_case(st: &[u8], what: &str) -> Result<(), String> {
    let ins = run_limited(&["inspect"], st).map_err(|e| format!("{what}: {e}"))?;
    check_run(&format!("{what}: inspect"), &ins, true)?;
    let json = run_limited(&["inspect", "--format", "json"], st).map_err(|e| format!("{what}: {e}"))?;
    check_run(&format!("{what}: inspect --format json"), &json, false)?;
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).map_err(|e| {
        format!("{what}: inspect JSON does not parse ({e}): {:?}", String::from_utf8_lossy(&json.stdout))
    })?;
    if v["valid"] != serde_json::Value::Bool(json.code == Some(0)) {
        return Err(format!("{what}: inspect JSON says valid={} with exit {:?}", v["valid"], json.code));
    }
    if let Some(i) = raw_control(&json.stdout) {
        return Err(format!("{what}: raw control byte in inspect's JSON at char {i}"));
    }
    if (ins.code == Some(0)) != (json.code == Some(0)) {
        return Err(format!("{what}: inspect text exit {:?}, JSON exit {:?}", ins.code, json.code));
    }
    Ok(())
}

/// After an accepted native stream: the target holds what the stream describes (a full stream over
/// zeros, an incremental over the old bytes), computed by applying its records here.
fn check_applied(what: &str, st: &[u8], before: &[u8], to: &Path) -> Result<(), String> {
    check_applied_in(what, st, before, to, false)
}

/// As [`check_applied`]; `device`: `to` backs a block device of `before.len()` bytes, which keeps
/// its size and its bytes past the volume.
fn check_applied_in(what: &str, st: &[u8], before: &[u8], to: &Path, device: bool) -> Result<(), String> {
    let recs = parse_native(st);
    let header: serde_json::Value = serde_json::from_slice(&recs[0].payload).map_err(|e| format!("{what}: {e}"))?;
    let volume = header["volume_size"].as_u64().ok_or(format!("{what}: accepted without a volume size"))?;
    let len = std::fs::metadata(to).map_err(|e| format!("{what}: {e}"))?.len();
    if (device && volume > len) || (!device && len != volume) {
        return Err(format!("{what}: accepted; the target is {len} bytes, the stream says {volume}"));
    }
    if volume > 64 << 20 {
        return Ok(()); // not read back: a sparse file this big is fine, its content is not checked
    }
    let mut img = before.to_vec();
    if header["mode"] == "full" {
        img[..(volume as usize).min(before.len())].fill(0);
    }
    img.resize(if device { len } else { volume } as usize, 0);
    for r in &recs {
        let (at, end) = (r.offset as usize, r.offset.saturating_add(r.length).min(volume) as usize);
        match r.kind {
            2 => img[at..at + r.payload.len()].copy_from_slice(&r.payload),
            3 => img[at..end].fill(0),
            5 => {
                let data = zstd::decode_all(&r.payload[8..]).map_err(|e| format!("{what}: {e}"))?;
                img[at..at + data.len()].copy_from_slice(&data);
            }
            _ => {}
        }
    }
    if std::fs::read(to).map_err(|e| format!("{what}: {e}"))? != img {
        return Err(format!("{what}: accepted, but the target differs from what the stream describes"));
    }
    Ok(())
}

/// After an accepted LINBIT stream into the existing target: its old bytes, at the size the stream's
/// VOLUME_SIZE, `--size` or the old length give, with the DATA written and the UNMAP zeroed.
fn check_applied_linbit(what: &str, st: &[u8], before: &[u8], size: Option<u64>, to: &Path) -> Result<(), String> {
    check_applied_linbit_in(what, st, before, size, to, false)
}

/// As [`check_applied_linbit`]; `device` as in [`check_applied_in`].
fn check_applied_linbit_in(
    what: &str,
    st: &[u8],
    before: &[u8],
    size: Option<u64>,
    to: &Path,
    device: bool,
) -> Result<(), String> {
    let chunks = parse_linbit(st);
    let declared =
        chunks.iter().find(|c| c.cmd == 0x8054_5301).map(|c| u64::from_be_bytes(c.payload[..8].try_into().unwrap()));
    let volume = declared.or(size).unwrap_or(before.len() as u64);
    let len = std::fs::metadata(to).map_err(|e| format!("{what}: {e}"))?.len();
    if (device && volume > len) || (!device && len != volume) {
        return Err(format!("{what}: accepted; the target is {len} bytes, expected {volume}"));
    }
    if volume > 64 << 20 {
        return Ok(());
    }
    let mut img = before.to_vec();
    img.resize(if device { len } else { volume } as usize, 0);
    for c in &chunks {
        let (at, end) = (c.offset as usize, c.offset.saturating_add(c.length).min(volume) as usize);
        let range = match c.cmd {
            0 => img.get_mut(at..at.saturating_add(c.payload.len())),
            1 => img.get_mut(at..end),
            _ => continue,
        };
        let Some(range) = range else {
            return Err(format!(
                "{what}: accepted chunk [{}, +{}) past the volume of {volume} bytes",
                c.offset, c.length
            ));
        };
        if c.cmd == 0 {
            range.copy_from_slice(&c.payload);
        } else {
            range.fill(0);
        }
    }
    if std::fs::read(to).map_err(|e| format!("{what}: {e}"))? != img {
        return Err(format!("{what}: accepted, but the target differs from what the stream describes"));
    }
    Ok(())
}

fn case_seed(run: u64, i: u64) -> u64 {
    Rng::new(run ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15)).next()
}

fn run_seed() -> u64 {
    let s = match std::env::var("THINSEND_TEST_SEED") {
        Ok(v) => v.parse().expect("THINSEND_TEST_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64),
    };
    eprintln!("stream fuzz: seed {s} (replay the run with THINSEND_TEST_SEED={s})");
    s
}

#[test]
fn mutated_streams_never_panic_hang_or_damage_the_target() {
    if !have_thin_restore() {
        return;
    }
    let w = world();
    eprintln!(
        "bases: {}",
        w.bases.iter().map(|b| format!("{} ({} bytes)", b.name, b.bytes.len())).collect::<Vec<_>>().join(", ")
    );
    let scratch = tempfile::tempdir().unwrap();
    if let Ok(c) = std::env::var("THINSEND_FUZZ_CASE") {
        let mut t = Target::make(scratch.path(), &w.full1);
        if let Err(e) = run_case(&w, &mut t, c.parse().expect("THINSEND_FUZZ_CASE must be a u64"), true) {
            panic!("{e}");
        }
        return;
    }
    // Every base unmutated is accepted: the cases start from streams that go all the way.
    for b in &w.bases {
        let r = run_limited(&["inspect", "--verify"], &b.bytes).unwrap();
        assert_eq!(r.code, Some(0), "base {} refused by inspect: {}", b.name, String::from_utf8_lossy(&r.stderr));
    }
    let run = run_seed();
    let secs = std::env::var("THINSEND_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15);
    let deadline = Instant::now() + Duration::from_secs(secs);
    let next = AtomicU64::new(0);
    let (accepted, failed) = (AtomicU64::new(0), AtomicBool::new(false));
    let failure = Mutex::new(None);
    let outcomes = Mutex::new(std::collections::BTreeMap::<String, u64>::new());
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()).min(2);
    std::thread::scope(|sc| {
        for k in 0..workers {
            let dir = scratch.path().join(format!("w{k}"));
            std::fs::create_dir(&dir).unwrap();
            let (w, next, accepted, failed, failure, outcomes) = (&w, &next, &accepted, &failed, &failure, &outcomes);
            sc.spawn(move || {
                let mut t = Target::make(&dir, &w.full1);
                while Instant::now() < deadline && !failed.load(Ordering::Relaxed) {
                    let case = case_seed(run, next.fetch_add(1, Ordering::Relaxed));
                    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(w, &mut t, case, false)));
                    match r.unwrap_or_else(|_| Err(format!("case {case}: the fuzzer itself panicked"))) {
                        Ok(o) => {
                            accepted.fetch_add(u64::from(o == "accepted"), Ordering::Relaxed);
                            *outcomes.lock().unwrap().entry(o).or_default() += 1;
                        }
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            *failure.lock().unwrap() = Some((case, e));
                        }
                    }
                }
            });
        }
    });
    if let Some((case, e)) = failure.into_inner().unwrap() {
        panic!("{e}\nreplay with THINSEND_FUZZ_CASE={case}");
    }
    let n = next.load(Ordering::Relaxed);
    let mut seen: Vec<(String, u64)> = outcomes.into_inner().unwrap().into_iter().collect();
    seen.sort_by_key(|o| std::cmp::Reverse(o.1));
    eprintln!("{} different outcomes of recv, the most frequent:", seen.len());
    for (o, k) in seen.iter().take(40) {
        eprintln!("{k:6}  {o}");
    }
    eprintln!(
        "{n} cases in {secs} s ({} accepted by recv), no panic, hang or damage",
        accepted.load(Ordering::Relaxed)
    );
    assert!(n >= 20, "too few cases ran");
}

/// The mutated streams into a loop device of the volume's size, which holds thin 1's image before
/// each case: an accepted stream gives what it describes (read back through the backing file); a
/// refused one leaves the device's bytes as they were, except a native full stream, which may leave
/// it partially written (no undo journal for a whole-volume overwrite, docs/STREAM.md) and must then
/// say it is INCOMPLETE. Runs half of THINSEND_FUZZ_SECS (default 15).
#[test]
fn mutated_streams_into_a_loop_device_leave_it_unchanged_or_say_so() {
    if !have_thin_restore() {
        return;
    }
    let w = world();
    let dir = tempfile::tempdir().unwrap();
    let (backing, state) = (dir.path().join("dev.img"), dir.path().join("state"));
    std::fs::create_dir(&state).unwrap();
    std::fs::write(&backing, vec![0u8; (BLOCKS * BS) as usize]).unwrap();
    let Some(lo) = attach(&backing) else { return };
    let dev = s(&lo.0);
    let reset = || {
        let r = run_limited_in(&["recv", "--to", dev, "--force", "--quiet"], &w.full1, Some(&state)).unwrap();
        assert_eq!(r.code, Some(0), "making the device failed: {}", String::from_utf8_lossy(&r.stderr));
        std::fs::read(&lo.0).unwrap()
    };
    let mut before = reset();
    let run = run_seed();
    let secs = std::env::var("THINSEND_FUZZ_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(15u64);
    let deadline = Instant::now() + Duration::from_secs(secs.div_ceil(2));
    let (mut n, mut accepted) = (0u64, 0u64);
    let size = (BLOCKS * BS).to_string();
    while Instant::now() < deadline {
        let case = case_seed(run, n);
        n += 1;
        let (b, st, what) = mutated(&w, case);
        if b.resumes {
            continue;
        }
        let what = format!("case {case} ({}) into {dev}", what.join("; "));
        let mut args = vec!["recv", "--to", dev, "--quiet"];
        if b.full {
            args.push("--force");
        }
        if b.format == Format::Linbit && case % 2 == 0 {
            args.extend(["--size", size.as_str()]);
        }
        let r = run_limited_in(&args, &st, Some(&state)).unwrap_or_else(|e| panic!("{what}: {e}"));
        if let Err(e) = check_run(&what, &r, true) {
            panic!("{e}\nreplay with THINSEND_TEST_SEED={run}");
        }
        let err = String::from_utf8_lossy(&r.stderr);
        let checked = if r.code == Some(0) {
            accepted += 1;
            match b.format {
                Format::Native => check_applied_in(&what, &st, &before, &backing, true),
                Format::Linbit => {
                    let given = args.contains(&"--size").then_some(BLOCKS * BS);
                    check_applied_linbit_in(&what, &st, &before, given, &backing, true)
                }
            }
        } else if err.contains("INCOMPLETE") {
            match b.format == Format::Native && b.full && err.contains("marked incomplete") {
                true => Ok(()),
                false => Err(format!("{what}: left the device INCOMPLETE: {err}")),
            }
        } else if std::fs::read(&lo.0).unwrap() != before {
            Err(format!("{what}: refused ({}) but the device's bytes changed", err.trim_end()))
        } else {
            Ok(())
        };
        if let Err(e) = checked {
            panic!("{e}\nreplay with THINSEND_TEST_SEED={run}");
        }
        if r.code == Some(0) || err.contains("INCOMPLETE") {
            before = reset();
        }
    }
    eprintln!("{n} cases into {dev} ({accepted} accepted), none damaged it silently");
    assert!(n >= 10, "too few cases ran");
}

/// Every record of a small compressed incremental, its offset and then its length set to each
/// interesting value (everything re-stamped): a systematic sweep of the range checks, run through
/// recv and inspect like the random cases.
#[test]
fn every_record_offset_and_length_sweep() {
    if !have_thin_restore() {
        return;
    }
    let w = world();
    let b = w.bases.iter().find(|b| b.name == "native incremental zstd").unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let mut t = Target::make(scratch.path(), &w.full1);
    let recs = parse_native(&b.bytes);
    let v = b.volume;
    let values = [0, 1, 4097, v - 1, v, v + 1, 16 << 20, u32::MAX as u64, u64::MAX];
    let mut cases = 0;
    for i in 0..recs.len() {
        for (field, &x) in [0, 1].iter().flat_map(|f| values.iter().map(move |x| (f, x))) {
            let mut r = recs.clone();
            if *field == 0 {
                r[i].offset = x;
            } else {
                r[i].length = x;
            }
            let st = write_native(&mut r, Fix::All);
            let what = format!("record {i} {} = {x}", ["offset", "length"][*field]);
            let res = recv_case(&w, &mut t, b, &st, cases, &what, false).and_then(|_| inspect_case(&st, &what));
            if let Err(e) = res {
                panic!("{e}");
            }
            cases += 1;
        }
    }
    eprintln!("{cases} cases ({} records)", recs.len());
}

/// Cases the fuzzer found, replayed every run (their bugs are fixed: see each).
#[test]
fn found_cases_stay_fixed() {
    if !have_thin_restore() {
        return;
    }
    let w = world();
    let scratch = tempfile::tempdir().unwrap();
    let mut t = Target::make(scratch.path(), &w.full1);
    // A LINBIT 1.0 DATA chunk of length 0 at offset 1607178499517440312: accepted into an existing
    // file (the journaled copy loop never gave the sink the range), refused into a new one. Fixed
    // in src/stream/linbit/read.rs (copy_data): the range of an empty chunk is checked too.
    for case in [1464125469537178020] {
        if let Err(e) = run_case(&w, &mut t, case, false) {
            panic!("{e}");
        }
    }
    // The same by hand, in 1.1 and 1.0, into the existing target and into a new file.
    for magic in [M11, M10] {
        let mut chunks = vec![Chunk { magic, offset: 1 << 60, length: 0, cmd: 0, payload: vec![] }];
        if magic == M11 {
            chunks.insert(0, Chunk { magic, offset: 0, length: 0, cmd: 2, payload: vec![] });
            chunks.push(Chunk { magic, offset: 0, length: 24, cmd: 3, payload: vec![0; 24] });
        }
        let st = write_linbit(&mut chunks, true);
        for to in [t.path.clone(), t.dir.join("new.img")] {
            let r = run_limited(&["recv", "--quiet", "--size", "1M", "--to", s(&to)], &st).unwrap();
            let err = String::from_utf8_lossy(&r.stderr);
            assert_eq!(r.code, Some(1), "{magic:#x} into {}: an empty DATA chunk past the volume: {err}", to.display());
            assert!(err.contains("past the end of the volume"), "{err}");
        }
        t.unchanged("empty DATA chunk past the volume").unwrap();
    }
}
