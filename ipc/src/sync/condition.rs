//! [`Condition`]: Python's `multiprocessing.Condition`, a robust lock plus a
//! table of waiter slots (`waiters`). `wait` takes a slot (under the
//! lock), unlocks, and sleeps on it; `notify(n)` signals the `n` oldest
//! waiters present, so it wakes at most `n`, as Python promises, even one
//! that had not reached its sleep yet, and a waiter that comes later cannot
//! take another's wake-up. A waiter that is SIGKILLed is found dead and its
//! slot freed: the others keep waiting and being notified. A holder that dies is
//! reported to the next locker as
//! [`LockError::OwnerDied`](super::LockError::OwnerDied), as with [`Lock`](super::Lock).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cond = outlast_ipc::sync::Condition::new()?;
//! let guard = cond.lock().map_err(|e| e.to_string())?;
//! let (guard, timed_out) = cond
//!     .wait_timeout(guard, std::time::Duration::from_millis(1))
//!     .map_err(|e| e.to_string())?;
//! assert!(timed_out);
//! drop(guard);
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{LockError, LockResult, OwnerDied};
use super::lock::guard_or_error;
use super::robust::RobustMutex;
use super::waiters::Waiters;
use crate::os::Deadline;
use crate::shm::cell::{ShmCell, ShmState};
use crate::shm::ShmError;
use crate::watch::LazyWatch;

#[repr(C)]
pub(crate) struct ConditionState {
    mutex: RobustMutex,
    waiters: Waiters,
}

impl ConditionState {
    pub(super) fn mutex(&self) -> &RobustMutex {
        &self.mutex
    }

    pub(super) fn waiters(&self) -> &Waiters {
        &self.waiters
    }
}

impl ShmState for ConditionState {
    const TAG: u64 = 0x4950_4343_4f4e_4402; // "IPCCOND" v2
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Condition {
    pub(super) cell: ShmCell<ConditionState>,
    /// The thread that `lock_async` and `wait_async` futures leave their
    /// wakers with while they wait for the lock.
    #[serde(skip)]
    pub(super) watch: Arc<LazyWatch>,
}

impl std::fmt::Debug for Condition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Condition")
            .field("cell", &self.cell)
            .finish_non_exhaustive()
    }
}

/// Holds the condition's lock until dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
}

impl<'a> ConditionGuard<'a> {
    /// The guard of a lock a future took.
    pub(super) fn new(cond: &'a Condition) -> Self {
        ConditionGuard { cond }
    }
}

impl Drop for ConditionGuard<'_> {
    fn drop(&mut self) {
        self.cond.state().mutex.unlock();
    }
}

impl Condition {
    /// A condition with its own lock.
    pub fn new() -> Result<Self, ShmError> {
        let mut failed = None;
        let cell = ShmCell::<ConditionState>::new(0, |s, _| {
            failed = s.mutex.init(false).err();
        })?;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(Condition {
                cell,
                watch: Arc::default(),
            }),
        }
    }

    pub(super) fn state(&self) -> &ConditionState {
        self.cell.state()
    }

    /// Takes the condition's lock.
    pub fn lock(&self) -> LockResult<ConditionGuard<'_>> {
        self.lock_deadline(Deadline::never())
    }

    /// Takes the lock, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<ConditionGuard<'_>> {
        self.lock_deadline(Deadline::after(timeout))
    }

    fn lock_deadline(&self, deadline: Deadline) -> LockResult<ConditionGuard<'_>> {
        guard_or_error(self.state().mutex.lock(deadline), || ConditionGuard {
            cond: self,
        })
    }

    /// Releases the lock, waits for a notify, and takes the lock again.
    /// Wake-ups can be spurious: wait in a loop on the real condition.
    pub fn wait<'a>(&'a self, guard: ConditionGuard<'a>) -> LockResult<ConditionGuard<'a>> {
        self.wait_deadline(guard, Deadline::never())
            .map(|(g, _)| g)
            .map_err(strip_flag)
    }

    /// [`wait`](Self::wait) for at most `timeout`; the flag says whether it timed out.
    pub fn wait_timeout<'a>(
        &'a self,
        guard: ConditionGuard<'a>,
        timeout: Duration,
    ) -> LockResult<(ConditionGuard<'a>, bool)> {
        self.wait_deadline(guard, Deadline::after(timeout))
    }

    /// Waits until `done()` holds (checked under the lock), or `timeout`
    /// passes; the flag is true if it timed out with `done()` still false.
    pub fn wait_until<'a>(
        &'a self,
        mut guard: ConditionGuard<'a>,
        timeout: Duration,
        mut done: impl FnMut() -> bool,
    ) -> LockResult<(ConditionGuard<'a>, bool)> {
        let deadline = Deadline::after(timeout);
        while !done() {
            if deadline.passed() {
                return Ok((guard, true));
            }
            guard = self.wait_deadline(guard, deadline)?.0;
        }
        Ok((guard, false))
    }

    fn wait_deadline<'a>(
        &'a self,
        guard: ConditionGuard<'a>,
        deadline: Deadline,
    ) -> LockResult<(ConditionGuard<'a>, bool)> {
        let waiters = &self.state().waiters;
        // In place before unlocking: a notify from now on sees this waiter.
        let place = waiters.enter();
        drop(guard);
        let woken = waiters.wait(place, deadline);
        // The lock is taken back without a deadline, as Python does.
        match self.lock_deadline(Deadline::never()) {
            Ok(g) => Ok((g, !woken)),
            Err(LockError::OwnerDied(died)) => Err(LockError::OwnerDied(OwnerDied::new((
                died.into_inner(),
                !woken,
            )))),
            Err(LockError::Timeout) => Err(LockError::Timeout),
            Err(LockError::Os(e)) => Err(LockError::Os(e)),
        }
    }

    /// Wakes up to `n` waiters, oldest first (Python's `notify(n)`; call it
    /// holding the lock, as Python requires). Returns how many it woke.
    pub fn notify(&self, n: u32) -> u32 {
        self.state().waiters.wake(n)
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> u32 {
        self.state().waiters.wake(u32::MAX)
    }

    /// A second handle on the same condition.
    /// The same as [`clone`](Clone::clone), which cannot fail: handles in
    /// one process share a mapping. Kept for code from when a handle had
    /// its own.
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(self.clone())
    }
}

/// Drops the timed-out flag from an error's guard.
fn strip_flag<'a>(e: LockError<(ConditionGuard<'a>, bool)>) -> LockError<ConditionGuard<'a>> {
    match e {
        LockError::OwnerDied(died) => LockError::OwnerDied(OwnerDied::new(died.into_inner().0)),
        LockError::Timeout => LockError::Timeout,
        LockError::Os(e) => LockError::Os(e),
    }
}
