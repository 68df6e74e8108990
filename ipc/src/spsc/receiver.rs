//! [`Receiver`]: the reading end. Its own head is private; the sender's
//! tail is read from shared memory and checked, and each record's header
//! is read once and checked against the bytes the tail vouches for before
//! the record is copied out.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::end::End;
use super::error::SpscError;
use super::layout::{Header, KIND_MESSAGE, KIND_WRAP, RECORD_HEADER};
use super::record_size;
use super::segment::Segment;
use super::wire;
use crate::codec::DecodeError;
use crate::os::{futex, Deadline};
use crate::shm::ShmError;

/// The reading end of an SPSC channel. One process uses it; handing it to
/// a child (as a `Process` argument) gives it away.
pub struct Receiver {
    end: End,
    /// The start of what this receiver has not taken (private; published).
    head: u64,
    /// The sender's tail as last checked: it only ever moves forward.
    seen_tail: u64,
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("capacity", &self.end.cap)
            .field("head", &self.head)
            .field("broken", &self.end.broken)
            .finish()
    }
}

/// Why a typed receive failed.
#[derive(Debug, thiserror::Error)]
pub enum RecvValueError {
    #[error(transparent)]
    Channel(#[from] SpscError),
    /// A record arrived but is no value of the type asked for.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

impl Receiver {
    pub(super) fn new(seg: Segment, cap: usize, aux_bytes: usize) -> Self {
        Receiver {
            end: End::new(seg, cap, aux_bytes),
            head: 0,
            seen_tail: 0,
        }
    }

    fn header(&self) -> Result<&Header, SpscError> {
        self.end.header()
    }

    fn ring(&self) -> Result<*const u8, SpscError> {
        self.end.ring().map(|p| p as *const u8)
    }

    /// Maps a parked end in this process; an open one is left as it is.
    pub fn open(&mut self) -> Result<(), ShmError> {
        self.end.open()
    }

    /// Whether the end is mapped here (not parked).
    pub fn is_open(&self) -> bool {
        self.end.is_open()
    }

    pub fn capacity(&self) -> usize {
        self.end.cap
    }

    /// The aux words (shared with the sender, who may write them too);
    /// none while parked.
    pub fn aux(&self) -> &[AtomicU64] {
        self.end.aux()
    }

    /// Waits spin up to `bound` before they sleep, rather than 20 us: for
    /// a peer whose answers take longer than that but less than a
    /// sleeper's wake-up (the spin is still learnt from recent waits, and
    /// skipped while the CPUs are oversubscribed).
    pub(crate) fn set_spin_bound(&mut self, bound: std::time::Duration) {
        self.end.set_spin_bound(bound);
    }

    /// The sender's published tail as it is now (unchecked): moves with
    /// every record published, for a future's watch to compare.
    pub(crate) fn tail_epoch(&self) -> u64 {
        self.header()
            .map_or(0, |h| h.tail.0.load(Ordering::Acquire))
    }

    /// This ring for a watcher thread to sleep on (see [`TailWatch`](super::TailWatch)).
    pub(crate) fn tail_watch(&self) -> Result<super::TailWatch, SpscError> {
        Ok(super::TailWatch {
            cell: self.end.seg.cell()?.clone(),
        })
    }

    /// Whether the sender closed its end or its process is gone (`look`:
    /// read `/proc` for its liveness, microseconds; else only the cheap
    /// closed flag).
    pub(crate) fn sender_gone(&self, look: bool) -> bool {
        self.header().map_or(true, |h| match look {
            true => h.sender.0.gone(),
            false => h.sender.0.closed(),
        })
    }

    /// Why this end refuses to work, once the peer broke the channel.
    pub fn broken(&self) -> Option<&SpscError> {
        self.end.broken.as_ref()
    }

    fn corrupted(&mut self, what: String) -> SpscError {
        let e = SpscError::Corrupted(what);
        self.end.broken = Some(e.clone());
        e
    }

    /// The sender's published tail, checked: 8-aligned, not behind what was
    /// seen before, not behind our head, at most a ring ahead of it.
    fn checked_tail(&mut self) -> Result<u64, SpscError> {
        if let Some(e) = &self.end.broken {
            return Err(e.clone());
        }
        let tail = self.header()?.tail.0.load(Ordering::Acquire);
        if tail % 8 != 0
            || tail < self.seen_tail
            || tail < self.head
            || tail - self.head > self.end.cap as u64
        {
            return Err(self.corrupted(format!(
                "the sender's tail {tail} is impossible (head {}, last tail {}, ring {})",
                self.head, self.seen_tail, self.end.cap
            )));
        }
        self.seen_tail = tail;
        Ok(tail)
    }

    /// The next record's (payload offset, length, new head), if one is there.
    fn next_record(&mut self) -> Result<Option<(usize, usize, u64)>, SpscError> {
        let ring = self.ring()?;
        loop {
            if self.head == self.seen_tail {
                self.checked_tail()?;
                if self.head == self.seen_tail {
                    return Ok(None);
                }
            }
            let at = (self.head as usize) & (self.end.cap - 1);
            // SAFETY: `at` is 8-aligned (heads only move by multiples of 8)
            // and the ring's size is a multiple of 8: 8 bytes are inside.
            // One 8-byte load: the length is read once.
            let word = unsafe { (ring.add(at) as *const u64).read_volatile() };
            let (len, kind) = (word as u32 as usize, (word >> 32) as u32);
            let contiguous = self.end.cap - at;
            match kind {
                KIND_WRAP => {
                    if self.head + contiguous as u64 > self.seen_tail {
                        return Err(self.corrupted(format!(
                            "a wrap record at {at} runs past the published tail"
                        )));
                    }
                    self.head += contiguous as u64;
                }
                KIND_MESSAGE => {
                    let need = record_size(len);
                    if len > self.end.cap
                        || need > contiguous
                        || self.head + need as u64 > self.seen_tail
                    {
                        return Err(self.corrupted(format!(
                            "a record of {len} bytes at {at} runs past the ring or the tail"
                        )));
                    }
                    return Ok(Some((at + RECORD_HEADER, len, self.head + need as u64)));
                }
                other => {
                    return Err(
                        self.corrupted(format!("a record of unknown kind {other:#x} at {at}"))
                    )
                }
            }
        }
    }

    /// Copies the payload at `offset` out of the ring into `out`.
    fn copy_out(&self, offset: usize, len: usize, out: &mut Vec<u8>) -> Result<(), SpscError> {
        out.clear();
        // SAFETY: `offset + len` is inside the ring (checked in next_record).
        let bytes = unsafe { std::slice::from_raw_parts(self.ring()?.add(offset), len) };
        out.extend_from_slice(bytes);
        Ok(())
    }

    /// Makes the taken room free for the sender and wakes it if it sleeps.
    fn publish_head(&self) {
        let Ok(h) = self.header() else { return };
        h.head.0.store(self.head, Ordering::Release);
        std::sync::atomic::fence(Ordering::SeqCst);
        if futex::owes_wake(&h.sender_sleeping.0) {
            futex::wake_all(&h.sender_sleeping.0);
        }
    }

    /// Takes one message into `out` if one is there; false if empty.
    pub fn try_recv_into(&mut self, out: &mut Vec<u8>) -> Result<bool, SpscError> {
        let Some((offset, len, next)) = self.next_record()? else {
            // Wrap records taken on the way free their room too.
            if self.header()?.head.0.load(Ordering::Relaxed) != self.head {
                self.publish_head();
            }
            return Ok(false);
        };
        self.copy_out(offset, len, out)?;
        self.head = next;
        self.publish_head();
        Ok(true)
    }

    /// Takes one message and shows it to `read` where it lies in the ring,
    /// without copying it out; `None` if empty. Only for a receiver that
    /// trusts its sender: a hostile sender could change the bytes while
    /// `read` looks at them (the record's bounds are checked either way).
    pub fn try_recv_in_place<R>(
        &mut self,
        read: impl FnOnce(&[u8]) -> R,
    ) -> Result<Option<R>, SpscError> {
        let Some((offset, len, next)) = self.next_record()? else {
            if self.header()?.head.0.load(Ordering::Relaxed) != self.head {
                self.publish_head();
            }
            return Ok(None);
        };
        // SAFETY: `offset + len` is inside the ring (checked in next_record),
        // and the sender does not reuse it before our head moves past it.
        let bytes = unsafe { std::slice::from_raw_parts(self.ring()?.add(offset), len) };
        let out = read(bytes);
        self.head = next;
        self.publish_head();
        Ok(Some(out))
    }

    /// Takes up to `max` messages, each copied into `buf` and shown to
    /// `each`, then frees their room at once; how many.
    pub fn drain(
        &mut self,
        max: usize,
        buf: &mut Vec<u8>,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, SpscError> {
        let start = self.head;
        let mut taken = 0;
        let result = loop {
            if taken >= max {
                break Ok(());
            }
            match self.next_record() {
                Ok(Some((offset, len, next))) => {
                    if let Err(e) = self.copy_out(offset, len, buf) {
                        break Err(e);
                    }
                    self.head = next;
                    taken += 1;
                    each(buf);
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        if self.head != start {
            self.publish_head();
        }
        result.map(|()| taken)
    }

    /// Whether a record may be waiting (without taking it).
    pub fn has_pending(&self) -> bool {
        self.end.broken.is_none()
            && self
                .header()
                .is_ok_and(|h| h.tail.0.load(Ordering::Acquire) != self.head)
    }

    /// Takes one message into `out`, waiting at most `timeout`: `Ok(false)`
    /// if none came; `Disconnected` once the sender closed or died and the
    /// ring is empty.
    pub fn recv_timeout_into(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<bool, SpscError> {
        let deadline = Deadline::after(timeout);
        // Whether the sender lives is read from /proc (microseconds): only
        // after a slice of waiting found nothing, never on a quick look.
        let mut check_liveness = false;
        loop {
            if self.try_recv_into(out)? {
                return Ok(true);
            }
            let sender = &self.header()?.sender.0;
            if sender.closed() || (check_liveness && sender.gone()) {
                // Anything it published before it went is taken first.
                return match self.try_recv_into(out)? {
                    true => Ok(true),
                    false => Err(SpscError::Disconnected),
                };
            }
            if deadline.passed() {
                return Ok(false);
            }
            let moved = self.wait_for_records(deadline);
            check_liveness = self.end.liveness_due(!moved);
        }
    }

    /// Takes one value (postcard), waiting at most `timeout`; `Ok(None)` if none came.
    pub fn recv_value_timeout<T: DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<T>, RecvValueError> {
        let mut buf = std::mem::take(&mut self.end.scratch);
        let got = self.recv_timeout_into(&mut buf, timeout);
        let out = match got {
            Ok(true) => crate::codec::decode_payload(&buf)
                .map(Some)
                .map_err(RecvValueError::from),
            Ok(false) => Ok(None),
            Err(e) => Err(e.into()),
        };
        self.end.scratch = buf;
        out
    }

    /// Takes one value (postcard), decoded where it lies in the ring,
    /// waiting at most `timeout`; `Ok(None)` if none came. For a receiver
    /// that trusts its sender (see [`try_recv_in_place`](Self::try_recv_in_place)).
    pub fn recv_value_in_place_timeout<T: DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<T>, RecvValueError> {
        match self.recv_in_place_timeout(timeout, crate::codec::decode_payload::<T>)? {
            Some(value) => Ok(Some(value?)),
            None => Ok(None),
        }
    }

    /// Takes one message and shows it to `read` where it lies in the ring
    /// (a decoder of the caller's), waiting at most `timeout`; `Ok(None)`
    /// if none came. For a receiver that trusts its sender (see
    /// [`try_recv_in_place`](Self::try_recv_in_place)).
    pub fn recv_in_place_timeout<R>(
        &mut self,
        timeout: Duration,
        mut read: impl FnMut(&[u8]) -> R,
    ) -> Result<Option<R>, SpscError> {
        let deadline = Deadline::after(timeout);
        let mut check_liveness = false;
        loop {
            if let Some(value) = self.try_recv_in_place(&mut read)? {
                return Ok(Some(value));
            }
            let sender = &self.header()?.sender.0;
            if sender.closed() || (check_liveness && sender.gone()) {
                return match self.try_recv_in_place(&mut read)? {
                    Some(value) => Ok(Some(value)),
                    None => Err(SpscError::Disconnected),
                };
            }
            if deadline.passed() {
                return Ok(None);
            }
            let moved = self.wait_for_records(deadline);
            check_liveness = self.end.liveness_due(!moved);
        }
    }

    /// Waits for the sender's tail to move; true if it did.
    fn wait_for_records(&mut self, deadline: Deadline) -> bool {
        let seen = self.head;
        self.end
            .wait_for_move(|h| &h.tail.0, |h| &h.receiver_sleeping.0, seen, deadline)
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if self.end.handed_over.load(Ordering::Acquire) {
            return;
        }
        if let Ok(h) = self.header() {
            h.receiver.0.close();
            h.sender_sleeping.0.store(0, Ordering::SeqCst);
            futex::wake_all(&h.sender_sleeping.0);
        }
    }
}

impl Serialize for Receiver {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        wire::serialize(&self.end, self.head, self.seen_tail, serializer)
    }
}

impl<'de> Deserialize<'de> for Receiver {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (end, head, seen_tail) = wire::deserialize(deserializer, |h| h.receiver.0.claim())?;
        Ok(Receiver {
            end,
            head,
            seen_tail,
        })
    }
}

impl crate::wait::Waitable for Receiver {
    fn ready_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    fn ready_now(&self) -> bool {
        self.has_pending()
    }
}
