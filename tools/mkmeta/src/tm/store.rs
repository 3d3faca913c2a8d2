//! Where the transaction manager's nodes live. Without a spill file, all in memory. With one (the
//! image's own temporary file), nodes made by the bulk builder are packed and written to their
//! block of the file at once ("frozen") and read back through a read-only map of it, decoded, only
//! when an operation touches them; so a pool's memory is what its operations touch, not its size.
//! A frozen node that changes is kept in memory from then on; one that is freed leaves stale bytes
//! in the file, which the image writer overwrites or zeroes.

use std::cell::OnceCell;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use tempfile::NamedTempFile;
use thinsend::block::BLOCK_SIZE;
use thinsend::spacemap::MAX_METADATA_BLOCKS;

use super::Node;
use crate::error::{Error, Result};

/// The image's temporary file, mapped read-only over its whole (sparse) maximum size.
#[derive(Debug)]
struct Spill {
    tmp: NamedTempFile,
    path: PathBuf,
    map: Mmap,
}

#[derive(Debug, Default)]
pub(super) struct Store {
    /// The node in memory: the node itself, or a decoded copy of a frozen one.
    mem: Vec<OnceCell<Box<Node>>>,
    /// The file holds the node (packed at its block).
    frozen: Vec<bool>,
    /// The file holds bytes at the block that are not its final content.
    stale: Vec<bool>,
    spill: Option<Spill>,
}

impl Store {
    pub fn push_empty(&mut self) {
        self.mem.push(OnceCell::new());
        self.frozen.push(false);
        self.stale.push(false);
    }

    /// From now on, bulk-built nodes go to `tmp` (the image's temporary file, for `path`), grown
    /// sparse to the largest metadata device and mapped.
    pub fn spill_to(&mut self, tmp: NamedTempFile, path: &Path) -> Result<()> {
        let io = |e| Error::io(path, e);
        tmp.as_file().set_len(MAX_METADATA_BLOCKS * BLOCK_SIZE as u64).map_err(io)?;
        // SAFETY: the file is the image's temporary file, created exclusively by this process,
        // neither truncated nor written through another mapping while the map lives (`unspill`
        // drops the map before the image writer cuts the file to size); our writes go through
        // `pwrite`, whose data the shared page cache shows in the map.
        let map = unsafe { Mmap::map(tmp.as_file()) }.map_err(io)?;
        self.spill = Some(Spill { tmp, path: path.to_path_buf(), map });
        Ok(())
    }

    /// Drops the map and returns the file (whose frozen blocks hold their nodes).
    pub fn unspill(&mut self) -> Option<NamedTempFile> {
        self.spill.take().map(|s| s.tmp)
    }

    pub fn is_frozen(&self, b: u64) -> bool {
        self.frozen[b as usize]
    }

    pub fn is_stale(&self, b: u64) -> bool {
        self.stale[b as usize]
    }

    pub fn get(&self, b: u64) -> Option<&Node> {
        let i = b as usize;
        if self.frozen[i] {
            let map = &self.spill.as_ref().expect("frozen nodes need the spill file").map;
            let at = i * BLOCK_SIZE;
            return Some(self.mem[i].get_or_init(|| Box::new(Node::unpack(&map[at..at + BLOCK_SIZE]))));
        }
        self.mem[i].get().map(|n| &**n)
    }

    /// The node, in memory from now on (a frozen one's block in the file becomes stale).
    pub fn get_mut(&mut self, b: u64) -> Option<&mut Node> {
        self.get(b)?;
        let i = b as usize;
        if self.frozen[i] {
            self.frozen[i] = false;
            self.stale[i] = true;
        }
        self.mem[i].get_mut().map(|n| &mut **n)
    }

    pub fn set(&mut self, b: u64, node: Node) {
        let i = b as usize;
        if self.frozen[i] {
            self.frozen[i] = false;
            self.stale[i] = true;
        }
        self.mem[i] = OnceCell::from(Box::new(node));
    }

    pub fn take(&mut self, b: u64) -> Option<Node> {
        self.get_mut(b)?;
        self.mem[b as usize].take().map(|n| *n)
    }

    pub fn clear(&mut self, b: u64) {
        let i = b as usize;
        if self.frozen[i] {
            self.frozen[i] = false;
            self.stale[i] = true;
        }
        self.mem[i] = OnceCell::new();
    }

    /// Stores new nodes at their blocks: written to the spill file at once (neighbouring blocks
    /// in one write) if there is one, else kept in memory.
    pub fn put_many(&mut self, nodes: Vec<(u64, Node)>) -> Result<()> {
        let Some(spill) = &self.spill else {
            for (b, n) in nodes {
                self.set(b, n);
            }
            return Ok(());
        };
        let write = |first: u64, buf: &[u8]| {
            spill.tmp.as_file().write_all_at(buf, first * BLOCK_SIZE as u64).map_err(|e| Error::io(&spill.path, e))
        };
        let mut buf = Vec::with_capacity(nodes.len() * BLOCK_SIZE);
        let mut first = 0;
        for (i, (b, n)) in nodes.iter().enumerate() {
            if i > 0 && *b != nodes[i - 1].0 + 1 {
                write(first, &buf)?;
                buf.clear();
            }
            if buf.is_empty() {
                first = *b;
            }
            buf.extend_from_slice(&n.pack(*b));
        }
        if !buf.is_empty() {
            write(first, &buf)?;
        }
        for (b, _) in nodes {
            let i = b as usize;
            self.mem[i] = OnceCell::new();
            self.frozen[i] = true;
        }
        Ok(())
    }

    /// Block `b`'s node if it is held in memory and not frozen.
    pub fn in_memory(&self, b: u64) -> Option<&Node> {
        let i = b as usize;
        if self.frozen[i] {
            return None;
        }
        self.mem[i].get().map(|n| &**n)
    }

    /// Every node, frozen ones decoded (for tests; a spilled pool keeps the decoded copies).
    pub fn all(&self) -> impl Iterator<Item = (u64, &Node)> {
        (0..self.mem.len() as u64).filter_map(|b| self.get(b).map(|n| (b, n)))
    }
}
