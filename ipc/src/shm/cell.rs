//! [`ShmCell`]: one `#[repr(C)]` state struct in its own anonymous segment,
//! behind a tag saying what it is. Every synchronization primitive and every
//! `Value`/`Array` is one of these, so all of them cross to a child the same
//! way as the segment does, and a child that is handed a segment holding
//! something else gets an error instead of misreading it.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::{SharedMemory, ShmError};

/// Bytes before the state: the tag, padded to a cache line.
pub(crate) const HEADER: usize = 64;

/// What a shared state is, for the tag check.
pub(crate) trait ShmState {
    /// A number unique to the type (and its layout version).
    const TAG: u64;
}

/// A state struct `S` in shared memory, with `extra` bytes after it.
///
/// Handles in one process share one mapping: a clone costs a reference
/// count, not a descriptor and a mapping, so it cannot fail (which lets
/// every object built on a cell be `Clone`, as Python's are shared by
/// reference). A child gets its own mapping when a handle is handed over.
pub(crate) struct ShmCell<S> {
    shm: Arc<SharedMemory>,
    _state: PhantomData<S>,
}

impl<S> Clone for ShmCell<S> {
    fn clone(&self) -> Self {
        ShmCell {
            shm: Arc::clone(&self.shm),
            _state: PhantomData,
        }
    }
}

impl<S: ShmState> ShmCell<S> {
    /// A zeroed `S` (plus `extra` zeroed bytes after it) in a fresh segment;
    /// `init` runs once on it before anyone else can see it.
    pub(crate) fn new(extra: usize, init: impl FnOnce(&S, *mut u8)) -> Result<Self, ShmError> {
        Self::new_in(
            SharedMemory::anonymous(Self::state_end() + extra)?,
            extra,
            init,
        )
    }

    /// As [`new`](Self::new), in a given (fresh, zeroed) segment.
    pub(crate) fn new_in(
        shm: SharedMemory,
        extra: usize,
        init: impl FnOnce(&S, *mut u8),
    ) -> Result<Self, ShmError> {
        let needed = Self::state_end() + extra;
        if shm.len() < needed {
            return Err(ShmError::WrongSize {
                expected: needed,
                found: shm.len(),
            });
        }
        let cell = ShmCell {
            shm: Arc::new(shm),
            _state: PhantomData,
        };
        init(cell.state(), cell.extra_ptr());
        cell.tag_word()
            .store(S::TAG, std::sync::atomic::Ordering::Release);
        Ok(cell)
    }

    /// Where the bytes after the state begin (64-byte aligned).
    pub(crate) fn extra_ptr(&self) -> *mut u8 {
        // SAFETY: state_end() is inside the mapping (checked at creation or on import).
        unsafe { self.shm.as_ptr().add(Self::state_end()) }
    }

    /// How many bytes follow the state.
    pub(crate) fn extra_len(&self) -> usize {
        self.shm.len() - Self::state_end()
    }

    fn state_end() -> usize {
        (HEADER + std::mem::size_of::<S>()).next_multiple_of(64)
    }

    /// Where the bytes after an `S` begin in its segment.
    pub(crate) fn state_offset_end() -> usize {
        Self::state_end()
    }

    fn tag_word(&self) -> &std::sync::atomic::AtomicU64 {
        // SAFETY: the mapping is page-aligned and at least HEADER bytes long;
        // the tag is only ever accessed atomically.
        unsafe { &*(self.shm.as_ptr() as *const std::sync::atomic::AtomicU64) }
    }

    pub(crate) fn state(&self) -> &S {
        // SAFETY: S lives at HEADER, which is 64-aligned in a page-aligned
        // mapping long enough for it; S is made of atomics
        // meant to be shared, so a shared reference is what every user holds.
        unsafe { &*(self.shm.as_ptr().add(HEADER) as *const S) }
    }

    /// Wraps a segment that must already hold an `S`.
    pub(crate) fn from_segment(shm: SharedMemory) -> Result<Self, ShmError> {
        if shm.len() < Self::state_end() {
            return Err(ShmError::WrongSize {
                expected: Self::state_end(),
                found: shm.len(),
            });
        }
        let cell = ShmCell {
            shm: Arc::new(shm),
            _state: PhantomData,
        };
        let tag = cell.tag_word().load(std::sync::atomic::Ordering::Acquire);
        if tag != S::TAG {
            return Err(ShmError::WrongKind);
        }
        Ok(cell)
    }

    pub(crate) fn segment(&self) -> &SharedMemory {
        &self.shm
    }

    /// The segment itself: this cell's mapping if no other handle shares
    /// it, or else a mapping of its own.
    pub(crate) fn into_segment(self) -> Result<SharedMemory, ShmError> {
        match Arc::try_unwrap(self.shm) {
            Ok(shm) => Ok(shm),
            Err(shared) => shared.try_clone(),
        }
    }
}

impl<S> std::fmt::Debug for ShmCell<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShmCell").field("shm", &self.shm).finish()
    }
}

impl<S> Serialize for ShmCell<S> {
    fn serialize<Ser: Serializer>(&self, serializer: Ser) -> Result<Ser::Ok, Ser::Error> {
        self.shm.serialize(serializer)
    }
}

impl<'de, S: ShmState> Deserialize<'de> for ShmCell<S> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let shm = SharedMemory::deserialize(deserializer)?;
        ShmCell::from_segment(shm).map_err(D::Error::custom)
    }
}
