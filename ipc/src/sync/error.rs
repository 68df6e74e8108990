//! Errors of the synchronization primitives, one per call family.

use std::fmt;
use std::io;

/// The previous holder of a lock died while holding it (like std's
/// `PoisonError`): the lock is yours, and the data it guards may be
/// half-updated. `into_inner` gives the guard to repair and go on; the lock
/// works normally afterwards.
pub struct OwnerDied<G> {
    guard: G,
}

impl<G> OwnerDied<G> {
    pub(crate) fn new(guard: G) -> Self {
        OwnerDied { guard }
    }
    pub fn into_inner(self) -> G {
        self.guard
    }
    pub fn get_ref(&self) -> &G {
        &self.guard
    }
    pub fn get_mut(&mut self) -> &mut G {
        &mut self.guard
    }
}

/// Why a lock call did not give a clean guard.
pub enum LockError<G> {
    /// The lock was taken, but its last holder had died holding it.
    OwnerDied(OwnerDied<G>),
    /// `try_lock` found it held, or `lock_timeout` ran out.
    Timeout,
    /// The OS refused (for example, the mutex is unrecoverable).
    Os(io::Error),
}

impl<G> LockError<G> {
    /// The guard whatever happened to the last holder, or the error if there is no guard.
    pub fn recover(self) -> Result<G, LockError<G>> {
        match self {
            LockError::OwnerDied(died) => Ok(died.into_inner()),
            other => Err(other),
        }
    }
    /// As an I/O error (for calls that recover from a dead owner by themselves).
    pub fn into_io_error(self) -> io::Error {
        match self {
            LockError::OwnerDied(_) => io::Error::other("the previous lock holder died"),
            LockError::Timeout => io::ErrorKind::TimedOut.into(),
            LockError::Os(e) => e,
        }
    }

    pub fn is_owner_died(&self) -> bool {
        matches!(self, LockError::OwnerDied(_))
    }
}

impl<G> fmt::Debug for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => f.write_str("OwnerDied(..)"),
            LockError::Timeout => f.write_str("Timeout"),
            LockError::Os(e) => write!(f, "Os({e:?})"),
        }
    }
}

impl<G> fmt::Display for LockError<G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LockError::OwnerDied(_) => {
                f.write_str("the previous holder of the lock died holding it; the lock is now held")
            }
            LockError::Timeout => f.write_str("the lock was not free in time"),
            LockError::Os(e) => write!(f, "locking failed: {e}"),
        }
    }
}

impl<G> std::error::Error for LockError<G> {}

/// What a lock call returns.
pub type LockResult<G> = Result<G, LockError<G>>;

/// Why a semaphore `release` failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReleaseError {
    /// A `BoundedSemaphore` released more often than acquired (Python's `ValueError`).
    #[error("the semaphore was released more times than it was acquired (bound {bound})")]
    OverBound { bound: u32 },
}

/// Why a `Barrier::wait` did not pass.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BarrierError {
    /// Aborted, or another party timed out or died while the barrier was in use.
    #[error("the barrier is broken")]
    Broken,
    /// This party's timeout ran out; the barrier is broken for everyone.
    #[error("timed out waiting at the barrier; it is now broken")]
    Timeout,
    /// This party ran the barrier's action and it panicked: the barrier is
    /// broken for everyone (Python re-raises the action's exception).
    #[error("the barrier's action panicked: {0}; the barrier is now broken")]
    ActionPanicked(String),
    /// An awaited wait could not be left with a thread of this process
    /// (it could not start); the party has left the barrier.
    #[error("could not wait for the barrier: {0}")]
    Os(String),
}
