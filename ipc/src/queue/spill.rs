//! Queue messages larger than the ring. Each travels in its own memfd,
//! sealed against writing and resizing, over a `SOCK_SEQPACKET` socketpair
//! that every handle of the queue holds both ends of; the ring carries only
//! a record with the message's tag and length, in order with the rest.
//!
//! Pairing records with descriptors: a producer draws a tag (a counter in
//! the queue's memory that only grows), hands the memfd over tagged so, and
//! only then publishes its record, all while it holds the producers' side;
//! a consumer takes a record and the descriptor with its tag while it
//! holds the consumers' side. Both are therefore in the same order, and
//! whatever a death leaves behind is told apart by its tag:
//!
//! * a producer killed after the hand-over and before the publish leaves a
//!   descriptor older than every record: the next consumer throws it away;
//! * a consumer killed after taking the descriptor and before freeing the
//!   record leaves a record whose descriptor is gone: the next consumer
//!   gets [`SpillError::Missing`] for that message, never another message's
//!   bytes.
//!
//! The kernel holds the descriptors in flight, so nothing outlives the
//! queue: once every handle is closed, unread messages are freed with the
//! socket. A descriptor is checked (a sealed memfd of exactly the announced
//! size, under the consumer's cap) before it is mapped, read-only.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::de::Error as _;
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::handle;
use crate::os::{self, rights, Deadline};
use crate::spsc::spill::{checked_message, SpillError, Spilled};

/// How many stale descriptors one take throws away at most before it
/// gives up on finding its own (each is one a dead producer left).
const MAX_STALE: usize = 4096;

/// The queue's spill socket: both ends, in every handle.
#[derive(Debug)]
pub(crate) struct SpillSocket {
    /// Producers send here...
    tx: OwnedFd,
    /// ...and consumers take from here.
    rx: OwnedFd,
}

