//! [`Lock`] and [`RLock`]: Python's `multiprocessing.Lock` / `RLock`, built
//! on robust process-shared mutexes. Python's Lock is an ownerless semaphore,
//! so a process killed while holding it blocks everyone forever (CPython
//! gh-88304); here the next locker gets [`LockError::OwnerDied`] with the
//! lock held, repairs what it guards, and goes on.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let lock = outlast_ipc::sync::Lock::new()?;
//! {
//!     let _held = lock.lock().map_err(|e| e.to_string())?;
//!     assert!(lock.try_lock().is_err()); // held: Timeout
//! }
//! assert!(lock.try_lock().is_ok());
//! # Ok(())
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::{LockError, LockResult, OwnerDied};
use super::robust::{Acquired, NotAcquired, RobustMutex};
use crate::os::Deadline;
use crate::shm::cell::{ShmCell, ShmState};
use crate::shm::ShmError;
use crate::watch::LazyWatch;

#[repr(C)]
pub(crate) struct MutexState {
    pub(crate) mutex: RobustMutex,
}

/// Tags for the two kinds (a Lock handed over as an RLock is an error).
pub(crate) struct LockTag;
pub(crate) struct RLockTag;

/// The layout stored: a mutex; the tag type only names the kind.
#[repr(C)]
pub(crate) struct Tagged<T>(std::marker::PhantomData<T>, MutexState);

impl<T> Tagged<T> {
    pub(crate) fn mutex(&self) -> &RobustMutex {
        &self.1.mutex
    }
}

impl ShmState for Tagged<LockTag> {
    const TAG: u64 = 0x4950_434c_4f43_4b02; // "IPCLOCK" v2
}
impl ShmState for Tagged<RLockTag> {
    const TAG: u64 = 0x4950_4352_4c4f_4302; // "IPCRLOC" v2
}

/// Turns a raw lock outcome into the guard or error.
pub(crate) fn guard_or_error<G>(
    outcome: Result<Acquired, NotAcquired>,
    guard: impl FnOnce() -> G,
) -> LockResult<G> {
    match outcome {
        Ok(Acquired::Clean) => Ok(guard()),
        Ok(Acquired::OwnerDied) => Err(LockError::OwnerDied(OwnerDied::new(guard()))),
        Err(NotAcquired::Timeout) => Err(LockError::Timeout),
        Err(NotAcquired::Os(e)) => Err(LockError::Os(e)),
    }
}

macro_rules! define_lock {
    ($(#[$doc:meta])* $name:ident, $guard:ident, $tag:ident, $recursive:expr $(, $watch:ident)?) => {
        $(#[$doc])*
        #[derive(Clone, Serialize, Deserialize)]
        pub struct $name {
            pub(super) cell: ShmCell<Tagged<$tag>>,
            $(
                /// The thread that `lock_async` futures leave their wakers with.
                #[serde(skip)]
                pub(super) $watch: Arc<LazyWatch>,
            )?
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("cell", &self.cell)
                    .finish_non_exhaustive()
            }
        }

        /// Holds the lock until dropped.
        #[must_use = "the lock is released when the guard is dropped"]
        pub struct $guard<'a> {
            mutex: &'a RobustMutex,
        }

        impl Drop for $guard<'_> {
            fn drop(&mut self) {
                self.mutex.unlock();
            }
        }

        impl $name {
            /// A new, unlocked lock in its own shared segment.
            pub fn new() -> Result<Self, ShmError> {
                let mut failed = None;
                let cell = ShmCell::<Tagged<$tag>>::new(0, |state, _| {
                    failed = state.1.mutex.init($recursive).err();
                })?;
                match failed {
                    Some(e) => Err(e.into()),
                    None => Ok($name {
                        cell,
                        $($watch: Arc::default(),)?
                    }),
                }
            }

            fn mutex(&self) -> &RobustMutex {
                &self.cell.state().1.mutex
            }

            /// The lock word itself, for objects that lock with it (a
            /// `Value` or `Array` given this lock).
            pub(crate) fn raw_mutex(&self) -> &RobustMutex {
                self.mutex()
            }

            /// Waits for the lock.
            pub fn lock(&self) -> LockResult<$guard<'_>> {
                self.lock_deadline(Deadline::never())
            }

            /// Whether anyone (any thread, any process) holds it now
            /// (Python's `locked()`).
            pub fn is_locked(&self) -> bool {
                self.mutex().is_locked()
            }

            /// Takes the lock if it is free now; `Err(LockError::Timeout)` if
            /// held, by anyone, this thread included (Python's `acquire(False)`).
            pub fn try_lock(&self) -> LockResult<$guard<'_>> {
                self.lock_deadline(Deadline::now())
            }

            /// Waits for the lock at most `timeout`.
            pub fn lock_timeout(&self, timeout: Duration) -> LockResult<$guard<'_>> {
                self.lock_deadline(Deadline::after(timeout))
            }

            fn lock_deadline(&self, deadline: Deadline) -> LockResult<$guard<'_>> {
                let mutex = self.mutex();
                guard_or_error(mutex.lock(deadline), || $guard { mutex })
            }

            /// A second handle on the same lock.
            /// The same as [`clone`](Clone::clone), which cannot fail: handles in
            /// one process share a mapping. Kept for code from when a handle had
            /// its own.
            pub fn try_clone(&self) -> Result<Self, ShmError> {
                Ok(self.clone())
            }
        }
    };
}

define_lock!(
    /// A process-shared mutual-exclusion lock that survives a killed holder.
    Lock,
    LockGuard,
    LockTag,
    false,
    watch
);

impl<'a> LockGuard<'a> {
    /// The guard of a lock its future took.
    pub(super) fn new(mutex: &'a RobustMutex) -> Self {
        LockGuard { mutex }
    }
}

define_lock!(
    /// A lock the holding thread may take again (Python's `RLock`); it is
    /// free once every guard is dropped. Survives a killed holder like [`Lock`].
    RLock,
    RLockGuard,
    RLockTag,
    true
);

/// A [`Lock`] or an [`RLock`], given to a `Value` or an `Array` to guard it
/// (Python's `Value('i', 0, lock=RLock())`): several objects can share one
/// lock this way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum SharedLock {
    Lock(Lock),
    RLock(RLock),
}

impl SharedLock {
    pub(crate) fn raw_mutex(&self) -> &RobustMutex {
        match self {
            SharedLock::Lock(l) => l.raw_mutex(),
            SharedLock::RLock(l) => l.raw_mutex(),
        }
    }

    /// A second handle on the same lock.
    /// The same as [`clone`](Clone::clone), which cannot fail: handles in
    /// one process share a mapping. Kept for code from when a handle had
    /// its own.
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(self.clone())
    }
}

impl From<Lock> for SharedLock {
    fn from(lock: Lock) -> Self {
        SharedLock::Lock(lock)
    }
}

impl From<RLock> for SharedLock {
    fn from(lock: RLock) -> Self {
        SharedLock::RLock(lock)
    }
}
