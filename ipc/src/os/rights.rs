//! Descriptors sent over a Unix socket (`SCM_RIGHTS`): how a manager hands
//! a client the shared-memory rings of its fast lane. Received descriptors
//! are close-on-exec, at most [`MAX_FDS`] per message, and owned at once,
//! so none leaks whatever the peer sends.

use std::io;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, ControlMessage, ControlMessageOwned, MsgFlags};

/// The most descriptors one message may carry (the kernel's `SCM_MAX_FD`).
pub const MAX_FDS: usize = 253;

/// One `sendmsg` of `bytes` with `fds` attached, without waiting: the
/// bytes written (the descriptors travel with the first of them).
pub fn send_with_fds(fd: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    if fds.len() > MAX_FDS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "too many descriptors",
        ));
    }
    let iov = [IoSlice::new(bytes)];
    let cmsg = [ControlMessage::ScmRights(fds)];
    loop {
        match socket::sendmsg::<()>(
            fd,
            &iov,
            &cmsg,
            MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(n) => return Ok(n),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One `recvmsg` into `buf` without waiting: the bytes read and the
/// descriptors that came with them. A message with more than [`MAX_FDS`]
/// descriptors is an error (those received are closed).
pub fn recv_with_fds(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = loop {
        match socket::recvmsg::<()>(
            fd,
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => break msg,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    };
    let mut fds = Vec::new();
    let truncated = msg.flags.contains(MsgFlags::MSG_CTRUNC);
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(raw) = cmsg {
            for r in raw {
                // SAFETY: the kernel just installed `r` in this process for
                // us; nothing else knows it, so owning it here is sound.
                fds.push(unsafe { OwnedFd::from_raw_fd(r) });
            }
        }
    }
    if truncated {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "too many descriptors",
        ));
    }
    Ok((msg.bytes, fds))
}
