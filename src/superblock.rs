//! The thin-pool superblock (block 0) and its metadata-snapshot copy (at `held_root`): layout,
//! validation, and packing (for tools/mkmeta).

use crate::block::{MetadataDev, BLOCK_SIZE};
use crate::checksum::{self, BlockKind};
use crate::error::{Fault, Result};
use crate::ondisk::{on_disk, OnDisk};

pub const MAGIC: u64 = 27022010;
/// Where the magic sits (between the uuid and the version; not a field of [`Superblock`]).
const MAGIC_OFFSET: usize = 32;
pub const NEEDS_CHECK: u32 = 1;
pub const SUPERBLOCK_LOCATION: u64 = 0;
/// Metadata block size in 512-byte sectors.
pub const METADATA_BLOCK_SECTORS: u32 = 8;

/// The root of a space map (`disk_sm_root`, first 32 bytes of a 128-byte field).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SmRoot {
    pub nr_blocks: u64,
    pub nr_allocated: u64,
    pub bitmap_root: u64,
    pub ref_count_root: u64,
}

on_disk!(SmRoot, 32, { nr_blocks @ 0, nr_allocated @ 8, bitmap_root @ 16, ref_count_root @ 24 });

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Superblock {
    pub flags: u32,
    pub blocknr: u64,
    pub uuid: [u8; 16],
    pub version: u32,
    pub time: u32,
    pub trans_id: u64,
    pub held_root: u64,
    pub data_sm: SmRoot,
    pub metadata_sm: SmRoot,
    pub data_mapping_root: u64,
    pub device_details_root: u64,
    /// In 512-byte sectors.
    pub data_block_size: u32,
    pub metadata_block_size: u32,
    pub metadata_nr_blocks: u64,
    pub compat_flags: u32,
    pub compat_ro_flags: u32,
    pub incompat_flags: u32,
}

// `thin_disk_superblock`: the checksum (bytes 0..4) is the checksum module's, the magic is checked
// and written apart, and each space-map root fills the first 32 bytes of a 128-byte field.
on_disk!(Superblock, 364, {
    flags @ 4,
    blocknr @ 8,
    uuid @ 16,
    version @ 40,
    time @ 44,
    trans_id @ 48,
    held_root @ 56,
    data_sm @ 64,
    metadata_sm @ 192,
    data_mapping_root @ 320,
    device_details_root @ 328,
    data_block_size @ 336,
    metadata_block_size @ 340,
    metadata_nr_blocks @ 344,
    compat_flags @ 352,
    compat_ro_flags @ 356,
    incompat_flags @ 360,
});

impl Superblock {
    pub fn needs_check(&self) -> bool {
        self.flags & NEEDS_CHECK != 0
    }

    /// Data block size in bytes.
    pub fn data_block_bytes(&self) -> u64 {
        self.data_block_size as u64 * 512
    }

    /// Decodes a superblock whose checksum and location were already verified.
    pub fn unpack(b: &[u8]) -> Result<Self, Fault> {
        let magic = u64::unpack(&b[MAGIC_OFFSET..]);
        if magic != MAGIC {
            return Err(Fault::Magic(magic));
        }
        let sb = <Superblock as OnDisk>::unpack(b);
        if !(1..=2).contains(&sb.version) {
            return Err(Fault::Version(sb.version));
        }
        let dbs = sb.data_block_size;
        if !(128..=2_097_152).contains(&dbs) || dbs % 128 != 0 {
            return Err(Fault::DataBlockSize(dbs));
        }
        if sb.metadata_block_size != METADATA_BLOCK_SECTORS {
            return Err(Fault::MetadataBlockSize(sb.metadata_block_size));
        }
        if sb.incompat_flags != 0 {
            return Err(Fault::Incompat(sb.incompat_flags));
        }
        Ok(sb)
    }

    /// A complete 4 KiB block with checksum.
    pub fn pack(&self) -> Vec<u8> {
        let mut b = vec![0u8; BLOCK_SIZE];
        OnDisk::pack(self, &mut b);
        MAGIC.pack(&mut b[MAGIC_OFFSET..]);
        checksum::stamp(&mut b, BlockKind::Superblock);
        b
    }
}

/// Reads and validates the superblock at `location` (0, or a held root).
pub fn read_at(dev: &MetadataDev, location: u64) -> Result<Superblock> {
    // The magic first: a file that isn't thin metadata at all is better told so than given a checksum.
    let magic = u64::unpack(&dev.raw(location)?[MAGIC_OFFSET..]);
    if magic != MAGIC {
        return Err(dev.fault(location, Fault::Magic(magic)));
    }
    let b = dev.read(location, BlockKind::Superblock)?;
    Superblock::unpack(&b).map_err(|f| dev.fault(location, f))
}

/// Which superblock a command reads: the live one, or the metadata snapshot's copy (`-m`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    #[default]
    Live,
    /// The held metadata snapshot; `Some(b)` insists it is at block `b`.
    Snapshot(Option<u64>),
}

/// The superblock a command works from, and the live superblock it was found through.
pub struct Selected {
    pub live: Superblock,
    pub used: Superblock,
    pub snapshot: bool,
}

pub fn select(dev: &MetadataDev, source: Source) -> Result<Selected> {
    let live = read_at(dev, SUPERBLOCK_LOCATION)?;
    match source {
        Source::Live => Ok(Selected { used: live.clone(), live, snapshot: false }),
        Source::Snapshot(want) => {
            if live.held_root == 0 {
                return Err(dev.metadata_error(
                    "no metadata snapshot is held (superblock held_root is 0); reserve one with \
                     'dmsetup message <pool>-tpool 0 reserve_metadata_snap' or drop -m",
                ));
            }
            if let Some(w) = want {
                if w != live.held_root {
                    return Err(
                        dev.metadata_error(format!("metadata snapshot is at block {}, not {w}", live.held_root))
                    );
                }
            }
            let used = read_at(dev, live.held_root)?;
            Ok(Selected { live, used, snapshot: true })
        }
    }
}
