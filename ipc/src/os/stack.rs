//! How much of the calling thread's stack is left, so that a decoder
//! walking a value nested as deep as a peer likes can stop with an error
//! before it overflows (which aborts the whole process).

use std::cell::Cell;

thread_local! {
    /// This thread's lowest usable stack address and stack size, once
    /// asked; `(0, 0)` if the system cannot say.
    static BOUNDS: Cell<Option<(usize, usize)>> = const { Cell::new(None) };
}

/// The lowest usable stack address of the calling thread and the
/// stack's size, or `None` if the system does not say. Asked once per
/// thread (for the main thread glibc reads `/proc/self/maps`).
fn bounds() -> Option<(usize, usize)> {
    // SAFETY: `attr` is initialised by pthread_getattr_np before it is
    // read, and destroyed once; the out-pointers are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let mut low: *mut libc::c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let mut guard: libc::size_t = 0;
        let got = libc::pthread_attr_getstack(&attr, &mut low, &mut size) == 0
            && libc::pthread_attr_getguardsize(&attr, &mut guard) == 0;
        libc::pthread_attr_destroy(&mut attr);
        got.then_some((low as usize + guard, size.saturating_sub(guard)))
    }
}

/// The address below which the calling thread should not go deeper:
/// `reserve` bytes (or a quarter of a small stack) above its lowest
/// usable address. 0 (no limit) when the system does not say.
pub fn limit(reserve: usize) -> usize {
    let (low, size) = BOUNDS.with(|cached| {
        cached.get().unwrap_or_else(|| {
            let bounds = bounds().unwrap_or((0, 0));
            cached.set(Some(bounds));
            bounds
        })
    });
    if low == 0 {
        0
    } else {
        low.saturating_add(reserve.min(size / 4))
    }
}

/// An address in the caller's frame: where its stack is now.
#[inline(always)]
pub fn here() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_lies_below_the_current_frame_on_every_thread() {
        let check = || {
            let limit = limit(64 * 1024);
            assert!(limit > 0, "the system says where the stack is");
            assert!(limit < here(), "{limit:#x} below {:#x}", here());
        };
        check();
        std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(check)
            .expect("thread")
            .join()
            .expect("checked");
    }
}
