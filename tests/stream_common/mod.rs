//! Helpers for the stream tests: pools made with `thin_restore` from generated XML plus a data file
//! whose every data block holds a recognisable pattern, expected images rebuilt from the mappings,
//! and the real binary run alone or as `send | recv` through an OS pipe.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_thinsend-native");
/// 64 KiB data blocks (128 sectors), the smallest dm-thin allows.
pub const BS: u64 = 65536;

/// Whether thin_restore is available; prints a notice when it is not.
pub fn have_thin_restore() -> bool {
    let ok = Command::new("thin_restore").arg("-V").output().map(|o| o.status.success()).unwrap_or(false);
    if !ok {
        eprintln!("NOTICE: thin_restore (thin-provisioning-tools) not found: test skipped");
    }
    ok
}

/// A small deterministic PRNG (xorshift64*).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[derive(Debug, Clone)]
pub struct Dev {
    pub id: u64,
    pub transaction: u64,
    pub creation_time: u32,
    pub snap_time: u32,
    /// (thin block, data block, time), ascending by thin block.
    pub map: Vec<(u64, u64, u32)>,
}

impl Dev {
    pub fn highest_end(&self) -> u64 {
        self.map.last().map(|m| m.0 + 1).unwrap_or(0)
    }
}

/// The content of data block `d`: a 16-byte tag naming it, repeated.
pub fn block_content(d: u64) -> Vec<u8> {
    let unit = format!("data{d:011} ");
    unit.as_bytes().iter().copied().cycle().take(BS as usize).collect()
}

/// The image of `dev`: each mapped thin block holds its data block's content, the rest zeros.
pub fn image(dev: &Dev, size: u64) -> Vec<u8> {
    let mut img = vec![0u8; size as usize];
    for &(o, d, _) in &dev.map {
        let at = (o * BS) as usize;
        if at < img.len() {
            let end = (at + BS as usize).min(img.len());
            img[at..end].copy_from_slice(&block_content(d)[..end - at]);
        }
    }
    img
}

pub struct Pool {
    pub dir: PathBuf,
    pub meta: PathBuf,
    pub data: PathBuf,
    pub devs: Vec<Dev>,
}

impl Pool {
    pub fn dev(&self, id: u64) -> &Dev {
        self.devs.iter().find(|d| d.id == id).expect("device in spec")
    }
}

fn xml(devs: &[Dev], nr_data_blocks: u64, time: u32, transaction: u64) -> String {
    let mut s = format!(
        "<superblock uuid=\"\" time=\"{time}\" transaction=\"{transaction}\" flags=\"0\" version=\"2\" data_block_size=\"128\" nr_data_blocks=\"{nr_data_blocks}\">\n"
    );
    for d in devs {
        s += &format!(
            "  <device dev_id=\"{}\" mapped_blocks=\"{}\" transaction=\"{}\" creation_time=\"{}\" snap_time=\"{}\">\n",
            d.id,
            d.map.len(),
            d.transaction,
            d.creation_time,
            d.snap_time
        );
        let mut i = 0;
        while i < d.map.len() {
            let (o, db, t) = d.map[i];
            let mut n = 1;
            while i + n < d.map.len() {
                let (o2, d2, t2) = d.map[i + n];
                if o2 == o + n as u64 && d2 == db + n as u64 && t2 == t {
                    n += 1;
                } else {
                    break;
                }
            }
            if n == 1 {
                s += &format!("    <single_mapping origin_block=\"{o}\" data_block=\"{db}\" time=\"{t}\"/>\n");
            } else {
                s += &format!(
                    "    <range_mapping origin_begin=\"{o}\" data_begin=\"{db}\" length=\"{n}\" time=\"{t}\"/>\n"
                );
            }
            i += n;
        }
        s += "  </device>\n";
    }
    s += "</superblock>\n";
    s
}

/// Writes the metadata (via thin_restore) and a data file holding every mapped data block.
pub fn build(dir: &Path, devs: Vec<Dev>) -> Pool {
    let max_data = devs.iter().flat_map(|d| d.map.iter().map(|m| m.1 + 1)).max().unwrap_or(1);
    let time = devs.iter().map(|d| d.creation_time.max(d.snap_time)).max().unwrap_or(0) + 1;
    let trans = devs.iter().map(|d| d.transaction).max().unwrap_or(0) + 1;
    let xml_path = dir.join("pool.xml");
    std::fs::write(&xml_path, xml(&devs, max_data + 16, time, trans)).unwrap();
    let meta = dir.join("meta.img");
    let f = std::fs::File::create(&meta).unwrap();
    f.set_len(8 << 20).unwrap();
    drop(f);
    let out =
        Command::new("thin_restore").arg("-i").arg(&xml_path).arg("-o").arg(&meta).output().expect("run thin_restore");
    assert!(out.status.success(), "thin_restore failed: {}", String::from_utf8_lossy(&out.stderr));
    let data = dir.join("data.img");
    let mut f = std::fs::File::create(&data).unwrap();
    for d in 0..max_data {
        f.write_all(&block_content(d)).unwrap();
    }
    // The data file covers the pool's whole data area, as a pool's data device does.
    f.set_len((max_data + 16) * BS).unwrap();
    Pool { dir: dir.to_path_buf(), meta, data, devs }
}

