//! `epoll(7)` for the one thread per process that waits on every awaited
//! descriptor (`watch::reactor`), and the eventfd that rings that thread.
//!
//! Descriptors are armed one shot at a time (`EPOLLONESHOT`): a report
//! disarms its descriptor until a future waits on it again, so a level
//! that stays ready (a hung-up pipe nobody reads) is reported once, not in
//! a loop.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::clock::Deadline;

/// An epoll instance (close-on-exec).
#[derive(Debug)]
pub(crate) struct Epoll {
    fd: OwnedFd,
}

/// One report from [`Epoll::wait`]: the key the descriptor was armed with.
pub(crate) type Report = libc::epoll_event;

/// The key a report carries.
pub(crate) fn key_of(report: &Report) -> u64 {
    report.u64
}

/// An empty report, to size the buffer [`Epoll::wait`] fills.
pub(crate) const NO_REPORT: Report = libc::epoll_event { events: 0, u64: 0 };

impl Epoll {
    pub(crate) fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; the result is checked.
        let raw = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Epoll { fd })
    }

    /// Reports `fd` once, with `key`, when it is ready for `events`
    /// (`EPOLLIN`, `EPOLLOUT`; hang-up and error always count) or already
    /// is. `first` adds it; otherwise it was added and is re-armed.
    pub(crate) fn arm(&self, fd: RawFd, events: u32, key: u64, first: bool) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: events | libc::EPOLLONESHOT as u32,
            u64: key,
        };
        let op = if first {
            libc::EPOLL_CTL_ADD
        } else {
            libc::EPOLL_CTL_MOD
        };
        // SAFETY: a live epoll descriptor and a live event for the call.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), op, fd, &mut event) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Reports `fd`, with `key`, whenever it is readable (level-triggered,
    /// never disarmed): for a [`Bell`].
    pub(crate) fn add_readable(&self, fd: RawFd, key: u64) -> io::Result<()> {
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: key,
        };
        // SAFETY: a live epoll descriptor and a live event for the call.
        if unsafe { libc::epoll_ctl(self.fd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) } != 0
        {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Takes `fd` out (before it is closed: a duplicate elsewhere would
    /// keep it in).
    pub(crate) fn remove(&self, fd: RawFd) {
        // SAFETY: a live epoll descriptor; the event is ignored for DEL.
        // Not there (never armed) is the only error, and nothing to do.
        unsafe {
            libc::epoll_ctl(
                self.fd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }

    /// Waits until a descriptor is reported or `deadline` passes, and
    /// fills `reports`; the count filled (0 when the deadline passed).
    pub(crate) fn wait(&self, reports: &mut [Report], deadline: Deadline) -> io::Result<usize> {
        let room = i32::try_from(reports.len()).unwrap_or(i32::MAX);
        loop {
            // SAFETY: `reports` is live and holds `room` events.
            let n = unsafe {
                libc::epoll_wait(
                    self.fd.as_raw_fd(),
                    reports.as_mut_ptr(),
                    room,
                    deadline.poll_millis(),
                )
            };
            if n >= 0 {
                return Ok(n as usize);
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
}

/// An eventfd (close-on-exec, non-blocking): readable once rung, until
/// quieted.
#[derive(Debug)]
pub(crate) struct Bell {
    fd: OwnedFd,
}

impl Bell {
    pub(crate) fn new() -> io::Result<Bell> {
        // SAFETY: eventfd takes no pointers; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Bell { fd })
    }

    pub(crate) fn ring(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our own eventfd; a
        // full counter (EAGAIN) is rung already.
        unsafe { libc::write(self.fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }

    pub(crate) fn quiet(&self) {
        let mut count = [0u8; 8];
        // SAFETY: reads at most 8 bytes into a live buffer; not rung
        // (EAGAIN) leaves it as it is.
        unsafe { libc::read(self.fd.as_raw_fd(), count.as_mut_ptr().cast(), count.len()) };
    }
}

impl AsRawFd for Bell {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}
