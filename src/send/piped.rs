//! Reading each source byte once without copying it twice: a job's bytes are spliced from the
//! source into the slot's private pipe (page references from a file's page cache, or a block
//! device read `O_DIRECT` into the pipe's own pages: no copy either way), duplicated with `tee` into
//! the worker's pipe and read from there into the slot's buffer (the one copy, for the zero check
//! and the checksum), and later spliced from the slot's pipe into the stream by the writer.
//!
//! A source or an output that cannot splice, or a record larger than the pipe, takes the plain
//! way: `pread` into the buffer and `write` from it.

use std::fs::File;
use std::io::ErrorKind;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::copy::Source;
use super::internal;
use super::out::{out_error, Out};
use crate::error::Result;
use crate::io as sys;

/// A private pipe and what it holds.
pub(crate) struct Pipe {
    r: OwnedFd,
    w: OwnedFd,
    cap: usize,
    /// Bytes in the pipe not yet passed on.
    held: usize,
}

impl Pipe {
    pub(crate) fn new(want: usize) -> Result<Self> {
        let (r, w) = sys::pipe().map_err(out_error)?;
        let cap = sys::grow_pipe(w.as_raw_fd(), want);
        Ok(Pipe { r, w, cap, held: 0 })
    }

    /// How many bytes the pipe can hold.
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// Splices `n` source bytes at `at` into this empty pipe. `Ok(false)`: nothing was done (too
    /// large for the pipe, or the source cannot splice); read the plain way.
    pub(crate) fn load(&mut self, src: &Source, at: u64, n: usize) -> Result<bool> {
        if self.held != 0 {
            return Err(internal("a send pipe was reused before it was emptied"));
        }
        if n > self.cap {
            return Ok(false);
        }
        let fd = src.splice_fd(at, n);
        let mut pos = at as i64;
        while self.held < n {
            let done = self.held as u64;
            match sys::splice(fd, Some(&mut pos), self.w.as_raw_fd(), None, n - self.held) {
                Ok(0) => return Err(src.read_error(at + done, ErrorKind::UnexpectedEof.into())),
                Ok(k) => self.held += k,
                Err(e) if done == 0 && e.raw_os_error() == Some(libc::EINVAL) => return Ok(false),
                Err(e) => return Err(src.read_error(at + done, e)),
            }
        }
        Ok(true)
    }

    /// Puts `bytes` (at most the capacity) into this empty pipe by `write`: a source that cannot
    /// splice still reaches the writer through the pipe.
    pub(crate) fn put(&mut self, bytes: &[u8]) -> Result<()> {
        if self.held != 0 || bytes.len() > self.cap {
            return Err(internal("a send pipe cannot take the bytes it was given"));
        }
        sys::write_all(self.w.as_raw_fd(), bytes).map_err(out_error)?;
        self.held = bytes.len();
        Ok(())
    }

    /// Splices `raw.len()` source bytes at `at` into this pipe and reads them into `raw` through
    /// `tee` and `via`. `Ok(false)`: as [`Pipe::load`].
    pub(crate) fn fill(&mut self, src: &Source, at: u64, raw: &mut [u8], via: &mut Pipe) -> Result<bool> {
        let n = raw.len();
        if !self.load(src, at, n)? {
            return Ok(false);
        }
        let mut teed = 0;
        while teed < n {
            // tee copies page references only; the read below is the one copy of the bytes.
            let k = sys::tee(self.r.as_raw_fd(), via.w.as_raw_fd(), n - teed).map_err(out_error)?;
            if k == 0 {
                return Err(internal("tee found the send pipe empty"));
            }
            read_exact(via.r.as_raw_fd(), &mut raw[teed..teed + k])?;
            teed += k;
        }
        Ok(true)
    }
}

fn read_exact(fd: RawFd, mut buf: &mut [u8]) -> Result<()> {
    while !buf.is_empty() {
        match sys::read(fd, buf).map_err(out_error)? {
            0 => return Err(internal("the send's tee pipe closed")),
            k => buf = &mut buf[k..],
        }
    }
    Ok(())
}

/// The writer's side: passes a slot pipe's bytes into the stream in order, dropping the ones no
/// record carries (elided zero blocks).
pub(crate) struct Passer {
    null: Option<File>,
    scratch: Vec<u8>,
}

impl Passer {
    pub(crate) fn new() -> Self {
        Passer { null: File::options().write(true).open("/dev/null").ok(), scratch: Vec::new() }
    }

    /// Sends the pipe's next `bytes.len()` bytes into the stream; `bytes` is the copy read from
    /// them, written instead when the output cannot take a splice.
    pub(crate) fn pass(&mut self, p: &mut Pipe, out: &mut Out, bytes: &[u8]) -> Result<()> {
        let n = bytes.len();
        if n > p.held {
            return Err(internal("a send pipe holds fewer bytes than its record"));
        }
        let sent = out.splice_from(p.r.as_raw_fd(), n)?;
        p.held -= sent;
        if sent < n {
            out.write(&bytes[sent..])?;
            self.drop_bytes(p, n - sent)?;
        }
        Ok(())
    }

    /// Discards the pipe's next `n` bytes.
    pub(crate) fn drop_bytes(&mut self, p: &mut Pipe, n: usize) -> Result<()> {
        if n > p.held {
            return Err(internal("a send pipe holds fewer bytes than it should drop"));
        }
        let mut left = n;
        while left > 0 {
            let k = match &self.null {
                Some(null) => match sys::splice(p.r.as_raw_fd(), None, null.as_raw_fd(), None, left) {
                    Ok(k) => k,
                    Err(_) => {
                        self.null = None;
                        continue;
                    }
                },
                None => {
                    self.scratch.resize(left.min(1 << 16), 0);
                    sys::read(p.r.as_raw_fd(), &mut self.scratch).map_err(out_error)?
                }
            };
            if k == 0 {
                return Err(internal("a send pipe ended early"));
            }
            left -= k;
            p.held -= k;
        }
        Ok(())
    }

    /// Passes everything the pipe holds into the stream (by splice; read and written where the
    /// output refuses it).
    pub(crate) fn pass_all(&mut self, p: &mut Pipe, out: &mut Out) -> Result<()> {
        let sent = out.splice_from(p.r.as_raw_fd(), p.held)?;
        p.held -= sent;
        while p.held > 0 {
            self.scratch.resize(p.held.min(1 << 16), 0);
            let k = sys::read(p.r.as_raw_fd(), &mut self.scratch).map_err(out_error)?;
            if k == 0 {
                return Err(internal("a send pipe ended early"));
            }
            out.write(&self.scratch[..k])?;
            p.held -= k;
        }
        Ok(())
    }

    /// Discards everything the pipe still holds.
    pub(crate) fn empty(&mut self, p: &mut Pipe) -> Result<()> {
        let n = p.held;
        self.drop_bytes(p, n)
    }
}
