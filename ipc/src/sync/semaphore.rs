//! [`Semaphore`] and [`BoundedSemaphore`]: a counter in shared memory, waited
//! on with a futex. A waiter that dies leaves nothing behind. A holder that
//! dies does not give its unit back (a semaphore has no owner, as in
//! Python); use a [`Lock`](super::Lock) when that matters.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let sem = outlast_ipc::sync::BoundedSemaphore::new(1)?;
//! assert!(sem.try_acquire());
//! assert!(!sem.try_acquire());
//! sem.release()?;
//! assert!(sem.release().is_err()); // above its bound
//! # Ok(())
//! # }
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::ReleaseError;
use crate::os::futex;
use crate::os::Deadline;
use crate::shm::cell::{ShmCell, ShmState};
use crate::shm::ShmError;
use crate::watch::LazyWatch;

#[repr(C)]
pub(crate) struct SemaphoreState {
    pub(super) value: AtomicU32,
    /// 0: unbounded.
    bound: AtomicU32,
    /// Watch threads (of `acquire_async` futures, in any process) asleep
    /// on `value`, or about to be. While there are any, a release wakes
    /// every sleeper: one woken watch thread whose futures were all
    /// dropped would otherwise take the only wake, and a blocking
    /// acquirer would sleep on beside a free unit.
    pub(super) watchers: AtomicU32,
}

impl ShmState for SemaphoreState {
    const TAG: u64 = 0x4950_4353_454d_4102; // "IPCSEMA" v2
}

/// The shared part of both semaphores.
#[derive(Clone, Serialize, Deserialize)]
pub(super) struct Counter {
    pub(super) cell: ShmCell<SemaphoreState>,
    /// The thread that `acquire_async` futures leave their wakers with.
    #[serde(skip)]
    pub(super) watch: Arc<LazyWatch>,
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter")
            .field("cell", &self.cell)
            .finish_non_exhaustive()
    }
}

impl Counter {
    fn new(value: u32, bound: u32) -> Result<Self, ShmError> {
        let cell = ShmCell::<SemaphoreState>::new(0, |s, _| {
            s.value.store(value, Ordering::Release);
            s.bound.store(bound, Ordering::Release);
        })?;
        Ok(Counter {
            cell,
            watch: Arc::default(),
        })
    }

    pub(super) fn acquire(&self, deadline: Deadline) -> bool {
        let value = &self.cell.state().value;
        loop {
            let v = value.load(Ordering::Acquire);
            if v > 0 {
                if value
                    .compare_exchange_weak(v, v - 1, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return true;
                }
                continue;
            }
            if deadline.passed()
                || !futex::wait(value, 0, deadline) && value.load(Ordering::Acquire) == 0
            {
                return false;
            }
        }
    }

    fn release(&self) -> Result<(), ReleaseError> {
        let state = self.cell.state();
        let bound = state.bound.load(Ordering::Acquire);
        let mut v = state.value.load(Ordering::Acquire);
        loop {
            if bound > 0 && v >= bound {
                return Err(ReleaseError::OverBound { bound });
            }
            match state
                .value
                .compare_exchange_weak(v, v + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => break,
                Err(now) => v = now,
            }
        }
        // After the new value, in one total order with a watch thread's
        // count before its sleep: either the count is seen here, or the
        // watch thread sees the new value and does not sleep.
        match state.watchers.load(Ordering::SeqCst) {
            0 => futex::wake(&state.value, 1),
            _ => futex::wake_all(&state.value),
        }
        Ok(())
    }

    fn value(&self) -> u32 {
        self.cell.state().value.load(Ordering::Acquire)
    }
}

macro_rules! define_semaphore {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Serialize, Deserialize)]
        pub struct $name {
            counter: Counter,
        }

        impl $name {
            /// Waits for a unit.
            pub fn acquire(&self) {
                self.counter.acquire(Deadline::never());
            }

            /// Takes a unit if one is free now.
            pub fn try_acquire(&self) -> bool {
                self.counter.acquire(Deadline::now())
            }

            /// Waits at most `timeout` for a unit; false if none came.
            pub fn acquire_timeout(&self, timeout: Duration) -> bool {
                self.counter.acquire(Deadline::after(timeout))
            }

            /// Takes a unit, as a future: [`acquire`](Self::acquire) for
            /// async code, with no runtime of ours (any executor polls
            /// it). While it waits, a watcher thread of this process (one
            /// for up to 127 awaited semaphores, events and queue sides)
            /// sleeps on the count, not the executor's. Cancel-safe:
            /// dropped before it is ready, it has taken nothing. An error
            /// only if that thread cannot start. Give the unit back with
            /// `release`, as after `acquire`.
            pub fn acquire_async(&self) -> super::semaphore_future::AcquireFuture<'_> {
                super::semaphore_future::AcquireFuture::new(&self.counter)
            }

            /// Units free now.
            pub fn value(&self) -> u32 {
                self.counter.value()
            }

            /// A second handle on the same semaphore.
            /// The same as [`clone`](Clone::clone), which cannot fail: handles in
            /// one process share a mapping. Kept for code from when a handle had
            /// its own.
            pub fn try_clone(&self) -> Result<Self, ShmError> {
                Ok(self.clone())
            }
        }
    };
}

define_semaphore!(
    /// Python's `multiprocessing.Semaphore`: `value` units, shared by processes.
    Semaphore
);

define_semaphore!(
    /// Python's `BoundedSemaphore`: releasing above the initial value is an error.
    BoundedSemaphore
);

impl Semaphore {
    pub fn new(value: u32) -> Result<Self, ShmError> {
        Ok(Semaphore {
            counter: Counter::new(value, 0)?,
        })
    }

    /// Gives a unit back.
    pub fn release(&self) {
        // Unbounded: cannot fail short of u32::MAX units.
        let _ = self.counter.release();
    }
}

impl BoundedSemaphore {
    /// `value` units, which is also the most it can ever hold (at least 1).
    pub fn new(value: u32) -> Result<Self, ShmError> {
        Ok(BoundedSemaphore {
            counter: Counter::new(value, value.max(1))?,
        })
    }

    /// Gives a unit back; an error if that would exceed the initial value.
    pub fn release(&self) -> Result<(), ReleaseError> {
        self.counter.release()
    }
}