impl SpillSocket {
    pub(crate) fn new() -> io::Result<Self> {
        let (tx, rx) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
        )?;
        Ok(SpillSocket { tx, rx })
    }

    /// Hands `memfd` over tagged `tag`, without waiting: `WouldBlock` when
    /// the socket is full (consumers have many spilled messages to take).
    pub(crate) fn hand_over(&self, memfd: &OwnedFd, tag: u64) -> io::Result<()> {
        rights::send_with_fds(
            self.tx.as_raw_fd(),
            &tag.to_le_bytes(),
            &[memfd.as_raw_fd()],
        )
        .map(|_| ())
    }

    /// Waits until the socket has room for another hand-over, or `deadline`.
    pub(crate) fn wait_for_room(&self, deadline: Deadline) -> io::Result<()> {
        os::poll::poll_one(self.tx.as_raw_fd(), libc::POLLOUT, deadline).map(|_| ())
    }

    /// The message a record tagged `tag` announced as `announced` bytes:
    /// checked and mapped read-only. Never waits (the producer handed it
    /// over before publishing the record). Descriptors older than `tag`
    /// (left by producers that died) are closed on the way.
    pub(crate) fn take(&self, tag: u64, announced: u64, max: u64) -> Result<Spilled, SpillError> {
        if announced > max {
            self.discard(tag);
            return Err(SpillError::TooLarge {
                len: announced,
                max,
            });
        }
        for _ in 0..MAX_STALE {
            match self.peek_tag()? {
                Some(Peeked::Tag(next)) if next == tag => {
                    let mut word = [0u8; 8];
                    let (n, fds) = rights::recv_with_fds(self.rx.as_raw_fd(), &mut word)?;
                    return checked_message(n, fds, announced, max);
                }
                // Ours went with a consumer that died holding it.
                Some(Peeked::Tag(next)) if next > tag => return Err(SpillError::Missing),
                Some(Peeked::Tag(_)) | Some(Peeked::Garbage) => self.drop_next()?,
                None => return Err(SpillError::Missing),
            }
        }
        Err(SpillError::Missing)
    }

    /// Closes the descriptor tagged `tag` (and older ones), unread: for a
    /// record that is thrown away.
    pub(crate) fn discard(&self, tag: u64) {
        for _ in 0..MAX_STALE {
            match self.peek_tag() {
                Ok(Some(Peeked::Tag(next))) if next > tag => return,
                Ok(Some(Peeked::Tag(next))) => {
                    if self.drop_next().is_err() || next == tag {
                        return;
                    }
                }
                Ok(Some(Peeked::Garbage)) => {
                    if self.drop_next().is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// The tag of the next message on the socket, without taking it.
    fn peek_tag(&self) -> io::Result<Option<Peeked>> {
        let mut word = [0u8; 9];
        loop {
            // SAFETY: `word` is a live buffer of the length given; recv
            // writes at most that many bytes into it.
            let n = unsafe {
                libc::recv(
                    self.rx.as_raw_fd(),
                    word.as_mut_ptr().cast(),
                    word.len(),
                    libc::MSG_PEEK | libc::MSG_DONTWAIT,
                )
            };
            if n == 8 {
                let mut tag = [0u8; 8];
                tag.copy_from_slice(&word[..8]);
                return Ok(Some(Peeked::Tag(u64::from_le_bytes(tag))));
            }
            if n >= 0 {
                return Ok(Some(Peeked::Garbage));
            }
            let e = io::Error::last_os_error();
            match e.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => return Ok(None),
                _ => return Err(e),
            }
        }
    }

    /// Takes the next message off the socket and closes what it brought.
    fn drop_next(&self) -> io::Result<()> {
        let mut word = [0u8; 8];
        rights::recv_with_fds(self.rx.as_raw_fd(), &mut word).map(drop)
    }
}

enum Peeked {
    Tag(u64),
    /// Not a message of ours (another length): thrown away.
    Garbage,
}

/// The socket inside a serialized Process argument: its two descriptors' slots.
#[derive(Serialize, Deserialize)]
struct SocketWire {
    tx: u32,
    rx: u32,
}

impl Serialize for SpillSocket {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let slot = |fd: RawFd| handle::export_fd(fd).map_err(S::Error::custom);
        SocketWire {
            tx: slot(self.tx.as_raw_fd())?,
            rx: slot(self.rx.as_raw_fd())?,
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for SpillSocket {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = SocketWire::deserialize(deserializer)?;
        let end = |slot: u32| -> Result<OwnedFd, D::Error> {
            let fd = handle::import_fd(slot).map_err(D::Error::custom)?;
            os::fd::set_nonblocking(fd.as_raw_fd(), true).map_err(D::Error::custom)?;
            Ok(fd)
        };
        Ok(SpillSocket {
            tx: end(wire.tx)?,
            rx: end(wire.rx)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memfd(bytes: &[u8]) -> OwnedFd {
        os::memory::sealed_memfd_with(c"t", bytes).expect("memfd")
    }

    #[test]
    fn a_message_is_found_by_its_tag_and_older_ones_are_thrown_away() {
        let s = SpillSocket::new().expect("socket");
        s.hand_over(&memfd(b"orphan"), 3).expect("send");
        s.hand_over(&memfd(b"mine"), 5).expect("send");
        s.hand_over(&memfd(b"next"), 6).expect("send");
        assert_eq!(&*s.take(5, 4, 100).expect("take"), b"mine");
        // The record for 6 comes after one whose descriptor was lost.
        assert!(matches!(s.take(4, 4, 100), Err(SpillError::Missing)));
        assert_eq!(&*s.take(6, 4, 100).expect("take"), b"next");
        assert!(matches!(s.take(7, 4, 100), Err(SpillError::Missing)));
    }

    #[test]
    fn garbage_on_the_socket_is_skipped_and_sizes_are_checked() {
        let s = SpillSocket::new().expect("socket");
        rights::send_with_fds(s.tx.as_raw_fd(), b"xyz", &[]).expect("send");
        s.hand_over(&memfd(&[1u8; 64]), 1).expect("send");
        assert!(matches!(
            s.take(1, 65, 1000),
            Err(SpillError::WrongSize {
                len: 64,
                announced: 65
            })
        ));
        s.hand_over(&memfd(&[1u8; 64]), 2).expect("send");
        assert!(matches!(
            s.take(2, 64, 63),
            Err(SpillError::TooLarge { len: 64, max: 63 })
        ));
        // Refused by its announcement alone, and thrown away: 3 is next.
        s.hand_over(&memfd(b"ok"), 3).expect("send");
        assert_eq!(&*s.take(3, 2, 10).expect("take"), b"ok");
    }

    #[test]
    fn discard_closes_only_up_to_its_tag() {
        let s = SpillSocket::new().expect("socket");
        s.hand_over(&memfd(b"a"), 1).expect("send");
        s.hand_over(&memfd(b"b"), 2).expect("send");
        s.hand_over(&memfd(b"c"), 3).expect("send");
        s.discard(2);
        assert_eq!(&*s.take(3, 1, 10).expect("take"), b"c");
    }
}
