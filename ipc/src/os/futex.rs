//! Futex words in shared memory: wait while a word holds a value, wake
//! waiters. Shared (not `FUTEX_PRIVATE`), so waiters in different processes
//! that map the same page meet. A waiter that dies leaves nothing behind: the
//! kernel forgets it, so no one is ever stuck behind a dead waiter.

use std::sync::atomic::{AtomicU32, Ordering};

use rustix::thread::futex;

use super::clock::Deadline;

/// Waits while `word` holds `expected`, until woken, a signal, or `deadline`.
/// Returns false if the deadline has passed. Spurious returns are possible:
/// callers re-check their condition in a loop.
pub fn wait(word: &AtomicU32, expected: u32, deadline: Deadline) -> bool {
    let timeout = match deadline.remaining() {
        None => None,
        Some(left) if left.is_zero() => return false,
        Some(left) => Some(futex::Timespec {
            tv_sec: left.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        }),
    };
    // EAGAIN (the word moved), EINTR and ETIMEDOUT all mean "look again".
    let _ = futex::wait(word, futex::Flags::empty(), expected, timeout.as_ref());
    !deadline.passed()
}

/// Wakes up to `n` waiters on `word`.
pub fn wake(word: &AtomicU32, n: u32) {
    let _ = futex::wake(word, futex::Flags::empty(), n.min(i32::MAX as u32));
}

/// Wakes every waiter on `word`.
pub fn wake_all(word: &AtomicU32) {
    wake(word, i32::MAX as u32);
}

/// For a wake-once flag: a sleeper raises it (any value but 0) before it
/// looks a last time and sleeps on it; a writer that just published calls
/// this, and wakes the flag's sleepers if it returns true. The flag is then
/// cleared (the wake-up paid): until a sleeper raises it again, further
/// records call no futex wake. A woken sleeper may not run for a while (on
/// one CPU, not until the writer stops), and every record until then paid
/// one (64 B puts on one CPU: 1.7 futex calls a message). Sleeping on the
/// flag rather than on the published word means a writer that clears it
/// between a sleeper's last look and its sleep changes the value the
/// sleeper sleeps on: that wake-up cannot be slept through.
#[inline]
pub(crate) fn owes_wake(flag: &AtomicU32) -> bool {
    flag.load(Ordering::Acquire) != 0 && flag.swap(0, Ordering::AcqRel) != 0
}
