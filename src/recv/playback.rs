//! Playing an undo journal back: its valid entries, newest first, written over the target, then
//! the target's original length and mtime. Also the zeroing a journal's hole entries need.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::journal::{EntryHead, Ident, CHUNK, ENTRY_LEN, ENTRY_MAGIC, KIND_DATA, KIND_HOLE};
use super::RecvError;
use crate::error::{Error, Result};
use crate::io as sys;
use crate::ondisk::OnDisk;

/// Writes every valid entry back, newest first, then the original length and mtime; syncs.
pub(super) fn play_back(path: &Path, j: &File, start: u64, ident: &Ident, target: &File) -> Result<(u64, u64)> {
    let entries = scan(path, j, start)?;
    let mut buf = vec![0u8; CHUNK];
    let mut bytes = 0;
    let terr = |source: io::Error| Error::from(RecvError::Restore { journal: path.to_path_buf(), source });
    for &(kind, off, len, pos) in entries.iter().rev() {
        if kind == KIND_HOLE {
            punch_or_zero(target, off, len).map_err(terr)?;
            continue;
        }
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            j.read_exact_at(&mut buf[..n], pos + done).map_err(|e| Error::io(path, e))?;
            target.write_all_at(&buf[..n], off + done).map_err(terr)?;
            done += n as u64;
        }
        bytes += len;
    }
    if ident.file {
        target.set_len(ident.len).map_err(terr)?;
        target.sync_all().map_err(terr)?;
        let _ = sys::set_mtime(target.as_raw_fd(), ident.mtime_ns);
    }
    target.sync_all().map_err(terr)?;
    Ok((entries.len() as u64, bytes))
}

/// The valid entries `(kind, offset, length, data position)`, up to the first torn one.
pub(super) fn scan(path: &Path, j: &File, start: u64) -> Result<Vec<(u32, u64, u64, u64)>> {
    let flen = j.metadata().map_err(|e| Error::io(path, e))?.len();
    let mut out = Vec::new();
    let mut at = start;
    let mut buf = vec![0u8; CHUNK];
    while at + ENTRY_LEN <= flen {
        let mut h = [0u8; ENTRY_LEN as usize];
        j.read_exact_at(&mut h, at).map_err(|e| Error::io(path, e))?;
        let EntryHead { magic, kind, off, len, crc: stored } = EntryHead::unpack(&h);
        let data_len = if kind == KIND_DATA { len } else { 0 };
        if magic != ENTRY_MAGIC || kind > KIND_HOLE || data_len > flen - at - ENTRY_LEN {
            break;
        }
        let mut crc = EntryHead::crc_seed(&h);
        let mut done = 0u64;
        while done < data_len {
            let n = (data_len - done).min(CHUNK as u64) as usize;
            j.read_exact_at(&mut buf[..n], at + ENTRY_LEN + done).map_err(|e| Error::io(path, e))?;
            crc = crc32c::crc32c_append(crc, &buf[..n]);
            done += n as u64;
        }
        if crc != stored {
            break;
        }
        out.push((kind, off, len, at + ENTRY_LEN));
        at += ENTRY_LEN + data_len;
    }
    Ok(out)
}

/// Makes `[off, off+len)` of a regular file read as zeros: a punched hole, or written zeros where
/// the filesystem cannot punch holes.
pub(crate) fn punch_or_zero(f: &File, off: u64, len: u64) -> io::Result<()> {
    match sys::punch_hole(f.as_raw_fd(), off, len) {
        Ok(()) => Ok(()),
        Err(e) if sys::is_unsupported(&e) => write_zeros(f, off, len),
        Err(e) => Err(e),
    }
}

pub(crate) fn write_zeros(f: &File, off: u64, len: u64) -> io::Result<()> {
    let zeros = vec![0u8; len.min(CHUNK as u64) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        f.write_all_at(&zeros[..n], off + done)?;
        done += n as u64;
    }
    Ok(())
}