/// A chain of devices: 1 is random over `blocks` thin blocks, each next one a snapshot of the
/// previous with some blocks rewritten (new data block), some discarded, some newly mapped.
pub fn chain(seed: u64, blocks: u64, n: usize) -> Vec<Dev> {
    let mut rng = Rng::new(seed);
    let mut next_data = 0u64;
    let mut cur: Vec<Option<(u64, u32)>> = vec![None; blocks as usize];
    for b in 0..blocks {
        if rng.below(10) < 7 {
            cur[b as usize] = Some((next_data, 0));
            // Mostly sequential allocation, sometimes a gap so runs break.
            next_data += 1 + u64::from(rng.below(8) == 0);
        }
    }
    let mut devs = Vec::new();
    for i in 0..n {
        let id = i as u64 + 1;
        if i > 0 {
            for c in cur.iter_mut() {
                let r = rng.below(100);
                if r < 8 {
                    // rewrite (or first write): a new data block
                    *c = Some((next_data, i as u32));
                    next_data += 1;
                } else if r < 12 {
                    *c = None;
                }
            }
            // keep a contiguous rewritten run and a contiguous discard for coalescing cases
            let s = rng.below(blocks - 8) as usize;
            for (k, c) in cur.iter_mut().skip(s).take(4).enumerate() {
                *c = Some((next_data + k as u64, i as u32));
            }
            next_data += 4;
            let s = rng.below(blocks - 8) as usize;
            for c in cur.iter_mut().skip(s).take(3) {
                *c = None;
            }
        }
        let map = cur.iter().enumerate().filter_map(|(b, m)| m.map(|(d, t)| (b as u64, d, t))).collect();
        devs.push(Dev {
            id,
            transaction: i as u64,
            creation_time: i as u32,
            snap_time: if i + 1 < n { i as u32 + 1 } else { 0 },
            map,
        });
    }
    devs
}

/// Runs the binary with `args`, feeding `stdin`.
pub fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn thinsend-native");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    let _ = feeder.join();
    out
}

/// `thinsend-native SEND_ARGS | thinsend-native RECV_ARGS` through an OS pipe.
pub fn pipe(send_args: &[&str], recv_args: &[&str]) -> (Output, Output) {
    let mut send =
        Command::new(BIN).args(send_args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn send");
    let recv = Command::new(BIN)
        .args(recv_args)
        .stdin(Stdio::from(send.stdout.take().unwrap()))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn recv");
    let r = recv.wait_with_output().unwrap();
    let s = send.wait_with_output().unwrap();
    (s, r)
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// `send` arguments for device `id` (incremental from `base`).
pub fn send_args(pool: &Pool, id: u64, base: Option<u64>, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = vec!["send".into(), "--metadata".into(), s(&pool.meta).into()];
    // --source (the thin device) and --data (the pool's data device) exclude each other.
    if !extra.contains(&"--source") {
        a.extend(["--data".into(), s(&pool.data).into()]);
    }
    a.extend(["--thin-id".into(), id.to_string(), "--quiet".into()]);
    if let Some(b) = base {
        a.push("--base-id".into());
        a.push(b.to_string());
    }
    a.extend(extra.iter().map(|x| x.to_string()));
    // The metadata does not record a volume size: a native send needs one. Tests send the device's
    // mapped extent unless they say otherwise.
    let sized = extra.iter().any(|x| ["--size", "--source", "linbit"].contains(x));
    let end = pool.devs.iter().find(|d| d.id == id).map_or(0, Dev::highest_end);
    if !sized && end > 0 {
        a.extend(["--size".into(), (end * BS).to_string()]);
    }
    a
}

pub fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The stream `send` writes for these arguments.
pub fn stream(pool: &Pool, id: u64, base: Option<u64>, extra: &[&str]) -> Vec<u8> {
    let a = send_args(pool, id, base, extra);
    let out = run(&refs(&a), b"");
    assert!(out.status.success(), "send failed: {}", stderr(&out));
    out.stdout
}

/// Asserts `path` holds exactly `want`, naming the first differing byte otherwise.
pub fn assert_image(path: &Path, want: &[u8], what: &str) {
    let got = std::fs::read(path).unwrap();
    if got.len() != want.len() {
        panic!("{what}: image is {} bytes, expected {}", got.len(), want.len());
    }
    if let Some(i) = got.iter().zip(want).position(|(a, b)| a != b) {
        panic!(
            "{what}: images differ first at byte {i} (block {}): got {:?}, expected {:?}",
            i as u64 / BS,
            String::from_utf8_lossy(&got[i..(i + 16).min(got.len())]),
            String::from_utf8_lossy(&want[i..(i + 16).min(want.len())])
        );
    }
}

/// Files in `dir` whose name looks like one of recv's temporaries or undo journals.
pub fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".thinsend-") && (n.ends_with(".tmp") || n.ends_with(".thinsend-journal")))
        .collect()
}

