//! A large value as a sealed memfd: how a value of a megabyte or more
//! travels between a local client and its manager (on the lane's spill
//! port, [`crate::spsc::spill`]), and how the manager keeps it. The bytes
//! are written once, by whoever encodes them, and then only mapped: the
//! manager stores the memfd it was handed and hands the same one to each
//! `get`, where a 100 MB value crossed the socket twice, with a copy into
//! and out of each side's buffers.
//!
//! Trust: a memfd taken from a peer is checked before it is mapped (sealed
//! against writing and resizing, exactly the announced size, under the
//! cap), so it cannot change or shrink under a reader.
//!
//! Each kept value holds a descriptor. The manager keeps at most
//! [`MAX_KEPT`] of them; past that, a value handed over is copied into
//! the manager's memory, as a value that came over the socket is.

use std::ops::Deref;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::spsc::spill::{SpillError, SpillPort, Spilled};

/// Values from this size on travel sealed (far above what a lane carries,
/// so they would have gone on the socket).
pub(super) const SEALED_FROM: usize = 1 << 20;

/// What a sealed value's memfd is called (in `/proc/<pid>/fd` and `maps`).
pub(super) const MEMFD_NAME: &std::ffi::CStr = c"outlast-manager-value";

/// The most sealed values one process keeps at once (each is an open
/// descriptor; a process's soft limit is often 1,024).
pub(super) const MAX_KEPT: usize = 256;

/// Sealed values alive in this process.
static KEPT: AtomicUsize = AtomicUsize::new(0);

/// A value's encoded bytes in a sealed memfd, mapped read-only.
pub struct SealedValue {
    memfd: OwnedFd,
    bytes: Spilled,
}

impl SealedValue {
    /// The next value `port`'s peer handed over, announced as `len`
    /// bytes, checked against `max`, mapped (its pages come as they are
    /// read: the manager may never read it, and a client decodes a large
    /// awaited value on a thread of its own).
    pub(super) fn taken(port: &SpillPort, len: u64, max: u64) -> Result<SealedValue, SpillError> {
        let (memfd, bytes) = port.take_kept(len, max)?;
        KEPT.fetch_add(1, Ordering::Relaxed);
        Ok(SealedValue { memfd, bytes })
    }

    /// A memfd of ours, sealed, of `len` bytes (a value encoded into it).
    pub(super) fn ours(memfd: OwnedFd, len: usize) -> Result<SealedValue, SpillError> {
        let bytes = Spilled::map_lazily(&memfd, len)?;
        KEPT.fetch_add(1, Ordering::Relaxed);
        Ok(SealedValue { memfd, bytes })
    }

    /// Hands this value to `port`'s peer, waiting a while for room.
    pub(super) fn hand_over(&self, port: &SpillPort) -> Result<(), SpillError> {
        port.hand_over(&self.memfd)
    }

    /// Hands this value to `port`'s peer without waiting.
    pub(super) fn try_hand_over(&self, port: &SpillPort) -> Result<(), SpillError> {
        port.try_hand_over(&self.memfd)
    }

    /// Whether this process keeps as many sealed values as it should.
    pub(super) fn at_limit() -> bool {
        KEPT.load(Ordering::Relaxed) >= MAX_KEPT
    }
}

impl Deref for SealedValue {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for SealedValue {
    fn drop(&mut self) {
        KEPT.fetch_sub(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for SealedValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedValue")
            .field("len", &self.bytes.len())
            .finish()
    }
}
