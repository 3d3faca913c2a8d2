//! Helpers shared by the integration tests: running the binary and the reference tools, a seeded
//! PRNG, a generator of thin_dump-style pool XML, and `thin_restore` into a temporary image.
#![allow(dead_code)] // each test file uses a different subset

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

pub const BLOCK: usize = 4096;

/// The binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_thinsend-native")
}

/// What a finished command printed.
pub struct Out {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

impl Out {
    pub fn ok(&self) -> bool {
        self.status.success()
    }

    pub fn stdout_str(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

/// Runs `prog args...` to completion, capturing its output.
pub fn run<S: AsRef<OsStr>>(prog: impl AsRef<OsStr>, args: &[S]) -> Out {
    let prog = prog.as_ref();
    let o = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {prog:?}: {e}"));
    Out { status: o.status, stdout: o.stdout, stderr: String::from_utf8_lossy(&o.stderr).into_owned() }
}

/// Like [`run`], but kills the command and fails the test if it runs longer than `limit`.
pub fn run_limited<S: AsRef<OsStr>>(prog: impl AsRef<OsStr>, args: &[S], limit: std::time::Duration) -> Out {
    use std::io::Read;
    let prog = prog.as_ref();
    let mut child = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {prog:?}: {e}"));
    let drain = |r: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            if let Some(mut r) = r {
                let _ = r.read_to_end(&mut v);
            }
            v
        })
    };
    let out = drain(child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let err = drain(child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{prog:?} still running after {limit:?}: hang?");
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    Out { status, stdout: out.join().unwrap(), stderr: String::from_utf8_lossy(&err.join().unwrap()).into_owned() }
}

/// Runs `thinsend-native args...`.
pub fn thinsend<S: AsRef<OsStr>>(args: &[S]) -> Out {
    run(bin(), args)
}

/// Where `tool` is: in PATH, or in /usr/sbin or /sbin (often not in a user's PATH).
fn find_tool(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(["/usr/sbin".into(), "/sbin".into()]).map(|d| d.join(tool)).find(|p| p.is_file())
}

/// Whether the reference tools (Debian's thin-provisioning-tools 0.9.0) are installed. Without
/// them a test skips, except under CI, which installs them: there a missing tool is a failure.
pub fn have_oracle() -> bool {
    let missing: Vec<&str> =
        ["thin_restore", "thin_dump", "thin_ls"].into_iter().filter(|t| find_tool(t).is_none()).collect();
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{} not installed (Debian package thin-provisioning-tools)", missing.join(", "));
    if std::env::var_os("CI").is_some() {
        panic!("{msg}; CI must install it");
    }
    eprintln!("SKIPPED: {msg}");
    false
}

/// A tool of thin-provisioning-tools (call [`have_oracle`] first).
pub fn tool(name: &str) -> PathBuf {
    find_tool(name).unwrap_or_else(|| name.into())
}

//------------------------------------------------------------------------------------------------

/// The project's one seeded generator (SplitMix64), shared with tools/mkmeta.
pub use mkmeta::rng::Rng;

/// The seed of a randomised test: `THINSEND_TEST_SEED` if set (to replay a failure), else a fresh
/// one. Printed so a failing run can be repeated.
pub fn seed(test: &str) -> u64 {
    let s = match std::env::var("THINSEND_TEST_SEED") {
        Ok(v) => v.parse().expect("THINSEND_TEST_SEED must be a u64"),
        Err(_) => std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64),
    };
    eprintln!("{test}: seed {s} (replay with THINSEND_TEST_SEED={s})");
    s
}

//------------------------------------------------------------------------------------------------

/// One thin device of a generated pool.
#[derive(Clone, Debug, Default)]
pub struct DevXml {
    pub dev_id: u32,
    pub transaction: u64,
    pub creation_time: u32,
    pub snap_time: u32,
    /// `(virtual block, data block, time)`, ascending virtual blocks.
    pub mappings: Vec<(u64, u64, u32)>,
}

/// A pool in thin_dump's XML form, as `thin_restore` reads it.
#[derive(Clone, Debug)]
pub struct PoolXml {
    pub time: u32,
    pub transaction: u64,
    pub flags: u32,
    pub data_block_size: u32,
    pub nr_data_blocks: u64,
    pub devices: Vec<DevXml>,
}

impl PoolXml {
    pub fn nr_mappings(&self) -> usize {
        self.devices.iter().map(|d| d.mappings.len()).sum()
    }

