//! [`AtomicInt`]: the integer types whose shared values also take lock-free
//! atomic operations (a `lock xadd` on the shared word, no mutex).

use std::sync::atomic::Ordering;

/// An integer that can be operated on atomically in place.
pub trait AtomicInt: bytemuck::Pod {
    /// # Safety
    /// `ptr` must be valid, aligned, and only ever accessed atomically or under the value's lock.
    unsafe fn fetch_add(ptr: *mut Self, v: Self) -> Self;
    /// # Safety
    /// As for `fetch_add`.
    unsafe fn compare_exchange(ptr: *mut Self, current: Self, new: Self) -> Result<Self, Self>;
    /// # Safety
    /// As for `fetch_add`.
    unsafe fn load(ptr: *mut Self) -> Self;
    /// # Safety
    /// As for `fetch_add`.
    unsafe fn store(ptr: *mut Self, v: Self);
}

macro_rules! atomic_int {
    ($($int:ty => $atomic:ty),*) => {$(
        impl AtomicInt for $int {
            unsafe fn fetch_add(ptr: *mut Self, v: Self) -> Self {
                // SAFETY: the caller guarantees a valid, aligned, atomically used word.
                unsafe { <$atomic>::from_ptr(ptr) }.fetch_add(v, Ordering::AcqRel)
            }
            unsafe fn compare_exchange(ptr: *mut Self, current: Self, new: Self) -> Result<Self, Self> {
                // SAFETY: as above.
                unsafe { <$atomic>::from_ptr(ptr) }.compare_exchange(current, new, Ordering::AcqRel, Ordering::Acquire)
            }
            unsafe fn load(ptr: *mut Self) -> Self {
                // SAFETY: as above.
                unsafe { <$atomic>::from_ptr(ptr) }.load(Ordering::Acquire)
            }
            unsafe fn store(ptr: *mut Self, v: Self) {
                // SAFETY: as above.
                unsafe { <$atomic>::from_ptr(ptr) }.store(v, Ordering::Release)
            }
        }
    )*};
}

atomic_int!(
    i32 => std::sync::atomic::AtomicI32,
    u32 => std::sync::atomic::AtomicU32,
    i64 => std::sync::atomic::AtomicI64,
    u64 => std::sync::atomic::AtomicU64,
    isize => std::sync::atomic::AtomicIsize,
    usize => std::sync::atomic::AtomicUsize
);
