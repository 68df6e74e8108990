//! `poll(2)` over one or several descriptors, with a [`Deadline`], retrying
//! on `EINTR` with the time left.

use std::io;
use std::os::fd::RawFd;

use super::clock::Deadline;

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
        match poll_once(fds, deadline.poll_millis()) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// One `poll(2)`; `EINTR` is returned (an event loop wants to see signals).
pub fn poll_once(fds: &mut [libc::pollfd], millis: i32) -> io::Result<usize> {
    // SAFETY: `fds` is a valid, exclusively borrowed slice of pollfd structs.
    let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
    if n >= 0 {
        Ok(n as usize)
    } else {
        Err(io::Error::last_os_error())
    }
}
