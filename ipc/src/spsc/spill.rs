//! Messages too large for a ring: each travels in its own memfd, sealed
//! against writing and resizing, handed over a Unix socket (`SCM_RIGHTS`)
//! beside the ring. The ring then carries only a short record saying a
//! spilled message of so many bytes comes next, in order with the rest.
//!
//! The receiver trusts nothing it is handed: a descriptor that is not a
//! memfd, one its sender could still write or shrink, or one whose size is
//! not the size announced or is above the receiver's own cap is refused
//! before anything is mapped. A sealed memfd cannot change under the
//! reader, so the message is read in place (mapped read-only), not copied.
//!
//! Why not stream it through the ring in pieces: the supervisor is one
//! thread over `poll`, and a piece at a time would tie it to a slow reader;
//! a memfd costs one copy on the sending side and none on the receiving one.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use outlast_ipc::spsc::spill;
//! let (a, b) = spill::ports()?;
//! a.send(&vec![7u8; 3 << 20])?;
//! let message = b.take(3 << 20, 16 << 20)?;
//! assert_eq!(message.len(), 3 << 20);
//! assert!(message.iter().all(|&x| x == 7));
//! # Ok(())
//! # }
//! ```

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg, SealFlag};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::os::{self, Deadline};
use crate::{handle, os::rights};

/// How long a send waits for room in the socket (each message on it is a
/// byte and a descriptor, so only a peer that stopped reading fills it).
const SEND_PATIENCE: Duration = Duration::from_secs(10);

/// One end of a spill socket: it sends spilled messages and takes those
/// its peer sent. A `Process` argument like any handle.
#[derive(Debug)]
pub struct SpillPort {
    fd: OwnedFd,
}

/// Why a spilled message could not be sent or taken.
#[derive(Debug, thiserror::Error)]
pub enum SpillError {
    /// The record said a spilled message comes, but none was on the socket.
    #[error("no spilled message was waiting, though the ring announced one")]
    Missing,
    /// What came was not a memfd sealed against writing and shrinking.
    #[error("the spilled message is not a sealed memfd ({0})")]
    NotSealed(String),
    /// Its size is not the size the ring announced.
    #[error("the spilled message has {len} bytes, not the {announced} announced")]
    WrongSize { len: u64, announced: u64 },
    /// Larger than this receiver takes.
    #[error("a message of {len} bytes is over the cap of {max} bytes")]
    TooLarge { len: u64, max: u64 },
    /// The peer closed its end.
    #[error("the peer closed its end of the spill socket")]
    Disconnected,
    /// The peer took no message for too long.
    #[error("the spill socket stayed full for {0:?}")]
    Stuck(Duration),
    #[error("spill socket: {0}")]
    Io(#[from] io::Error),
}

/// A connected pair of ports (a `SOCK_SEQPACKET` socketpair, close-on-exec,
/// non-blocking): hand one to the peer.
pub fn ports() -> io::Result<(SpillPort, SpillPort)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    )?;
    Ok((SpillPort { fd: a }, SpillPort { fd: b }))
}

impl SpillPort {
    /// Puts `message` in a new sealed memfd and hands it to the peer. Call
    /// it *before* publishing the ring record that announces it, so the
    /// peer finds the descriptor when it reads the record.
    pub fn send(&self, message: &[u8]) -> Result<(), SpillError> {
        let memfd = os::memory::sealed_memfd_with(c"ipc-spilled-message", message)?;
        self.hand_over(&memfd)
    }

    /// Puts what `write` writes in a new sealed memfd and hands it to the
    /// peer, as [`send`](Self::send) does, with no buffer in between: the
    /// message's parts may be written from wherever they lie. Returns the
    /// message's length, for the record that announces it.
    pub fn send_written(
        &self,
        write: impl FnOnce(&mut std::fs::File) -> io::Result<()>,
    ) -> Result<u64, SpillError> {
        let memfd = os::memory::sealed_memfd_written(c"ipc-spilled-message", write)?;
        let len = os::fd::file_size(&memfd)?;
        self.hand_over(&memfd)?;
        Ok(len)
    }

    /// Hands `memfd` (sealed against writing and resizing) to the peer,
    /// waiting at most ten seconds for room.
    pub(crate) fn hand_over(&self, memfd: &OwnedFd) -> Result<(), SpillError> {
        let deadline = Deadline::after(SEND_PATIENCE);
        loop {
            match rights::send_with_fds(self.fd.as_raw_fd(), &[1], &[memfd.as_raw_fd()]) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if deadline.passed() {
                        return Err(SpillError::Stuck(SEND_PATIENCE));
                    }
                    let _ = os::poll::poll_one(self.fd.as_raw_fd(), libc::POLLOUT, deadline);
                }
                Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                    return Err(SpillError::Disconnected)
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Hands `memfd` to the peer without waiting: a server's, which must
    /// not wait for a client; `Stuck` when the socket is full (a peer that
    /// takes nothing it is handed).
    pub(crate) fn try_hand_over(&self, memfd: &OwnedFd) -> Result<(), SpillError> {
        match rights::send_with_fds(self.fd.as_raw_fd(), &[1], &[memfd.as_raw_fd()]) {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Err(SpillError::Stuck(Duration::ZERO))
            }
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => Err(SpillError::Disconnected),
            Err(e) => Err(e.into()),
        }
    }

