//! What the shared segment of a channel holds: a header (each side's
//! published position and sleeping flag on lines of their own, and each
//! endpoint's process record), the aux area, then the ring. Records are
//! `[len: u32][kind: u32][payload padded to 8]`; a `WRAP` record sends the
//! reader to the start of the next lap.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::os::clock::monotonic_ns;
use crate::os::{liveness, procfs};
use crate::shm::cell::ShmState;

pub(crate) const RECORD_HEADER: usize = 8;
pub(crate) const KIND_MESSAGE: u32 = 0x4d53_4721; // "!GSM"
pub(crate) const KIND_WRAP: u32 = 0x5752_4150; // "PARW"

#[repr(C, align(64))]
pub(crate) struct Line<T>(pub(crate) T);

/// One endpoint's process, as it recorded itself.
#[repr(C)]
pub(crate) struct PeerRecord {
    pid: AtomicU32,
    closed: AtomicU32,
    start_time: AtomicU64,
}

impl PeerRecord {
    /// The calling process takes this end.
    pub(crate) fn claim(&self) {
        let pid = std::process::id();
        let start = procfs::own_start_time();
        self.start_time.store(start, Ordering::Relaxed);
        self.pid.store(pid, Ordering::Relaxed);
        self.closed.store(0, Ordering::Release);
    }

    pub(crate) fn close(&self) {
        self.closed.store(1, Ordering::Release);
    }

    /// Closed by its endpoint (a cheap look: no /proc).
    pub(crate) fn closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) != 0
    }

    /// Closed, or its process is gone (or is another process by now).
    pub(crate) fn gone(&self) -> bool {
        if self.closed.load(Ordering::Acquire) != 0 {
            return true;
        }
        let pid = self.pid.load(Ordering::Acquire);
        if pid == 0 {
            return false; // not claimed yet: a child about to start
        }
        !liveness::process_alive(pid, self.start_time.load(Ordering::Acquire))
    }
}

#[repr(C)]
pub(crate) struct Header {
    /// Written once by the creator (each endpoint keeps its own copy).
    pub(crate) capacity: Line<AtomicU64>,
    /// The end of the published records: written by the sender only.
    pub(crate) tail: Line<AtomicU64>,
    /// The start of the untaken records: written by the receiver only.
    pub(crate) head: Line<AtomicU64>,
    /// Nonzero while the receiver sleeps (or is about to) on the tail.
    pub(crate) receiver_sleeping: Line<AtomicU32>,
    /// Nonzero while the sender sleeps (or is about to) on the head.
    pub(crate) sender_sleeping: Line<AtomicU32>,
    pub(crate) sender: Line<PeerRecord>,
    pub(crate) receiver: Line<PeerRecord>,
    /// When the channel was made (monotonic ns), for debugging.
    pub(crate) created: Line<AtomicU64>,
}

impl ShmState for Header {
    const TAG: u64 = 0x4950_4353_5053_4301; // "IPCSPSC" v1
}

impl Header {
    pub(crate) fn init(&self, cap: usize, _aux_bytes: usize) {
        self.capacity.0.store(cap as u64, Ordering::Relaxed);
        self.created.0.store(monotonic_ns(), Ordering::Relaxed);
        self.sender.0.claim();
        self.receiver.0.claim();
    }
}
