//! [`RawChannel`]: the words of a channel's segment, seen through any
//! mapping of it, following none of the endpoints' rules. For tools that
//! inspect a link, and for tests that play a peer corrupting it.

use std::sync::atomic::AtomicU64;

use super::layout::Header;
use crate::shm::cell::{ShmCell, ShmState};
use crate::shm::SharedMemory;

/// A raw view of a channel segment.
pub struct RawChannel<'a> {
    shm: &'a SharedMemory,
    header: &'a Header,
    extra: usize,
    cap: usize,
}

impl<'a> RawChannel<'a> {
    /// A view of `shm` if it holds a channel (its tag says so).
    pub fn new(shm: &'a SharedMemory) -> Option<Self> {
        let extra = ShmCell::<Header>::state_offset_end();
        if shm.len() <= extra {
            return None;
        }
        // SAFETY: the mapping is page-aligned and longer than the header;
        // the tag word is only read atomically.
        let tag = unsafe { &*(shm.as_ptr() as *const AtomicU64) }
            .load(std::sync::atomic::Ordering::Acquire);
        if tag != Header::TAG {
            return None;
        }
        // SAFETY: the header lives at the cell's state offset, 64-aligned
        // inside the mapping; it is made of atomics only.
        let header = unsafe { &*(shm.as_ptr().add(crate::shm::cell::HEADER) as *const Header) };
        let room = shm.len() - extra;
        // The ring is the largest power of two that fits after the aux area.
        let cap = if room.is_power_of_two() {
            room
        } else {
            (room / 2).next_power_of_two()
        };
        Some(RawChannel {
            shm,
            header,
            extra,
            cap,
        })
    }

    /// The ring's size in bytes.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Words of aux area (0 for a channel without one).
    pub fn aux_len(&self) -> usize {
        (self.shm.len() - self.extra - self.cap) / 8
    }

    /// The sender's published tail.
    pub fn tail(&self) -> &AtomicU64 {
        &self.header.tail.0
    }

    /// The receiver's published head.
    pub fn head(&self) -> &AtomicU64 {
        &self.header.head.0
    }

    /// The aux words.
    pub fn aux(&self) -> &[AtomicU64] {
        // SAFETY: the aux area follows the header inside the mapping,
        // 64-aligned, `aux_len` words long; atomics only.
        unsafe {
            std::slice::from_raw_parts(
                self.shm.as_ptr().add(self.extra) as *const AtomicU64,
                self.aux_len(),
            )
        }
    }

    /// The ring, as 64-bit words.
    pub fn ring(&self) -> &[AtomicU64] {
        // SAFETY: the ring is the last `cap` bytes of the mapping, 64-aligned.
        unsafe {
            std::slice::from_raw_parts(
                self.shm.as_ptr().add(self.shm.len() - self.cap) as *const AtomicU64,
                self.cap / 8,
            )
        }
    }

    /// The whole segment as bytes, for writing garbage over it.
    pub fn bytes(&self) -> *mut u8 {
        self.shm.as_ptr()
    }

    pub fn len(&self) -> usize {
        self.shm.len()
    }

    pub fn is_empty(&self) -> bool {
        false
    }

    /// The record header a sender writes: `len` payload bytes, a message.
    pub fn message_header(len: u32) -> u64 {
        u64::from(len) | (u64::from(super::layout::KIND_MESSAGE) << 32)
    }
}
