//! A global allocator that records the largest single allocation made by the
//! current thread, so tests can show that a wild length on the wire
//! allocates nothing, and the bytes the thread has allocated and not freed,
//! so they can show that nothing large is kept. Per thread, because libtest
//! runs tests side by side and another test's allocations must not count.
//!
//! ```text
//! #[global_allocator]
//! static ALLOCATOR: tests::peak_alloc::PeakAllocation = tests::peak_alloc::PeakAllocation;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

/// Delegates to the system allocator, recording the largest request.
pub struct PeakAllocation;

thread_local! {
    // A const-initialised Cell needs no destructor and never allocates, so
    // the allocator may touch it at any point of a thread's life.
    static PEAK: Cell<usize> = const { Cell::new(0) };
    static HELD: Cell<isize> = const { Cell::new(0) };
}

fn record(size: usize) {
    let _ = PEAK.try_with(|peak| peak.set(peak.get().max(size)));
}

fn hold(change: isize) {
    let _ = HELD.try_with(|held| held.set(held.get() + change));
}

/// The bytes this thread has allocated minus those it has freed (a block
/// freed by another thread counts on neither).
pub fn held() -> isize {
    HELD.try_with(Cell::get).unwrap_or(0)
}

/// Forgets the largest allocation this thread has made so far.
pub fn reset() {
    let _ = PEAK.try_with(|peak| peak.set(0));
}

/// The largest single allocation (or reallocation) this thread has made
/// since its last [`reset`].
pub fn peak() -> usize {
    PEAK.try_with(Cell::get).unwrap_or(0)
}

// SAFETY: delegates every call to the system allocator unchanged.
unsafe impl GlobalAlloc for PeakAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        hold(layout.size() as isize);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        hold(-(layout.size() as isize));
        // SAFETY: ptr was allocated by System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        hold(new_size as isize - layout.size() as isize);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
