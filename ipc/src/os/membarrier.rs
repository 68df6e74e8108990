//! Asymmetric fences between processes (`membarrier(2)`). A fast path that
//! runs millions of times a second pairs a plain store and a load with only
//! a compiler fence; the rare slow path that must not miss it calls
//! [`global_fence`], which makes every running thread of every registered
//! process pass a full memory barrier. Together they order like a full
//! fence on both sides (the pattern of liburcu and folly's hazard pointers),
//! and the fast path never drains its store buffer.

use std::sync::atomic::{AtomicU32, Ordering};

use rustix::thread::{membarrier, MembarrierCommand};

/// The pid that registered (a forked child must register again).
static REGISTERED_PID: AtomicU32 = AtomicU32::new(0);
/// The pid the kernel refused: asked once per process, not once per call.
static REFUSED_PID: AtomicU32 = AtomicU32::new(0);

/// Registers this process to receive [`global_fence`]s; false if the
/// kernel (or a seccomp filter) refuses. A fast path may rely on the
/// asymmetric pairing only after this returned true in its process.
pub(crate) fn register() -> bool {
    let pid = std::process::id();
    if REGISTERED_PID.load(Ordering::Acquire) == pid {
        return true;
    }
    if REFUSED_PID.load(Ordering::Acquire) == pid {
        return false;
    }
    if membarrier(MembarrierCommand::RegisterGlobalExpedited).is_err() {
        REFUSED_PID.store(pid, Ordering::Release);
        return false;
    }
    REGISTERED_PID.store(pid, Ordering::Release);
    true
}

#[cfg(test)]
thread_local! {
    /// How many fences this thread asked for: what the tests of the paths
    /// that should rarely fence count.
    pub(crate) static FENCES_ON_THIS_THREAD: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A full memory barrier on every running thread of every registered
/// process, before this returns.
pub(crate) fn global_fence() -> std::io::Result<()> {
    #[cfg(test)]
    FENCES_ON_THIS_THREAD.with(|n| n.set(n.get() + 1));
    membarrier(MembarrierCommand::GlobalExpedited).map_err(std::io::Error::from)
}
