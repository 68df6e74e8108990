//! Descriptors sent over a Unix socket (`SCM_RIGHTS`): how a manager hands
//! a client the shared-memory rings of its fast lane. Received descriptors
//! are close-on-exec, at most [`MAX_FDS`] per message, and owned at once,
//! so none leaks whatever the peer sends.

use std::io;
use std::io::IoSlice;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use nix::sys::socket::{self, ControlMessage, MsgFlags};

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
/// descriptors that came with them. Every descriptor the kernel installed
/// is owned, and closed on an error: when this process is at its limit of
/// open descriptors the kernel installs what it can and truncates the
/// rest, which is `EMFILE` here ("Too many open files"), not a leak.
pub fn recv_with_fds(fd: RawFd, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    let fd_bytes = MAX_FDS * std::mem::size_of::<RawFd>();
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(fd_bytes as libc::c_uint) } as usize;
    // u64s: a control buffer must be aligned for `cmsghdr`.
    let mut control = vec![0u64; space.div_ceil(8)];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    // SAFETY: an all-zero msghdr is a valid empty one.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let bytes = loop {
        // SAFETY: `msg` points at `iov` (over `buf`) and `control`, both
        // alive and as long as the lengths given.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT | libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let fds = installed_fds(&msg);
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        // Asked before those installed are closed, which frees room.
        let why = truncated(fd);
        drop(fds);
        return Err(why);
    }
    Ok((bytes, fds))
}

/// The descriptors in `msg`'s `SCM_RIGHTS` messages, owned.
fn installed_fds(msg: &libc::msghdr) -> Vec<OwnedFd> {
    let mut fds = Vec::new();
    // SAFETY: `msg` was filled by recvmsg: its control length says how much
    // of its buffer the kernel wrote, and the CMSG macros stay inside it.
    let mut cmsg = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !cmsg.is_null() {
        // SAFETY: a non-null header from CMSG_FIRSTHDR/CMSG_NXTHDR lies
        // inside the control buffer.
        let header = unsafe { &*cmsg };
        if header.cmsg_level == libc::SOL_SOCKET && header.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: as above; the data follows its header.
            let data = unsafe { libc::CMSG_DATA(cmsg) };
            let offset = data as usize - cmsg as usize;
            let count =
                (header.cmsg_len as usize).saturating_sub(offset) / std::mem::size_of::<RawFd>();
            for i in 0..count {
                // SAFETY: `count` descriptors were written after `data`,
                // maybe unaligned.
                let raw = unsafe { std::ptr::read_unaligned(data.cast::<RawFd>().add(i)) };
                // SAFETY: the kernel just installed `raw` in this process
                // for us; nothing else knows it, so owning it is sound.
                fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
            }
        }
        // SAFETY: as for CMSG_FIRSTHDR.
        cmsg = unsafe { libc::CMSG_NXTHDR(msg, cmsg) };
    }
    fds
}

/// Why descriptors were cut off: this process's descriptor limit, if it is
/// at it (a probe for one more fails), or a peer sending more than asked.
fn truncated(fd: RawFd) -> io::Error {
    // SAFETY: duplicates a descriptor we hold; the copy is closed at once.
    let probe = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if probe < 0 {
        let e = io::Error::last_os_error();
        if matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE)) {
            return e;
        }
    } else {
        // SAFETY: `probe` is ours alone, just made.
        unsafe { libc::close(probe) };
    }
    io::Error::new(io::ErrorKind::InvalidData, "too many descriptors")
}
