//! Process-shared synchronization, Python's `multiprocessing` primitives:
//! [`Lock`], [`RLock`], [`Semaphore`], [`BoundedSemaphore`], [`Event`],
//! [`Condition`], [`Barrier`]. Each lives in its own anonymous shared
//! segment and is handed to a child as a `Process` argument (or
//! `try_clone`d first to keep a handle). Every blocking call has `try_` and
//! `_timeout` forms.
//!
//! Death is expected: locks are robust lock words of our own (a holder's death is
//! [`LockError::OwnerDied`] for the next locker, with the lock held), and
//! waiting is on futex words, which a dead waiter cannot leave blocked.

mod barrier;
mod barrier_future;
mod condition;
mod condition_future;
mod error;
mod event;
mod event_future;
mod lock;
mod lock_future;
pub(crate) mod robust;
mod semaphore;
mod semaphore_future;
mod waiters;
mod word_watch;

pub use barrier::Barrier;
pub use barrier_future::BarrierWaitFuture;
pub use condition::{Condition, ConditionGuard};
pub use condition_future::{ConditionLockFuture, ConditionWaitFuture};
pub use error::{BarrierError, LockError, LockResult, OwnerDied, ReleaseError};
pub use event::Event;
pub use event_future::WaitFuture;
pub use lock::{Lock, LockGuard, RLock, RLockGuard, SharedLock};
pub use lock_future::LockFuture;
pub use semaphore::{BoundedSemaphore, Semaphore};
pub use semaphore_future::AcquireFuture;

pub(crate) use lock::guard_or_error;
