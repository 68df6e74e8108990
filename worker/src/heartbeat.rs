//! Heartbeat slots in shared memory: one cache line per worker, written by the
//! worker with plain atomic stores and read by the supervisor without any
//! message. A worker that stops beating (stopped, hung, spinning in a task)
//! is seen by its slot's last beat, gunicorn's timeout without a file per worker.
//!
//! The words are independent atomics, so a worker SIGKILLed mid-update
//! leaves each word either old or new: never a torn value.

use std::sync::atomic::{AtomicU64, Ordering};

use ipc::shm::{SharedMemory, ShmError};

/// Bytes per slot: one cache line, so workers never share one.
pub const SLOT_BYTES: usize = 64;

/// What a worker is doing, as its slot says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkerState {
    Starting = 0,
    Idle = 1,
    Busy = 2,
    Stopping = 3,
}

impl WorkerState {
    fn from_word(word: u64) -> Self {
        match word {
            1 => WorkerState::Idle,
            2 => WorkerState::Busy,
            3 => WorkerState::Stopping,
            _ => WorkerState::Starting,
        }
    }
}

// Word offsets inside a slot.
const PID: usize = 0;
const STATE: usize = 1;
/// Task id + 1 while busy, 0 otherwise.
const CURRENT: usize = 2;
const TASKS_DONE: usize = 3;
const LAST_BEAT_NS: usize = 4;

/// A snapshot of one slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Beat {
    pub pid: u32,
    pub state: WorkerState,
    /// The task running now, if any.
    pub current_task: Option<u64>,
    pub tasks_done: u64,
    /// `CLOCK_MONOTONIC_COARSE` nanoseconds of the last beat (same clock in every process).
    pub last_beat_ns: u64,
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: comparable across processes on
/// one machine, and a few times cheaper than the precise clock, which matters
/// when a worker beats between tasks of a microsecond. Its resolution (a few
/// milliseconds) is far below any heartbeat timeout.
pub fn monotonic_ns() -> u64 {
    ipc::os::clock::coarse_monotonic_ns()
}

/// A table of heartbeat slots in one shared segment.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct HeartbeatTable {
    shm: SharedMemory,
}

impl HeartbeatTable {
    /// Room for `slots` workers.
    pub fn new(slots: usize) -> Result<Self, ShmError> {
        Ok(HeartbeatTable {
            shm: SharedMemory::anonymous(slots.max(1) * SLOT_BYTES)?,
        })
    }

    pub fn slots(&self) -> usize {
        self.shm.len() / SLOT_BYTES
    }

    /// A second handle on the same slots (for handing to a worker).
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(HeartbeatTable {
            shm: self.shm.try_clone()?,
        })
    }

    /// The word `word` of slot `slot`; `None` past the end of the table.
    fn word(&self, slot: usize, word: usize) -> Option<&AtomicU64> {
        if slot >= self.slots() || word >= SLOT_BYTES / 8 {
            return None;
        }
        let offset = slot * SLOT_BYTES + word * 8;
        // SAFETY: offset + 8 is inside the mapping (checked above); the mapping
        // is page-aligned so the offset is 8-aligned; every process touches
        // these bytes only through atomics.
        Some(unsafe { &*(self.shm.as_ptr().add(offset) as *const AtomicU64) })
    }

    fn store(&self, slot: usize, word: usize, value: u64) {
        if let Some(w) = self.word(slot, word) {
            w.store(value, Ordering::Release);
        }
    }

    fn load(&self, slot: usize, word: usize) -> u64 {
        self.word(slot, word)
            .map_or(0, |w| w.load(Ordering::Acquire))
    }

    /// Supervisor side: clears a slot for a worker about to start, dated now.
    pub fn reset(&self, slot: usize) {
        self.store(slot, PID, 0);
        self.store(slot, STATE, WorkerState::Starting as u64);
        self.store(slot, CURRENT, 0);
        self.store(slot, TASKS_DONE, 0);
        self.store(slot, LAST_BEAT_NS, monotonic_ns());
    }

    /// Worker side: records a beat, with what the worker is doing.
    pub fn beat(&self, slot: usize, state: WorkerState, current_task: Option<u64>) {
        self.store(slot, STATE, state as u64);
        self.store(
            slot,
            CURRENT,
            current_task.map_or(0, |id| id.saturating_add(1)),
        );
        self.touch(slot);
    }

    /// Worker side: only moves the last-beat time (cheap enough per sieve segment).
    pub fn touch(&self, slot: usize) {
        self.store(slot, LAST_BEAT_NS, monotonic_ns());
    }

    pub fn set_pid(&self, slot: usize, pid: u32) {
        self.store(slot, PID, u64::from(pid));
    }

    pub fn add_done(&self, slot: usize, n: u64) {
        if let Some(w) = self.word(slot, TASKS_DONE) {
            w.fetch_add(n, Ordering::Release);
        }
    }

    /// A snapshot of a slot.
    pub fn read(&self, slot: usize) -> Beat {
        let current = self.load(slot, CURRENT);
        Beat {
            pid: self.load(slot, PID) as u32,
            state: WorkerState::from_word(self.load(slot, STATE)),
            current_task: current.checked_sub(1),
            tasks_done: self.load(slot, TASKS_DONE),
            last_beat_ns: self.load(slot, LAST_BEAT_NS),
        }
    }
}
