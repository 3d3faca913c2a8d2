//! `verify` and `heal`: is a replica still equal to its source snapshot, and if not, make it so
//! without a common base. Each side reads only the bytes it maps (a range unmapped on both is
//! equal unread) and hashes them per block (xxh3-128, or BLAKE3 when asked); the sides compare
//! region digests first and block digests only inside differing regions ([`compare`]). The
//! replica may be on another host, reached through ssh ([`protocol`]). `heal` turns the differing
//! ranges into a native stream and applies it with the atomic receive ([`heal`]).

pub mod compare;
pub mod hash;
pub mod heal;
pub mod protocol;
pub mod sides;
pub mod volume;

use std::os::fd::{AsRawFd, RawFd};
use std::process::Stdio;

pub use compare::{compare, LocalPeer, Peer, Range, Report};
pub use sides::{open_local_replica, open_source, Replica, Source, Sourced};

use crate::error::{Error, Result};
use crate::io as sys;
use crate::remote::Ssh;
use crate::{lvm, progress, recv};

/// The default fine block when the source does not say (a file has no pool block size).
pub const DEFAULT_BLOCK: u64 = 64 << 10;

/// How to compare: the hash, and the block size (default: the source pool's).
#[derive(Debug, Clone, Copy, Default)]
pub struct How {
    pub hash: hash::Algorithm,
    pub block: Option<u64>,
}

/// Compares the opened source with `dst`: in-process for a local replica, else through
/// `verify --serve` on its host.
pub fn verify(src: &Sourced, dst: &Replica, ssh: &Ssh, how: How) -> Result<Report> {
    let alg = how.hash;
    let block = how.block.unwrap_or(src.block);
    match dst.host() {
        None => {
            let (vol, guard) = open_local_replica(dst)?;
            let mut peer = LocalPeer::new(vol);
            let r = compare(&src.vol, &mut peer, alg, block);
            drop(peer);
            drop(guard);
            r
        }
        Some(host) => {
            let mut args = vec!["verify", "--serve"];
            args.extend(dst.remote_args());
            let mut cmd = ssh.command(host, &args).map_err(Error::Usage)?;
            let child =
                cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().map_err(|e| Error::io(&ssh.program[0], e))?;
            let mut peer = protocol::RemotePeer::new(child, "replica")?;
            compare(&src.vol, &mut peer, alg, block)
        }
    }
}

/// What a heal did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Healed {
    pub before: Report,
    pub records: u64,
    pub data_bytes: u64,
    pub unmap_bytes: u64,
    /// The heal stream's size: what went to the receiver (over ssh: on the wire).
    pub stream_bytes: u64,
}

/// Compares, then applies the differing ranges to `dst` as one atomic receive that records the
/// source as the replica's new base.
pub fn heal(src: &Sourced, dst: &Replica, ssh: &Ssh, how: How) -> Result<Healed> {
    let before = verify(src, dst, ssh, how)?;
    let recs = heal::records(&src.vol, &before.ranges);
    let header = heal::header(src.identity.clone(), src.vol.size, src.pool_block, &recs)?;
    let stream_bytes = match dst.host() {
        None => apply_local(src, dst, &header, &recs)?,
        Some(host) => {
            let mut args = vec!["heal", "--serve-recv"];
            args.extend(dst.remote_args());
            let mut cmd = ssh.command(host, &args).map_err(Error::Usage)?;
            let mut child = cmd.stdin(Stdio::piped()).spawn().map_err(|e| Error::io(&ssh.program[0], e))?;
            let stdin = child.stdin.take().ok_or_else(|| Error::Other("heal: no pipe to ssh".into()))?;
            let written = heal::write_stream(&src.vol, &header, &recs, stdin.as_raw_fd());
            drop(stdin);
            let status = child.wait().map_err(|e| Error::io("ssh", e))?;
            if !status.success() {
                return Err(Error::Other(format!("heal: the receiving side on {host} exited with {status}")));
            }
            written?
        }
    };
    let data_bytes = recs.iter().filter(|r| r.at.is_some()).map(|r| r.len).sum();
    let unmap_bytes = recs.iter().filter(|r| r.at.is_none()).map(|r| r.len).sum();
    Ok(Healed { before, records: recs.len() as u64, data_bytes, unmap_bytes, stream_bytes })
}

/// Receives the heal stream into a local replica through a pipe, the receiver in a thread.
fn apply_local(
    src: &Sourced,
    dst: &Replica,
    header: &crate::stream::native::Header,
    recs: &[heal::Rec],
) -> Result<u64> {
    let (r, w) = sys::pipe().map_err(|e| Error::io("pipe", e))?;
    let dst = dst.clone();
    let receiver = std::thread::spawn(move || {
        let res = receive(&dst, r.as_raw_fd());
        drop(r);
        res
    });
    let written = heal::write_stream(&src.vol, header, recs, w.as_raw_fd());
    drop(w);
    let received = receiver.join().unwrap_or_else(|_| Err(Error::Other("heal: the receiver panicked".into())));
    received?;
    written
}

/// Applies a heal stream read from `input` to a replica on this host (`heal --serve-recv` too):
/// an LV through the LVM receive (a snapshot swapped in), a file or block device in place under
/// the undo journal. Whatever the replica recorded, and however it was changed, is overridden.
pub fn receive(dst: &Replica, input: RawFd) -> Result<()> {
    match dst {
        Replica::Lv(name) => {
            let args = lvm::recv::Args {
                target: name.path.clone(),
                force: true,
                heal: true,
                progress: progress::Mode::Never,
                ..Default::default()
            };
            lvm::recv::recv(&args, input).map(|_| ())
        }
        Replica::Path(p) => {
            let opts = recv::Options {
                to: p.path.clone().into(),
                force: true,
                progress: progress::Mode::Never,
                ..Default::default()
            };
            recv::recv(input, &opts).map(|_| ())
        }
    }
}
