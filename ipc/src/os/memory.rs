//! Memory that processes share: memfds (sealed against resizing once
//! sized), named POSIX segments, shared mappings, and keeping a mapping out
//! of forked children.
//!
//! Why seals: a mapping of a file that another holder shrinks faults with
//! SIGBUS on the next access past the new end. Every holder of a memfd
//! descriptor could `ftruncate` it; with `F_SEAL_SHRINK | F_SEAL_GROW |
//! F_SEAL_SEAL` no holder can, not even the creator, so a mapped length is
//! valid for as long as the mapping lives. Named segments (`shm_open`)
//! cannot be sealed: anyone who can open the name can resize the file.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::memfd::{memfd_create, MFdFlags};

/// The seals every sized segment carries.
fn size_seals() -> SealFlag {
    SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_SEAL
}

/// A memfd of `len` zero bytes, close-on-exec, sealed against any change
/// of size. `name` shows in `/proc/<pid>/maps` and `/proc/<pid>/fd`.
pub fn sealed_memfd(name: &CStr, len: usize) -> io::Result<OwnedFd> {
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    let size =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    nix::unistd::ftruncate(&fd, size)?;
    fcntl(fd.as_fd(), FcntlArg::F_ADD_SEALS(size_seals()))?;
    Ok(fd)
}

/// Whether `fd` is sealed against shrinking: a mapping of it cannot fault
/// past the size it had when mapped.
pub fn is_sealed_against_shrinking(fd: &impl AsFd) -> bool {
    fcntl(fd.as_fd(), FcntlArg::F_GET_SEALS)
        .is_ok_and(|seals| SealFlag::from_bits_retain(seals).contains(SealFlag::F_SEAL_SHRINK))
}

/// An anonymous file holding `bytes`, positioned at the start, sealed
/// against writes and resizing (a spawned child's bootstrap).
pub fn sealed_memfd_with(name: &CStr, bytes: &[u8]) -> io::Result<OwnedFd> {
    use std::io::Write;
    prefault_for_reading(bytes);
    sealed_memfd_written(name, |file| file.write_all(bytes))
}

/// An anonymous file holding what `write` wrote to it, positioned at the
/// start, sealed against writes and resizing.
pub fn sealed_memfd_written(
    name: &CStr,
    write: impl FnOnce(&mut std::fs::File) -> io::Result<()>,
) -> io::Result<OwnedFd> {
    let mut file = sealable_memfd(name)?;
    write(&mut file)?;
    seal_written(file)
}

/// An empty anonymous file that can be sealed once written
/// ([`seal_written`]).
pub(crate) fn sealable_memfd(name: &CStr) -> io::Result<std::fs::File> {
    let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
    Ok(std::fs::File::from(fd))
}

/// `file` (from [`sealable_memfd`]), positioned at the start, sealed
/// against writes and resizing.
pub(crate) fn seal_written(mut file: std::fs::File) -> io::Result<OwnedFd> {
    use std::io::Seek;
    file.rewind()?;
    let fd = OwnedFd::from(file);
    // The kernel refuses the write seal (EBUSY) while a page of the file
    // has a reference beyond the file's own (a page being migrated, or
    // read into a pipe), after waiting about 150 ms itself: seen once in
    // CI under load, a manager set failing `Local(EBUSY)`. Nothing is
    // sealed then, so it is tried again, with pauses of up to a second
    // in all, before the error goes out.
    let mut pause = std::time::Duration::from_millis(10);
    loop {
        let sealed = fcntl(
            fd.as_fd(),
            FcntlArg::F_ADD_SEALS(size_seals() | SealFlag::F_SEAL_WRITE),
        );
        match sealed {
            Err(nix::errno::Errno::EBUSY) if pause <= SEAL_PATIENCE => {
                std::thread::sleep(pause);
                pause *= 2;
            }
            other => {
                other?;
                return Ok(fd);
            }
        }
    }
}

/// The longest pause between tries of a write seal the kernel refused
/// as busy (10, 20, ... 640 ms: 1.3 s of pauses in all).
const SEAL_PATIENCE: std::time::Duration = std::time::Duration::from_millis(640);

