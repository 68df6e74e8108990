//! Signals into the event loop through a self-pipe: the handler writes the
//! signal number as one byte to a non-blocking pipe that the loop polls, so
//! the supervisor stays single-threaded (fork stays safe) and never misses
//! a signal between checks.
//!
//! A forked worker inherits these handlers until it installs its own; the
//! handler checks the pid so a young worker never writes to the pipe.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// The signals the supervisor acts on.
pub const HANDLED: [libc::c_int; 7] = [
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGQUIT,
    libc::SIGHUP,
    libc::SIGTTIN,
    libc::SIGTTOU,
    libc::SIGCHLD,
];

static WRITE_FD: AtomicI32 = AtomicI32::new(-1);
static OWNER_PID: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(signal: libc::c_int) {
    // SAFETY: getpid and write are async-signal-safe; errno is saved and
    // restored so the interrupted code does not see ours.
    unsafe {
        let saved = *libc::__errno_location();
        if libc::getpid() == OWNER_PID.load(Ordering::Relaxed) {
            let fd = WRITE_FD.load(Ordering::Relaxed);
            let byte = signal as u8;
            // A full pipe drops the byte: the loop is already awake then.
            libc::write(fd, (&byte as *const u8).cast(), 1);
        }
        *libc::__errno_location() = saved;
    }
}

/// The read end of the self-pipe; dropping it restores the default actions.
#[derive(Debug)]
pub struct SignalPipe {
    read: OwnedFd,
    write: OwnedFd,
}

impl SignalPipe {
    /// Installs the handlers. One per process.
    pub fn install() -> io::Result<Self> {
        let mut fds = [0; 2];
        // SAFETY: pipe2 fills two descriptors we then own.
        if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: pipe2 succeeded; the descriptors are ours alone.
        let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
        WRITE_FD.store(write.as_raw_fd(), Ordering::Relaxed);
        // SAFETY: getpid has no preconditions.
        OWNER_PID.store(unsafe { libc::getpid() }, Ordering::Relaxed);
        for signal in HANDLED {
            // SAFETY: a zeroed sigaction with our handler, SA_RESTART so
            // blocking calls elsewhere are not cut short.
            unsafe {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
                action.sa_flags = libc::SA_RESTART;
                libc::sigemptyset(&mut action.sa_mask);
                if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
        }
        Ok(SignalPipe { read, write })
    }

    /// The descriptor to poll for `POLLIN`.
    pub fn fd(&self) -> RawFd {
        self.read.as_raw_fd()
    }

    /// The signals received since the last call, in order.
    pub fn drain(&self) -> Vec<libc::c_int> {
        let mut out = Vec::new();
        let mut buf = [0u8; 64];
        loop {
            // SAFETY: reading into a buffer we own, from our descriptor.
            let n =
                unsafe { libc::read(self.read.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                return out;
            }
            out.extend(buf[..n as usize].iter().map(|&b| libc::c_int::from(b)));
        }
    }
}

impl Drop for SignalPipe {
    fn drop(&mut self) {
        for signal in HANDLED {
            // SAFETY: restoring the default action.
            unsafe { libc::signal(signal, libc::SIG_DFL) };
        }
        WRITE_FD.store(-1, Ordering::Relaxed);
        let _ = self.write.as_raw_fd();
    }
}
