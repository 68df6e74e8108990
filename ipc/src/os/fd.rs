//! Descriptors: pipes and socketpairs (always close-on-exec), flags, reads
//! and writes that retry on `EINTR`, and the hygiene a child needs: stdin
//! from `/dev/null`, and nothing open but what it was handed.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::fcntl::{fcntl, FcntlArg, FdFlag, OFlag};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use super::clock::Deadline;
use super::poll::poll_one;

/// Creates a pipe with both ends close-on-exec: `(read end, write end)`.
pub fn pipe_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC)?)
}

/// A pipe with both ends close-on-exec and non-blocking (a self-pipe).
pub fn pipe_nonblocking() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(nix::unistd::pipe2(OFlag::O_CLOEXEC | OFlag::O_NONBLOCK)?)
}

/// Creates a connected pair of Unix stream sockets, both close-on-exec.
pub fn socketpair_cloexec() -> io::Result<(OwnedFd, OwnedFd)> {
    Ok(socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?)
}

fn borrowed(fd: RawFd) -> std::os::fd::BorrowedFd<'static> {
    // SAFETY: the callers pass a descriptor they hold open for the call; a
    // closed one makes the fcntl below fail with EBADF, nothing worse.
    unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) }
}

pub fn set_nonblocking(fd: RawFd, on: bool) -> io::Result<()> {
    let fd = borrowed(fd);
    let flags = OFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFL)?);
    let new = if on {
        flags | OFlag::O_NONBLOCK
    } else {
        flags & !OFlag::O_NONBLOCK
    };
    if new != flags {
        fcntl(fd, FcntlArg::F_SETFL(new))?;
    }
    Ok(())
}

/// Asks for a send buffer of `bytes` on socket `fd` (the kernel caps it
/// at `net.core.wmem_max`): fewer wake-ups of both ends per large message.
pub fn set_send_buffer(fd: RawFd, bytes: usize) -> io::Result<()> {
    let fd = borrowed(fd);
    nix::sys::socket::setsockopt(&fd, nix::sys::socket::sockopt::SndBuf, &bytes)?;
    Ok(())
}

/// Whether `fd` is a Unix domain socket (a TCP socket's buffers tune
/// themselves, and a size set by hand would stop that).
pub fn is_unix_socket(fd: RawFd) -> bool {
    use nix::sys::socket::{getsockname, AddressFamily, SockaddrLike, SockaddrStorage};
    getsockname::<SockaddrStorage>(fd).is_ok_and(|addr| addr.family() == Some(AddressFamily::Unix))
}

/// Async-signal-safe (two fcntl calls): usable between fork and exec.
pub fn set_cloexec(fd: RawFd, on: bool) -> io::Result<()> {
    let fd = borrowed(fd);
    let flags = FdFlag::from_bits_retain(fcntl(fd, FcntlArg::F_GETFD)?);
    let new = if on {
        flags | FdFlag::FD_CLOEXEC
    } else {
        flags & !FdFlag::FD_CLOEXEC
    };
    if new != flags {
        fcntl(fd, FcntlArg::F_SETFD(new))?;
    }
    Ok(())
}

