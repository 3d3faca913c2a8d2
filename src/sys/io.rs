//! Thin wrappers over the Linux calls the data path needs and std does not offer: splice, tee, pipe
//! sizing, fadvise, hole punching, block-device ioctls, reflink, copy_file_range, mincore and xattrs.
//! Each goes through `nix` (xattrs through the `xattr` crate, which nix lacks), takes the raw
//! descriptor its callers hold, and returns `std::io::Result`; callers add what and where. `unsafe`
//! is left only where no safe binding exists: borrowing a raw descriptor, the ioctls, and mincore.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{self, FallocateFlags, FcntlArg, OFlag, PosixFadviseAdvice, RenameFlags, SpliceFFlags};
use nix::sys::stat::{self, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{self, Whence};

/// Retries `f` while it fails with EINTR.
fn retry<T>(mut f: impl FnMut() -> nix::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(Errno::EINTR) => continue,
            r => return r.map_err(io::Error::from),
        }
    }
}

/// `raw` as the borrowed descriptor nix's and std's safe calls take.
fn fd<'a>(raw: RawFd) -> BorrowedFd<'a> {
    // SAFETY: the wrappers below use the borrow for the one call they make, on a descriptor their
    // caller holds open across it (a closed one fails that call with EBADF, as the raw system call
    // would); `stdio` keeps it only for 0, 1 and 2, which this process never closes.
    unsafe { BorrowedFd::borrow_raw(raw) }
}

/// Whether `fd` is a pipe or FIFO.
pub fn is_pipe(fd: RawFd) -> bool {
    stat::fstat(fd)
        .map(|st| SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFIFO)
        .unwrap_or(false)
}

/// Whether `fd` is a terminal.
pub fn is_tty(raw: RawFd) -> bool {
    use std::io::IsTerminal;
    fd(raw).is_terminal()
}

/// A new pipe `(read end, write end)`, close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    unistd::pipe2(OFlag::O_CLOEXEC).map_err(io::Error::from)
}

/// Enlarges the pipe `fd` towards `/proc/sys/fs/pipe-max-size` (at most `want` bytes) and returns its
/// capacity. Failure to grow (e.g. the per-user pipe page limit) is not an error: the pipe keeps the
/// size it had.
pub fn grow_pipe(fd: RawFd, want: usize) -> usize {
    let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(1 << 20);
    let mut size = want.min(max).max(4096);
    while size >= 65536 {
        if fcntl::fcntl(fd, FcntlArg::F_SETPIPE_SZ(size as libc::c_int)).is_ok() {
            break;
        }
        size /= 2;
    }
    match fcntl::fcntl(fd, FcntlArg::F_GETPIPE_SZ) {
        Ok(got) if got > 0 => got as usize,
        _ => 65536,
    }
}

/// One `splice(2)` call: moves up to `len` bytes between `fd_in` and `fd_out` (one must be a pipe),
/// at `off_in`/`off_out` where given (advanced by the kernel) or at the file position.
pub fn splice(
    fd_in: RawFd,
    mut off_in: Option<&mut i64>,
    fd_out: RawFd,
    mut off_out: Option<&mut i64>,
    len: usize,
) -> io::Result<usize> {
    retry(|| {
        fcntl::splice(
            fd(fd_in),
            off_in.as_deref_mut(),
            fd(fd_out),
            off_out.as_deref_mut(),
            len,
            SpliceFFlags::SPLICE_F_MOVE,
        )
    })
}

/// One `tee(2)` call: duplicates up to `len` bytes from pipe `fd_in` into pipe `fd_out`
/// without consuming them.
pub fn tee(fd_in: RawFd, fd_out: RawFd, len: usize) -> io::Result<usize> {
    retry(|| fcntl::tee(fd(fd_in), fd(fd_out), len, SpliceFFlags::empty()))
}

/// `read(2)` retried on EINTR.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    retry(|| unistd::read(fd, buf))
}

