//! The verify protocol between the two sides over ssh (`verify --serve` on the replica's host),
//! on the remote command's stdin and stdout. Every frame is `u32 length, u8 kind, payload, u32
//! crc32c(kind, payload)`, little-endian; a frame longer than [`MAX_FRAME`] is refused before
//! anything is allocated for it, and every payload must have exactly the length its kind and the
//! request imply. The client asks, the server answers; docs/STREAM.md section 8 lists the frames.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, ChildStdout};

use super::compare::{LocalPeer, Peer, PeerInfo, BATCH};
use super::hash::{Algorithm, Digest, Layout, MAX_REGION_BLOCKS};
use crate::error::{Error, Result};
use crate::text::escape_controls;

/// The first 16 bytes of HELLO and INFO: the protocol and its version.
pub const MAGIC: &[u8; 16] = b"thinsend-verify1";
/// Largest frame (kind and payload): a batch's digests or one region's block digests fit.
pub const MAX_FRAME: usize = 64 << 10;

/// Frame kinds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    Hello = 1,
    Info = 2,
    Layout = 3,
    Regions = 4,
    Digests = 5,
    Fine = 6,
    FineDigests = 7,
    Done = 8,
    Read = 9,
    Error = 15,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        use Kind::*;
        [Hello, Info, Layout, Regions, Digests, Fine, FineDigests, Done, Read, Error]
            .into_iter()
            .find(|k| *k as u8 == b)
    }
}

/// A protocol error: what was wrong, from whom.
fn bad(what: impl std::fmt::Display) -> Error {
    Error::Other(format!("verify protocol: {what}"))
}

fn io(side: &str, e: std::io::Error) -> Error {
    Error::io(side, e)
}

/// Reads and writes frames; counts the bytes both ways.
pub struct Framed<R, W> {
    r: R,
    w: W,
    name: &'static str,
    pub traffic: u64,
}

impl<R: Read, W: Write> Framed<R, W> {
    pub fn new(r: R, w: W, name: &'static str) -> Self {
        Framed { r, w, name, traffic: 0 }
    }

    pub fn send(&mut self, kind: Kind, payload: &[u8]) -> Result<()> {
        let mut f = Vec::with_capacity(payload.len() + 9);
        f.extend_from_slice(&(1 + payload.len() as u32).to_le_bytes());
        f.push(kind as u8);
        f.extend_from_slice(payload);
        let crc = crc32c::crc32c(&f[4..]);
        f.extend_from_slice(&crc.to_le_bytes());
        self.w.write_all(&f).and_then(|_| self.w.flush()).map_err(|e| io(self.name, e))?;
        self.traffic += f.len() as u64;
        Ok(())
    }

    /// The next frame, checked: its length within [`MAX_FRAME`] before anything is allocated, its
    /// checksum, a known kind.
    pub fn recv_any(&mut self) -> Result<(Kind, Vec<u8>)> {
        let mut len = [0u8; 4];
        self.r.read_exact(&mut len).map_err(|e| self.eof(e))?;
        let len = u32::from_le_bytes(len) as usize;
        if len == 0 || len > MAX_FRAME {
            return Err(bad(format!("{}: frame of {len} bytes (at most {MAX_FRAME})", self.name)));
        }
        let mut f = vec![0u8; len + 4];
        self.r.read_exact(&mut f).map_err(|e| self.eof(e))?;
        self.traffic += 4 + f.len() as u64;
        let (body, crc) = f.split_at(len);
        if crc32c::crc32c(body).to_le_bytes() != crc {
            return Err(bad(format!("{}: frame checksum mismatch", self.name)));
        }
        let kind =
            Kind::from_u8(body[0]).ok_or_else(|| bad(format!("{}: unknown frame kind {}", self.name, body[0])))?;
        Ok((kind, body[1..].to_vec()))
    }

