//! The resource tracker: a small process that unlinks the named segments a
//! process created, once that process is gone, however it ended (SIGKILL
//! included). Python's `multiprocessing.resource_tracker`, for `/dev/shm`.
//!
//! The creating process holds the write end of a pipe and writes
//! `R name\n` on create and `U name\n` on unlink. The tracker reads; at end
//! of file (every copy of the write end closed: its creator is dead) it
//! unlinks what is still registered and exits.
//!
//! The tracker is forked, possibly from a multi-threaded process, so after
//! `fork` it only makes async-signal-safe system calls on static buffers: no
//! allocation, no locks. It is double-forked (reparented, never a zombie of
//! ours), starts a new session (no terminal signals) and keeps no descriptor
//! but its pipe, so it never holds another process's channel open.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Mutex;

/// The write end of this process's tracker pipe, and the pid that owns it (a
/// forked child inherits the static but not the tracker: it starts its own).
static TRACKER: Mutex<Option<(u32, OwnedFd)>> = Mutex::new(None);

/// Names the tracker can hold at once (on its stack: 64 KiB), and their longest length.
const SLOTS: usize = 256;
const NAME_MAX: usize = 256;

/// Registers `name` for unlinking when this process is gone.
pub(super) fn register(name: &str) -> io::Result<()> {
    send(b'R', name)
}

/// Forgets `name` (it was unlinked by hand).
pub(super) fn unregister(name: &str) {
    let _ = send(b'U', name);
}

fn send(op: u8, name: &str) -> io::Result<()> {
    let mut guard = TRACKER.lock().unwrap_or_else(|p| p.into_inner());
    let me = std::process::id();
    if guard.as_ref().is_none_or(|(pid, _)| *pid != me) {
        // A copy inherited through fork is not ours: forget it without closing
        // (its descriptor number may belong to something else now).
        if let Some((_, fd)) = guard.take() {
            std::mem::forget(fd);
        }
        *guard = Some((me, start()?));
    }
    let Some((_, fd)) = guard.as_ref() else {
        return Err(io::ErrorKind::NotConnected.into());
    };
    let mut line = Vec::with_capacity(name.len() + 3);
    line.push(op);
    line.push(b' ');
    line.extend_from_slice(name.as_bytes());
    line.push(b'\n');
    // At most PIPE_BUF bytes: one atomic write.
    crate::os::fd::write_all_blocking(fd.as_raw_fd(), &line)
}

/// Starts a tracker; returns the write end of its pipe.
fn start() -> io::Result<OwnedFd> {
    let (read, write) = crate::os::fd::pipe_cloexec()?;
    // SAFETY: fork; the child only calls async-signal-safe functions (below)
    // before _exit, so a multi-threaded parent is fine.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        // SAFETY: async-signal-safe calls only; never returns.
        unsafe { intermediate(read.as_raw_fd()) }
    }
    drop(read);
    let mut status = 0;
    // SAFETY: reaping the intermediate child, which exits at once.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    Ok(write)
}

/// The first child: forks the tracker and exits, so the tracker is reparented.
unsafe fn intermediate(read_fd: libc::c_int) -> ! {
    // SAFETY: fork/_exit are async-signal-safe.
    unsafe {
        if libc::fork() == 0 {
            tracker_main(read_fd);
        }
        libc::_exit(0)
    }
}

/// The tracker process.
unsafe fn tracker_main(read_fd: libc::c_int) -> ! {
    // SAFETY: only async-signal-safe calls (setsid, signal, dup2, open,
    // close_range, read, unlink, _exit) on stack buffers.
    unsafe {
        libc::setsid();
        for sig in [
            libc::SIGINT,
            libc::SIGTERM,
            libc::SIGHUP,
            libc::SIGQUIT,
            libc::SIGPIPE,
        ] {
            let _ = crate::os::signals::ignore(sig);
        }
        // Keep only the pipe (as fd 3) and /dev/null on 0, 1, 2.
        if libc::dup2(read_fd, 3) < 0 {
            libc::_exit(1);
        }
        let null = libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
        if null >= 0 {
            for fd in 0..3 {
                libc::dup2(null, fd);
            }
        }
        libc::syscall(libc::SYS_close_range, 4u32, u32::MAX, 0u32);
        // On the stack: no allocation after fork.
        let mut names = [[0u8; NAME_MAX]; SLOTS];
        let mut lengths = [0usize; SLOTS];
        let mut line = [0u8; NAME_MAX + 8];
        let mut filled = 0usize;
        let mut overflow = false;
        let mut byte = [0u8; 1];
        loop {
            let n = libc::read(3, byte.as_mut_ptr().cast(), 1);
            if n == 0 {
                break;
            }
            if n < 0 {
                if *libc::__errno_location() == libc::EINTR {
                    continue;
                }
                break;
            }
            if byte[0] != b'\n' {
                if filled < NAME_MAX + 2 {
                    line[filled] = byte[0];
                    filled += 1;
                } else {
                    overflow = true;
                }
                continue;
            }
            if !overflow && filled >= 3 {
                let name = &line[2..filled];
                if line[0] == b'R' {
                    if let Some(slot) = (0..SLOTS).find(|&i| lengths[i] == 0) {
                        names[slot][..name.len()].copy_from_slice(name);
                        lengths[slot] = name.len();
                    }
                } else if let Some(slot) = (0..SLOTS)
                    .find(|&i| lengths[i] == name.len() && &names[i][..name.len()] == name)
                {
                    lengths[slot] = 0;
                }
            }
            filled = 0;
            overflow = false;
        }
        // The creator is gone: unlink what it left.
        for i in 0..SLOTS {
            let len = lengths[i];
            if len == 0 {
                continue;
            }
            let mut path = [0u8; NAME_MAX + 16];
            let prefix = b"/dev/shm/";
            path[..prefix.len()].copy_from_slice(prefix);
            path[prefix.len()..prefix.len() + len].copy_from_slice(&names[i][..len]);
            libc::unlink(path.as_ptr().cast());
        }
        libc::_exit(0)
    }
}