/// Writes all of `buf` to `fd` at its file position.
pub fn write_all(raw: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = retry(|| unistd::write(fd(raw), buf))?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        buf = &buf[n..];
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
pub enum Advice {
    WillNeed,
    DontNeed,
    Random,
    Normal,
}

/// `posix_fadvise`; a hint, so callers usually ignore its result.
pub fn fadvise(fd: RawFd, offset: u64, len: u64, advice: Advice) -> io::Result<()> {
    let a = match advice {
        Advice::WillNeed => PosixFadviseAdvice::POSIX_FADV_WILLNEED,
        Advice::DontNeed => PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        Advice::Random => PosixFadviseAdvice::POSIX_FADV_RANDOM,
        Advice::Normal => PosixFadviseAdvice::POSIX_FADV_NORMAL,
    };
    fcntl::posix_fadvise(fd, offset as i64, len as i64, a).map_err(io::Error::from)
}

/// Deallocates `[offset, offset+len)` of a regular file, keeping its size: the range reads as zeros.
pub fn punch_hole(fd: RawFd, offset: u64, len: u64) -> io::Result<()> {
    let mode = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    retry(|| fcntl::fallocate(fd, mode, offset as i64, len as i64))
}

/// Block-device and reflink ioctls from <linux/fs.h>, as nix declares them (unsafe functions).
mod ioctls {
    nix::ioctl_read!(blkgetsize64, 0x12, 114, u64);
    nix::ioctl_read_bad!(blksszget, nix::request_code_none!(0x12, 104), libc::c_int);
    nix::ioctl_write_ptr_bad!(blkdiscard, nix::request_code_none!(0x12, 119), [u64; 2]);
    nix::ioctl_write_ptr_bad!(blkzeroout, nix::request_code_none!(0x12, 127), [u64; 2]);
    nix::ioctl_write_int!(ficlone, 0x94, 9);
}

/// Size in bytes of block device `fd`.
pub fn blk_size(fd: RawFd) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at `size`.
    unsafe { ioctls::blkgetsize64(fd, &mut size) }?;
    Ok(size)
}

/// Logical block size in bytes of block device `fd`.
pub fn blk_logical_block_size(fd: RawFd) -> io::Result<u32> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at `size`.
    unsafe { ioctls::blksszget(fd, &mut size) }?;
    Ok(size.max(512) as u32)
}

/// `BLKDISCARD` of `[offset, offset+len)` (both aligned to the logical block size).
pub fn blk_discard(fd: RawFd, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: BLKDISCARD reads two u64s through the pointer, which points at `range`.
    retry(|| unsafe { ioctls::blkdiscard(fd, &range) }).map(drop)
}

/// `BLKZEROOUT` of `[offset, offset+len)` (both aligned to the logical block size).
pub fn blk_zeroout(fd: RawFd, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: BLKZEROOUT reads two u64s through the pointer, which points at `range`.
    retry(|| unsafe { ioctls::blkzeroout(fd, &range) }).map(drop)
}

/// Makes `dst` share `src`'s extents (`FICLONE`): a copy that costs nothing where the filesystem
/// supports it (btrfs, XFS with reflink); EOPNOTSUPP/EXDEV/EINVAL elsewhere.
pub fn reflink(src: RawFd, dst: RawFd) -> io::Result<()> {
    // SAFETY: FICLONE takes the source descriptor as its integer argument; no memory is passed.
    unsafe { ioctls::ficlone(dst, src as _) }.map(drop).map_err(io::Error::from)
}

/// One `copy_file_range(2)` call between explicit offsets (advanced by the kernel).
pub fn copy_file_range(src: RawFd, off_in: &mut i64, dst: RawFd, off_out: &mut i64, len: usize) -> io::Result<usize> {
    retry(|| fcntl::copy_file_range(fd(src), Some(&mut *off_in), fd(dst), Some(&mut *off_out), len))
}

