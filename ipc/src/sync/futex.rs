//! Futex words in shared memory: wait while a word holds a value, wake
//! waiters. Shared (not `FUTEX_PRIVATE`), so waiters in different processes
//! that map the same page meet. A waiter that dies leaves nothing behind: the
//! kernel forgets it, so no one is ever stuck behind a dead waiter.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

use crate::sys::Deadline;

/// Waits while `word` holds `expected`, until woken, a signal, or `deadline`.
/// Returns false if the deadline has passed. Spurious returns are possible:
/// callers re-check their condition in a loop.
pub(crate) fn wait(word: &AtomicU32, expected: u32, deadline: Deadline) -> bool {
    let timeout = match deadline.remaining() {
        None => None,
        Some(left) if left.is_zero() => return false,
        Some(left) => Some(left),
    };
    let ts = timeout.map(|d: Duration| libc::timespec {
        tv_sec: d.as_secs().min(i64::MAX as u64) as libc::time_t,
        tv_nsec: d.subsec_nanos() as libc::c_long,
    });
    let ts_ptr = ts
        .as_ref()
        .map_or(std::ptr::null(), |t| t as *const libc::timespec);
    // SAFETY: `word` is a live, aligned u32 for the whole call; FUTEX_WAIT
    // only reads it and sleeps; the timespec outlives the call.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            ts_ptr,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
    !deadline.passed()
}

/// Wakes up to `n` waiters on `word`.
pub(crate) fn wake(word: &AtomicU32, n: u32) {
    let n = n.min(i32::MAX as u32) as libc::c_int;
    // SAFETY: FUTEX_WAKE on a live, aligned u32; it does not touch memory.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            n,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every waiter on `word`.
pub(crate) fn wake_all(word: &AtomicU32) {
    wake(word, i32::MAX as u32);
}
