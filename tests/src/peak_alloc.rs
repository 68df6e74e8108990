//! A global allocator that records the largest single allocation, so tests
//! can show that a wild length on the wire allocates nothing.
//!
//! ```text
//! #[global_allocator]
//! static ALLOCATOR: tests::peak_alloc::PeakAllocation = tests::peak_alloc::PeakAllocation;
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// Delegates to the system allocator, recording the largest request.
pub struct PeakAllocation;

static PEAK: AtomicUsize = AtomicUsize::new(0);

/// Forgets the largest allocation seen so far.
pub fn reset() {
    PEAK.store(0, Ordering::Relaxed);
}

/// The largest single allocation (or reallocation) since the last [`reset`].
pub fn peak() -> usize {
    PEAK.load(Ordering::Relaxed)
}

// SAFETY: delegates every call to the system allocator unchanged.
unsafe impl GlobalAlloc for PeakAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        PEAK.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same layout contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr was allocated by System with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        PEAK.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
