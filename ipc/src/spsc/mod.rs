//! One producer, one consumer, no trust: a byte-record ring in shared
//! memory between exactly two endpoints, for a link to a process that may
//! corrupt anything it can write (a supervised worker).
//!
//! Unlike [`Queue`](crate::queue::Queue), nothing here is a lock and nothing
//! is shared by more than two endpoints, so there is nothing a corrupted
//! peer can hold, poison or make the other side write through:
//!
//! * Each side keeps its own position privately and only *publishes* it;
//!   it reads the other side's published position and checks it before
//!   any use: 8-aligned, never behind what it saw before, never more than
//!   the capacity apart from its own. Any violation is
//!   [`SpscError::Corrupted`], and the endpoint stays broken from then on.
//! * Every write goes to a position computed from the writer's private
//!   copy, inside the ring: no value in shared memory can move it.
//! * A record is copied out of the ring (its header read once) before the
//!   caller sees it, so a peer rewriting it meanwhile changes nothing.
//! * The segment is a sealed memfd (no holder can shrink it) and is kept
//!   out of forked children (`MADV_DONTFORK`).
//! * Each endpoint records its process in the header; a receiver whose
//!   sender closed or died gets [`SpscError::Disconnected`] once it has
//!   drained the ring.
//!
//! An optional *aux* area of 64-bit words after the header belongs to the
//! channel's users (the supervisor puts a worker's heartbeat there).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let (mut tx, mut rx) = outlast_ipc::spsc::channel(4096, 0)?;
//! tx.try_send(b"hello")?;
//! let mut out = Vec::new();
//! assert!(rx.try_recv_into(&mut out)?);
//! assert_eq!(out, b"hello");
//! assert!(!rx.try_recv_into(&mut out)?); // empty now
//! # Ok(())
//! # }
//! ```

pub mod doorbell;
mod end;
mod error;
mod layout;
pub mod raw;
mod receiver;
mod segment;
mod sender;
pub mod spill;
mod tail_watch;
mod wire;

pub use error::{SpscError, TrySendError};
pub use receiver::{Receiver, RecvValueError};
pub use sender::Sender;
pub(crate) use tail_watch::TailWatch;

use crate::shm::cell::ShmCell;
use crate::shm::ShmError;
use layout::Header;

/// The smallest and largest rings.
pub const MIN_CAPACITY: usize = 64;
pub const MAX_CAPACITY: usize = 1 << 30;

/// A channel whose ring holds `capacity` bytes (rounded up to a power of
/// two, at least 64), with `aux_words` 64-bit words of aux area.
pub fn channel(capacity: usize, aux_words: usize) -> Result<(Sender, Receiver), ShmError> {
    let (mut tx, mut rx) = channel_parked(capacity, aux_words, |_| {})?;
    tx.open()?;
    rx.open()?;
    Ok((tx, rx))
}

/// A channel whose two ends are *parked*: made, with `init_aux` run on
/// its aux words, but not mapped in this process. Hand either end to a
/// child (it arrives open there), and [`open`](Sender::open) the one kept
/// when it is needed: a process that forks many children stays cheap to
/// fork meanwhile.
pub fn channel_parked(
    capacity: usize,
    aux_words: usize,
    init_aux: impl FnOnce(&[std::sync::atomic::AtomicU64]),
) -> Result<(Sender, Receiver), ShmError> {
    let cap = capacity
        .clamp(MIN_CAPACITY, MAX_CAPACITY)
        .next_power_of_two();
    let aux_bytes = (aux_words * 8).next_multiple_of(64);
    let cell = ShmCell::<Header>::new(aux_bytes + cap, |h, _| {
        h.init(cap, aux_bytes);
    })?;
    init_aux(end::aux_words(&cell, aux_bytes));
    let parked = cell.into_segment()?.unmap();
    let theirs = parked.try_clone()?;
    let sender = Sender::new(segment::Segment::Parked(parked), cap, aux_bytes);
    let receiver = Receiver::new(segment::Segment::Parked(theirs), cap, aux_bytes);
    Ok((sender, receiver))
}

/// Bytes a record of `len` payload bytes takes in the ring.
pub(crate) fn record_size(len: usize) -> usize {
    layout::RECORD_HEADER + len.next_multiple_of(8)
}

/// The largest payload a ring of `cap` bytes carries.
pub(crate) fn max_payload(cap: usize) -> usize {
    cap - layout::RECORD_HEADER
}

#[cfg(test)]
mod tests;