    /// The next memfd handed over, checked as [`take`](Self::take) checks
    /// it, with its descriptor kept (to hand it on) beside its mapping,
    /// which gets its pages as they are read (a holder may never read
    /// it, or read it on another thread).
    pub(crate) fn take_kept(
        &self,
        announced: u64,
        max: u64,
    ) -> Result<(OwnedFd, Spilled), SpillError> {
        let memfd = self.take_memfd(announced, max)?;
        let mapped = Spilled::map_lazily(&memfd, announced as usize)?;
        Ok((memfd, mapped))
    }

    fn take_memfd(&self, announced: u64, max: u64) -> Result<OwnedFd, SpillError> {
        if announced > max {
            return Err(SpillError::TooLarge {
                len: announced,
                max,
            });
        }
        let mut byte = [0u8; 1];
        let (n, fds) = match rights::recv_with_fds(self.fd.as_raw_fd(), &mut byte) {
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Err(SpillError::Missing),
            Err(e) => return Err(e.into()),
        };
        checked_memfd(n, fds, announced, max)
    }

    /// The next spilled message, which the ring announced as `announced`
    /// bytes: checked (a sealed memfd of exactly that size, at most `max`)
    /// and mapped read-only. Never waits: the sender handed it over before
    /// it published the record.
    pub fn take(&self, announced: u64, max: u64) -> Result<Spilled, SpillError> {
        let memfd = self.take_memfd(announced, max)?;
        Spilled::map(&memfd, announced as usize)
    }

    /// The descriptor (to poll, or to tell ports apart).
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// The one descriptor a message of `n` bytes brought, checked (a sealed
/// memfd of exactly `announced` bytes, at most `max`) and mapped read-only.
pub(crate) fn checked_message(
    n: usize,
    fds: Vec<OwnedFd>,
    announced: u64,
    max: u64,
) -> Result<Spilled, SpillError> {
    let memfd = checked_memfd(n, fds, announced, max)?;
    Spilled::map(&memfd, announced as usize)
}

/// The one descriptor a message of `n` bytes brought, checked: a sealed
/// memfd of exactly `announced` bytes, at most `max`.
fn checked_memfd(
    n: usize,
    fds: Vec<OwnedFd>,
    announced: u64,
    max: u64,
) -> Result<OwnedFd, SpillError> {
    let mut fds = fds.into_iter();
    let (Some(memfd), None) = (fds.next(), fds.next()) else {
        return Err(if n == 0 {
            SpillError::Disconnected
        } else {
            SpillError::Missing
        });
    };
    check_sealed(&memfd)?;
    let len = os::fd::file_size(&memfd)?;
    if len > max {
        return Err(SpillError::TooLarge { len, max });
    }
    if len != announced {
        return Err(SpillError::WrongSize { len, announced });
    }
    Ok(memfd)
}

/// Sealed against writing, shrinking and growing: its bytes and size are
/// fixed for as long as anyone holds it.
fn check_sealed(fd: &impl AsFd) -> Result<(), SpillError> {
    let need = SealFlag::F_SEAL_WRITE | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW;
    let seals = fcntl(fd.as_fd(), FcntlArg::F_GET_SEALS)
        .map_err(|e| SpillError::NotSealed(format!("no seals: {e}")))?;
    if !SealFlag::from_bits_retain(seals).contains(need) {
        return Err(SpillError::NotSealed(format!("seals {seals:#x}")));
    }
    Ok(())
}

/// A spilled message, mapped read-only; unmapped when dropped.
pub struct Spilled {
    ptr: NonNull<u8>,
    len: usize,
}

impl std::fmt::Debug for Spilled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spilled").field("len", &self.len).finish()
    }
}

impl Spilled {
    pub(crate) fn map(fd: &impl AsRawFd, len: usize) -> Result<Spilled, SpillError> {
        if len == 0 {
            return Ok(Spilled {
                ptr: NonNull::dangling(),
                len: 0,
            });
        }
        let ptr = os::memory::map_read_only(fd, len)?;
        Ok(Spilled { ptr, len })
    }

    pub(crate) fn map_lazily(fd: &impl AsRawFd, len: usize) -> Result<Spilled, SpillError> {
        if len == 0 {
            return Spilled::map(fd, 0);
        }
        let ptr = os::memory::map_read_only_lazily(fd, len)?;
        Ok(Spilled { ptr, len })
    }
}

