//! The comparison, coarse first: both sides hash a batch of regions at the same time (the replica
//! through its [`Peer`]); only regions whose digests differ have their block digests exchanged,
//! and the differing blocks become byte ranges. A size difference is a differing tail.

use serde::Serialize;

use super::hash::{Algorithm, Digest, Hashed, Hasher, Layout};
use super::volume::Volume;
use crate::error::{Error, Result};

/// Regions asked for at a time (with 4 MiB regions, 1 GiB per side).
pub const BATCH: u64 = 256;

/// What a peer says about its volume before hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerInfo {
    pub size: u64,
    pub mapped_bytes: u64,
}

/// The replica's side of a comparison, in-process ([`LocalPeer`]) or over a connection.
pub trait Peer: Send {
    fn info(&mut self) -> Result<PeerInfo>;
    /// The layout both sides hash with; sent once, before any region.
    fn set_layout(&mut self, layout: Layout) -> Result<()>;
    /// The digests of regions `first..first+count`.
    fn regions(&mut self, first: u64, count: u64) -> Result<Vec<Digest>>;
    /// The block digests of these regions, all from the last batch asked for.
    fn fine(&mut self, regions: &[u64]) -> Result<Vec<Vec<Digest>>>;
    /// Bytes the peer read from its volume; ends the session.
    fn finish(&mut self) -> Result<u64>;
    /// Bytes exchanged with the peer: digests, or on a connection every frame both ways.
    fn traffic(&self) -> u64;
}

/// The replica in this process: hashes when asked, keeps the last batch's block digests.
pub struct LocalPeer {
    vol: Volume,
    layout: Option<Layout>,
    last: Option<(u64, Vec<Hashed>)>,
    read: u64,
    traffic: u64,
}

impl LocalPeer {
    pub fn new(vol: Volume) -> Self {
        LocalPeer { vol, layout: None, last: None, read: 0, traffic: 0 }
    }

    pub fn volume(&self) -> &Volume {
        &self.vol
    }

    fn layout(&self) -> Result<Layout> {
        self.layout.ok_or_else(|| Error::Other("verify: regions asked for before the layout".into()))
    }
}

impl Peer for LocalPeer {
    fn info(&mut self) -> Result<PeerInfo> {
        Ok(PeerInfo { size: self.vol.size, mapped_bytes: self.vol.mapped_bytes() })
    }
    fn set_layout(&mut self, layout: Layout) -> Result<()> {
        layout.check().map_err(Error::Other)?;
        self.layout = Some(layout);
        Ok(())
    }
    fn regions(&mut self, first: u64, count: u64) -> Result<Vec<Digest>> {
        let h = Hasher::new(&self.vol, self.layout()?);
        let batch = h.batch(first, count.min(BATCH))?;
        self.read += h.bytes_read();
        let out: Vec<Digest> = batch.iter().map(|x| x.region).collect();
        self.traffic += (self.layout()?.alg.digest_len() * out.len()) as u64;
        self.last = Some((first, batch));
        Ok(out)
    }
    fn fine(&mut self, regions: &[u64]) -> Result<Vec<Vec<Digest>>> {
        let (first, batch) = self.last.as_ref().ok_or_else(|| Error::Other("verify: no batch hashed yet".into()))?;
        let mut out = Vec::with_capacity(regions.len().min(batch.len()));
        for r in regions {
            let i = r.checked_sub(*first).filter(|i| *i < batch.len() as u64).ok_or_else(|| {
                Error::Other(format!("verify: region {r} is not in the last batch (from region {first})"))
            })?;
            let fine = batch[i as usize].fine.clone();
            self.traffic += (self.layout()?.alg.digest_len() * fine.len()) as u64;
            out.push(fine);
        }
        Ok(out)
    }
    fn finish(&mut self) -> Result<u64> {
        Ok(self.read)
    }
    fn traffic(&self) -> u64 {
        self.traffic
    }
}

/// A byte range that differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Range {
    pub offset: u64,
    pub length: u64,
}

/// The result of a comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    pub equal: bool,
    pub source_size: u64,
    pub replica_size: u64,
    pub block_size: u64,
    pub hash: Algorithm,
    /// Differing ranges, ascending and disjoint; a size difference is the last one.
    pub ranges: Vec<Range>,
    pub differing_bytes: u64,
    pub regions: u64,
    pub regions_differing: u64,
    pub source_bytes_read: u64,
    pub replica_bytes_read: u64,
    /// Bytes exchanged between the sides (digests; over ssh every protocol frame).
    pub hash_bytes: u64,
}

fn push(ranges: &mut Vec<Range>, offset: u64, length: u64) {
    if length == 0 {
        return;
    }
    match ranges.last_mut() {
        Some(l) if l.offset + l.length == offset => l.length += length,
        _ => ranges.push(Range { offset, length }),
    }
}

