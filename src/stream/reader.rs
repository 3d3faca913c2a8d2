//! The reader's entry: the first eight bytes pick the format (or name a compressor), then that
//! format's framing reads the records; [`Input`] counts the stream offset every error names.

use std::io;
use std::os::fd::RawFd;

use super::{linbit, native, Accept, Format, ReadOptions, Sink, Summary};
use crate::error::{Error, Result};
use crate::io as sys;

/// The input stream: a descriptor and how many bytes were consumed from it.
pub(crate) struct Input {
    pub fd: RawFd,
    pub pos: u64,
    pub pipe: bool,
}

impl Input {
    pub fn new(fd: RawFd) -> Self {
        let pipe = sys::is_pipe(fd);
        if pipe {
            sys::grow_pipe(fd, 1 << 20);
        }
        Input { fd, pos: 0, pipe }
    }

    /// Reads until `buf` is full or end of input; returns the bytes read.
    pub fn fill(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut got = 0;
        while got < buf.len() {
            let n = sys::read(self.fd, &mut buf[got..]).map_err(|e| self.io_error(e))?;
            if n == 0 {
                break;
            }
            got += n;
            self.pos += n as u64;
        }
        Ok(got)
    }

    pub fn io_error(&self, e: io::Error) -> Error {
        stream_error(self.pos, format!("reading the stream: {e}"))
    }

    /// Splices `len` bytes into `out` at `offset`; returns the bytes moved (fewer only at end of input).
    pub fn splice_to(&mut self, out: RawFd, offset: u64, len: u64) -> io::Result<u64> {
        let mut off = offset as i64;
        let mut done = 0u64;
        while done < len {
            let want = (len - done).min(1 << 30) as usize;
            let n = sys::splice(self.fd, None, out, Some(&mut off), want)?;
            if n == 0 {
                break;
            }
            done += n as u64;
            self.pos += n as u64;
        }
        Ok(done)
    }
}

pub(crate) fn stream_error(offset: u64, what: impl Into<String>) -> Error {
    Error::Stream { offset, what: what.into() }
}

/// Wraps an error the sink raised while applying the record at `at`, so it names the stream position.
pub(crate) fn sink_error(at: u64, kind: &str, e: Error) -> Error {
    match e {
        Error::Stream { .. } | Error::Apply { .. } => e,
        e => Error::Apply { at, kind: kind.to_string(), source: Box::new(e) },
    }
}

/// Reads a whole stream from `fd`, validating every record and handing it to `sink`; returns the
/// totals once the stream proved complete. Any error leaves the sink without a `finish` call.
pub fn read(fd: RawFd, opts: &ReadOptions, sink: &mut dyn Sink) -> Result<Summary> {
    let mut input = Input::new(fd);
    let mut magic = [0u8; 8];
    let n = input.fill(&mut magic)?;
    if n == 0 {
        if opts.allow_empty && opts.accept != Accept::Linbit11 && opts.accept != Accept::Native {
            sink.warn("Empty input.");
            let summary = Summary::default();
            sink.finish(&summary)?;
            return Ok(summary);
        }
        return Err(stream_error(0, "Empty input: no stream arrived (did the sender fail before writing anything?)"));
    }
    if n < 8 {
        return Err(stream_error(
            n as u64,
            format!("Truncated input: the stream is only {n} bytes long, too short for any format's first record"),
        ));
    }
    let format = if magic == native::MAGIC {
        Format::Native
    } else if magic[..7] == native::MAGIC[..7] {
        return Err(stream_error(
            7,
            format!(
                "native stream format version {} is not supported by this receiver (it reads version {})",
                magic[7],
                native::MAGIC[7]
            ),
        ));
    } else {
        match linbit::format_of(&magic) {
            Ok(f) => f,
            Err(what) => {
                return Err(stream_error(
                    0,
                    match compressor(&magic) {
                        Some((name, cmd)) => format!(
                            "this is a {name}-compressed stream, not a thinsend-native or thin-send-recv one: \
                             pipe it through `{cmd}` first"
                        ),
                        None => what,
                    },
                ))
            }
        }
    };
    if !opts.accept.allows(format) {
        return Err(stream_error(
            0,
            format!("{} stream not accepted (--accept-stream-format {})", format.name(), opts.accept.name()),
        ));
    }
    match format {
        Format::Native => native::read_records(&mut input, sink),
        Format::Linbit11 | Format::Linbit10 => linbit::read_chunks(&mut input, format, magic, sink),
    }
}

/// The compressor whose magic starts `b`, and the command that undoes it.
fn compressor(b: &[u8; 8]) -> Option<(&'static str, &'static str)> {
    const KNOWN: [(&[u8], &str, &str); 5] = [
        (&[0x28, 0xb5, 0x2f, 0xfd], "zstd", "zstd -d"),
        (&[0x1f, 0x8b], "gzip", "gzip -d"),
        (&[0xfd, b'7', b'z', b'X', b'Z', 0x00], "xz", "xz -d"),
        (b"BZh", "bzip2", "bzip2 -d"),
        (&[0x04, 0x22, 0x4d, 0x18], "lz4", "lz4 -d"),
    ];
    KNOWN.iter().find(|(m, _, _)| b.starts_with(m)).map(|&(_, name, cmd)| (name, cmd))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_streams_are_named_with_the_command_that_undoes_them() {
        let zstd = [0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0, 0];
        assert_eq!(compressor(&zstd), Some(("zstd", "zstd -d")));
        assert_eq!(compressor(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0]), Some(("gzip", "gzip -d")));
        assert_eq!(compressor(&[0xfd, b'7', b'z', b'X', b'Z', 0, 0, 4]), Some(("xz", "xz -d")));
        assert_eq!(compressor(&native::MAGIC), None);
        assert_eq!(compressor(&linbit::MAGIC_11.to_be_bytes()), None);
    }
}
