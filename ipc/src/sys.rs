//! Thin, Linux-specific wrappers over the file-descriptor syscalls the rest of
//! the crate needs: non-blocking flags, close-on-exec, `poll` with a deadline,
//! and reads/writes that retry on `EINTR`. Keeping them here keeps `unsafe`
//! and errno handling out of the higher-level modules.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Once;
use std::time::{Duration, Instant};

/// A point in time after which a blocking call gives up; `None` waits forever.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    pub fn never() -> Self {
        Deadline(None)
    }
    pub fn after(timeout: Duration) -> Self {
        // An absurd timeout (overflowing Instant) means "never".
        Deadline(Instant::now().checked_add(timeout))
    }
    pub fn is_never(&self) -> bool {
        self.0.is_none()
    }
    pub fn now() -> Self {
        Deadline(Some(Instant::now()))
    }
    /// Milliseconds left for `poll(2)`: -1 for never, 0 when passed. Rounded up
    /// so a 0.5 ms remainder still waits instead of spinning.
    pub fn poll_millis(&self) -> i32 {
        match self.0 {
            None => -1,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                let micros = left.as_micros();
                micros.div_ceil(1000).min(i32::MAX as u128) as i32
            }
        }
    }
    /// This deadline, or `now + step` if that comes first.
    pub fn or_sooner(self, step: Duration) -> Self {
        let stepped = Instant::now() + step;
        match self.0 {
            Some(at) if at < stepped => self,
            _ => Deadline(Some(stepped)),
        }
    }
    pub fn passed(&self) -> bool {
        matches!(self.0, Some(at) if Instant::now() >= at)
    }
    /// Time left (zero once passed); `None` for a deadline that never comes.
    pub fn remaining(&self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(Instant::now()))
    }
    /// The same moment on the `CLOCK_REALTIME` clock, as pthread timed calls want.
    pub fn as_realtime(&self) -> Option<libc::timespec> {
        let left = self.remaining()?;
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime writes into a timespec we own.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        let nanos = now.tv_nsec as u64 + u64::from(left.subsec_nanos());
        Some(libc::timespec {
            tv_sec: now
                .tv_sec
                .saturating_add(left.as_secs().min(i64::MAX as u64 / 2) as libc::time_t)
                + (nanos / 1_000_000_000) as libc::time_t,
            tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
        })
    }
}

