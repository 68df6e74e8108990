//! [`Value<T>`] (locked) and [`RawValue<T>`] (unlocked): one `T` in shared
//! memory, Python's `Value('d', 0.0)` and `RawValue`.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytemuck::Pod;
use serde::{Deserialize, Serialize};

use super::array::{Array, ArrayGuard, RawArray};
use super::atomic::AtomicInt;
use crate::shm::ShmError;
use crate::sync::{LockError, LockResult, OwnerDied, SharedLock};

/// One `T` behind a robust lock.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "T: Pod")]
pub struct Value<T> {
    array: Array<T>,
}

/// The locked value, until dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ValueGuard<'a, T> {
    inner: ArrayGuard<'a, T>,
}

impl<T> Deref for ValueGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.inner[0]
    }
}

impl<T> DerefMut for ValueGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.inner[0]
    }
}

fn wrap<'a, T>(r: LockResult<ArrayGuard<'a, T>>) -> LockResult<ValueGuard<'a, T>> {
    match r {
        Ok(inner) => Ok(ValueGuard { inner }),
        Err(LockError::OwnerDied(died)) => Err(LockError::OwnerDied(OwnerDied::new(ValueGuard {
            inner: died.into_inner(),
        }))),
        Err(LockError::Timeout) => Err(LockError::Timeout),
        Err(LockError::Os(e)) => Err(LockError::Os(e)),
    }
}

impl<T: Pod> Value<T> {
    pub fn new(value: T) -> Result<Self, ShmError> {
        Ok(Value {
            array: Array::from_slice(&[value])?,
        })
    }

    /// A value guarded by `lock` (a [`Lock`](crate::sync::Lock) or an
    /// [`RLock`](crate::sync::RLock)) instead of a lock of its own: Python's
    /// `Value('i', 0, lock=lock)`, so that several values share one lock.
    pub fn with_lock(value: T, lock: impl Into<SharedLock>) -> Result<Self, ShmError> {
        Ok(Value {
            array: Array::with_lock(&[value], lock)?,
        })
    }

    /// Python's `Value('i', 0, lock=False)`: a value with no lock at all,
    /// which is a [`RawValue`].
    pub fn without_lock(value: T) -> Result<RawValue<T>, ShmError> {
        RawValue::new(value)
    }

    /// The lock given at creation, if one was.
    pub fn given_lock(&self) -> Option<&SharedLock> {
        self.array.given_lock()
    }

    /// Locks the value and gives `&mut T`.
    pub fn lock(&self) -> LockResult<ValueGuard<'_, T>> {
        wrap(self.array.lock())
    }

    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<ValueGuard<'_, T>> {
        wrap(self.array.lock_timeout(timeout))
    }

    /// The value, read under the lock.
    pub fn get(&self) -> std::io::Result<T> {
        let guard = self
            .lock()
            .or_else(|e| e.recover())
            .map_err(LockError::into_io_error)?;
        Ok(*guard)
    }

    /// Sets the value under the lock.
    pub fn set(&self, value: T) -> std::io::Result<()> {
        let mut guard = self
            .lock()
            .or_else(|e| e.recover())
            .map_err(LockError::into_io_error)?;
        *guard = value;
        Ok(())
    }

    /// A second handle on the same value.
    /// The same as [`clone`](Clone::clone), which cannot fail: handles in
    /// one process share a mapping. Kept for code from when a handle had
    /// its own.
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(self.clone())
    }
}

impl<T: AtomicInt> Value<T> {
    /// Adds atomically, without the lock; returns the old value.
    pub fn fetch_add(&self, v: T) -> T {
        // One element always exists.
        self.array.fetch_add(0, v).unwrap_or(v)
    }

    /// Python has no such thing: a lock-free compare-and-swap on the value.
    pub fn compare_exchange(&self, current: T, new: T) -> Result<T, T> {
        let ptr = self.array.lock_free_ptr();
        // SAFETY: the one element is valid and aligned; integer words are used atomically.
        unsafe { T::compare_exchange(ptr, current, new) }
    }

    /// An atomic read, without the lock.
    pub fn load(&self) -> T {
        // SAFETY: as above.
        unsafe { T::load(self.array.lock_free_ptr()) }
    }

    /// An atomic write, without the lock.
    pub fn store(&self, v: T) {
        // SAFETY: as above.
        unsafe { T::store(self.array.lock_free_ptr(), v) }
    }
}

/// One `T` without a lock (Python's `RawValue`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "T: Pod")]
pub struct RawValue<T> {
    array: RawArray<T>,
}

impl<T: Pod> RawValue<T> {
    pub fn new(value: T) -> Result<Self, ShmError> {
        Ok(RawValue {
            array: RawArray::from_slice(&[value])?,
        })
    }

    pub fn get(&self) -> T {
        // One element always exists.
        self.array.get(0).unwrap_or_else(bytemuck::Zeroable::zeroed)
    }

    pub fn set(&self, value: T) {
        self.array.set(0, value);
    }

    /// A second handle on the same value.
    /// The same as [`clone`](Clone::clone), which cannot fail: handles in
    /// one process share a mapping. Kept for code from when a handle had
    /// its own.
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(self.clone())
    }
}