/// `lseek` with SEEK_DATA (`data == true`) or SEEK_HOLE from `offset`; `None` at end of file.
pub fn seek_data_hole(fd: RawFd, offset: u64, data: bool) -> io::Result<Option<u64>> {
    let whence = if data { Whence::SeekData } else { Whence::SeekHole };
    match unistd::lseek(fd, offset as i64, whence) {
        Ok(r) => Ok(Some(r as u64)),
        Err(Errno::ENXIO) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Whether every page of `[offset, offset+len)` of `fd` is in the page cache right now (`mincore` of
/// an untouched read-only mapping, which does not fault pages in). `false` when it cannot tell.
pub fn is_cached(fd: RawFd, offset: u64, len: u64) -> bool {
    let page = 4096u64;
    if len == 0 {
        return true;
    }
    let start = offset / page * page;
    let map_len = (offset.saturating_add(len) - start) as usize;
    // SAFETY: a fresh shared read-only mapping that is never dereferenced (so a concurrent truncation
    // cannot fault through it), only passed to mincore; it is unmapped when `map` drops.
    let Ok(map) = (unsafe { memmap2::MmapOptions::new().offset(start).len(map_len).map(fd) }) else {
        return false;
    };
    let mut vec = vec![0u8; map_len.div_ceil(page as usize)];
    // SAFETY: `map` is a page-aligned mapping of `map_len` bytes and `vec` has one byte per page.
    let r = unsafe { libc::mincore(map.as_ptr() as *mut libc::c_void, map_len, vec.as_mut_ptr()) };
    r == 0 && vec.iter().all(|v| v & 1 == 1)
}

/// `fd` duplicated as a `File`, which is what the xattr crate's calls take (xattrs are set once
/// per receive, so the extra descriptor costs nothing that matters).
fn dup_file(raw: RawFd) -> io::Result<std::fs::File> {
    fd(raw).try_clone_to_owned().map(std::fs::File::from)
}

/// The value of extended attribute `name` of `fd`; `None` if it is not set.
pub fn get_xattr(raw: RawFd, name: &str) -> io::Result<Option<Vec<u8>>> {
    xattr::FileExt::get_xattr(&dup_file(raw)?, name)
}

pub fn set_xattr(raw: RawFd, name: &str, value: &[u8]) -> io::Result<()> {
    xattr::FileExt::set_xattr(&dup_file(raw)?, name, value)
}

/// Removes extended attribute `name` of `fd`; not an error if it is not set.
pub fn remove_xattr(raw: RawFd, name: &str) -> io::Result<()> {
    match xattr::FileExt::remove_xattr(&dup_file(raw)?, name) {
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
        r => r,
    }
}

/// Whether an error means "the filesystem or device does not do this".
pub fn is_unsupported(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP) | Some(libc::ENOTTY) | Some(libc::ENOSYS) | Some(libc::EXDEV))
        || e.kind() == io::ErrorKind::Unsupported
}

/// `fsync` of the directory holding `path`, so a rename in it is durable.
pub fn sync_dir_of(path: &Path) -> io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    std::fs::File::open(dir)?.sync_all()
}

/// A borrowed descriptor for the process's standard streams (0, 1 and 2 stay open for the life of
/// the process: we never close them).
pub fn stdio(raw: RawFd) -> BorrowedFd<'static> {
    fd(raw)
}

/// `AsRawFd` shorthand used by callers holding `File`s.
pub fn raw(f: &impl AsRawFd) -> RawFd {
    f.as_raw_fd()
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(false)` when another open file description holds the lock.
pub fn try_lock(fd: RawFd) -> io::Result<bool> {
    // nix's replacement, `Flock`, takes ownership of the file; callers keep theirs and the lock
    // lives as long as their open file description.
    #[allow(deprecated)]
    match retry(|| fcntl::flock(fd, fcntl::FlockArg::LockExclusiveNonblock)) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets the modification time of `fd` (nanoseconds since the epoch), leaving its access time.
pub fn set_mtime(fd: RawFd, mtime_ns: i128) -> io::Result<()> {
    let mtime =
        TimeSpec::new(mtime_ns.div_euclid(1_000_000_000) as libc::time_t, mtime_ns.rem_euclid(1_000_000_000) as _);
    stat::futimens(fd, &TimeSpec::UTIME_OMIT, &mtime).map_err(io::Error::from)
}

/// `renameat2(.., RENAME_NOREPLACE)`: renames `from` to `to` unless `to` exists (EEXIST).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    fcntl::renameat2(None, from, None, to, RenameFlags::RENAME_NOREPLACE).map_err(io::Error::from)
}
