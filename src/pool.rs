//! An opened pool: the metadata device, the superblock in use (live or metadata snapshot), and its
//! thin devices with their details and mapping roots.

use std::path::Path;

use crate::block::MetadataDev;
use crate::btree::details::{read_details, DeviceDetails};
use crate::btree::mapping::device_roots;
use crate::error::{Error, Result};
use crate::superblock::{self, Selected, Source, Superblock};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    pub id: u64,
    /// Root block of the device's bottom-level mapping tree.
    pub root: u64,
    pub details: DeviceDetails,
}

pub struct Pool {
    pub dev: MetadataDev,
    pub sb: Selected,
    pub devices: Vec<Device>,
}

impl Pool {
    pub fn open(path: impl AsRef<Path>, source: Source) -> Result<Self> {
        let dev = MetadataDev::open(path)?;
        Self::from_dev(dev, source)
    }

    pub fn from_dev(dev: MetadataDev, source: Source) -> Result<Self> {
        let sb = superblock::select(&dev, source)?;
        // Both trees' roots in one wait on a cold device rather than two.
        let mut roots = [sb.used.data_mapping_root, sb.used.device_details_root];
        roots.sort_unstable();
        dev.will_need(&roots);
        let roots = device_roots(&dev, sb.used.data_mapping_root)?;
        let details = read_details(&dev, sb.used.device_details_root)?;
        if roots.len() != details.len() || roots.iter().zip(&details).any(|(r, d)| r.0 != d.0) {
            let ids = |v: Vec<u64>| v.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",");
            return Err(dev.metadata_error(format!(
                "inconsistent device ids: mapping tree has [{}], details tree has [{}]",
                ids(roots.iter().map(|r| r.0).collect()),
                ids(details.iter().map(|d| d.0).collect())
            )));
        }
        let devices =
            roots.into_iter().zip(details).map(|((id, root), (_, details))| Device { id, root, details }).collect();
        Ok(Pool { dev, sb, devices })
    }

    /// The superblock whose trees are read.
    pub fn superblock(&self) -> &Superblock {
        &self.sb.used
    }

    /// The data device size in data blocks, as the superblock in use records it (0 in a metadata
    /// snapshot, whose space-map roots the kernel clears).
    pub fn nr_data_blocks(&self) -> u64 {
        self.sb.used.data_sm.nr_blocks
    }

    pub fn device(&self, id: u64) -> Result<&Device> {
        self.devices.iter().find(|d| d.id == id).ok_or_else(|| {
            let ids: Vec<String> = self.devices.iter().map(|d| d.id.to_string()).collect();
            Error::Metadata {
                path: self.dev.path().to_path_buf(),
                what: format!(
                    "thin device {id} not found (devices: {})",
                    if ids.is_empty() { "none".into() } else { ids.join(", ") }
                ),
            }
        })
    }
}
