//! The device-details tree: dev id -> `disk_device_details` (24 bytes).

use crate::block::MetadataDev;
use crate::btree::node::Value;
use crate::btree::walk::LeafWalker;
use crate::error::Result;
use crate::ondisk::on_disk;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct DeviceDetails {
    pub mapped_blocks: u64,
    pub transaction_id: u64,
    pub creation_time: u32,
    pub snapshotted_time: u32,
}

on_disk!(DeviceDetails, 24, { mapped_blocks @ 0, transaction_id @ 8, creation_time @ 16, snapshotted_time @ 20 });

pub fn read_details(dev: &MetadataDev, root: u64) -> Result<Vec<(u64, DeviceDetails)>> {
    LeafWalker::new(dev, root, DeviceDetails::SIZE).entries::<DeviceDetails>().collect()
}