    /// The XML; adjacent mappings with one time are written as ranges.
    pub fn to_xml(&self) -> String {
        let mut s = String::with_capacity(64 + self.nr_mappings() * 24);
        let _ = writeln!(
            s,
            "<superblock uuid=\"\" time=\"{}\" transaction=\"{}\" flags=\"{}\" version=\"2\" \
             data_block_size=\"{}\" nr_data_blocks=\"{}\">",
            self.time, self.transaction, self.flags, self.data_block_size, self.nr_data_blocks
        );
        for d in &self.devices {
            let _ = writeln!(
                s,
                "  <device dev_id=\"{}\" mapped_blocks=\"{}\" transaction=\"{}\" \
                 creation_time=\"{}\" snap_time=\"{}\">",
                d.dev_id,
                d.mappings.len(),
                d.transaction,
                d.creation_time,
                d.snap_time
            );
            let m = &d.mappings;
            let mut i = 0;
            while i < m.len() {
                let (v, b, t) = m[i];
                let mut n = 1;
                while i + n < m.len() && m[i + n] == (v + n as u64, b + n as u64, t) {
                    n += 1;
                }
                if n == 1 {
                    let _ = writeln!(s, "    <single_mapping origin_block=\"{v}\" data_block=\"{b}\" time=\"{t}\"/>");
                } else {
                    let _ = writeln!(
                        s,
                        "    <range_mapping origin_begin=\"{v}\" data_begin=\"{b}\" length=\"{n}\" \
                         time=\"{t}\"/>"
                    );
                }
                i += n;
            }
            s.push_str("  </device>\n");
        }
        s.push_str("</superblock>\n");
        s
    }
}

/// The shape of a random pool.
#[derive(Clone, Debug)]
pub struct Shape {
    pub nr_devices: usize,
    /// Mappings per device, drawn uniformly from this range (before snapshot edits).
    pub mappings: (usize, usize),
    pub data_block_size: u32,
    /// Longest run of consecutive virtual blocks.
    pub max_run: u64,
    /// Percent chance that a device starts as a snapshot of an earlier one (sharing its blocks).
    pub snapshot_percent: u64,
    /// Percent chance that a device is empty.
    pub empty_percent: u64,
    pub needs_check: bool,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            nr_devices: 3,
            mappings: (0, 1000),
            data_block_size: 128,
            max_run: 16,
            snapshot_percent: 30,
            empty_percent: 10,
            needs_check: false,
        }
    }
}

/// A random but plausible pool: devices with runs and singletons, gaps, mixed times, snapshots that
/// share data blocks with their origin and then diverge, sparse device ids, some empty devices.
pub fn random_pool(rng: &mut Rng, shape: &Shape) -> PoolXml {
    let mut next_data = rng.below(1000);
    let mut time = 0u32;
    let mut devices: Vec<DevXml> = Vec::new();
    let mut dev_id = rng.below(4) as u32;
    for _ in 0..shape.nr_devices {
        let mut d =
            DevXml { dev_id, transaction: rng.below(100), creation_time: time, snap_time: time, mappings: Vec::new() };
        dev_id += 1 + if rng.chance(30) { rng.below(1000) as u32 } else { 0 };
        if rng.chance(shape.empty_percent) {
            devices.push(d);
            continue;
        }
        let origin = (!devices.is_empty() && rng.chance(shape.snapshot_percent))
            .then(|| rng.below(devices.len() as u64) as usize);
        if let Some(o) = origin {
            // create_snap: share everything, bump time, then overwrite some blocks.
            time += 1;
            devices[o].snap_time = time;
            d.creation_time = time;
            d.snap_time = time;
            let mut m = devices[o].mappings.clone();
            let writes = m.len() / (1 + rng.below(5) as usize);
            for _ in 0..writes {
                if m.is_empty() {
                    break;
                }
                let i = rng.below(m.len() as u64) as usize;
                let run = rng.between(1, shape.max_run) as usize;
                for e in m.iter_mut().skip(i).take(run) {
                    *e = (e.0, next_data, time);
                    next_data += 1;
                }
            }
            d.mappings = m;
        } else {
            let n = rng.between(shape.mappings.0 as u64, shape.mappings.1 as u64) as usize;
            let mut v = rng.below(100);
            while d.mappings.len() < n {
                let run = rng.between(1, shape.max_run).min((n - d.mappings.len()) as u64);
                let t = if rng.chance(80) { time } else { rng.below(time as u64 + 1) as u32 };
                for j in 0..run {
                    d.mappings.push((v + j, next_data + j, t));
                }
                v += run + if rng.chance(50) { rng.below(64) } else { 0 };
                next_data += run + if rng.chance(20) { rng.below(8) } else { 0 };
            }
        }
        if rng.chance(20) {
            time += 1;
        }
        devices.push(d);
    }
    PoolXml {
        time: time + rng.below(3) as u32,
        transaction: rng.below(1000),
        flags: shape.needs_check as u32,
        data_block_size: shape.data_block_size,
        nr_data_blocks: next_data + rng.below(1000),
        devices,
    }
}

