//! [`Array<T>`] (locked) and [`RawArray<T>`] (unlocked): a fixed number of
//! `T` in shared memory, handed to children as `Process` arguments.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use bytemuck::Pod;
use serde::{Deserialize, Serialize};

use super::atomic::AtomicInt;
use super::{open_named, Elements};
use crate::os::Deadline;
use crate::shm::{SharedMemory, ShmError};
use crate::sync::robust::RobustMutex;
use crate::sync::{guard_or_error, LockError, LockResult, SharedLock};

/// Python's `multiprocessing.Array(typecode, values)`: elements behind a
/// robust lock, their own or one given ([`with_lock`](Self::with_lock)).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "T: Pod")]
pub struct Array<T> {
    elements: Elements<T>,
    /// A lock given at creation, used instead of the array's own.
    lock: Option<SharedLock>,
}

/// The locked elements, until dropped.
#[must_use = "the lock is released when the guard is dropped"]
pub struct ArrayGuard<'a, T> {
    mutex: &'a RobustMutex,
    data: &'a mut [T],
}

impl<T> Deref for ArrayGuard<'_, T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        self.data
    }
}

impl<T> DerefMut for ArrayGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut [T] {
        self.data
    }
}

impl<T> Drop for ArrayGuard<'_, T> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

impl<T: Pod> Array<T> {
    /// `len` copies of `value`.
    pub fn new(len: usize, value: T) -> Result<Self, ShmError> {
        Self::from_slice(&vec![value; len])
    }

    pub fn from_slice(values: &[T]) -> Result<Self, ShmError> {
        Ok(Array {
            elements: Elements::from_slice(values)?,
            lock: None,
        })
    }

    /// Python's `Array('i', range(10))`: `Array::from_iter(0..10i32)`.
    #[allow(clippy::should_implement_trait)] // fallible, unlike FromIterator
    pub fn from_iter(values: impl IntoIterator<Item = T>) -> Result<Self, ShmError> {
        Self::from_slice(&values.into_iter().collect::<Vec<T>>())
    }

    /// An array in a new named segment (tracked, see [`SharedMemory::create`]).
    pub fn create_named(name: &str, values: &[T]) -> Result<Self, ShmError> {
        let bytes = values.len().saturating_mul(std::mem::size_of::<T>());
        let shm = SharedMemory::create(name, bytes + 4096)?;
        Ok(Array {
            elements: Elements::from_slice_in(shm, values)?,
            lock: None,
        })
    }

    /// Opens an array made by [`create_named`](Self::create_named); a `T` of
    /// another size is [`ShmError::WrongType`].
    pub fn open_named(name: &str) -> Result<Self, ShmError> {
        Ok(Array {
            elements: open_named(name)?,
            lock: None,
        })
    }

    pub fn len(&self) -> usize {
        self.elements.len
    }

    pub fn is_empty(&self) -> bool {
        self.elements.len == 0
    }

