//! The scenario format of `mkmeta generate`: one operation per line, `#` starts a comment.
//! See tools/mkmeta/README.md for the full description.
//!
//! ```text
//! pool data_block_size=128 nr_data_blocks=100000 [metadata_blocks=N] [seed=N]
//! create 1
//! write 1 0+1000                       # virtual blocks 0..1000
//! write 1 random count=500 run=16..256 [within=0+100000] [dist=uniform|hot]
//! discard 1 100+50
//! snap 2 of 1
//! delete 2
//! commit
//! reserve_metadata_snap / release_metadata_snap
//! transaction 5
//! needs_check
//! ```

use crate::error::{Error, Result};

/// A range of virtual blocks, `start..start+len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    pub start: u64,
    pub len: u64,
}

impl Extent {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dist {
    /// Run starts uniform over the range.
    Uniform,
    /// 90% of runs start in the first 10% of the range.
    Hot,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blocks {
    Extent(Extent),
    Random {
        /// Blocks in all runs together (runs may overlap).
        count: u64,
        run_min: u64,
        run_max: u64,
        /// Default: the device's mapped extent (0 .. last mapped block + 1).
        within: Option<Extent>,
        dist: Dist,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDef {
    pub data_block_size: u32,
    pub nr_data_blocks: u64,
    pub metadata_blocks: Option<u64>,
    pub seed: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Create(u64),
    Snap { id: u64, origin: u64 },
    Delete(u64),
    Write { dev: u64, blocks: Blocks },
    Discard { dev: u64, blocks: Blocks },
    Commit,
    ReserveMetadataSnap,
    ReleaseMetadataSnap,
    Transaction(u64),
    NeedsCheck,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    pub pool: PoolDef,
    /// (line number, operation)
    pub ops: Vec<(usize, Op)>,
}

/// Largest thin device id (the kernel's ids are 24-bit).
pub const MAX_DEV_ID: u64 = (1 << 24) - 1;

pub fn parse(text: &str, file: &str) -> Result<Spec> {
    let err = |line: usize, msg: String| Error::Spec { file: file.to_string(), line, msg };
    let mut pool = None;
    let mut ops = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let words: Vec<&str> = raw.split('#').next().unwrap_or("").split_whitespace().collect();
        let Some((&cmd, args)) = words.split_first() else {
            continue;
        };
        if cmd == "pool" {
            if pool.is_some() {
                return Err(err(line, "a second 'pool' line".into()));
            }
            if !ops.is_empty() {
                return Err(err(line, "'pool' must come before every operation".into()));
            }
            pool = Some(parse_pool(args).map_err(|m| err(line, m))?);
            continue;
        }
        if pool.is_none() {
            return Err(err(
                line,
                format!("'{cmd}' before the 'pool' line (the spec must start with 'pool data_block_size=.. nr_data_blocks=..')"),
            ));
        }
        let op = parse_op(cmd, args).map_err(|m| err(line, m))?;
        ops.push((line, op));
    }
    let pool = pool.ok_or_else(|| err(1, "no 'pool' line".into()))?;
    Ok(Spec { pool, ops })
}

fn parse_pool(args: &[&str]) -> Result<PoolDef, String> {
    let mut dbs = None;
    let mut nr = None;
    let mut meta = None;
    let mut seed = None;
    for a in args {
        let (k, v) = a.split_once('=').ok_or_else(|| format!("expected key=value, found '{a}'"))?;
        match k {
            "data_block_size" => dbs = Some(number(v)?),
            "nr_data_blocks" => nr = Some(number(v)?),
            "metadata_blocks" => meta = Some(number(v)?),
            "seed" => seed = Some(number(v)?),
            _ => {
                return Err(format!(
                    "unknown pool setting '{k}' (data_block_size, nr_data_blocks, metadata_blocks, seed)"
                ))
            }
        }
    }
    let dbs = dbs.ok_or("pool needs data_block_size=SECTORS")?;
    if !(128..=2_097_152).contains(&dbs) || dbs & 127 != 0 {
        return Err(format!("data_block_size {dbs} must be a multiple of 128 sectors in 128..=2097152"));
    }
    let nr = nr.ok_or("pool needs nr_data_blocks=N")?;
    if nr > 1 << 32 {
        return Err(format!("nr_data_blocks {nr} is larger than mkmeta supports (2^32)"));
    }
    Ok(PoolDef { data_block_size: dbs as u32, nr_data_blocks: nr, metadata_blocks: meta, seed })
}

fn parse_op(cmd: &str, args: &[&str]) -> Result<Op, String> {
    let want = |n: usize, usage: &str| -> Result<(), String> {
        if args.len() == n {
            Ok(())
        } else {
            Err(format!("usage: {usage}"))
        }
    };
    Ok(match cmd {
        "create" => {
            want(1, "create DEV")?;
            Op::Create(dev_id(args[0])?)
        }
        "snap" => {
            want(3, "snap DEV of ORIGIN")?;
            if args[1] != "of" {
                return Err("usage: snap DEV of ORIGIN".into());
            }
            Op::Snap {
                id: dev_id(args[0])?,
                origin: dev_id(args[2])?,
            }
        }
        "delete" => {
            want(1, "delete DEV")?;
            Op::Delete(dev_id(args[0])?)
        }
        "write" | "discard" => {
            if args.len() < 2 {
                return Err(format!(
                    "usage: {cmd} DEV START+LEN | {cmd} DEV random count=N run=MIN..MAX [within=START+LEN] [dist=uniform|hot]"
                ));
            }
            let dev = dev_id(args[0])?;
            let blocks = parse_blocks(&args[1..])?;
            if cmd == "write" {
                Op::Write { dev, blocks }
            } else {
                Op::Discard { dev, blocks }
            }
        }
        "commit" => {
            want(0, "commit")?;
            Op::Commit
        }
        "reserve_metadata_snap" => {
            want(0, "reserve_metadata_snap")?;
            Op::ReserveMetadataSnap
        }
        "release_metadata_snap" => {
            want(0, "release_metadata_snap")?;
            Op::ReleaseMetadataSnap
        }
        "transaction" => {
            want(1, "transaction N")?;
            Op::Transaction(number(args[0])?)
        }
        "needs_check" => {
            want(0, "needs_check")?;
            Op::NeedsCheck
        }
        _ => return Err(format!(
            "unknown operation '{cmd}' (create, snap, delete, write, discard, commit, reserve_metadata_snap, release_metadata_snap, transaction, needs_check)"
        )),
    })
}

fn parse_blocks(args: &[&str]) -> Result<Blocks, String> {
    if args[0] != "random" {
        if args.len() != 1 {
            return Err(format!("unexpected '{}' after the range", args[1]));
        }
        return Ok(Blocks::Extent(extent(args[0])?));
    }
    let mut count = None;
    let mut run = (1, 1);
    let mut within = None;
    let mut dist = Dist::Uniform;
    for a in &args[1..] {
        let (k, v) = a.split_once('=').ok_or_else(|| format!("expected key=value, found '{a}'"))?;
        match k {
            "count" => count = Some(number(v)?),
            "run" => {
                run = match v.split_once("..") {
                    Some((lo, hi)) => (number(lo)?, number(hi)?),
                    None => {
                        let n = number(v)?;
                        (n, n)
                    }
                };
                if run.0 == 0 || run.0 > run.1 {
                    return Err(format!("run={v}: need 1 <= MIN <= MAX"));
                }
            }
            "within" => within = Some(extent(v)?),
            "dist" => {
                dist = match v {
                    "uniform" => Dist::Uniform,
                    "hot" => Dist::Hot,
                    _ => return Err(format!("dist={v}: expected uniform or hot")),
                }
            }
            _ => return Err(format!("unknown random setting '{k}' (count, run, within, dist)")),
        }
    }
    Ok(Blocks::Random { count: count.ok_or("random needs count=N")?, run_min: run.0, run_max: run.1, within, dist })
}

/// `START+LEN` or `START..END`.
fn extent(s: &str) -> Result<Extent, String> {
    let e = if let Some((a, b)) = s.split_once('+') {
        Extent { start: number(a)?, len: number(b)? }
    } else if let Some((a, b)) = s.split_once("..") {
        let (start, end) = (number(a)?, number(b)?);
        if end < start {
            return Err(format!("range '{s}' ends before it starts"));
        }
        Extent { start, len: end - start }
    } else {
        return Err(format!("expected a range START+LEN or START..END, found '{s}'"));
    };
    match e.start.checked_add(e.len) {
        Some(end) if end <= 1 << 62 => {}
        _ => return Err(format!("range '{s}' is too large")),
    }
    Ok(e)
}

/// A decimal number; `_` may separate digits.
fn number(s: &str) -> Result<u64, String> {
    let digits: String = s.chars().filter(|&c| c != '_').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("expected a number, found '{s}'"));
    }
    digits.parse().map_err(|_| format!("number '{s}' is too large"))
}

fn dev_id(s: &str) -> Result<u64, String> {
    let id = number(s)?;
    if id > MAX_DEV_ID {
        return Err(format!("device id {id} is larger than {MAX_DEV_ID} (24 bits)"));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_operation() {
        let s = parse(
            "# demo\npool data_block_size=128 nr_data_blocks=1_000 seed=3\ncreate 1\nwrite 1 0+10\n\
             write 1 random count=5 run=2..3 within=0..100 dist=hot\ndiscard 1 2..4\nsnap 2 of 1\n\
             delete 2\ncommit\nreserve_metadata_snap\nrelease_metadata_snap\ntransaction 4\nneeds_check\n",
            "t",
        )
        .unwrap();
        assert_eq!(s.pool.nr_data_blocks, 1000);
        assert_eq!(s.pool.seed, Some(3));
        assert_eq!(s.ops.len(), 11);
        assert_eq!(s.ops[0], (3, Op::Create(1)));
        assert_eq!(
            s.ops[2].1,
            Op::Write {
                dev: 1,
                blocks: Blocks::Random {
                    count: 5,
                    run_min: 2,
                    run_max: 3,
                    within: Some(Extent { start: 0, len: 100 }),
                    dist: Dist::Hot
                }
            }
        );
        assert_eq!(s.ops[3].1, Op::Discard { dev: 1, blocks: Blocks::Extent(Extent { start: 2, len: 2 }) });
    }

    #[test]
    fn errors_name_the_line() {
        let e = parse("pool data_block_size=128 nr_data_blocks=10\ncreate x\n", "s.spec").unwrap_err().to_string();
        assert_eq!(e, "s.spec:2: expected a number, found 'x'");
        let e = parse("create 1\n", "s").unwrap_err().to_string();
        assert!(e.starts_with("s:1: 'create' before the 'pool' line"), "{e}");
        let e = parse("pool data_block_size=100 nr_data_blocks=10\n", "s").unwrap_err().to_string();
        assert!(e.contains("multiple of 128"), "{e}");
        let e = parse("pool data_block_size=128 nr_data_blocks=10\nfrobnicate\n", "s").unwrap_err().to_string();
        assert!(e.starts_with("s:2: unknown operation 'frobnicate'"), "{e}");
    }
}
