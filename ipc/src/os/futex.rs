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

/// One word of a [`wait_any`]: sleep while it holds `expected`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AnyWord<'a> {
    pub word: &'a AtomicU32,
    pub expected: u32,
}

/// The most words one [`wait_any`] takes (the kernel's limit).
pub(crate) const MAX_WAIT_ANY: usize = 128;

/// Whether this kernel has `futex_waitv` (Linux 5.16 and later).
pub(crate) fn can_wait_any() -> bool {
    static CAN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *CAN.get_or_init(|| {
        // An empty list is refused with EINVAL where the call exists.
        !matches!(
            futex::waitv(
                &[],
                futex::WaitvFlags::empty(),
                None,
                futex::ClockId::Monotonic
            ),
            Err(rustix::io::Errno::NOSYS)
        )
    })
}

/// Waits while every word of `words` (at most [`MAX_WAIT_ANY`]) holds its
/// value, until one of them is woken, a signal, or `deadline`: the index
/// of the woken word, or `None` (a word had moved already, the deadline
/// passed, a signal). Needs [`can_wait_any`]; spurious returns are
/// possible, as with [`wait`].
pub(crate) fn wait_any(words: &[AnyWord<'_>], deadline: Deadline) -> Option<usize> {
    let waits: Vec<futex::Wait> = words
        .iter()
        .take(MAX_WAIT_ANY)
        .map(|w| {
            let mut wait = futex::Wait::new();
            wait.val = u64::from(w.expected);
            wait.uaddr = futex::WaitPtr::new(w.word.as_ptr().cast());
            // Shared, as every other wait and wake here.
            wait.flags = futex::WaitFlags::SIZE_U32;
            wait
        })
        .collect();
    // The timeout is a moment on the monotonic clock, not a span.
    if deadline.remaining().is_some_and(|left| left.is_zero()) {
        return None;
    }
    let timeout = deadline.as_monotonic().map(|at| futex::Timespec {
        tv_sec: at.tv_sec,
        tv_nsec: at.tv_nsec,
    });
    futex::waitv(
        &waits,
        futex::WaitvFlags::empty(),
        timeout.as_ref(),
        futex::ClockId::Monotonic,
    )
    .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn wait_any_sleeps_until_its_deadline_or_a_wake() {
        if !can_wait_any() {
            return;
        }
        let (a, b) = (AtomicU32::new(0), AtomicU32::new(7));
        let words = [
            AnyWord {
                word: &a,
                expected: 0,
            },
            AnyWord {
                word: &b,
                expected: 7,
            },
        ];
        let started = Instant::now();
        assert_eq!(
            wait_any(&words, Deadline::after(Duration::from_millis(50))),
            None
        );
        let slept = started.elapsed();
        assert!(slept >= Duration::from_millis(50), "woke early: {slept:?}");
        // A word that moved already: back at once.
        b.store(8, Ordering::SeqCst);
        assert_eq!(
            wait_any(&words, Deadline::after(Duration::from_secs(60))),
            None
        );
        b.store(7, Ordering::SeqCst);
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(20));
                b.store(9, Ordering::SeqCst);
                wake(&b, 1);
            });
            assert_eq!(
                wait_any(&words, Deadline::after(Duration::from_secs(60))),
                Some(1)
            );
        });
    }
}
