//! The calling thread's kernel id, cached per thread, and this process's
//! id, cached per process (glibc asks the kernel on every `getpid`). A `fork` copies the
//! forking thread's cache into the child, where it would name the parent's
//! thread: a fork handler bumps a counter in the child, which invalidates
//! every cached id there. The id tells which thread owns a queue's biased
//! producer side (`queue::bias`), so a stale one would let two threads write
//! at once. The thread's start time is cached the same way: with the id it
//! names a lock's holder (`sync::robust`).

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
    /// (value of FORKS when cached, the thread's start time).
    static START: Cell<(u32, u64)> = const { Cell::new((u32::MAX, 0)) };
}

/// (value of FORKS when cached + 1, pid): 0 until first asked.
static PID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// This process's id, without a syscall after the first call (nor after
/// the first call in a forked child).
#[inline]
pub(crate) fn process_id() -> u32 {
    watch_forks();
    let forks = FORKS.load(Ordering::Relaxed);
    let cached = PID.load(Ordering::Relaxed);
    if cached >> 32 == u64::from(forks) + 1 {
        return cached as u32;
    }
    let pid = std::process::id();
    PID.store(
        (u64::from(forks) + 1) << 32 | u64::from(pid),
        Ordering::Relaxed,
    );
    pid
}

fn watch_forks() {
    WATCH_FORKS.call_once(|| {
        // SAFETY: registers a handler that only does an atomic add; glibc's
        // fork runs it in the child.
        unsafe { libc::pthread_atfork(None, None, Some(count_fork_in_child)) };
    });
}

/// The calling thread's id (`gettid`), without a syscall after the first call.
#[inline]
pub(crate) fn thread_id() -> u32 {
    watch_forks();
    let forks = FORKS.load(Ordering::Relaxed);
    CACHED.with(|cached| {
        let (at, tid) = cached.get();
        if at == forks {
            return tid;
        }
        let tid = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        cached.set((forks, tid));
        tid
    })
}

/// The calling thread's start time (clock ticks after boot, from `/proc`),
/// read once per thread: with the id, it names the thread uniquely, so a
/// lock holder's record cannot be mistaken for a later thread that got
/// the same id. 0 if `/proc` cannot say.
#[inline]
pub(crate) fn thread_start_time() -> u64 {
    let tid = thread_id();
    // (thread_id() above registered the fork handler.)
    let forks = FORKS.load(Ordering::Relaxed);
    START.with(|cached| {
        let (at, start) = cached.get();
        if at == forks {
            return start;
        }
        let start = super::procfs::start_time_of(tid).map_or(0, |(s, _)| s);
        cached.set((forks, start));
        start
    })
}
