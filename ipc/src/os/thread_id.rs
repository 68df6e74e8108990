//! The calling thread's kernel id, cached per thread. A `fork` copies the
//! forking thread's cache into the child, where it would name the parent's
//! thread: a fork handler bumps a counter in the child, which invalidates
//! every cached id there. The id tells which thread owns a queue's biased
//! producer side (`queue::bias`), so a stale one would let two threads write
//! at once.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

/// Forks this process has gone through as a child (bumped in each child).
static FORKS: AtomicU32 = AtomicU32::new(0);
static WATCH_FORKS: Once = Once::new();

extern "C" fn count_fork_in_child() {
    // Async-signal-safe: one atomic add.
    FORKS.fetch_add(1, Ordering::Relaxed);
}

thread_local! {
    /// (value of FORKS when cached, tid); FORKS never reaches u32::MAX first.
    static CACHED: Cell<(u32, u32)> = const { Cell::new((u32::MAX, 0)) };
}

/// The calling thread's id (`gettid`), without a syscall after the first call.
#[inline]
pub(crate) fn thread_id() -> u32 {
    WATCH_FORKS.call_once(|| {
        // SAFETY: registers a handler that only does an atomic add; glibc's
        // fork runs it in the child.
        unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
    });
    let forks = FORKS.load(Ordering::Relaxed);
    CACHED.with(|cached| {
        let (at, tid) = cached.get();
        if at == forks {
            return tid;
        }
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        cached.set((forks, tid));
        tid
    })
}