    /// The next frame, of kind `want` (an ERROR frame becomes the peer's error).
    pub fn recv(&mut self, want: Kind) -> Result<Vec<u8>> {
        match self.recv_any()? {
            (k, p) if k == want => Ok(p),
            (Kind::Error, p) => {
                Err(Error::Other(format!("{}: {}", self.name, escape_controls(&String::from_utf8_lossy(&p)))))
            }
            (k, _) => Err(bad(format!("{}: a {k:?} frame where {want:?} was expected", self.name))),
        }
    }

    fn eof(&self, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            bad(format!("{}: the connection ended mid-conversation", self.name))
        } else {
            io(self.name, e)
        }
    }
}

fn u64s(p: &[u8], n: usize) -> Result<Vec<u64>> {
    if p.len() != 8 * n {
        return Err(bad(format!("payload of {} bytes, expected {}", p.len(), 8 * n)));
    }
    Ok(p.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())).collect())
}

/// `n` digests of `alg` from a payload that must hold exactly them.
fn digests(p: &[u8], n: u64, alg: Algorithm) -> Result<Vec<Digest>> {
    let len = alg.digest_len();
    if p.len() as u64 != len as u64 * n {
        return Err(bad(format!("{} bytes of digests, expected {}", p.len(), len as u64 * n)));
    }
    Ok(p.chunks_exact(len)
        .map(|c| {
            let mut d = [0u8; 32];
            d[..len].copy_from_slice(c);
            d
        })
        .collect())
}

/// Digests as sent: each cut to its algorithm's length.
fn wire(d: &[Digest], alg: Algorithm) -> Vec<u8> {
    d.iter().flat_map(|x| x[..alg.digest_len()].iter().copied()).collect()
}

fn cat(words: &[u64]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

/// The replica on another host, through a running `verify --serve`.
pub struct RemotePeer {
    child: Child,
    f: Framed<ChildStdout, ChildStdin>,
    layout: Option<Layout>,
}

impl RemotePeer {
    /// Takes a child started with piped stdin and stdout.
    pub fn new(mut child: Child, name: &'static str) -> Result<Self> {
        let (Some(w), Some(r)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Error::Other("verify: the remote command has no pipes".into()));
        };
        Ok(RemotePeer { child, f: Framed::new(r, w, name), layout: None })
    }

    /// The next answer; when the connection broke, says how the remote command ended.
    fn rx(&mut self, want: Kind) -> Result<Vec<u8>> {
        self.f.recv(want).map_err(|e| {
            if !e.to_string().contains("ended mid-conversation") {
                return e; // the remote side may still be running: do not wait for it
            }
            match self.child.wait() {
                Ok(st) if !st.success() => {
                    Error::Other(format!("{e} (the replica's side exited with {st}; its message is above)"))
                }
                _ => e,
            }
        })
    }
}

impl Peer for RemotePeer {
    fn info(&mut self) -> Result<PeerInfo> {
        self.f.send(Kind::Hello, MAGIC)?;
        let p = self.rx(Kind::Info)?;
        if p.len() != 32 || &p[..16] != MAGIC {
            return Err(bad("the replica's side speaks another version (INFO)"));
        }
        let v = u64s(&p[16..], 2)?;
        Ok(PeerInfo { size: v[0], mapped_bytes: v[1] })
    }
    fn set_layout(&mut self, l: Layout) -> Result<()> {
        self.layout = Some(l);
        self.f.send(Kind::Layout, &cat(&[l.block, l.region_blocks, l.len, l.alg.id()]))
    }
    fn regions(&mut self, first: u64, count: u64) -> Result<Vec<Digest>> {
        self.f.send(Kind::Regions, &cat(&[first, count]))?;
        let p = self.rx(Kind::Digests)?;
        let l = self.layout.ok_or_else(|| bad("no layout"))?;
        let n = count.min(l.regions().saturating_sub(first)).min(BATCH);
        digests(&p, n, l.alg)
    }
    fn fine(&mut self, regions: &[u64]) -> Result<Vec<Vec<Digest>>> {
        self.f.send(Kind::Fine, &cat(regions))?;
        let l = self.layout.ok_or_else(|| bad("no layout"))?;
        let mut out = Vec::with_capacity(regions.len());
        for r in regions {
            let p = self.rx(Kind::FineDigests)?;
            let (lo, hi) = l.span(*r);
            out.push(digests(&p, (hi - lo).div_ceil(l.block), l.alg)?);
        }
        Ok(out)
    }
    fn finish(&mut self) -> Result<u64> {
        self.f.send(Kind::Done, &[])?;
        let read = u64s(&self.rx(Kind::Read)?, 1)?[0];
        let status = self.child.wait().map_err(|e| io("ssh", e))?;
        if !status.success() {
            return Err(Error::Other(format!("verify: the replica's side exited with {status}")));
        }
        Ok(read)
    }
    fn traffic(&self) -> u64 {
        self.f.traffic
    }
}

