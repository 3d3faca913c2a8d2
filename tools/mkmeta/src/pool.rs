//! The pool as the kernel's dm-thin-metadata.c keeps it: the two-level mapping tree, the details
//! tree (written for changed devices at commit), the pool time and transaction id, the held
//! metadata snapshot, and the thin target's write/discard decisions on top.

use std::collections::BTreeMap;

use thinsend::btree::details::DeviceDetails;
use thinsend::btree::mapping::BlockTime;
use thinsend::btree::node::Value;
use thinsend::superblock::NEEDS_CHECK;

use crate::data::{Fill, Sink};
use crate::error::{Error, Result};
use crate::image::{HeldSb, SbState};
use crate::tm::{even_chunks, Node, Tm, Tree, BATCH};

#[derive(Debug, Clone, Copy)]
struct Dev {
    details: DeviceDetails,
    /// Details differ from the details tree (written at the next commit).
    changed: bool,
}

pub struct Pool {
    pub tm: Tm,
    pub data_block_size: u32,
    pub time: u32,
    pub trans_id: u64,
    pub flags: u32,
    pub top_root: u64,
    pub details_root: u64,
    pub held: Option<HeldSb>,
    devices: BTreeMap<u64, Dev>,
}

/// What a write did to one virtual block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteEffect {
    /// Unmapped: a new data block was mapped.
    Provisioned(u64),
    /// Mapped and shared with a snapshot (mapping time < snapshotted_time): a new data block
    /// replaced the old one.
    BrokeSharing(u64),
    /// Mapped and not shared: the data block was overwritten, the metadata is untouched.
    InPlace(u64),
}

impl Pool {
    /// A freshly formatted pool: superblock at block 0, empty mapping and details trees.
    pub fn format(data_block_size: u32, nr_data_blocks: u64) -> Self {
        let mut tm = Tm::new(nr_data_blocks);
        let sb = tm.alloc();
        debug_assert_eq!(sb, 0);
        let top_root = tm.new_node(Node::leaf_of(Tree::Top));
        let details_root = tm.new_node(Node::leaf_of(Tree::Details));
        tm.commit();
        Pool {
            tm,
            data_block_size,
            time: 0,
            trans_id: 0,
            flags: 0,
            top_root,
            details_root,
            held: None,
            devices: BTreeMap::new(),
        }
    }

    pub fn sb_state(&self) -> SbState {
        SbState {
            flags: self.flags,
            version: 2,
            time: self.time,
            trans_id: self.trans_id,
            data_block_size: self.data_block_size,
            top_root: self.top_root,
            details_root: self.details_root,
            held: self.held,
        }
    }

    pub fn device_ids(&self) -> Vec<u64> {
        self.devices.keys().copied().collect()
    }

    pub fn details(&self, id: u64) -> Option<DeviceDetails> {
        self.devices.get(&id).map(|d| d.details)
    }

    fn dev(&self, id: u64) -> Result<&Dev> {
        self.devices.get(&id).ok_or_else(|| Error::Pool(format!("thin device {id} does not exist")))
    }

    fn dev_mut(&mut self, id: u64) -> Result<&mut Dev> {
        self.devices.get_mut(&id).ok_or_else(|| Error::Pool(format!("thin device {id} does not exist")))
    }

    /// Root of a device's mapping tree.
    pub fn device_root(&self, id: u64) -> Result<u64> {
        self.tm
            .lookup(self.top_root, id)
            .map(u64::unpack)
            .ok_or_else(|| Error::Pool(format!("thin device {id} does not exist")))
    }

    pub fn lookup(&self, id: u64, vblock: u64) -> Result<Option<BlockTime>> {
        let root = self.device_root(id)?;
        Ok(self.tm.lookup(root, vblock).map(BlockTime::unpack))
    }

    /// One past the highest mapped virtual block of a device (0 if it maps nothing).
    pub fn mapped_end(&self, id: u64) -> Result<u64> {
        let root = self.device_root(id)?;
        Ok(self.tm.last_key(root).map_or(0, |k| k + 1))
    }

    fn new_details(&self) -> DeviceDetails {
        DeviceDetails {
            mapped_blocks: 0,
            transaction_id: self.trans_id,
            creation_time: self.time,
            snapshotted_time: self.time,
        }
    }

    //--------------------------------------------------------------------------------------------
    // Pool messages (each followed by a commit, as the thin-pool target does).

    /// `create_thin`: an empty mapping tree under `id` in the top level.
    pub fn create_thin(&mut self, id: u64) -> Result<()> {
        if self.devices.contains_key(&id) {
            return Err(Error::Pool(format!("thin device {id} already exists")));
        }
        let root = self.tm.new_node(Node::leaf_of(Tree::Bottom));
        self.top_root = self.tm.insert(self.top_root, Tree::Top, id, &root.to_le_bytes()).0;
        let details = self.new_details();
        self.devices.insert(id, Dev { details, changed: true });
        self.commit();
        Ok(())
    }

