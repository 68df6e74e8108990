//! Processes: pidfds, `waitpid`, signals to children, the parent-death
//! signal, the executable's identity. A macOS port replaces this file
//! (kqueue `EVFILT_PROC` instead of pidfds, no `PR_SET_PDEATHSIG`).

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use crate::process::ExitStatus;

/// Opens a pidfd for `pid`: readable once the process exits. `Ok(None)` on
/// kernels before 5.3, where callers fall back to short polling.
pub fn pidfd_open(pid: i32) -> io::Result<Option<OwnedFd>> {
    pidfd_open_with(pid, 0)
}

/// `PIDFD_THREAD` (Linux 6.9): the pidfd names one thread, and turns
/// readable when that thread exits.
const PIDFD_THREAD: libc::c_int = libc::O_EXCL;

/// A pidfd for thread `tid` of any process, readable once that thread has
/// exited. `Ok(None)` where the kernel has no thread pidfds (before 6.9)
/// or refuses them.
pub fn pidfd_open_thread(tid: i32) -> io::Result<Option<OwnedFd>> {
    match pidfd_open_with(tid, PIDFD_THREAD) {
        // An older kernel does not know the flag.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(None),
        other => other,
    }
}

fn pidfd_open_with(pid: i32, flags: libc::c_int) -> io::Result<Option<OwnedFd>> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, flags) };
    if fd < 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            Some(libc::ENOSYS) | Some(libc::EPERM) => Ok(None),
            _ => Err(err),
        };
    }
    // pidfds are close-on-exec by default.
    // SAFETY: the syscall returned a fresh descriptor that nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(fd as RawFd) }))
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

/// Whether our child `pid` has exited, without reaping it (its status stays
/// for whoever joins it).
pub fn has_exited(pid: i32) -> bool {
    // SAFETY: a zeroed siginfo_t is a valid out-buffer for waitid.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waitid fills `info`; WNOWAIT leaves the child waitable.
    let rc = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
        )
    };
    if rc != 0 {
        // Not our child (a fork server's): gone once no signal can reach it.
        return io::Error::last_os_error().raw_os_error() != Some(libc::ECHILD) || !exists(pid);
    }
    // SAFETY: si_pid is valid to read for a siginfo waitid filled (0 if none).
    unsafe { info.si_pid() == pid }
}

/// Whether a process `pid` exists (a zombie counts).
fn exists(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks that the pid could be signalled.
    unsafe { libc::kill(pid, 0) == 0 || *libc::__errno_location() == libc::EPERM }
}

/// Sends `signal` through a pidfd: reaches that very process even if it is
/// not our child and its pid has since been reused. Gone already: not an error.
pub fn pidfd_send_signal(pidfd: RawFd, signal: i32) -> io::Result<()> {
    // SAFETY: pidfd_send_signal takes a descriptor, a signal, a null siginfo
    // (meaning: as kill(2) would) and flags.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd,
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::ESRCH) {
            return Err(err);
        }
    }
    Ok(())
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

/// Asks the kernel to send `signal` to this process when its parent *thread*
/// exits. Async-signal-safe: usable between fork and exec.
pub fn set_parent_death_signal(signal: i32) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// In a child between fork and its entry (or exec): whether thread
/// `starter` of process `parent` (the thread that forked us) still runs.
/// Linux sends the parent-death signal when that *thread* exits; one that
/// exited before the child asked for the signal has nothing to send, so
/// the child checks. Async-signal-safe (one `tgkill` with signal 0).
pub fn starter_alive(parent: i32, starter: i32) -> bool {
    // SAFETY: tgkill with signal 0 sends nothing; it only checks that the
    // thread exists in that thread group.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, parent, starter, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// This process's real user id.
pub fn user_id() -> u32 {
    rustix::process::getuid().as_raw()
}

/// The parent's pid. Async-signal-safe.
pub fn parent_pid() -> i32 {
    nix::unistd::getppid().as_raw()
}

/// The name of the running executable's file (`/proc/self/exe`), as the
/// kernel names a process it starts: what a process exec'd through
/// `/proc/self/exe` calls itself, so that `ps`, `top` and `pgrep` show the
/// program's name for it rather than `exe`.
pub fn program_name() -> Option<String> {
    let exe = std::fs::read_link("/proc/self/exe").ok()?;
    let name = exe.file_name()?.to_string_lossy().into_owned();
    // A binary replaced since it started (a rebuild) reads `name (deleted)`.
    Some(name.strip_suffix(" (deleted)").unwrap_or(&name).to_string())
}

/// Sets the calling thread's name (the process's, from its main thread):
/// what `ps -o comm`, `top` and `pgrep` show. The kernel keeps 15 bytes.
pub fn set_name(name: &str) {
    let mut bytes: Vec<u8> = name.bytes().filter(|&b| b != 0).take(15).collect();
    bytes.push(0);
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16
    // bytes from a valid buffer, which `bytes` is.
    unsafe { libc::prctl(libc::PR_SET_NAME, bytes.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// (device, inode) of the running executable: a spawned child checks that it
/// runs the very binary its parent runs before trusting code addresses.
pub fn exe_identity() -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata("/proc/self/exe")?;
    Ok((meta.dev(), meta.ino()))
}