/// Makes `syscalls` fail with `errno` in the child `cmd` starts (a seccomp filter installed before
/// exec): the receiver then sees a filesystem without user xattrs or hole punching, whatever the
/// test directory's filesystem is. `false` (the caller skips) where the filter is not supported.
pub fn deny_syscalls(cmd: &mut Command, syscalls: &[libc::c_long], errno: i32) -> bool {
    use std::os::unix::process::CommandExt;
    #[repr(C)]
    struct Insn {
        code: u16,
        jt: u8,
        jf: u8,
        k: u32,
    }
    #[repr(C)]
    struct Prog {
        len: u16,
        filter: *const Insn,
    }
    if !cfg!(target_arch = "x86_64") {
        eprintln!("NOTICE: syscall filter written for x86_64 only: test skipped");
        return false;
    }
    const LD_ABS: u16 = 0x20;
    const JEQ: u16 = 0x15;
    const RET: u16 = 0x06;
    let n = syscalls.len() as u8;
    let mut p = vec![
        Insn { code: LD_ABS, jt: 0, jf: 0, k: 4 },
        Insn { code: JEQ, jt: 0, jf: n + 1, k: 0xc000_003e },
        Insn { code: LD_ABS, jt: 0, jf: 0, k: 0 },
    ];
    for (i, &nr) in syscalls.iter().enumerate() {
        p.push(Insn { code: JEQ, jt: n - i as u8, jf: 0, k: nr as u32 });
    }
    p.push(Insn { code: RET, jt: 0, jf: 0, k: libc::SECCOMP_RET_ALLOW });
    p.push(Insn { code: RET, jt: 0, jf: 0, k: libc::SECCOMP_RET_ERRNO | errno as u32 });
    // SAFETY: between fork and exec the closure only makes two prctl calls with a program that
    // lives in `p` (moved into the closure) for the duration of the call.
    unsafe {
        cmd.pre_exec(move || {
            let prog = Prog { len: p.len() as u16, filter: p.as_ptr() };
            if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
                || libc::prctl(libc::PR_SET_SECCOMP, 2, &prog as *const Prog) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    true
}

/// Runs `cmd` feeding `stdin`.
pub fn run_cmd(cmd: &mut Command, stdin: &[u8]) -> Output {
    let mut child =
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn thinsend-native");
    let mut input = child.stdin.take().unwrap();
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().unwrap();
    let _ = feeder.join();
    out
}

/// The xattr syscalls: denied, the receiver sees a filesystem without user xattrs.
pub const XATTR_CALLS: &[libc::c_long] = &[
    libc::SYS_fgetxattr,
    libc::SYS_fsetxattr,
    libc::SYS_fremovexattr,
    libc::SYS_getxattr,
    libc::SYS_setxattr,
    libc::SYS_lgetxattr,
    libc::SYS_lsetxattr,
];

/// The name tag recv gives the files it keeps beside a target (FNV-1a of the file name).
pub fn name_tag(name: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in name.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A loop device over a file (`.0` is its path), detached when dropped.
pub struct Loop(pub PathBuf);

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

/// `file` attached as a loop device; `None`, with a notice, where that is not possible (needs root
/// and losetup).
pub fn attach(file: &Path) -> Option<Loop> {
    let out = Command::new("losetup").args(["-f", "--show"]).arg(file).output().ok()?;
    if !out.status.success() {
        eprintln!("NOTICE: cannot attach a loop device (needs root and losetup): test skipped");
        return None;
    }
    Some(Loop(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())))
}