//------------------------------------------------------------------------------------------------

/// A temporary metadata image.
pub struct Image {
    pub file: tempfile::TempPath,
}

impl Image {
    pub fn path(&self) -> &Path {
        &self.file
    }

    pub fn bytes(&self) -> Vec<u8> {
        std::fs::read(self.path()).expect("read image")
    }

    /// A temporary image holding `bytes`.
    pub fn from_bytes(bytes: &[u8]) -> Image {
        let mut f = tempfile::Builder::new().prefix("thinsend-test-").suffix(".meta").tempfile().expect("tempfile");
        f.write_all(bytes).expect("write image");
        Image { file: f.into_temp_path() }
    }
}

/// Restores `pool` with `thin_restore` into a fresh image sized for it.
pub fn restore(pool: &PoolXml) -> Image {
    restore_xml(&pool.to_xml(), pool.nr_mappings())
}

pub fn restore_xml(xml: &str, nr_mappings: usize) -> Image {
    let mut x = tempfile::Builder::new().suffix(".xml").tempfile().expect("tempfile");
    x.write_all(xml.as_bytes()).expect("write xml");
    // Kernel-style inserts leave leaves about half full; allow for that plus the space maps.
    let mut blocks = 1024 + nr_mappings as u64 / 60;
    loop {
        let img = Image::from_bytes(&[]);
        let f = std::fs::OpenOptions::new().write(true).open(img.path()).expect("open image");
        f.set_len(blocks * BLOCK as u64).expect("size image");
        let o = run(
            tool("thin_restore"),
            &[OsStr::new("-i"), x.path().as_os_str(), OsStr::new("-o"), img.path().as_os_str()],
        );
        if o.ok() {
            return img;
        }
        if blocks > 1 << 20 {
            panic!("thin_restore failed: {}", o.stderr);
        }
        blocks *= 2;
    }
}

/// Asserts two outputs are identical, showing the first differing line if not.
pub fn assert_same(what: &str, ours: &Out, theirs: &Out) {
    assert_eq!(
        ours.ok(),
        theirs.ok(),
        "{what}: exit status differs: ours {} (stderr {:?}), reference {} (stderr {:?})",
        ours.status,
        ours.stderr,
        theirs.status,
        theirs.stderr
    );
    if ours.stdout == theirs.stdout {
        return;
    }
    let (a, b) = (ours.stdout_str(), theirs.stdout_str());
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let i = la.iter().zip(&lb).take_while(|(x, y)| x == y).count();
    panic!(
        "{what}: output differs at line {} (ours {} lines, reference {} lines)\n ours: {:?}\n  ref: {:?}",
        i + 1,
        la.len(),
        lb.len(),
        la.get(i),
        lb.get(i)
    );
}

//------------------------------------------------------------------------------------------------
// Raw image surgery, for corrupt and fuzz tests.

pub fn le64(img: &[u8], block: u64, off: usize) -> u64 {
    let o = block as usize * BLOCK + off;
    u64::from_le_bytes(img[o..o + 8].try_into().unwrap())
}

pub fn le32(img: &[u8], block: u64, off: usize) -> u32 {
    let o = block as usize * BLOCK + off;
    u32::from_le_bytes(img[o..o + 4].try_into().unwrap())
}

pub fn set64(img: &mut [u8], block: u64, off: usize, v: u64) {
    let o = block as usize * BLOCK + off;
    img[o..o + 8].copy_from_slice(&v.to_le_bytes());
}

pub fn set32(img: &mut [u8], block: u64, off: usize, v: u32) {
    let o = block as usize * BLOCK + off;
    img[o..o + 4].copy_from_slice(&v.to_le_bytes());
}

pub fn block_mut(img: &mut [u8], block: u64) -> &mut [u8] {
    &mut img[block as usize * BLOCK..(block as usize + 1) * BLOCK]
}