/// Opens (or with `create`, exclusively creates) the named segment
/// `path` (`/name`), close-on-exec, mode 0600.
pub fn shm_open(path: &CStr, create: bool) -> io::Result<OwnedFd> {
    let flags = if create {
        libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC
    } else {
        libc::O_RDWR | libc::O_CLOEXEC
    };
    // SAFETY: shm_open with a NUL-terminated path and flags; it returns a new descriptor.
    let raw = unsafe { libc::shm_open(path.as_ptr(), flags, 0o600) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: shm_open returned a fresh descriptor we own.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Removes the name `path` (`/name`).
pub fn shm_unlink(path: &CStr) -> io::Result<()> {
    // SAFETY: shm_unlink with a NUL-terminated path.
    if unsafe { libc::shm_unlink(path.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sets the size of a (named, unsealed) segment.
pub fn set_len(fd: &impl AsFd, len: usize) -> io::Result<()> {
    let size =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    nix::unistd::ftruncate(fd, size)?;
    Ok(())
}

/// Gives the first `len` bytes of `fd` their pages now (`fallocate`), so
/// that a file system without room says so here (`ENOSPC`) rather than
/// with a `SIGBUS` at the first touch of a page it cannot give: a
/// container's `/dev/shm` is 64 MB unless told otherwise. Where the file
/// system cannot reserve (`EOPNOTSUPP`), nothing is reserved.
pub fn reserve(fd: &impl AsRawFd, len: usize) -> io::Result<()> {
    let len =
        libc::off_t::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        // SAFETY: takes a descriptor and numbers; mode 0 keeps the file's
        // contents (zeros stay zeros) and grows it only past its end.
        match unsafe { libc::fallocate(fd.as_raw_fd(), 0, 0, len) } {
            0 => return Ok(()),
            _ => {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => return Ok(()),
                    _ => return Err(e),
                }
            }
        }
    }
}

/// The bytes free for an unprivileged writer in the file system of `fd`.
pub fn free_bytes(fd: &impl AsRawFd) -> io::Result<u64> {
    // SAFETY: statvfs is plain numbers; zeroed is a valid out-buffer.
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: writes one statvfs into `stat`.
    if unsafe { libc::fstatvfs(fd.as_raw_fd(), &mut stat) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// Maps `len` bytes of `fd` shared, readable and writable.
pub fn map_shared(fd: &impl AsRawFd, len: usize) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh shared mapping chosen by the kernel; it aliases no
    // memory of ours.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            fd.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(addr.cast::<u8>()).ok_or_else(|| io::Error::from(io::ErrorKind::Other))
}

/// Maps `len` bytes of `fd` read-only, its pages read in at once (a
/// sealed message about to be read through).
pub fn map_read_only(fd: &impl AsRawFd, len: usize) -> io::Result<NonNull<u8>> {
    map_read_only_with(fd, len, libc::MAP_POPULATE)
}

/// As [`map_read_only`], without asking for the pages now: for a mapping
/// that may never be read (populating 100 MB took 9-14 ms here, and its
/// unmapping 3 ms more).
pub(crate) fn map_read_only_lazily(fd: &impl AsRawFd, len: usize) -> io::Result<NonNull<u8>> {
    map_read_only_with(fd, len, 0)
}

fn map_read_only_with(
    fd: &impl AsRawFd,
    len: usize,
    flags: libc::c_int,
) -> io::Result<NonNull<u8>> {
    // SAFETY: a fresh read-only mapping chosen by the kernel; it aliases no
    // memory of ours.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED | flags,
            fd.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    NonNull::new(addr.cast::<u8>()).ok_or_else(|| io::Error::from(io::ErrorKind::Other))
}

/// From this size on, [`prefault_for_writing`] asks for the pages (a
/// call for 256 pages or more, where each fault costs a microsecond or
/// two on a VM).
pub(crate) const PREFAULT_FROM: usize = 1 << 20;

/// Asks the kernel for the pages of `ptr..ptr + len`, memory of the
/// caller's about to be written whole, in one call (`MADV_POPULATE_WRITE`,
/// Linux 5.14), where each first write would fault: a 100 MB copy into a
/// fresh buffer took 57-59 ms with the faults, 43-45 ms with this (a VM).
/// Below 1 MiB, or where the kernel refuses, the writes fault as usual;
/// the memory's contents do not change either way.
pub(crate) fn prefault_for_writing(ptr: *mut u8, len: usize) {
    const MADV_POPULATE_WRITE: libc::c_int = 23;
    if len < PREFAULT_FROM {
        return;
    }
    // Only whole pages inside the range: the rest may be someone else's.
    let page = (super::procfs::page_size() as usize).max(1);
    let start = (ptr as usize).next_multiple_of(page);
    let end = (ptr as usize + len) / page * page;
    if end <= start {
        return;
    }
    // SAFETY: whole pages inside memory the caller owns and is about to
    // write; populating them writable changes no byte of it.
    let _ = unsafe { libc::madvise(start as *mut libc::c_void, end - start, MADV_POPULATE_WRITE) };
}

/// Asks for the pages of `bytes`, about to be read whole (written into a
/// file), in one call (`MADV_POPULATE_READ`, Linux 5.14) when they are not
/// in memory yet: a buffer never written (`vec![0u8; n]`) written into a
/// memfd faulted inside `write` twice a page (100 MB: 115-135 ms, then
/// 56-57 ms with this call). A buffer that was written is left alone (the
/// call would cost 4 ms per 100 MB): its first whole page is looked at.
pub(crate) fn prefault_for_reading(bytes: &[u8]) {
    const MADV_POPULATE_READ: libc::c_int = 22;
    if bytes.len() < PREFAULT_FROM {
        return;
    }
    let page = (super::procfs::page_size() as usize).max(1);
    let start = (bytes.as_ptr() as usize).next_multiple_of(page);
    let end = (bytes.as_ptr() as usize + bytes.len()) / page * page;
    if end <= start {
        return;
    }
    let mut first = 0u8;
    // SAFETY: one whole page inside `bytes`, which is mapped; `first` has
    // room for its one byte of answer.
    let looked = unsafe { libc::mincore(start as *mut libc::c_void, page, &mut first) };
    if looked == 0 && first & 1 == 1 {
        return;
    }
    // SAFETY: whole pages inside memory the caller borrows; populating
    // them readable changes no byte of it.
    let _ = unsafe { libc::madvise(start as *mut libc::c_void, end - start, MADV_POPULATE_READ) };
}

/// Unmaps a mapping made by [`map_shared`] or [`map_read_only`].
///
/// # Safety
/// `ptr..ptr + len` must be a mapping of ours that nothing uses any more.
pub unsafe fn unmap(ptr: *mut u8, len: usize) {
    // SAFETY: per the caller.
    unsafe { libc::munmap(ptr.cast(), len) };
}

/// Keeps a mapping out of children forked from now on (`MADV_DONTFORK`):
/// the child has no such pages at all, and forking costs nothing for them.
pub fn keep_out_of_forks(ptr: NonNull<u8>, len: usize) -> io::Result<()> {
    // SAFETY: madvise on a mapping of ours changes only its inheritance.
    if unsafe { libc::madvise(ptr.as_ptr().cast(), len, libc::MADV_DONTFORK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes the pages `ptr..ptr + len` inaccessible (a guard page in tests).
///
/// # Safety
/// The range must be page-aligned and part of a mapping of ours that no
/// one reads or writes any more.
pub unsafe fn protect_none(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: per the caller.
    if unsafe { libc::mprotect(ptr.cast(), len, libc::PROT_NONE) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::procfs;
    use super::*;

    /// A page of the file held by a pipe (spliced into it) makes the
    /// kernel refuse the write seal as busy, past its own wait of about
    /// 150 ms; once the pipe is read, the page is free. The seal waits
    /// for that (it failed `EBUSY` at once).
    #[test]
    fn a_write_seal_refused_as_busy_is_tried_again() {
        use std::io::Write;
        let mut file = sealable_memfd(c"busy").expect("a memfd");
        file.write_all(&[7u8; 65536]).expect("written");
        let (read, write) = crate::os::fd::pipe_cloexec().expect("a pipe");
        let mut at: libc::loff_t = 0;
        // SAFETY: splices from a file and into a pipe we own; `at` is live.
        let spliced = unsafe {
            libc::splice(
                file.as_raw_fd(),
                &mut at,
                write.as_raw_fd(),
                std::ptr::null_mut(),
                4096,
                0,
            )
        };
        assert_eq!(spliced, 4096, "{}", io::Error::last_os_error());
        let reader = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(400));
            let mut page = [0u8; 4096];
            // SAFETY: reads into a live buffer from a pipe we own.
            unsafe { libc::read(read.as_raw_fd(), page.as_mut_ptr().cast(), page.len()) };
            page[0]
        });
        let sealed = seal_written(file).expect("sealed once the pipe let go");
        assert_eq!(reader.join().expect("the reader"), 7);
        let seals = fcntl(sealed.as_fd(), FcntlArg::F_GET_SEALS).expect("its seals");
        assert!(SealFlag::from_bits_retain(seals).contains(SealFlag::F_SEAL_WRITE));
    }

    /// Pages of `ptr..ptr + len` (page-aligned) the kernel has in memory.
    fn resident_pages(ptr: *mut u8, len: usize) -> usize {
        let page = procfs::page_size() as usize;
        let mut vec = vec![0u8; len / page];
        // SAFETY: a range of our own mapping; `vec` has a byte per page.
        let rc = unsafe { libc::mincore(ptr.cast(), len, vec.as_mut_ptr()) };
        assert_eq!(rc, 0, "mincore: {}", io::Error::last_os_error());
        vec.iter().filter(|&&b| b & 1 == 1).count()
    }

    /// A fresh private mapping of `len` bytes, none of them in memory, in
    /// pages of 4 KiB even where transparent huge pages are always on (one
    /// write would bring in 512 pages). Unmapped by the caller.
    fn fresh_pages(len: usize) -> *mut u8 {
        // SAFETY: a fresh private anonymous mapping, unmapped by the caller.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        // SAFETY: advice on our own fresh mapping.
        unsafe { libc::madvise(addr, len, libc::MADV_NOHUGEPAGE) };
        addr.cast::<u8>()
    }

    #[test]
    fn a_large_buffer_about_to_be_written_gets_its_pages_in_one_call() {
        let page = procfs::page_size() as usize;
        let len = 64 << 20;
        let base = fresh_pages(len);
        // SAFETY: inside the mapping.
        unsafe { base.write(7) };
        assert!(resident_pages(base, len) < 8, "fresh pages were in memory");
        // A small range is left to fault as usual.
        // SAFETY: inside the mapping.
        let last = unsafe { base.add(len - PREFAULT_FROM) };
        prefault_for_writing(last, PREFAULT_FROM - 1);
        assert_eq!(resident_pages(last, PREFAULT_FROM), 0);
        // Only the whole pages inside the range: the last one is not, and
        // the first was written above.
        // SAFETY: inside the mapping.
        let from = unsafe { base.add(100) };
        prefault_for_writing(from, len - 200);
        assert_eq!(resident_pages(base, len), len / page - 1);
        // SAFETY: inside the mapping.
        assert_eq!(unsafe { base.read() }, 7, "a byte changed");
        // SAFETY: the mapping is ours and nothing uses it.
        unsafe { unmap(base, len) };
    }

    #[test]
    fn an_untouched_buffer_about_to_be_read_gets_its_pages_in_one_call() {
        let len = 16 << 20;
        let base = fresh_pages(len);
        assert_eq!(resident_pages(base, len), 0);
        // SAFETY: the whole mapping, readable, ours.
        let bytes = unsafe { std::slice::from_raw_parts(base, len) };
        prefault_for_reading(bytes);
        let page = procfs::page_size() as usize;
        assert_eq!(resident_pages(base, len), len / page, "pages not asked for");
        assert!(bytes.iter().all(|&b| b == 0));
        // SAFETY: the mapping is ours and nothing uses it.
        unsafe { unmap(base, len) };
    }
}
