//! The device-details tree: dev id -> `disk_device_details` (24 bytes).

use byteorder::{ByteOrder, LittleEndian as LE};

use crate::block::MetadataDev;
use crate::btree::node::Value;
use crate::btree::walk::LeafWalker;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct DeviceDetails {
    pub mapped_blocks: u64,
    pub transaction_id: u64,
    pub creation_time: u32,
    pub snapshotted_time: u32,
}

impl Value for DeviceDetails {
    const SIZE: usize = 24;
    fn unpack(b: &[u8]) -> Self {
        DeviceDetails {
            mapped_blocks: LE::read_u64(&b[0..]),
            transaction_id: LE::read_u64(&b[8..]),
            creation_time: LE::read_u32(&b[16..]),
            snapshotted_time: LE::read_u32(&b[20..]),
        }
    }
    fn pack(&self, b: &mut [u8]) {
        LE::write_u64(&mut b[0..], self.mapped_blocks);
        LE::write_u64(&mut b[8..], self.transaction_id);
        LE::write_u32(&mut b[16..], self.creation_time);
        LE::write_u32(&mut b[20..], self.snapshotted_time);
    }
}

pub fn read_details(dev: &MetadataDev, root: u64) -> Result<Vec<(u64, DeviceDetails)>> {
    LeafWalker::new(dev, root, DeviceDetails::SIZE).entries::<DeviceDetails>().collect()
}
