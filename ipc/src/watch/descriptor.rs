//! [`Descriptor`]: what a [`Watch`](super::Watch) waits on for a
//! descriptor's readiness (a pipe's end, a child's pidfd): a duplicate of
//! it, polled, and an eventfd that ends the poll when the watch stops.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::time::Duration;

use crate::os::Deadline;

use super::Watched;

/// A duplicate of a descriptor, polled for `events`, and an eventfd that
/// interrupts the poll when the descriptor's owner goes.
pub(crate) struct Descriptor {
    fd: OwnedFd,
    events: i16,
    interrupt: OwnedFd,
}

impl Descriptor {
    /// Watches `fd` (a duplicate of it: the owner may close its own) for `events`.
    pub(crate) fn new(fd: impl std::os::fd::AsFd, events: i16) -> io::Result<Descriptor> {
        let fd: BorrowedFd<'_> = fd.as_fd();
        let fd = fd.try_clone_to_owned()?;
        // SAFETY: eventfd takes no pointers; the result is checked below.
        let raw = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a new descriptor that nothing else owns.
        let interrupt = unsafe { OwnedFd::from_raw_fd(raw) };
        Ok(Descriptor {
            fd,
            events,
            interrupt,
        })
    }
}

impl Watched for Descriptor {
    fn epoch(&self) -> u64 {
        // Readiness is the descriptor's level, not a count: `sleep` sees it.
        0
    }

    fn ready_now(&self) -> bool {
        false
    }

    fn sleep(&self, _seen: u64, slice: Duration) -> bool {
        let mut fds = [
            libc::pollfd {
                fd: self.fd.as_raw_fd(),
                events: self.events,
                revents: 0,
            },
            libc::pollfd {
                fd: self.interrupt.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // An error (ENOMEM) reads as ready: the future's own call says why.
        crate::os::poll::poll_many(&mut fds, Deadline::after(slice)).map_or(true, |n| n > 0)
    }

    fn interrupt(&self) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writes 8 bytes from a live buffer to our own eventfd; a
        // full counter (EAGAIN) has interrupted the poll already.
        unsafe { libc::write(self.interrupt.as_raw_fd(), one.as_ptr().cast(), one.len()) };
    }
}
