//! [`Sender`]: the writing end. Its own tail is private; the receiver's
//! head is read from shared memory and checked before it decides how much
//! room there is, so a corrupted head can at worst make it see the ring as
//! full, never write outside it or over records not yet taken.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::end::End;
use super::error::{SpscError, TrySendError};
use super::layout::{Header, KIND_MESSAGE, KIND_WRAP, RECORD_HEADER};
use super::segment::Segment;
use super::wire;
use super::{max_payload, record_size};
use crate::os::{futex, Deadline};
use crate::shm::ShmError;

/// The writing end of an SPSC channel. One process uses it; handing it to a
/// child (as a `Process` argument) gives it away.
pub struct Sender {
    pub(super) end: End,
    /// The end of what this sender wrote (private; published as `tail`).
    tail: u64,
    /// The receiver's head as last checked: it only ever moves forward.
    seen_head: u64,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("capacity", &self.end.cap)
            .field("tail", &self.tail)
            .field("broken", &self.end.broken)
            .finish()
    }
}

impl Sender {
    pub(super) fn new(seg: Segment, cap: usize, aux_bytes: usize) -> Self {
        Sender {
            end: End::new(seg, cap, aux_bytes),
            tail: 0,
            seen_head: 0,
        }
    }

    fn header(&self) -> Result<&Header, SpscError> {
        self.end.header()
    }

    fn ring(&self) -> Result<*mut u8, SpscError> {
        self.end.ring()
    }

    /// Maps a parked end in this process (see `channel_parked`); an open
    /// one is left as it is.
    pub fn open(&mut self) -> Result<(), ShmError> {
        self.end.open()
    }

    /// Whether the end is mapped here (not parked).
    pub fn is_open(&self) -> bool {
        self.end.is_open()
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.end.cap
    }

    /// The largest message this channel carries.
    pub fn max_message(&self) -> usize {
        max_payload(self.end.cap)
    }

    /// The aux words (shared with the receiver, who may write them too);
    /// none while parked.
    pub fn aux(&self) -> &[AtomicU64] {
        self.end.aux()
    }

    /// Why this end refuses to work, once the peer broke the channel.
    pub fn broken(&self) -> Option<&SpscError> {
        self.end.broken.as_ref()
    }

    /// The receiver's published head, checked: 8-aligned, not behind what
    /// was seen before, not ahead of our tail, not more than a ring behind it.
    fn checked_head(&mut self) -> Result<u64, SpscError> {
        if let Some(e) = &self.end.broken {
            return Err(e.clone());
        }
        let head = self.header()?.head.0.load(Ordering::Acquire);
        if head % 8 != 0
            || head < self.seen_head
            || head > self.tail
            || self.tail - head > self.end.cap as u64
        {
            let e = SpscError::Corrupted(format!(
                "the receiver's head {head} is impossible (tail {}, last head {}, ring {})",
                self.tail, self.seen_head, self.end.cap
            ));
            self.end.broken = Some(e.clone());
            return Err(e);
        }
        self.seen_head = head;
        Ok(head)
    }

    /// Whether a message of `len` bytes fits in the ring now. Only this
    /// end adds records, so room seen here stays until it sends: what a
    /// caller needs before it hands over something the record announces.
    pub fn has_room_for(&mut self, len: usize) -> Result<bool, SpscError> {
        if len > self.max_message() {
            return Ok(false);
        }
        let head = self.checked_head()?;
        let need = record_size(len);
        let at = (self.tail as usize) & (self.end.cap - 1);
        let contiguous = self.end.cap - at;
        let free = self.end.cap - (self.tail - head) as usize;
        Ok(if need <= contiguous {
            free >= need
        } else {
            free >= contiguous + need
        })
    }

    /// Writes one record at our tail if it fits; false if the ring is full.
    /// A record that must start a new lap and cannot fit behind this lap's
    /// end (one larger than half the ring, say) would never fit where it
    /// stands, even in an empty ring: the lap's end is skipped now, with a
    /// wrap record of its own (published with the next publish), and the
    /// record waits for room at the start.
    fn place(&mut self, ring: *mut u8, message: &[u8], head: u64) -> bool {
        let need = record_size(message.len());
        loop {
            let at = (self.tail as usize) & (self.end.cap - 1);
            let contiguous = self.end.cap - at;
            let free = self.end.cap - (self.tail - head) as usize;
            if need <= contiguous {
                if free < need {
                    return false;
                }
                // SAFETY: `at + need <= cap`: inside the ring, and free.
                unsafe { write_record(ring, at, message) };
                self.tail += need as u64;
                return true;
            }
            if free < contiguous {
                return false;
            }
            // SAFETY: `at` is 8-aligned with `contiguous >= 8` bytes left,
            // all of them free.
            unsafe { write_header(ring, at, 0, KIND_WRAP) };
            self.tail += contiguous as u64;
            // Now at the start, where `need <= cap` bytes are contiguous.
        }
    }