/// The differing blocks of one region, as byte ranges clipped to the compared length.
fn fine_ranges(l: &Layout, region: u64, mine: &[Digest], theirs: &[Digest], out: &mut Vec<Range>) -> Result<()> {
    if mine.len() != theirs.len() {
        return Err(Error::Other(format!(
            "verify: the replica sent {} block digests for region {region}, expected {}",
            theirs.len(),
            mine.len()
        )));
    }
    let (lo, hi) = l.span(region);
    for (i, (a, b)) in mine.iter().zip(theirs).enumerate() {
        if a != b {
            let s = lo + i as u64 * l.block;
            push(out, s, (s + l.block).min(hi) - s);
        }
    }
    Ok(())
}

/// Compares `src` with the replica behind `peer`, hashing with `alg` in blocks of `block` bytes.
pub fn compare(src: &Volume, peer: &mut dyn Peer, alg: Algorithm, block: u64) -> Result<Report> {
    let info = peer.info()?;
    let layout = Layout::new(alg, block, src.size.min(info.size)).map_err(Error::Usage)?;
    peer.set_layout(layout)?;
    let hasher = Hasher::new(src, layout);
    let mut ranges = Vec::new();
    let mut regions_differing = 0;
    let mut first = 0;
    while first < layout.regions() {
        let n = BATCH.min(layout.regions() - first);
        let (mine, theirs) = std::thread::scope(|s| {
            let t = s.spawn(|| peer.regions(first, n));
            let mine = hasher.batch(first, n);
            (mine, t.join().unwrap_or_else(|_| Err(Error::Other("verify: the replica's hashing panicked".into()))))
        });
        let (mine, theirs) = (mine?, theirs?);
        if mine.len() != theirs.len() {
            return Err(Error::Other(format!(
                "verify: the replica sent {} region digests, expected {n}",
                theirs.len()
            )));
        }
        let differing: Vec<u64> =
            (0..n).filter(|i| mine[*i as usize].region != theirs[*i as usize]).map(|i| first + i).collect();
        if !differing.is_empty() {
            let fine = peer.fine(&differing)?;
            if fine.len() != differing.len() {
                return Err(Error::Other("verify: the replica answered for other regions than asked".into()));
            }
            for (r, theirs) in differing.iter().zip(&fine) {
                fine_ranges(&layout, *r, &mine[(r - first) as usize].fine, theirs, &mut ranges)?;
            }
        }
        regions_differing += differing.len() as u64;
        first += n;
    }
    push(&mut ranges, layout.len, src.size.max(info.size) - layout.len);
    let replica_bytes_read = peer.finish()?;
    Ok(Report {
        equal: ranges.is_empty(),
        source_size: src.size,
        replica_size: info.size,
        block_size: block,
        hash: alg,
        differing_bytes: ranges.iter().map(|r| r.length).sum(),
        ranges,
        regions: layout.regions(),
        regions_differing,
        source_bytes_read: hasher.bytes_read(),
        replica_bytes_read,
        hash_bytes: peer.traffic(),
    })
}

#[cfg(test)]
mod tests {
    use super::super::volume::Mapping;
    use super::*;
    use std::os::unix::fs::FileExt;

    fn volume(bytes: &[u8]) -> Volume {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(bytes, 0).unwrap();
        Volume { path: "t".into(), file: f, size: bytes.len() as u64, mapping: Mapping::All }
    }

    #[test]
    fn names_changed_blocks_and_the_missing_tail() {
        let src: Vec<u8> = (0..(64u32 << 10)).map(|i| (i % 251) as u8).collect();
        let mut dst = src[..40 << 10].to_vec();
        dst[5000] ^= 1;
        dst[5001] ^= 1;
        dst[20000] ^= 1;
        let mut peer = LocalPeer::new(volume(&dst));
        let r = compare(&volume(&src), &mut peer, Algorithm::Xxh3, 4096).unwrap();
        let want = vec![
            Range { offset: 4096, length: 4096 },
            Range { offset: 16384, length: 4096 },
            Range { offset: 40 << 10, length: 24 << 10 },
        ];
        assert_eq!(r.ranges, want);
        assert!(!r.equal);
        assert_eq!(r.differing_bytes, 32 << 10);
        assert_eq!(r.replica_bytes_read, 40 << 10);
    }

    #[test]
    fn equal_volumes_exchange_only_region_digests() {
        let src = vec![9u8; 3 << 20];
        let mut peer = LocalPeer::new(volume(&src));
        let r = compare(&volume(&src), &mut peer, Algorithm::Blake3, 65536).unwrap();
        assert!(r.equal && r.ranges.is_empty());
        assert_eq!(r.hash_bytes, 32, "one region digest, no block digests");
        let mut peer = LocalPeer::new(volume(&src));
        assert_eq!(compare(&volume(&src), &mut peer, Algorithm::Xxh3, 65536).unwrap().hash_bytes, 16);
    }
}
