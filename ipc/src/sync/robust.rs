//! A robust, process-shared pthread mutex living in shared memory. When its
//! holder dies, the kernel marks it and the next locker gets `EOWNERDEAD`:
//! we make it consistent at once and report [`Acquired::OwnerDied`], so the
//! caller can repair the data it guards. Nobody ever hangs on a dead holder.

use std::cell::UnsafeCell;
use std::io;

use crate::os::Deadline;

/// A `pthread_mutex_t` set up robust and process-shared.
#[repr(C)]
pub(crate) struct RobustMutex {
    inner: UnsafeCell<libc::pthread_mutex_t>,
}

// SAFETY: a process-shared pthread mutex is made to be used from many
// threads and processes at once; all access goes through pthread calls.
unsafe impl Sync for RobustMutex {}
// SAFETY: as above.
unsafe impl Send for RobustMutex {}

/// How a lock was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    Clean,
    /// The previous holder died holding it; the data may be half-updated.
    OwnerDied,
}

/// Why a lock was not taken.
#[derive(Debug)]
pub(crate) enum NotAcquired {
    /// The deadline passed (or, for a try, it is held).
    Timeout,
    Os(io::Error),
}

impl RobustMutex {
    /// Initialises the mutex in place: robust, process-shared, error-checking
    /// (or recursive). Must run once, before any other process can see it.
    pub(crate) fn init(&self, recursive: bool) -> io::Result<()> {
        let kind = if recursive {
            libc::PTHREAD_MUTEX_RECURSIVE
        } else {
            libc::PTHREAD_MUTEX_ERRORCHECK
        };
        // SAFETY: a local attribute object, initialised, configured, used to
        // initialise our (not yet shared) mutex, then destroyed.
        unsafe {
            let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
            check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let attr_ptr = attr.as_mut_ptr();
            let result = (|| {
                check(libc::pthread_mutexattr_setpshared(
                    attr_ptr,
                    libc::PTHREAD_PROCESS_SHARED,
                ))?;
                check(libc::pthread_mutexattr_setrobust(
                    attr_ptr,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))?;
                check(libc::pthread_mutexattr_settype(attr_ptr, kind))?;
                check(libc::pthread_mutex_init(self.inner.get(), attr_ptr))
            })();
            libc::pthread_mutexattr_destroy(attr_ptr);
            result
        }
    }

    /// Locks, waiting until `deadline`.
    pub(crate) fn lock(&self, deadline: Deadline) -> Result<Acquired, NotAcquired> {
        let ptr = self.inner.get();
        // SAFETY: the mutex was initialised by `init` and lives as long as self.
        let mut rc = unsafe { libc::pthread_mutex_trylock(ptr) };
        // Free (the usual case): taken without reading any clock. Otherwise
        // wait as the deadline says.
        if rc == libc::EBUSY && !deadline.passed() {
            // SAFETY: as above.
            rc = unsafe {
                match deadline.as_realtime() {
                    Some(at) => libc::pthread_mutex_timedlock(ptr, &at),
                    None => libc::pthread_mutex_lock(ptr),
                }
            };
        }
        self.outcome(rc)
    }

    /// Takes the lock only if it is free now, without reading any clock.
    pub(crate) fn try_lock(&self) -> Result<Acquired, NotAcquired> {
        // SAFETY: the mutex was initialised by `init` and lives as long as self.
        let rc = unsafe { libc::pthread_mutex_trylock(self.inner.get()) };
        self.outcome(rc)
    }

    /// What a pthread lock call's return code means.
    fn outcome(&self, rc: libc::c_int) -> Result<Acquired, NotAcquired> {
        match rc {
            0 => Ok(Acquired::Clean),
            libc::EOWNERDEAD => {
                // SAFETY: we hold the mutex now; marking it consistent lets it
                // be used again after the caller repairs the data.
                unsafe { libc::pthread_mutex_consistent(self.inner.get()) };
                Ok(Acquired::OwnerDied)
            }
            libc::ETIMEDOUT | libc::EBUSY => Err(NotAcquired::Timeout),
            e => Err(NotAcquired::Os(io::Error::from_raw_os_error(e))),
        }
    }

    /// Unlocks; the caller must hold it.
    pub(crate) fn unlock(&self) {
        // SAFETY: called only by guards, which exist only while locked.
        unsafe { libc::pthread_mutex_unlock(self.inner.get()) };
    }
}

fn check(rc: libc::c_int) -> io::Result<()> {
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}