    /// `create_snap`: `id` shares `origin`'s whole mapping tree (one more reference to its root);
    /// the pool time advances and both devices record it as snapshotted_time.
    pub fn create_snap(&mut self, id: u64, origin: u64) -> Result<()> {
        if self.devices.contains_key(&id) {
            return Err(Error::Pool(format!("thin device {id} already exists")));
        }
        let origin_mapped = self.dev(origin)?.details.mapped_blocks;
        self.commit();
        let root = self.device_root(origin)?;
        self.tm.inc(root);
        self.top_root = self.tm.insert(self.top_root, Tree::Top, id, &root.to_le_bytes()).0;
        self.time += 1;
        let mut details = self.new_details();
        details.mapped_blocks = origin_mapped;
        self.devices.insert(id, Dev { details, changed: true });
        let time = self.time;
        let o = self.dev_mut(origin)?;
        o.details.snapshotted_time = time;
        o.changed = true;
        self.commit();
        Ok(())
    }

    /// `delete`: out of the details tree and the top level; the mapping tree loses a reference.
    pub fn delete(&mut self, id: u64) -> Result<()> {
        self.dev(id)?;
        self.commit();
        self.details_root = self.tm.remove(self.details_root, Tree::Details, id)?;
        self.top_root = self.tm.remove(self.top_root, Tree::Top, id)?;
        self.devices.remove(&id);
        self.commit();
        Ok(())
    }

    /// `reserve_metadata_snap`: a copy of the committed superblock in a new block, sharing the
    /// mapping and details roots (one more reference each).
    pub fn reserve_metadata_snap(&mut self) -> Result<()> {
        if let Some(h) = &self.held {
            return Err(Error::Pool(format!(
                "a metadata snapshot is already held at block {} (release_metadata_snap first)",
                h.block
            )));
        }
        self.commit();
        let block = self.tm.alloc();
        self.tm.inc(self.top_root);
        self.tm.inc(self.details_root);
        self.held = Some(HeldSb {
            block,
            flags: self.flags,
            time: self.time,
            trans_id: self.trans_id,
            top_root: self.top_root,
            details_root: self.details_root,
        });
        self.commit();
        Ok(())
    }

    /// `release_metadata_snap`: the copy's trees lose their references, its block is freed.
    pub fn release_metadata_snap(&mut self) -> Result<()> {
        let h = self.held.take().ok_or_else(|| Error::Pool("no metadata snapshot is held".into()))?;
        self.tm.del(h.top_root, Tree::Top);
        self.tm.del(h.details_root, Tree::Details);
        self.tm.dec(h.block);
        self.commit();
        Ok(())
    }

    /// `set_transaction_id`.
    pub fn set_transaction_id(&mut self, id: u64) {
        self.trans_id = id;
        self.commit();
    }

    pub fn set_needs_check(&mut self) {
        self.flags |= NEEDS_CHECK;
        self.commit();
    }

    /// Writes the changed device details into the details tree and ends the transaction.
    pub fn commit(&mut self) {
        let changed: Vec<(u64, DeviceDetails)> = self
            .devices
            .iter_mut()
            .filter(|(_, d)| d.changed)
            .map(|(&id, d)| {
                d.changed = false;
                (id, d.details)
            })
            .collect();
        for (id, details) in changed {
            let mut v = [0u8; 24];
            details.pack(&mut v);
            self.details_root = self.tm.insert(self.details_root, Tree::Details, id, &v).0;
        }
        self.tm.commit();
    }

    //--------------------------------------------------------------------------------------------
    // I/O.

    /// Inserts a mapping through the two-level tree (shadowing the top level too, as
    /// `dm_thin_insert_block` does). Returns whether the key was new.
    fn insert_mapping(&mut self, id: u64, vblock: u64, bt: BlockTime) -> Result<bool> {
        let (top, leaf, idx) = self.tm.insert_raw(self.top_root, Tree::Top, id);
        self.top_root = top;
        let n = self.tm.node(leaf);
        if idx >= n.len() || n.keys[idx] != id {
            return Err(Error::Pool(format!("thin device {id} does not exist")));
        }
        let root = n.value_u64(idx);
        let (new_root, inserted) = self.tm.insert(root, Tree::Bottom, vblock, &bt.raw().to_le_bytes());
        if new_root != root {
            self.tm.node_mut(leaf).set_u64(idx, new_root);
        }
        Ok(inserted)
    }

