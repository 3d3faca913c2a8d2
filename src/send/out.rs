//! The stream's output: writes (in one `writev` for a record header and its payload), splice from
//! the source where bytes pass unchanged, byte counting and `--bwlimit` pacing for every path.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::copy::Source;
use super::pace::Pacer;
use crate::error::{Error, Result};
use crate::io as sys;

/// The stream's output descriptor.
pub(crate) struct Out {
    pub(crate) fd: RawFd,
    /// A private pipe for splicing when `fd` is not a pipe.
    relay: Option<(OwnedFd, OwnedFd)>,
    is_pipe: bool,
    /// Splice failed once (e.g. O_APPEND file): copy through user space from then on.
    no_splice: bool,
    pub(crate) bytes: u64,
    buf: Vec<u8>,
    pub(crate) pace: Option<Pacer>,
}

pub(crate) fn out_error(e: std::io::Error) -> Error {
    Error::io("<stdout>", e)
}

impl Out {
    pub(crate) fn new(fd: RawFd) -> Self {
        let is_pipe = sys::is_pipe(fd);
        if is_pipe {
            sys::grow_pipe(fd, 1 << 20);
        }
        Out { fd, relay: None, is_pipe, no_splice: false, bytes: 0, buf: Vec::new(), pace: None }
    }

    /// Paces everything written from now on to `rate` bytes a second.
    pub(crate) fn paced(mut self, rate: Option<u64>) -> Self {
        self.pace = rate.map(Pacer::new);
        self
    }

    pub(crate) fn write(&mut self, b: &[u8]) -> Result<()> {
        if let Some(p) = &mut self.pace {
            for c in b.chunks(p.chunk()) {
                p.take(c.len());
                sys::write_all(self.fd, c).map_err(out_error)?;
            }
        } else {
            sys::write_all(self.fd, b).map_err(out_error)?;
        }
        self.bytes += b.len() as u64;
        Ok(())
    }

    /// A record header and its payload, in one `writev` when not paced.
    pub(crate) fn write_record(&mut self, head: &[u8], payload: &[u8]) -> Result<()> {
        if self.pace.is_some() {
            self.write(head)?;
            return self.write(payload);
        }
        let fd = sys::stdio(self.fd);
        let (mut a, mut b) = (head, payload);
        while !a.is_empty() || !b.is_empty() {
            let iov = [std::io::IoSlice::new(a), std::io::IoSlice::new(b)];
            let n = match nix::sys::uio::writev(fd, &iov) {
                Ok(0) => return Err(out_error(std::io::ErrorKind::WriteZero.into())),
                Ok(n) => n,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(out_error(e.into())),
            };
            self.bytes += n as u64;
            let from_a = n.min(a.len());
            a = &a[from_a..];
            b = &b[n - from_a..];
        }
        Ok(())
    }

    /// Moves `len` bytes at `off` of `src` into the stream unchanged (paced in pieces).
    pub(crate) fn copy(&mut self, src: &Source, off: u64, len: u64) -> Result<()> {
        let Some(chunk) = self.pace.as_ref().map(|p| p.chunk() as u64) else {
            return self.copy_unpaced(src, off, len);
        };
        let mut done = 0;
        while done < len {
            let n = (len - done).min(chunk);
            if let Some(p) = &mut self.pace {
                p.take(n as usize);
            }
            self.copy_unpaced(src, off + done, n)?;
            done += n;
        }
        Ok(())
    }

    fn copy_unpaced(&mut self, src: &Source, off: u64, len: u64) -> Result<()> {
        if !self.no_splice {
            match self.splice(src, off, len) {
                Ok(()) => return Ok(()),
                Err((0, e)) if e.raw_os_error() == Some(libc::EINVAL) => self.no_splice = true,
                Err((done, e)) => {
                    return Err(if e.kind() == std::io::ErrorKind::UnexpectedEof {
                        src.read_error(off + done, e)
                    } else if done == u64::MAX {
                        src.read_error(off, e)
                    } else {
                        out_error(e)
                    })
                }
            }
        }
        let mut done = 0u64;
        self.buf.resize(1 << 20, 0);
        while done < len {
            let n = (len - done).min(self.buf.len() as u64) as usize;
            let mut buf = std::mem::take(&mut self.buf);
            let r = src.read_at(&mut buf[..n], off + done).and_then(|()| {
                sys::write_all(self.fd, &buf[..n]).map_err(out_error)?;
                self.bytes += n as u64;
                Ok(())
            });
            self.buf = buf;
            r?;
            done += n as u64;
        }
        Ok(())
    }

    /// Splices up to `n` bytes from the pipe `from` into the stream (paced) and returns how many
    /// went. Fewer than `n` only when the output cannot take a splice (a terminal, an O_APPEND
    /// file): the caller writes the rest itself, and every later call returns 0 at once.
    pub(crate) fn splice_from(&mut self, from: RawFd, n: usize) -> Result<usize> {
        let mut done = 0;
        while done < n && !self.no_splice {
            let want = self.pace.as_ref().map_or(n - done, |p| (n - done).min(p.chunk()));
            match sys::splice(from, None, self.fd, None, want) {
                Ok(0) => return Err(out_error(std::io::ErrorKind::WriteZero.into())),
                Ok(k) => {
                    if let Some(p) = &mut self.pace {
                        p.take(k);
                    }
                    done += k;
                    self.bytes += k as u64;
                }
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.no_splice = true,
                Err(e) => return Err(out_error(e)),
            }
        }
        Ok(done)
    }

    /// Splice `src[off..off+len]` to the output. Errors carry the bytes done before them
    /// (`u64::MAX` marks a source-side error).
    fn splice(&mut self, src: &Source, off: u64, len: u64) -> std::result::Result<(), (u64, std::io::Error)> {
        let mut pos = off as i64;
        let mut done = 0u64;
        if self.is_pipe {
            while done < len {
                let want = (len - done).min(1 << 30) as usize;
                let n = sys::splice(src.fd(), Some(&mut pos), self.fd, None, want).map_err(|e| (done, e))?;
                if n == 0 {
                    return Err((done, std::io::ErrorKind::UnexpectedEof.into()));
                }
                done += n as u64;
                self.bytes += n as u64;
            }
            return Ok(());
        }
        if self.relay.is_none() {
            let p = sys::pipe().map_err(|e| (0, e))?;
            sys::grow_pipe(p.1.as_raw_fd(), 1 << 20);
            self.relay = Some(p);
        }
        let Some((r, w)) = &self.relay else {
            return Err((0, std::io::ErrorKind::Other.into()));
        };
        let (r, w) = (r.as_raw_fd(), w.as_raw_fd());
        while done < len {
            let want = (len - done).min(1 << 20) as usize;
            let n = sys::splice(src.fd(), Some(&mut pos), w, None, want).map_err(|e| (u64::MAX, e))?;
            if n == 0 {
                return Err((done, std::io::ErrorKind::UnexpectedEof.into()));
            }
            let mut left = n;
            while left > 0 {
                let m = sys::splice(r, None, self.fd, None, left).map_err(|e| (done, e))?;
                if m == 0 {
                    return Err((done, std::io::ErrorKind::WriteZero.into()));
                }
                left -= m;
            }
            done += n as u64;
            self.bytes += n as u64;
        }
        Ok(())
    }
}
