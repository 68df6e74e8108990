//! Signal dispositions, in one place: ignore, default, a handler of our
//! own, the mask, and [`SelfPipe`], which turns signals into bytes on a pipe
//! that an event loop polls (the supervisor stays single-threaded, so fork
//! stays safe, and never misses a signal between two checks).
//!
//! Every function here is async-signal-safe (one or two system calls, no
//! allocation), so it may run between fork and exec, or in a forked child
//! of a multi-threaded process.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Once;

use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal};

fn signal_of(signal: i32) -> io::Result<Signal> {
    Signal::try_from(signal).map_err(io::Error::from)
}

fn set(signal: i32, handler: SigHandler, flags: SaFlags) -> io::Result<SigHandler> {
    let action = SigAction::new(handler, flags, SigSet::empty());
    // SAFETY: the handlers installed here are SIG_IGN, SIG_DFL, or an
    // `extern "C" fn` that its caller vouches is async-signal-safe.
    let old = unsafe { sigaction(signal_of(signal)?, &action) }?;
    Ok(old.handler())
}

/// Ignores `signal` (`SIG_IGN`).
pub fn ignore(signal: i32) -> io::Result<()> {
    set(signal, SigHandler::SigIgn, SaFlags::empty()).map(drop)
}

/// Restores the default action of `signal` (`SIG_DFL`).
pub fn set_default(signal: i32) -> io::Result<()> {
    set(signal, SigHandler::SigDfl, SaFlags::empty()).map(drop)
}

/// Runs `handler` on `signal`, with `SA_RESTART` so blocking calls
/// elsewhere are not cut short. The handler must be async-signal-safe
/// (atomics and `write(2)`, nothing that allocates or locks).
pub fn set_handler(signal: i32, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    set(signal, SigHandler::Handler(handler), SaFlags::SA_RESTART).map(drop)
}

/// Unblocks every signal for the calling thread (a child starts with the
/// mask of the thread that forked it).
pub fn unblock_all() -> io::Result<()> {
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
    Ok(())
}

/// Whether this process has the kernel reap its children as they end
/// (`SIGCHLD` ignored, or `SA_NOCLDWAIT`, as daemons often set): then no
/// `waitpid` can learn how a child ended.
pub fn children_reaped_by_kernel() -> bool {
    // SAFETY: a zeroed sigaction is a valid out-buffer; a null new action
    // only queries the current one.
    unsafe {
        let mut current: libc::sigaction = std::mem::zeroed();
        libc::sigaction(libc::SIGCHLD, std::ptr::null(), &mut current) == 0
            && (current.sa_sigaction == libc::SIG_IGN || current.sa_flags & libc::SA_NOCLDWAIT != 0)
    }
}

/// Pipes raise `SIGPIPE` on a write to a closed reader. Rust binaries ignore
/// it already; a library cannot assume that, so the first pipe we make sets it
/// to ignored if (and only if) it still has the default, killing disposition.
pub fn ignore_default_sigpipe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: a zeroed sigaction is a valid out-buffer; a null new
        // action only queries the current one.
        let default = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_DFL
        };
        if default {
            let _ = ignore(libc::SIGPIPE);
        }
    });
}

static PIPE_WRITE_FD: AtomicI32 = AtomicI32::new(-1);
static PIPE_OWNER_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn write_signal_byte(signal: libc::c_int) {
    // SAFETY: getpid and write are async-signal-safe; errno is saved and
    // restored so the interrupted code does not see ours.
    unsafe {
        let saved = *libc::__errno_location();
        // A forked child runs this handler until it installs its own: it
        // must never write to a descriptor number that is no longer the pipe.
        if libc::getpid() == PIPE_OWNER_PID.load(Ordering::Relaxed) {
            let fd = PIPE_WRITE_FD.load(Ordering::Relaxed);
            let byte = signal as u8;
            // A full pipe drops the byte: the loop is already awake then.
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        *libc::__errno_location() = saved;
    }
}

/// Signals as bytes on a non-blocking pipe, for one event loop per process.
/// Dropping it restores the default actions.
#[derive(Debug)]
pub struct SelfPipe {
    read: OwnedFd,
    write: OwnedFd,
    signals: Vec<i32>,
}

impl SelfPipe {
    /// Installs the handlers for `signals`. One per process.
    pub fn install(signals: &[i32]) -> io::Result<Self> {
        let (read, write) = super::fd::pipe_nonblocking()?;
        PIPE_WRITE_FD.store(write.as_raw_fd(), Ordering::Relaxed);
        PIPE_OWNER_PID.store(std::process::id() as i32, Ordering::Relaxed);
        for &signal in signals {
            set_handler(signal, write_signal_byte)?;
        }
        Ok(SelfPipe {
            read,
            write,
            signals: signals.to_vec(),
        })
    }

    /// The descriptor to poll for `POLLIN`.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// The signals received since the last call, in order.
    pub fn drain(&self) -> Vec<libc::c_int> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        while let Ok(n @ 1..) = super::fd::read_some(self.read.as_raw_fd(), &mut buf) {
            out.extend(buf[..n].iter().map(|&b| libc::c_int::from(b)));
        }
        out
    }
}

impl Drop for SelfPipe {
    fn drop(&mut self) {
        for &signal in &self.signals {
            let _ = set_default(signal);
        }
        PIPE_WRITE_FD.store(-1, Ordering::Relaxed);
        let _ = self.write.as_raw_fd();
    }
}