    fn remove_mapping(&mut self, id: u64, vblock: u64) -> Result<()> {
        let (top, leaf, idx) = self.tm.remove_raw(self.top_root, Tree::Top, id);
        self.top_root = top;
        let idx = idx.ok_or_else(|| Error::Pool(format!("thin device {id} does not exist")))?;
        let root = self.tm.node(leaf).value_u64(idx);
        let new_root = self.tm.remove(root, Tree::Bottom, vblock)?;
        if new_root != root {
            self.tm.node_mut(leaf).set_u64(idx, new_root);
        }
        Ok(())
    }

    /// A write of one whole virtual block, decided as the thin target does.
    pub fn write_block(&mut self, id: u64, vblock: u64, write: u64, sink: &mut dyn Sink) -> Result<WriteEffect> {
        let snapshotted = self.dev(id)?.details.snapshotted_time;
        let fill = Fill { write, dev: id, vblock };
        let effect = match self.lookup(id, vblock)? {
            Some(bt) if bt.time >= snapshotted => WriteEffect::InPlace(bt.data_block),
            existing => {
                let d = self.tm.data.alloc()?;
                let bt = BlockTime { data_block: d, time: self.time };
                let inserted = self.insert_mapping(id, vblock, bt)?;
                let dev = self.dev_mut(id)?;
                dev.changed = true;
                if inserted {
                    dev.details.mapped_blocks += 1;
                }
                match existing {
                    None => WriteEffect::Provisioned(d),
                    Some(_) => WriteEffect::BrokeSharing(d),
                }
            }
        };
        let d = match effect {
            WriteEffect::Provisioned(d) | WriteEffect::BrokeSharing(d) | WriteEffect::InPlace(d) => d,
        };
        sink.fill(d, fill)?;
        Ok(effect)
    }

    /// Writes `start..start+len` of device `id`. A device with no mappings gets its tree built
    /// directly (leaves filled evenly, data blocks allocated in order) instead of one insert per
    /// block; the result is a tree the kernel could have written.
    pub fn write_extent(&mut self, id: u64, start: u64, len: u64, write: u64, sink: &mut dyn Sink) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        if self.dev(id)?.details.mapped_blocks == 0 && len > 1 {
            return self.bulk_write(id, start, len, write, sink);
        }
        for v in start..start + len {
            self.write_block(id, v, write, sink)?;
        }
        Ok(())
    }

    fn bulk_write(&mut self, id: u64, start: u64, len: u64, write: u64, sink: &mut dyn Sink) -> Result<()> {
        let free = self.tm.data.nr_free();
        if free < len {
            return Err(Error::Pool(format!(
                "data device full: writing {len} blocks needs {len} free data blocks, {free} are free"
            )));
        }
        let max = Node::leaf_of(Tree::Bottom).max();
        let mut leaves = Vec::new();
        let mut batch = Vec::new();
        let mut v = start;
        for group in even_chunks(len as usize, max) {
            let mut n = Node::leaf_of(Tree::Bottom);
            for _ in group {
                let d = self.tm.data.alloc()?;
                let bt = BlockTime { data_block: d, time: self.time };
                n.push(v, &bt.raw().to_le_bytes());
                sink.fill(d, Fill { write, dev: id, vblock: v })?;
                v += 1;
            }
            batch.push(n);
            if batch.len() == BATCH {
                self.tm.store_batch(&mut batch, &mut leaves)?;
            }
        }
        self.tm.store_batch(&mut batch, &mut leaves)?;
        let root = self.tm.build_over(Tree::Bottom, leaves)?;
        // Replacing the top-level value drops the old (empty) tree's reference.
        self.top_root = self.tm.insert(self.top_root, Tree::Top, id, &root.to_le_bytes()).0;
        let dev = self.dev_mut(id)?;
        dev.details.mapped_blocks += len;
        dev.changed = true;
        Ok(())
    }

    /// Discards every mapped block in `start..end`; returns how many were mapped.
    pub fn discard_extent(&mut self, id: u64, start: u64, end: u64) -> Result<u64> {
        let mut n = 0;
        let mut v = start;
        while v < end {
            let root = self.device_root(id)?;
            match self.tm.next_key(root, v) {
                Some(k) if k < end => {
                    self.discard_block(id, k)?;
                    n += 1;
                    v = k + 1;
                }
                _ => break,
            }
        }
        Ok(n)
    }

    /// A discard of one virtual block: the mapping goes, its data block loses a reference.
    /// Returns whether the block was mapped.
    pub fn discard_block(&mut self, id: u64, vblock: u64) -> Result<bool> {
        if self.lookup(id, vblock)?.is_none() {
            return Ok(false);
        }
        self.remove_mapping(id, vblock)?;
        let dev = self.dev_mut(id)?;
        dev.details.mapped_blocks -= 1;
        dev.changed = true;
        Ok(true)
    }
}
