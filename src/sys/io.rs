//! Thin wrappers over the Linux calls the data path needs and std does not offer: splice, tee, pipe
//! sizing, fadvise, hole punching, block-device ioctls, reflink, copy_file_range, mincore and xattrs.
//! Each returns `std::io::Result`; callers add what and where.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// Retries `f` while it fails with EINTR.
fn retry<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

fn fstat(fd: RawFd) -> io::Result<libc::stat> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` is a valid, writable stat buffer; fstat fills it completely on success.
    cvt(unsafe { libc::fstat(fd, st.as_mut_ptr()) })?;
    // SAFETY: fstat returned 0, so the buffer is initialised.
    Ok(unsafe { st.assume_init() })
}

/// Whether `fd` is a pipe or FIFO.
pub fn is_pipe(fd: RawFd) -> bool {
    fstat(fd).map(|st| st.st_mode & libc::S_IFMT == libc::S_IFIFO).unwrap_or(false)
}

/// Whether `fd` is a terminal.
pub fn is_tty(fd: RawFd) -> bool {
    // SAFETY: isatty only inspects the descriptor number.
    unsafe { libc::isatty(fd) == 1 }
}

/// A new pipe `(read end, write end)`, close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
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
        // SAFETY: F_SETPIPE_SZ takes an int argument and only changes the pipe's capacity.
        if unsafe { libc::fcntl(fd, libc::F_SETPIPE_SZ, size as libc::c_int) } >= 0 {
            break;
        }
        size /= 2;
    }
    // SAFETY: F_GETPIPE_SZ takes no argument.
    let got = unsafe { libc::fcntl(fd, libc::F_GETPIPE_SZ) };
    if got > 0 {
        got as usize
    } else {
        65536
    }
}

/// One `splice(2)` call: moves up to `len` bytes between `fd_in` and `fd_out` (one must be a pipe),
/// at `off_in`/`off_out` where given (advanced by the kernel) or at the file position.
pub fn splice(
    fd_in: RawFd,
    off_in: Option<&mut i64>,
    fd_out: RawFd,
    off_out: Option<&mut i64>,
    len: usize,
) -> io::Result<usize> {
    let pi = off_in.map_or(std::ptr::null_mut(), |o| o as *mut i64);
    let po = off_out.map_or(std::ptr::null_mut(), |o| o as *mut i64);
    retry(|| {
        // SAFETY: the offset pointers are null or point at live i64s borrowed for this call.
        cvt_size(unsafe { libc::splice(fd_in, pi, fd_out, po, len, libc::SPLICE_F_MOVE) } as isize)
    })
}

/// One `tee(2)` call: duplicates up to `len` bytes from pipe `fd_in` into pipe `fd_out`
/// without consuming them.
pub fn tee(fd_in: RawFd, fd_out: RawFd, len: usize) -> io::Result<usize> {
    retry(|| {
        // SAFETY: tee takes only descriptors and a length.
        cvt_size(unsafe { libc::tee(fd_in, fd_out, len, 0) } as isize)
    })
}

/// `read(2)` retried on EINTR.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    retry(|| {
        // SAFETY: `buf` is valid for writes of its length.
        cvt_size(unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) })
    })
}

/// Writes all of `buf` to `fd` at its file position.
pub fn write_all(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        let n = retry(|| {
            // SAFETY: `buf` is valid for reads of its length.
            cvt_size(unsafe { libc::write(fd, buf.as_ptr().cast(), buf.len()) })
        })?;
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
}

/// `posix_fadvise`; a hint, so callers usually ignore its result.
pub fn fadvise(fd: RawFd, offset: u64, len: u64, advice: Advice) -> io::Result<()> {
    let a = match advice {
        Advice::WillNeed => libc::POSIX_FADV_WILLNEED,
        Advice::DontNeed => libc::POSIX_FADV_DONTNEED,
        Advice::Random => libc::POSIX_FADV_RANDOM,
    };
    // SAFETY: posix_fadvise takes only integers; it returns the error number instead of setting errno.
    let r = unsafe { libc::posix_fadvise(fd, offset as i64, len as i64, a) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(r))
    }
}

/// Deallocates `[offset, offset+len)` of a regular file, keeping its size: the range reads as zeros.
pub fn punch_hole(fd: RawFd, offset: u64, len: u64) -> io::Result<()> {
    retry(|| {
        // SAFETY: fallocate takes only integers.
        cvt(unsafe {
            libc::fallocate(fd, libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE, offset as i64, len as i64)
        })
    })
    .map(drop)
}

// Block-device ioctls from <linux/fs.h>.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272; // _IOR(0x12, 114, size_t)
const BLKSSZGET: libc::c_ulong = 0x1268; // _IO(0x12, 104)
const BLKDISCARD: libc::c_ulong = 0x1277; // _IO(0x12, 119)
const BLKZEROOUT: libc::c_ulong = 0x127f; // _IO(0x12, 127)
const FICLONE: libc::c_ulong = 0x4004_9409; // _IOW(0x94, 9, int)

/// Size in bytes of block device `fd`.
pub fn blk_size(fd: RawFd) -> io::Result<u64> {
    let mut size: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points at `size`.
    cvt(unsafe { libc::ioctl(fd, BLKGETSIZE64 as _, &mut size as *mut u64) })?;
    Ok(size)
}

/// Logical block size in bytes of block device `fd`.
pub fn blk_logical_block_size(fd: RawFd) -> io::Result<u32> {
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one int through the pointer, which points at `size`.
    cvt(unsafe { libc::ioctl(fd, BLKSSZGET as _, &mut size as *mut libc::c_int) })?;
    Ok(size.max(512) as u32)
}

/// `BLKDISCARD` of `[offset, offset+len)` (both aligned to the logical block size).
pub fn blk_discard(fd: RawFd, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: BLKDISCARD reads two u64s through the pointer, which points at `range`.
    retry(|| cvt(unsafe { libc::ioctl(fd, BLKDISCARD as _, range.as_ptr()) })).map(drop)
}

/// `BLKZEROOUT` of `[offset, offset+len)` (both aligned to the logical block size).
pub fn blk_zeroout(fd: RawFd, offset: u64, len: u64) -> io::Result<()> {
    let range: [u64; 2] = [offset, len];
    // SAFETY: BLKZEROOUT reads two u64s through the pointer, which points at `range`.
    retry(|| cvt(unsafe { libc::ioctl(fd, BLKZEROOUT as _, range.as_ptr()) })).map(drop)
}

/// Makes `dst` share `src`'s extents (`FICLONE`): a copy that costs nothing where the filesystem
/// supports it (btrfs, XFS with reflink); EOPNOTSUPP/EXDEV/EINVAL elsewhere.
pub fn reflink(src: RawFd, dst: RawFd) -> io::Result<()> {
    // SAFETY: FICLONE takes the source descriptor as its integer argument.
    cvt(unsafe { libc::ioctl(dst, FICLONE as _, src as libc::c_ulong) }).map(drop)
}

/// One `copy_file_range(2)` call between explicit offsets (advanced by the kernel).
pub fn copy_file_range(src: RawFd, off_in: &mut i64, dst: RawFd, off_out: &mut i64, len: usize) -> io::Result<usize> {
    retry(|| {
        // SAFETY: the offset pointers point at live i64s borrowed for this call.
        cvt_size(unsafe { libc::copy_file_range(src, off_in as *mut i64, dst, off_out as *mut i64, len, 0) } as isize)
    })
}

/// `lseek` with SEEK_DATA (`data == true`) or SEEK_HOLE from `offset`; `None` at end of file.
pub fn seek_data_hole(fd: RawFd, offset: u64, data: bool) -> io::Result<Option<u64>> {
    let whence = if data { libc::SEEK_DATA } else { libc::SEEK_HOLE };
    // SAFETY: lseek takes only integers.
    let r = unsafe { libc::lseek(fd, offset as i64, whence) };
    if r < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENXIO) {
            return Ok(None);
        }
        return Err(e);
    }
    Ok(Some(r as u64))
}

/// Whether every page of `[offset, offset+len)` of `fd` is in the page cache right now (`mincore` of
/// an untouched read-only mapping, which does not fault pages in). `false` when it cannot tell.
pub fn is_cached(fd: RawFd, offset: u64, len: u64) -> bool {
    let page = 4096u64;
    if len == 0 {
        return true;
    }
    let start = offset / page * page;
    let end = offset.saturating_add(len);
    let map_len = (end - start) as usize;
    // SAFETY: a fresh private read-only mapping at an address the kernel chooses; it is never
    // dereferenced, only passed to mincore and unmapped below.
    let addr =
        unsafe { libc::mmap(std::ptr::null_mut(), map_len, libc::PROT_READ, libc::MAP_SHARED, fd, start as i64) };
    if addr == libc::MAP_FAILED {
        return false;
    }
    let pages = map_len.div_ceil(page as usize);
    let mut vec = vec![0u8; pages];
    // SAFETY: `addr` is the start of a mapping of `map_len` bytes and `vec` has one byte per page.
    let r = unsafe { libc::mincore(addr, map_len, vec.as_mut_ptr()) };
    // SAFETY: unmapping exactly the mapping created above.
    unsafe { libc::munmap(addr, map_len) };
    r == 0 && vec.iter().all(|v| v & 1 == 1)
}

fn cstr(s: &str) -> io::Result<CString> {
    CString::new(s).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// The value of extended attribute `name` of `fd`; `None` if it is not set.
pub fn get_xattr(fd: RawFd, name: &str) -> io::Result<Option<Vec<u8>>> {
    let name = cstr(name)?;
    let mut buf = vec![0u8; 64 * 1024];
    // SAFETY: `name` is NUL-terminated and `buf` is writable for its length.
    let r = unsafe { libc::fgetxattr(fd, name.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    if r < 0 {
        let e = io::Error::last_os_error();
        return match e.raw_os_error() {
            Some(libc::ENODATA) => Ok(None),
            _ => Err(e),
        };
    }
    buf.truncate(r as usize);
    Ok(Some(buf))
}

pub fn set_xattr(fd: RawFd, name: &str, value: &[u8]) -> io::Result<()> {
    let name = cstr(name)?;
    // SAFETY: `name` is NUL-terminated and `value` is readable for its length.
    cvt(unsafe { libc::fsetxattr(fd, name.as_ptr(), value.as_ptr().cast(), value.len(), 0) }).map(drop)
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

/// A borrowed descriptor for the process's standard streams.
pub fn stdio(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: 0, 1 and 2 stay open for the life of the process (we never close them).
    unsafe { BorrowedFd::borrow_raw(fd) }
}

/// `AsRawFd` shorthand used by callers holding `File`s.
pub fn raw(f: &impl AsRawFd) -> RawFd {
    f.as_raw_fd()
}

/// `flock(LOCK_EX | LOCK_NB)`: `Ok(false)` when another open file description holds the lock.
pub fn try_lock(fd: RawFd) -> io::Result<bool> {
    // SAFETY: flock takes only integers.
    match retry(|| cvt(unsafe { libc::flock(fd, libc::LOCK_EX | libc::LOCK_NB) })) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Sets the modification time of `fd` (nanoseconds since the epoch), leaving its access time.
pub fn set_mtime(fd: RawFd, mtime_ns: i128) -> io::Result<()> {
    let t = [
        libc::timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
        libc::timespec {
            tv_sec: mtime_ns.div_euclid(1_000_000_000) as libc::time_t,
            tv_nsec: mtime_ns.rem_euclid(1_000_000_000) as _,
        },
    ];
    // SAFETY: `t` holds the two timespecs futimens reads.
    cvt(unsafe { libc::futimens(fd, t.as_ptr()) }).map(drop)
}

/// `renameat2(.., RENAME_NOREPLACE)`: renames `from` to `to` unless `to` exists (EEXIST).
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let f = CString::new(from.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let t = CString::new(to.as_os_str().as_bytes()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: both paths are NUL-terminated strings that outlive the call.
    cvt(unsafe { libc::renameat2(libc::AT_FDCWD, f.as_ptr(), libc::AT_FDCWD, t.as_ptr(), libc::RENAME_NOREPLACE) })
        .map(drop)
}

/// Removes extended attribute `name` of `fd`; not an error if it is not set.
pub fn remove_xattr(fd: RawFd, name: &str) -> io::Result<()> {
    let name = cstr(name)?;
    // SAFETY: `name` is NUL-terminated.
    match cvt(unsafe { libc::fremovexattr(fd, name.as_ptr()) }) {
        Err(e) if e.raw_os_error() == Some(libc::ENODATA) => Ok(()),
        r => r.map(drop),
    }
}