impl std::ops::Deref for Spilled {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: `ptr..ptr + len` is a read-only mapping of a memfd
        // sealed against writing and shrinking (checked before mapping),
        // so every byte stays readable and unchanged while we hold it; for
        // `len == 0` the dangling pointer is never read.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for Spilled {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: our own mapping of `len` bytes; the slice borrowed
            // from it cannot outlive `self`.
            unsafe { os::memory::unmap(self.ptr.as_ptr(), self.len) };
        }
    }
}

// SAFETY: the mapping is read-only and immutable (sealed); it can be read
// from any thread and unmapped from any thread.
unsafe impl Send for Spilled {}
// SAFETY: as above: shared reads of immutable memory.
unsafe impl Sync for Spilled {}

/// A port inside a serialized Process argument: its descriptor's slot.
#[derive(Serialize, Deserialize)]
struct PortWire {
    slot: u32,
}

impl Serialize for SpillPort {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let slot = handle::export_fd(self.fd.as_raw_fd()).map_err(S::Error::custom)?;
        PortWire { slot }.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SpillPort {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = PortWire::deserialize(deserializer)?;
        let fd = handle::import_fd(wire.slot).map_err(D::Error::custom)?;
        os::fd::set_nonblocking(fd.as_raw_fd(), true).map_err(D::Error::custom)?;
        Ok(SpillPort { fd })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_goes_over_in_order() {
        let (a, b) = ports().expect("ports");
        a.send(b"first").expect("send");
        a.send(&[9u8; 100_000]).expect("send");
        assert_eq!(&*b.take(5, 10).expect("take"), b"first");
        assert_eq!(b.take(100_000, 1 << 20).expect("take").len(), 100_000);
        assert!(matches!(b.take(1, 10), Err(SpillError::Missing)));
    }

    #[test]
    fn sizes_are_checked_before_mapping() {
        let (a, b) = ports().expect("ports");
        a.send(&[1u8; 64]).expect("send");
        assert!(matches!(
            b.take(64, 63),
            Err(SpillError::TooLarge { len: 64, max: 63 })
        ));
        a.send(&[1u8; 64]).expect("send");
        assert!(matches!(
            b.take(65, 1000),
            Err(SpillError::WrongSize {
                len: 64,
                announced: 65
            })
        ));
        a.send(&[1u8; 64]).expect("send");
        // Announced within the cap, but the file itself is over it.
        assert!(matches!(
            b.take(10, 32),
            Err(SpillError::TooLarge { len: 64, max: 32 })
        ));
    }

    #[test]
    fn a_kept_memfd_is_handed_on_as_it_is_and_a_full_port_does_not_wait() {
        let (a, b) = ports().expect("ports");
        let (c, d) = ports().expect("ports");
        a.send(&[5u8; 3000]).expect("send");
        // Kept by the middle (mapped lazily), handed on, read at the end.
        let (memfd, mapped) = b.take_kept(3000, 4096).expect("take");
        assert!(mapped.iter().all(|&x| x == 5));
        c.try_hand_over(&memfd).expect("hand over");
        assert!(d.take(3000, 4096).expect("take").iter().all(|&x| x == 5));
        // Nobody takes from `d`: the port fills, and says so at once.
        let started = std::time::Instant::now();
        let stuck = loop {
            match c.try_hand_over(&memfd) {
                Ok(()) => continue,
                Err(e) => break e,
            }
        };
        assert!(matches!(stuck, SpillError::Stuck(_)), "{stuck}");
        assert!(started.elapsed() < Duration::from_secs(5));
        // What filled it is all there, in order, the same memfd each time.
        assert!(d.take(3000, 4096).expect("take").iter().all(|&x| x == 5));
    }

    #[test]
    fn an_unsealed_or_foreign_descriptor_is_refused() {
        let (a, b) = ports().expect("ports");
        // A writable memfd: its sender could change it while we read.
        let open = nix::sys::memfd::memfd_create(
            c"t",
            nix::sys::memfd::MFdFlags::MFD_CLOEXEC | nix::sys::memfd::MFdFlags::MFD_ALLOW_SEALING,
        )
        .expect("memfd");
        os::memory::set_len(&open, 64).expect("len");
        rights::send_with_fds(a.fd(), &[1], &[open.as_raw_fd()]).expect("send");
        assert!(matches!(b.take(64, 100), Err(SpillError::NotSealed(_))));
        // A pipe.
        let (r, _w) = os::fd::pipe_cloexec().expect("pipe");
        rights::send_with_fds(a.fd(), &[1], &[r.as_raw_fd()]).expect("send");
        assert!(matches!(b.take(64, 100), Err(SpillError::NotSealed(_))));
        // Nothing at all.
        rights::send_with_fds(a.fd(), &[1], &[]).expect("send");
        assert!(matches!(b.take(64, 100), Err(SpillError::Missing)));
        drop(a);
        assert!(matches!(
            b.take(64, 100),
            Err(SpillError::Disconnected | SpillError::Missing)
        ));
    }
}