/// `verify --serve`: answers a client on `r`/`w` about `peer`'s volume until DONE. An error is
/// sent to the client as an ERROR frame, then returned.
pub fn serve<R: Read, W: Write>(peer: &mut LocalPeer, r: R, w: W) -> Result<()> {
    let mut f = Framed::new(r, w, "verify client");
    let res = serve_loop(peer, &mut f);
    if let Err(e) = &res {
        let _ = f.send(Kind::Error, e.to_string().as_bytes());
    }
    res
}

fn serve_loop<R: Read, W: Write>(peer: &mut LocalPeer, f: &mut Framed<R, W>) -> Result<()> {
    if f.recv(Kind::Hello)? != MAGIC {
        return Err(bad("the verifying side speaks another version (HELLO)"));
    }
    let info = peer.info()?;
    f.send(Kind::Info, &[&MAGIC[..], &cat(&[info.size, info.mapped_bytes])].concat())?;
    let v = u64s(&f.recv(Kind::Layout)?, 4)?;
    let alg = Algorithm::from_id(v[3]).ok_or_else(|| bad(format!("unknown hash {}", v[3])))?;
    let layout = Layout { alg, block: v[0], region_blocks: v[1], len: v[2] };
    if layout.len > info.size {
        return Err(bad(format!("asked to compare {} bytes of a {}-byte volume", layout.len, info.size)));
    }
    layout.check().map_err(bad)?;
    peer.set_layout(layout)?;
    loop {
        let (kind, p) = f.recv_any()?;
        match kind {
            Kind::Regions => {
                let v = u64s(&p, 2)?;
                let d = peer.regions(v[0], v[1].min(BATCH))?;
                f.send(Kind::Digests, &wire(&d, alg))?;
            }
            Kind::Fine => {
                let n = p.len() / 8;
                if n as u64 > BATCH {
                    return Err(bad(format!("{n} regions asked for at once (at most {BATCH})")));
                }
                for d in peer.fine(&u64s(&p, n)?)? {
                    debug_assert!(d.len() as u64 <= MAX_REGION_BLOCKS);
                    f.send(Kind::FineDigests, &wire(&d, alg))?;
                }
            }
            Kind::Done => {
                let read = peer.finish()?;
                return f.send(Kind::Read, &read.to_le_bytes());
            }
            k => return Err(bad(format!("unexpected {k:?} frame"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::volume::{Mapping, Volume};
    use super::*;
    use std::io::Cursor;
    use std::os::unix::fs::FileExt;

    fn peer(bytes: &[u8]) -> LocalPeer {
        let f = tempfile::tempfile().unwrap();
        f.write_all_at(bytes, 0).unwrap();
        LocalPeer::new(Volume { path: "t".into(), file: f, size: bytes.len() as u64, mapping: Mapping::All })
    }

    /// The client's frames, as bytes.
    fn script(frames: &[(Kind, Vec<u8>)]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut f = Framed::new(std::io::empty(), &mut out, "test");
        for (k, p) in frames {
            f.send(*k, p).unwrap();
        }
        out
    }

    fn serve_script(p: &mut LocalPeer, input: Vec<u8>) -> (Result<()>, Framed<Cursor<Vec<u8>>, std::io::Sink>) {
        let mut out = Vec::new();
        let r = serve(p, Cursor::new(input), &mut out);
        (r, Framed::new(Cursor::new(out), std::io::sink(), "server"))
    }

    #[test]
    fn a_server_answers_regions_block_digests_and_bytes_read() {
        let mut p = peer(&vec![1u8; 3 << 20]);
        let l = Layout::new(Algorithm::Xxh3, 65536, 3 << 20).unwrap();
        let input = script(&[
            (Kind::Hello, MAGIC.to_vec()),
            (Kind::Layout, cat(&[l.block, l.region_blocks, l.len, l.alg.id()])),
            (Kind::Regions, cat(&[0, 10])),
            (Kind::Fine, cat(&[0])),
            (Kind::Done, Vec::new()),
        ]);
        let (r, mut answers) = serve_script(&mut p, input);
        r.unwrap();
        let info = answers.recv(Kind::Info).unwrap();
        assert_eq!(u64s(&info[16..], 2).unwrap(), vec![3 << 20, 3 << 20]);
        assert_eq!(answers.recv(Kind::Digests).unwrap().len(), 16, "one region, clipped to the volume");
        assert_eq!(answers.recv(Kind::FineDigests).unwrap().len(), 48 * 16);
        assert_eq!(answers.recv(Kind::Read).unwrap(), (3u64 << 20).to_le_bytes());
    }

    #[test]
    fn hostile_frames_are_refused_before_anything_is_allocated_for_them() {
        let mut huge = vec![0xff, 0xff, 0xff, 0xff, Kind::Hello as u8];
        huge.extend_from_slice(MAGIC);
        let (r, _) = serve_script(&mut peer(&[0; 4096]), huge);
        assert!(r.unwrap_err().to_string().contains("frame of 4294967295 bytes"));

        let mut bad_crc = script(&[(Kind::Hello, MAGIC.to_vec())]);
        *bad_crc.last_mut().unwrap() ^= 1;
        let (r, _) = serve_script(&mut peer(&[0; 4096]), bad_crc);
        assert!(r.unwrap_err().to_string().contains("checksum mismatch"));

        // A layout longer than the volume, then a region outside the batch: refused, and said.
        let over = script(&[(Kind::Hello, MAGIC.to_vec()), (Kind::Layout, cat(&[4096, 1, 8192, 1]))]);
        let (r, mut answers) = serve_script(&mut peer(&[0; 4096]), over);
        assert!(r.unwrap_err().to_string().contains("8192 bytes of a 4096-byte volume"));
        answers.recv(Kind::Info).unwrap();
        let e = answers.recv(Kind::Digests).unwrap_err().to_string();
        assert!(e.contains("8192 bytes of a 4096-byte volume"), "the ERROR frame reaches the client: {e}");

        let stray = script(&[
            (Kind::Hello, MAGIC.to_vec()),
            (Kind::Layout, cat(&[4096, 1, 4096, 1])),
            (Kind::Regions, cat(&[0, 1])),
            (Kind::Fine, cat(&[7])),
        ]);
        let (r, _) = serve_script(&mut peer(&[0; 4096]), stray);
        assert!(r.unwrap_err().to_string().contains("region 7 is not in the last batch"));
    }

    #[test]
    fn digest_payloads_must_have_exactly_the_length_asked_for() {
        assert_eq!(digests(&[0; 32], 2, Algorithm::Xxh3).unwrap().len(), 2);
        assert!(digests(&[0; 32], 2, Algorithm::Blake3).is_err());
        assert!(digests(&[0; 33], 2, Algorithm::Xxh3).is_err());
        assert!(u64s(&[0; 9], 1).is_err());
    }
}