/// Re-stamps block `block`'s checksum for `kind`.
pub fn restamp(img: &mut [u8], block: u64, kind: thinsend::checksum::BlockKind) {
    thinsend::checksum::stamp(block_mut(img, block), kind);
}

/// A btree node's header fields and layout, read raw.
pub struct RawNode {
    pub block: u64,
    pub is_leaf: bool,
    pub nr: usize,
    pub max: usize,
    pub value_size: usize,
}

impl RawNode {
    pub fn read(img: &[u8], block: u64) -> RawNode {
        RawNode {
            block,
            is_leaf: le32(img, block, 4) == 2,
            nr: le32(img, block, 16) as usize,
            max: le32(img, block, 20) as usize,
            value_size: le32(img, block, 24) as usize,
        }
    }

    pub fn key_off(&self, i: usize) -> usize {
        32 + 8 * i
    }

    pub fn value_off(&self, i: usize) -> usize {
        32 + 8 * self.max + self.value_size * i
    }

    pub fn key(&self, img: &[u8], i: usize) -> u64 {
        le64(img, self.block, self.key_off(i))
    }

    /// Value `i` as a u64 (a child pointer, a bottom-level root or a block_time).
    pub fn value64(&self, img: &[u8], i: usize) -> u64 {
        le64(img, self.block, self.value_off(i))
    }
}

/// The nodes of the tree at `root`, by depth (0 = root), each level in key order.
pub fn tree_levels(img: &[u8], root: u64) -> Vec<Vec<u64>> {
    let mut levels = vec![vec![root]];
    loop {
        let mut next = Vec::new();
        for &b in levels.last().unwrap() {
            let n = RawNode::read(img, b);
            if n.is_leaf {
                return levels;
            }
            next.extend((0..n.nr).map(|i| n.value64(img, i)));
        }
        levels.push(next);
    }
}

/// Superblock field offsets.
pub mod sb {
    pub const HELD_ROOT: usize = 56;
    pub const DATA_SM: usize = 64;
    pub const METADATA_SM: usize = 192;
    pub const MAPPING_ROOT: usize = 320;
    pub const DETAILS_ROOT: usize = 328;
}

/// An image whose live superblock is `live`'s and whose held metadata snapshot holds `old`'s trees:
/// `old` is appended after `live`, its trees relocated, and its superblock turned into the snapshot
/// copy the kernel's `reserve_metadata_snap` makes (block number = location, space-map roots
/// cleared). The live trees have thus "moved on" from the snapshot's.
pub fn with_held_snapshot(live: &[u8], old: &[u8]) -> Vec<u8> {
    use thinsend::checksum::BlockKind;
    let base = (live.len() / BLOCK) as u64;
    let mut img = live.to_vec();
    img.extend_from_slice(old);
    let top = tree_levels(old, le64(old, 0, sb::MAPPING_ROOT));
    let top_leaves: std::collections::HashSet<u64> = top.last().unwrap().iter().copied().collect();
    let mut nodes: std::collections::BTreeSet<u64> = top.iter().flatten().copied().collect();
    nodes.extend(tree_levels(old, le64(old, 0, sb::DETAILS_ROOT)).into_iter().flatten());
    for &leaf in &top_leaves {
        let n = RawNode::read(old, leaf);
        for i in 0..n.nr {
            nodes.extend(tree_levels(old, n.value64(old, i)).into_iter().flatten());
        }
    }
    for &b in &nodes {
        let n = RawNode::read(old, b);
        set64(&mut img, base + b, 8, base + b);
        if !n.is_leaf || top_leaves.contains(&b) {
            for i in 0..n.nr {
                set64(&mut img, base + b, n.value_off(i), n.value64(old, i) + base);
            }
        }
        restamp(&mut img, base + b, BlockKind::Node);
    }
    set64(&mut img, base, 8, base);
    set64(&mut img, base, sb::HELD_ROOT, 0);
    let sm = base as usize * BLOCK + sb::DATA_SM;
    img[sm..sm + 256].fill(0);
    for f in [sb::MAPPING_ROOT, sb::DETAILS_ROOT] {
        set64(&mut img, base, f, le64(old, 0, f) + base);
    }
    restamp(&mut img, base, BlockKind::Superblock);
    set64(&mut img, 0, sb::HELD_ROOT, base);
    restamp(&mut img, 0, BlockKind::Superblock);
    img
}