    /// Makes what was placed visible and wakes a sleeping receiver.
    fn publish(&self) {
        let Ok(h) = self.header() else { return };
        h.tail.0.store(self.tail, Ordering::Release);
        // Dekker with the receiver: our tail before its flag, its flag before
        // its look at our tail.
        std::sync::atomic::fence(Ordering::SeqCst);
        if futex::owes_wake(&h.receiver_sleeping.0) {
            #[cfg(test)]
            super::tests::RECEIVER_WAKES.with(|n| n.set(n.get() + 1));
            futex::wake_all(&h.receiver_sleeping.0);
        }
    }

    /// Sends one message if there is room now.
    pub fn try_send(&mut self, message: &[u8]) -> Result<(), TrySendError> {
        match self.try_send_many(&[message])? {
            1 => Ok(()),
            _ => Err(TrySendError::Full),
        }
    }

    /// Sends as many of `messages` as fit now, published at once; how many.
    pub fn try_send_many(&mut self, messages: &[&[u8]]) -> Result<usize, TrySendError> {
        let max = self.max_message();
        if let Some(big) = messages.iter().find(|m| m.len() > max) {
            return Err(TrySendError::TooLarge {
                len: big.len(),
                max,
            });
        }
        let head = self.checked_head()?;
        let ring = self.ring()?;
        let tail = self.tail;
        let mut sent = 0;
        for message in messages {
            if !self.place(ring, message, head) {
                break;
            }
            sent += 1;
        }
        // Also a lap's end skipped with nothing sent: the receiver must
        // take it to free the room the record waits for.
        if self.tail != tail {
            self.publish();
        }
        Ok(sent)
    }

    /// Sends one message, waiting at most `timeout` for room.
    pub fn send_timeout(&mut self, message: &[u8], timeout: Duration) -> Result<(), TrySendError> {
        let deadline = Deadline::after(timeout);
        // /proc is read only after a slice of waiting saw no room.
        let mut check_liveness = false;
        loop {
            match self.try_send(message) {
                Err(TrySendError::Full) => {}
                other => return other,
            }
            if deadline.passed() {
                return Err(TrySendError::Full);
            }
            let receiver = &self.header()?.receiver.0;
            if receiver.closed() || (check_liveness && receiver.gone()) {
                return Err(SpscError::Disconnected.into());
            }
            let moved = self.wait_for_room(deadline);
            check_liveness = self.end.liveness_due(!moved);
        }
    }

    /// Encodes `value` (postcard) and sends it, waiting at most `timeout`.
    pub fn send_value_timeout<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
        timeout: Duration,
    ) -> Result<(), TrySendError> {
        let mut buf = std::mem::take(&mut self.end.scratch);
        buf.clear();
        // (The codec: postcard's `to_extend` appends a byte at a time in
        // a debug build.)
        crate::codec::encode_append(value, &mut buf)
            .map_err(|e| TrySendError::Encode(e.to_string()))?;
        let result = self.send_timeout(&buf, timeout);
        self.end.scratch = buf;
        result
    }

    /// Waits for the receiver's head to move; true if it did.
    fn wait_for_room(&mut self, deadline: Deadline) -> bool {
        let Ok(h) = self.header() else { return false };
        let seen = h.head.0.load(Ordering::Acquire);
        self.end
            .wait_for_move(|h| &h.head.0, |h| &h.sender_sleeping.0, seen, deadline)
    }
}

/// Writes a record header at `at`.
///
/// # Safety
/// `at` is 8-aligned with 8 bytes inside the ring at `ring`.
unsafe fn write_header(ring: *mut u8, at: usize, len: u32, kind: u32) {
    let word = u64::from(len) | (u64::from(kind) << 32);
    // SAFETY: per the caller; one 8-byte store, so a reader sees the
    // length and the kind of one write.
    unsafe { (ring.add(at) as *mut u64).write_volatile(word) };
}

/// Writes `message` as a record at `at`.
///
/// # Safety
/// `at` is 8-aligned and `record_size(message.len())` bytes from it are
/// inside the ring at `ring`.
unsafe fn write_record(ring: *mut u8, at: usize, message: &[u8]) {
    // SAFETY: per the caller.
    unsafe {
        write_header(ring, at, message.len() as u32, KIND_MESSAGE);
        std::ptr::copy_nonoverlapping(
            message.as_ptr(),
            ring.add(at + RECORD_HEADER),
            message.len(),
        );
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        if self.end.handed_over.load(Ordering::Acquire) {
            return;
        }
        if let Ok(h) = self.header() {
            h.sender.0.close();
            // A receiver asleep learns at once (cleared first: one about to
            // sleep does not).
            h.receiver_sleeping.0.store(0, Ordering::SeqCst);
            futex::wake_all(&h.receiver_sleeping.0);
        }
    }
}

impl Serialize for Sender {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        wire::serialize(&self.end, self.tail, self.seen_head, serializer)
    }
}

impl<'de> Deserialize<'de> for Sender {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let (end, tail, seen_head) = wire::deserialize(deserializer, |h| h.sender.0.claim())?;
        Ok(Sender {
            end,
            tail,
            seen_head,
        })
    }
}