    /// Locks the array and gives `&mut [T]`.
    pub fn lock(&self) -> LockResult<ArrayGuard<'_, T>> {
        self.lock_deadline(Deadline::never())
    }

    /// Locks, waiting at most `timeout`.
    pub fn lock_timeout(&self, timeout: Duration) -> LockResult<ArrayGuard<'_, T>> {
        self.lock_deadline(Deadline::after(timeout))
    }

    fn lock_deadline(&self, deadline: Deadline) -> LockResult<ArrayGuard<'_, T>> {
        let mutex = match &self.lock {
            Some(given) => given.raw_mutex(),
            None => self.elements.mutex(),
        };
        guard_or_error(mutex.lock(deadline), || ArrayGuard {
            mutex,
            // SAFETY: the mutex is held for the guard's life, so no other
            // locked user touches the elements; `len` elements lie at ptr.
            data: unsafe { std::slice::from_raw_parts_mut(self.elements.ptr(), self.elements.len) },
        })
    }

    /// Element `i`, read under the lock. These convenience calls take the
    /// lock even if its last holder died (the data is returned as found); use
    /// [`lock`](Self::lock) to notice and repair.
    pub fn get(&self, i: usize) -> std::io::Result<Option<T>> {
        let guard = self
            .lock()
            .or_else(|e| e.recover())
            .map_err(LockError::into_io_error)?;
        Ok(guard.get(i).copied())
    }

    /// Sets element `i` under the lock; false if `i` is out of range.
    pub fn set(&self, i: usize, value: T) -> std::io::Result<bool> {
        let mut guard = self
            .lock()
            .or_else(|e| e.recover())
            .map_err(LockError::into_io_error)?;
        Ok(guard.get_mut(i).map(|slot| *slot = value).is_some())
    }

    /// A copy of every element, taken under the lock.
    pub fn to_vec(&self) -> std::io::Result<Vec<T>> {
        let guard = self
            .lock()
            .or_else(|e| e.recover())
            .map_err(LockError::into_io_error)?;
        Ok(guard.to_vec())
    }

    /// Copies `src` over the first `src.len()` elements under the lock (bulk
    /// copy: one memcpy). Returns how many were copied.
    pub fn copy_from_slice(&self, src: &[T]) -> std::io::Result<usize> {
        let mut guard = self
            .lock()
            .or_else(|e| e.recover())
            .map_err(LockError::into_io_error)?;
        let n = src.len().min(guard.len());
        guard[..n].copy_from_slice(&src[..n]);
        Ok(n)
    }

    /// Copies the elements into `dst` under the lock. Returns how many.
    pub fn copy_to_slice(&self, dst: &mut [T]) -> std::io::Result<usize> {
        let guard = self
            .lock()
            .or_else(|e| e.recover())
            .map_err(LockError::into_io_error)?;
        let n = dst.len().min(guard.len());
        dst[..n].copy_from_slice(&guard[..n]);
        Ok(n)
    }

    /// A second handle on the same elements.
    /// The same as [`clone`](Clone::clone), which cannot fail: handles in
    /// one process share a mapping. Kept for code from when a handle had
    /// its own.
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(self.clone())
    }

    /// Elements guarded by `lock` (a [`Lock`](crate::sync::Lock) or an
    /// [`RLock`](crate::sync::RLock)) instead of a lock of their own:
    /// Python's `Array('i', values, lock=lock)`.
    pub fn with_lock(values: &[T], lock: impl Into<SharedLock>) -> Result<Self, ShmError> {
        let mut array = Self::from_slice(values)?;
        array.lock = Some(lock.into());
        Ok(array)
    }

    /// Python's `Array('i', values, lock=False)`: the elements with no lock
    /// at all, which is a [`RawArray`].
    pub fn without_lock(values: &[T]) -> Result<RawArray<T>, ShmError> {
        RawArray::from_slice(values)
    }

    /// The lock given at creation, if one was (Python's `get_lock()` for it).
    pub fn given_lock(&self) -> Option<&SharedLock> {
        self.lock.as_ref()
    }

    /// The segment behind the array (to `unlink` a named one).
    pub fn segment(&self) -> &SharedMemory {
        self.elements.segment()
    }
}

impl<T: AtomicInt> Array<T> {
    /// The first element, for lock-free atomic access by `Value`.
    pub(super) fn lock_free_ptr(&self) -> *mut T {
        self.elements.ptr()
    }

    /// Adds `v` to element `i` atomically, without the lock; the old value,
    /// or `None` if `i` is out of range.
    pub fn fetch_add(&self, i: usize, v: T) -> Option<T> {
        (i < self.elements.len).then(|| {
            // SAFETY: i is in range; elements are aligned for T (64-byte
            // aligned start, Pod layout); integer words are used atomically.
            unsafe { T::fetch_add(self.elements.ptr().add(i), v) }
        })
    }
}

/// Python's `RawArray`: the same elements without a lock. Reads and writes
/// are plain copies: concurrent writers may interleave (as in Python).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(bound = "T: Pod")]
pub struct RawArray<T> {
    elements: Elements<T>,
}

impl<T: Pod> RawArray<T> {
    pub fn from_slice(values: &[T]) -> Result<Self, ShmError> {
        Ok(RawArray {
            elements: Elements::from_slice(values)?,
        })
    }

    #[allow(clippy::should_implement_trait)] // fallible, unlike FromIterator
    pub fn from_iter(values: impl IntoIterator<Item = T>) -> Result<Self, ShmError> {
        Self::from_slice(&values.into_iter().collect::<Vec<T>>())
    }

    pub fn len(&self) -> usize {
        self.elements.len
    }

    pub fn is_empty(&self) -> bool {
        self.elements.len == 0
    }

    pub fn get(&self, i: usize) -> Option<T> {
        // SAFETY: i is in range; a volatile read of plain data another
        // process may be writing (the value may be torn, never out of bounds).
        (i < self.elements.len).then(|| unsafe { self.elements.ptr().add(i).read_volatile() })
    }

    /// Sets element `i`; false if out of range.
    pub fn set(&self, i: usize, value: T) -> bool {
        if i >= self.elements.len {
            return false;
        }
        // SAFETY: i is in range; a volatile write of plain data.
        unsafe { self.elements.ptr().add(i).write_volatile(value) };
        true
    }

    pub fn to_vec(&self) -> Vec<T> {
        (0..self.elements.len).filter_map(|i| self.get(i)).collect()
    }

    /// A second handle on the same elements.
    /// The same as [`clone`](Clone::clone), which cannot fail: handles in
    /// one process share a mapping. Kept for code from when a handle had
    /// its own.
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(self.clone())
    }
}
