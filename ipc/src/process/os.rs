//! The Linux process syscalls behind `Process`: pidfds, `waitpid`, signals,
//! the parent-death signal, thread counting and descriptor hygiene in a
//! forked child. A macOS port replaces this file (kqueue `EVFILT_PROC`
//! instead of pidfds, no `PR_SET_PDEATHSIG`).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::exit::ExitStatus;

/// Opens a pidfd for `pid`: readable once the child exits. `Ok(None)` on
/// kernels before 5.3, where callers fall back to short polling.
pub fn pidfd_open(pid: i32) -> io::Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EPERM) => Ok(None),
            _ => Err(err),
        };
    }
    let fd = fd as RawFd;
    // pidfds are close-on-exec by default.
    // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// Reaps `pid` if it has exited (`block` waits for it). `Ok(None)`: still running.
pub fn reap(pid: i32, block: bool) -> io::Result<Option<ExitStatus>> {
    let flags = if block { 0 } else { libc::WNOHANG };
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer; pid is our own child.
        let rc = unsafe { libc::waitpid(pid, &mut status, flags) };
        if rc == pid {
            return Ok(Some(ExitStatus::from_wait_status(status)));
        }
        if rc == 0 {
            return Ok(None);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Sends `signal` to `pid`. Only called on children not yet reaped, so the pid
/// cannot have been reused by another process.
pub fn send_signal(pid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill has no memory arguments.
    if unsafe { libc::kill(pid, signal) } != 0 {
        let err = io::Error::last_os_error();
        // Already exited but not reaped: nothing to signal, not an error.
        if err.raw_os_error() != Some(libc::ESRCH) {
            return Err(err);
        }
    }
    Ok(())
}

/// Number of threads in this process (from /proc/self/task).
pub fn thread_count() -> io::Result<usize> {
    Ok(std::fs::read_dir("/proc/self/task")?.count())
}

/// Asks the kernel to send `signal` to this process when its parent *thread*
/// exits. Async-signal-safe: usable between fork and exec.
pub fn set_parent_death_signal(signal: i32) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// The parent's pid. Async-signal-safe.
pub fn parent_pid() -> i32 {
    // SAFETY: getppid cannot fail and touches no memory.
    unsafe { libc::getppid() }
}

/// Points stdin at /dev/null, as Python does in its children: a child never
/// competes with its parent for terminal input.
pub fn stdin_from_devnull() {
    // SAFETY: open/dup2/close on a NUL-terminated literal path and known fds.
    unsafe {
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::dup2(fd, 0);
            if fd != 0 {
                libc::close(fd);
            }
        }
    }
}

/// Closes every descriptor except stdio and `keep`, so a forked child holds
/// exactly what it was handed (no stray pipe ends that would keep a reader
/// from ever seeing end of file).
pub fn close_fds_except(keep: &[RawFd]) {
    let mut keep: Vec<RawFd> = keep.iter().copied().filter(|&fd| fd > 2).collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from: u32 = 3;
    for &fd in &keep {
        close_range(from, fd as u32 - 1);
        from = fd as u32 + 1;
    }
    close_range(from, u32::MAX);
}

fn close_range(first: u32, last: u32) {
    if first > last {
        return;
    }
    // SAFETY: close_range takes integers only; it closes descriptors this
    // single-threaded child owns and will never use again.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) };
    if rc != 0 {
        // Kernels before 5.9: close what /proc says is open.
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            let open: Vec<u32> = dir
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .filter(|&fd| fd >= first && fd <= last)
                .collect();
            for fd in open {
                // SAFETY: as above; a descriptor that vanished yields EBADF, ignored.
                unsafe { libc::close(fd as RawFd) };
            }
        }
    }
}

/// (device, inode) of the running executable: a spawned child checks that it
/// runs the very binary its parent runs before trusting code addresses.
pub fn exe_identity() -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self/exe")?;
    Ok((meta.dev(), meta.ino()))
}

/// An anonymous in-memory file (memfd) holding `bytes`, positioned at the start.
pub fn memfd_with(name: &std::ffi::CStr, bytes: &[u8]) -> io::Result<OwnedFd> {
    use std::io::{Seek, Write};
    // SAFETY: memfd_create takes a NUL-terminated name and flags.
    let fd = unsafe { libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: memfd_create returned a fresh descriptor that nothing else owns.
    let mut file = unsafe { std::fs::File::from_raw_fd(fd) };
    file.write_all(bytes)?;
    file.rewind()?;
    Ok(file.into())
}