/// Creates a pipe with both ends close-on-exec: `(read end, write end)`.
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid two-element array for pipe2 to fill.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Creates a connected pair of Unix stream sockets, both close-on-exec.
pub fn socketpair_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid two-element array for socketpair to fill.
    let rc = unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: socketpair succeeded, so both descriptors are open and ours alone.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn fcntl_update(fd: RawFd, get: i32, set: i32, flag: i32, on: bool) -> io::Result<()> {
    // SAFETY: F_GETFL/F_GETFD take no pointer argument; an invalid fd yields EBADF.
    let flags = unsafe { libc::fcntl(fd, get) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    let new = if on { flags | flag } else { flags & !flag };
    if new != flags {
        // SAFETY: F_SETFL/F_SETFD take an integer argument.
        if unsafe { libc::fcntl(fd, set, new) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    fcntl_update(fd, libc::F_GETFL, libc::F_SETFL, libc::O_NONBLOCK, on)
}

pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    fcntl_update(fd, libc::F_GETFD, libc::F_SETFD, libc::FD_CLOEXEC, on)
}

/// Readiness reported by [`poll_one`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Ready {
    pub readable: bool,
    pub writable: bool,
    /// The peer hung up or the descriptor is in error: the next I/O will say which.
    pub hangup: bool,
}

impl Ready {
    pub fn any(&self) -> bool {
        self.readable || self.writable || self.hangup
    }
}

/// Waits until `fd` is ready for `events` (`POLLIN`/`POLLOUT`) or the deadline passes.
/// Returns `Ready::default()` on timeout.
pub fn poll_one(fd: RawFd, events: i16, deadline: Deadline) -> io::Result<Ready> {
    let mut pfd = [libc::pollfd {
        fd,
        events,
        revents: 0,
    }];
    let n = poll_many(&mut pfd, deadline)?;
    if n == 0 {
        return Ok(Ready::default());
    }
    Ok(ready_of(pfd[0].revents))
}

/// Decodes `revents` into a [`Ready`].
pub fn ready_of(revents: i16) -> Ready {
    Ready {
        readable: revents & libc::POLLIN != 0,
        writable: revents & libc::POLLOUT != 0,
        hangup: revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0,
    }
}

/// `poll(2)` over several descriptors, retrying on `EINTR` with the time left.
pub fn poll_many(fds: &mut [libc::pollfd], deadline: Deadline) -> io::Result<usize> {
    loop {
        // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd structs.
        let n = unsafe {
            libc::poll(
                fds.as_mut_ptr(),
                fds.len() as libc::nfds_t,
                deadline.poll_millis(),
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// One `read(2)`, retrying on `EINTR`. `Ok(0)` is end of file.
pub fn read_some(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        // SAFETY: `buf` is a valid writable region of `buf.len()` bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// One gathering write, retrying on `EINTR`. Sockets use `sendmsg` with
/// `MSG_NOSIGNAL` so a vanished peer is `EPIPE`, never a `SIGPIPE`, and with
/// `MSG_DONTWAIT` when `dont_wait` is set.
pub fn write_some(
    fd: RawFd,
    bufs: &[&[u8]],
    is_socket: bool,
    dont_wait: bool,
) -> io::Result<usize> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 2];
    let count = bufs.len().min(iov.len());
    for (slot, buf) in iov.iter_mut().zip(bufs) {
        slot.iov_base = buf.as_ptr() as *mut libc::c_void;
        slot.iov_len = buf.len();
    }
    loop {
        let n = if is_socket {
            // SAFETY: zeroed msghdr is a valid "no name, no control data" header.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = iov.as_mut_ptr();
            msg.msg_iovlen = count as _;
            let flags = libc::MSG_NOSIGNAL | if dont_wait { libc::MSG_DONTWAIT } else { 0 };
            // SAFETY: msg points at `count` iovecs that borrow live slices.
            unsafe { libc::sendmsg(fd, &msg, flags) }
        } else if count == 1 {
            // SAFETY: the slice is valid for reads of its length.
            unsafe { libc::write(fd, iov[0].iov_base, iov[0].iov_len) }
        } else {
            // SAFETY: `iov` holds `count` iovecs over live slices.
            unsafe { libc::writev(fd, iov.as_ptr(), count as i32) }
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

/// Writes one whole buffer to a blocking descriptor (used for bootstrap and
/// result reports, where the peer is known to be reading or the data fits).
pub fn write_all_blocking(fd: RawFd, mut buf: &[u8]) -> io::Result<()> {
    while !buf.is_empty() {
        match write_some(fd, &[buf], false, false) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                poll_one(fd, libc::POLLOUT, Deadline::never())?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Pipes raise `SIGPIPE` on a write to a closed reader. Rust binaries ignore
/// it already; a library cannot assume that, so the first pipe we make sets it
/// to ignored if (and only if) it still has the default, killing disposition.
pub fn ignore_default_sigpipe() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: querying and setting a signal disposition with valid sigaction
        // structs; SIG_IGN needs no handler code.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_DFL
            {
                let mut ign: libc::sigaction = std::mem::zeroed();
                ign.sa_sigaction = libc::SIG_IGN;
                libc::sigaction(libc::SIGPIPE, &ign, std::ptr::null_mut());
            }
        }
    });
}

/// Asks for a kernel pipe buffer of `bytes`; keeps the current one if refused.
pub fn grow_pipe(fd: &impl AsRawFd, bytes: usize) {
    // SAFETY: F_SETPIPE_SZ takes an integer; failure leaves the pipe unchanged.
    unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, bytes as libc::c_int) };
}

/// Is `fd` a socket (as opposed to a pipe)?
pub fn is_socket(fd: &impl AsRawFd) -> bool {
    // SAFETY: fstat writes into a zeroed, correctly sized stat struct.
    unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd.as_raw_fd(), &mut st) == 0 && (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK
    }
}