/// One `read(2)`, retrying on `EINTR`. `Ok(0)` is end of file.
pub fn read_some(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::unistd::read(borrowed(fd), buf) {
            Ok(n) => return Ok(n),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// One read from a socket that never waits (`MSG_DONTWAIT`): `WouldBlock`
/// when nothing is there. One system call, where poll-then-read is two.
pub fn recv_now(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match nix::sys::socket::recv(fd, buf, nix::sys::socket::MsgFlags::MSG_DONTWAIT) {
            Ok(n) => return Ok(n),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(e.into()),
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

/// Asks for a kernel pipe buffer of `bytes`; keeps the current one if refused.
pub fn grow_pipe(fd: &impl AsRawFd, bytes: usize) {
    let _ = fcntl(
        borrowed(fd.as_raw_fd()),
        FcntlArg::F_SETPIPE_SZ(bytes as libc::c_int),
    );
}

/// Is `fd` a socket (as opposed to a pipe)?
pub fn is_socket(fd: &impl AsRawFd) -> bool {
    nix::sys::stat::fstat(borrowed(fd.as_raw_fd()))
        .is_ok_and(|st| (st.st_mode & libc::S_IFMT) == libc::S_IFSOCK)
}

/// The size of the file behind `fd` (a memfd or a shm segment).
pub fn file_size(fd: &impl AsRawFd) -> io::Result<u64> {
    let st = nix::sys::stat::fstat(borrowed(fd.as_raw_fd()))?;
    u64::try_from(st.st_size).map_err(|_| io::ErrorKind::InvalidData.into())
}

/// Points stdin at /dev/null, as Python does in its children: a child never
/// competes with its parent for terminal input. Async-signal-safe.
pub fn stdin_from_devnull() {
    // SAFETY: open/dup2/close on a NUL-terminated literal path and known fds.
    unsafe {
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::dup2(fd, 0);
            if fd != 0 {
                libc::close(fd);
            }
        }
    }
}

/// Closes every descriptor except stdio and `keep`, so a forked child holds
/// exactly what it was handed (no stray pipe ends that would keep a reader
/// from ever seeing end of file).
pub fn close_fds_except(keep: &[RawFd]) {
    for_gaps(keep, |first, last| close_range(first, last, false));
}

/// Marks every descriptor except stdio and `keep` close-on-exec, so that an
/// exec leaves exactly `keep` open (CPython's `close_fds`). Unlike closing,
/// this leaves the descriptors a `Command` still uses before its exec (its
/// error pipe) working. Allocates nothing: usable between fork and exec.
pub fn cloexec_fds_except(keep: &[RawFd]) {
    for_gaps(keep, |first, last| close_range(first, last, true));
}

/// Calls `f(first, last)` for each range of descriptors above stdio not in
/// `keep`. `keep` is sorted in place on a copy of at most 64 entries on
/// the stack (more are handled one range at a time, unsorted input fine).
fn for_gaps(keep: &[RawFd], mut f: impl FnMut(u32, u32)) {
    let mut sorted = [0u32; 64];
    let mut n = 0;
    for &fd in keep {
        if fd > 2 && n < sorted.len() {
            sorted[n] = fd as u32;
            n += 1;
        }
    }
    if keep.iter().filter(|&&fd| fd > 2).count() > sorted.len() {
        // Too many to sort here: fall back to one descriptor at a time.
        let mut fd = 3u32;
        let max = max_fd();
        while fd <= max {
            if !keep.contains(&(fd as RawFd)) {
                f(fd, fd);
            }
            fd += 1;
        }
        return;
    }
    let sorted = &mut sorted[..n];
    sorted.sort_unstable();
    let mut from: u32 = 3;
    for &fd in sorted.iter() {
        if fd >= from {
            if fd > from {
                f(from, fd - 1);
            }
            from = fd + 1;
        }
    }
    f(from, u32::MAX);
}

/// The highest descriptor number this process may have (its soft limit).
fn max_fd() -> u32 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit fills the struct we own; async-signal-safe.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return 1 << 20;
    }
    limit.rlim_cur.clamp(3, 1 << 20) as u32
}

/// `close_range(2)` (or marks close-on-exec with `cloexec`), falling back
/// to one call per descriptor on kernels without it. Async-signal-safe.
fn close_range(first: u32, last: u32, cloexec: bool) {
    if first > last {
        return;
    }
    const CLOSE_RANGE_CLOEXEC: u32 = 1 << 2;
    let flags = if cloexec { CLOSE_RANGE_CLOEXEC } else { 0 };
    // SAFETY: close_range takes integers only; it closes (or marks)
    // descriptors this process owns and will never use again.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, last, flags) };
    if rc == 0 {
        return;
    }
    let last = last.min(max_fd());
    let mut fd = first;
    while fd <= last {
        // SAFETY: as above; a descriptor that is not open yields EBADF, ignored.
        unsafe {
            if cloexec {
                libc::fcntl(fd as RawFd, libc::F_SETFD, libc::FD_CLOEXEC);
            } else {
                libc::close(fd as RawFd);
            }
        }
        fd += 1;
    }
}

/// Who is at the other end of a Unix socket (`SO_PEERCRED`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerCredentials {
    pub pid: i32,
    pub uid: u32,
    pub gid: u32,
}

/// The credentials of a Unix socket's peer, as the kernel recorded them
/// when it connected.
pub fn peer_credentials(fd: RawFd) -> io::Result<PeerCredentials> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid for writes of the sizes given;
    // the kernel checks the descriptor.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(PeerCredentials {
        pid: cred.pid,
        uid: cred.uid,
        gid: cred.gid,
    })
}
