//! [`Condition`]: Python's `multiprocessing.Condition`, a robust lock plus a
//! futex sequence word. `wait` reads the sequence, unlocks, sleeps until the
//! sequence moves (a `notify`), and locks again. A waiter that is SIGKILLed
//! leaves nothing behind: the others keep waiting and being notified. A
//! holder that dies is reported to the next locker as
//! [`LockError::OwnerDied`](super::LockError::OwnerDied), as with [`Lock`](super::Lock).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cond = ipc::sync::Condition::new()?;
//! let guard = cond.lock().map_err(|e| e.to_string())?;
//! let (guard, timed_out) = cond
//!     .wait_timeout(guard, std::time::Duration::from_millis(1))
//!     .map_err(|e| e.to_string())?;
//! assert!(timed_out);
//! drop(guard);
//! # Ok(())
//! # }
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{LockError, LockResult, OwnerDied};
use super::lock::guard_or_error;
use super::robust::RobustMutex;
use crate::os::futex;
use crate::os::Deadline;
use crate::shm::cell::{ShmCell, ShmState};
use crate::shm::ShmError;

#[repr(C)]
pub(crate) struct ConditionState {
    mutex: RobustMutex,
    sequence: AtomicU32,
}

impl ShmState for ConditionState {
    const TAG: u64 = 0x4950_4343_4f4e_4401; // "IPCCOND" v1
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Condition {
    cell: ShmCell<ConditionState>,
}

/// Holds the condition's lock until dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ConditionGuard<'a> {
    cond: &'a Condition,
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
            None => Ok(Condition { cell }),
        }
    }

    fn state(&self) -> &ConditionState {
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
        let state = self.state();
        // Read before unlocking: a notify after this point moves the word,
        // and the futex wait then returns at once.
        let seen = state.sequence.load(Ordering::Acquire);
        drop(guard);
        let in_time = futex::wait(&state.sequence, seen, deadline);
        // The lock is taken back without a deadline, as Python does.
        match self.lock_deadline(Deadline::never()) {
            Ok(g) => Ok((g, !in_time)),
            Err(LockError::OwnerDied(died)) => Err(LockError::OwnerDied(OwnerDied::new((
                died.into_inner(),
                !in_time,
            )))),
            Err(LockError::Timeout) => Err(LockError::Timeout),
            Err(LockError::Os(e)) => Err(LockError::Os(e)),
        }
    }

    /// Wakes up to `n` waiters.
    pub fn notify(&self, n: u32) {
        self.state().sequence.fetch_add(1, Ordering::AcqRel);
        futex::wake(&self.state().sequence, n);
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) {
        self.state().sequence.fetch_add(1, Ordering::AcqRel);
        futex::wake_all(&self.state().sequence);
    }

    /// A second handle on the same condition (for another process).
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(Condition {
            cell: self.cell.try_clone()?,
        })
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
