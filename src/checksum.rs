//! Block checksums: crc32c over bytes [4, 4096) with a per-block-kind xor seed, stored at offset 0.
//! The kernel computes `crc32c(~0, ..) ^ seed` without the final inversion a standard CRC-32C has.

use crate::ondisk::OnDisk;

/// The kinds of metadata block a thin pool has, each with its own checksum seed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockKind {
    Superblock,
    Node,
    Bitmap,
    Index,
}

impl BlockKind {
    pub const fn seed(self) -> u32 {
        match self {
            BlockKind::Superblock => 160774,
            BlockKind::Node => 121107,
            BlockKind::Bitmap => 240779,
            BlockKind::Index => 160478,
        }
    }

    pub const fn name(self) -> &'static str {
        match self {
            BlockKind::Superblock => "superblock",
            BlockKind::Node => "btree node",
            BlockKind::Bitmap => "space map bitmap",
            BlockKind::Index => "metadata space map index",
        }
    }
}

/// The checksum the block should carry for `kind`.
pub fn compute(block: &[u8], kind: BlockKind) -> u32 {
    !crc32c::crc32c(&block[4..]) ^ kind.seed()
}

pub fn stored(block: &[u8]) -> u32 {
    u32::unpack(block)
}

/// Writes the checksum of `kind` into the first four bytes.
pub fn stamp(block: &mut [u8], kind: BlockKind) {
    let c = compute(block, kind);
    c.pack(block);
}

/// The kind whose seed matches the stored checksum, if any (used by `inspect`-style tools).
pub fn detect(block: &[u8]) -> Option<BlockKind> {
    let raw = !crc32c::crc32c(&block[4..]) ^ stored(block);
    [BlockKind::Superblock, BlockKind::Node, BlockKind::Bitmap, BlockKind::Index].into_iter().find(|k| k.seed() == raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_crc32c_vector() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn empty_bottom_leaf_checksum_matches_cpp_restore() {
        // flags=2, blocknr=8, nr=0, max=252, value_size=8: verified csum 0xCB6F3068.
        let mut b = vec![0u8; 4096];
        b[4..8].copy_from_slice(&2u32.to_le_bytes());
        b[8..16].copy_from_slice(&8u64.to_le_bytes());
        b[20..24].copy_from_slice(&252u32.to_le_bytes());
        b[24..28].copy_from_slice(&8u32.to_le_bytes());
        assert_eq!(compute(&b, BlockKind::Node), 0xCB6F_3068);
        stamp(&mut b, BlockKind::Node);
        assert_eq!(detect(&b), Some(BlockKind::Node));
    }
}
