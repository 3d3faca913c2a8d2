//! Pool data content: every data block a write filled holds 128-byte text lines naming the data
//! block, the write (its spec line), the device and the virtual block, and the line's byte offset
//! in the block, so a test can check every byte of a received thin device:
//!
//! `data_block=1234 write=7 dev=1 vblock=99 off=0000000128` padded with '.' to 127 bytes, then '\n'.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use crate::error::{Error, Result};

pub const LINE_BYTES: usize = 128;
const OFF_DIGITS: usize = 10;

/// The write that last filled a data block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fill {
    /// The spec line of the write.
    pub write: u64,
    pub dev: u64,
    pub vblock: u64,
}

/// Writes the content of `data_block`, filled by `fill`, into `buf` (the whole data block).
pub fn fill_block(buf: &mut [u8], data_block: u64, fill: &Fill) {
    let head = format!("data_block={} write={} dev={} vblock={} off=", data_block, fill.write, fill.dev, fill.vblock);
    let mut line = [b'.'; LINE_BYTES];
    line[..head.len()].copy_from_slice(head.as_bytes());
    line[LINE_BYTES - 1] = b'\n';
    let off_at = head.len();
    for (i, chunk) in buf.chunks_mut(LINE_BYTES).enumerate() {
        let off = format!("{:0width$}", i * LINE_BYTES, width = OFF_DIGITS);
        line[off_at..off_at + OFF_DIGITS].copy_from_slice(off.as_bytes());
        let n = chunk.len();
        chunk.copy_from_slice(&line[..n]);
    }
}

/// The content of `data_block` filled by `fill`, `block_bytes` long.
pub fn block_content(data_block: u64, fill: &Fill, block_bytes: usize) -> Vec<u8> {
    let mut buf = vec![0u8; block_bytes];
    fill_block(&mut buf, data_block, fill);
    buf
}

/// Reads back the data block number and the fill from a block's first line.
pub fn parse_fill(block: &[u8]) -> Option<(u64, Fill)> {
    let line = std::str::from_utf8(block.get(..LINE_BYTES)?).ok()?;
    let mut it = line.trim_end_matches(['.', '\n']).split(' ');
    let mut field = |name: &str| -> Option<u64> { it.next()?.strip_prefix(name)?.strip_prefix('=')?.parse().ok() };
    let d = field("data_block")?;
    let write = field("write")?;
    let dev = field("dev")?;
    let vblock = field("vblock")?;
    Some((d, Fill { write, dev, vblock }))
}

/// Where the fills of a generated pool go.
pub trait Sink {
    fn fill(&mut self, data_block: u64, fill: Fill) -> Result<()>;
}

/// Discards fills (no data device wanted).
pub struct NoData;

impl Sink for NoData {
    fn fill(&mut self, _: u64, _: Fill) -> Result<()> {
        Ok(())
    }
}

/// Remembers the last fill of every data block (for tests).
#[derive(Debug, Default)]
pub struct Record(pub HashMap<u64, Fill>);

impl Sink for Record {
    fn fill(&mut self, data_block: u64, fill: Fill) -> Result<()> {
        self.0.insert(data_block, fill);
        Ok(())
    }
}

/// Writes each fill into the (sparse) pool data file as it happens.
pub struct DataFile {
    pub file: File,
    pub path: PathBuf,
    pub block_bytes: usize,
    buf: Vec<u8>,
}

impl DataFile {
    pub fn new(file: File, path: PathBuf, block_bytes: usize) -> Self {
        DataFile { file, path, block_bytes, buf: vec![0; block_bytes] }
    }
}

impl Sink for DataFile {
    fn fill(&mut self, data_block: u64, fill: Fill) -> Result<()> {
        fill_block(&mut self.buf, data_block, &fill);
        self.file.write_all_at(&self.buf, data_block * self.block_bytes as u64).map_err(|e| Error::io(&self.path, e))
    }
}

/// Fills go to both sinks.
pub struct Both<'a>(pub &'a mut dyn Sink, pub &'a mut dyn Sink);

impl Sink for Both<'_> {
    fn fill(&mut self, data_block: u64, fill: Fill) -> Result<()> {
        self.0.fill(data_block, fill)?;
        self.1.fill(data_block, fill)
    }
}

/// The content thin device `dev` of the pool in `image` should have, `nr_vblocks` blocks long:
/// each mapped virtual block holds its data block as `fills` says (zeros if no fill is known),
/// unmapped blocks are zero.
pub fn expected_device(
    image: &std::path::Path,
    dev: u64,
    fills: &HashMap<u64, Fill>,
    nr_vblocks: u64,
) -> thinsend::Result<Vec<u8>> {
    let pool = thinsend::pool::Pool::open(image, thinsend::superblock::Source::Live)?;
    let block_bytes = pool.superblock().data_block_bytes() as usize;
    let root = pool.device(dev)?.root;
    let mut out = vec![0u8; nr_vblocks as usize * block_bytes];
    for m in thinsend::btree::mapping::mappings(&pool.dev, root) {
        let (v, bt) = m?;
        if v >= nr_vblocks {
            break;
        }
        if let Some(f) = fills.get(&bt.data_block) {
            let at = v as usize * block_bytes;
            fill_block(&mut out[at..at + block_bytes], bt.data_block, f);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_names_block_write_and_offset() {
        let f = Fill { write: 7, dev: 1, vblock: 99 };
        let b = block_content(1234, &f, 65536);
        assert_eq!(b.len(), 65536);
        let first = std::str::from_utf8(&b[..128]).unwrap();
        assert!(first.starts_with("data_block=1234 write=7 dev=1 vblock=99 off=0000000000..."));
        assert!(first.ends_with(".\n"));
        let second = std::str::from_utf8(&b[128..256]).unwrap();
        assert!(second.contains("off=0000000128"));
        assert_eq!(parse_fill(&b), Some((1234, f)));
        let big = Fill { write: u64::MAX, dev: u64::MAX, vblock: u64::MAX };
        let b = block_content(u64::MAX >> 24, &big, 128 * 4);
        assert_eq!(parse_fill(&b), Some((u64::MAX >> 24, big)));
    }
}
