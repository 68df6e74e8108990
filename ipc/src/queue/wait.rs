//! How the ring's callers wait: `Patience` (a timeout whose deadline is read
//! from the clock only once waiting is needed), `lock_side` (a robust mutex
//! taken under that patience, released by a guard), and `sleep_on` (spin on
//! a position word while that pays, then sleep on its futex).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::os::Deadline;
use crate::spin::SpinBudget;
use crate::sync::robust::{Acquired, NotAcquired, RobustMutex};

use super::bias::Bias;
use super::ring::RingError;

/// How long a waiter sleeps before re-checking whether its peers are alive.
pub(crate) const LIVENESS_SLICE: Duration = Duration::from_millis(50);

/// The longest a waiter spins on the other side's word before sleeping: a
/// peer that is streaming or answering moves it within microseconds, and a
/// futex sleep plus wake-up costs more than that on most machines. Within
/// it, each handle spins as long as its recent waits say pays, and not at
/// all while more threads are runnable than CPUs.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// The longest pause between two looks while spinning (in `spin_loop` hints,
/// each some tens of nanoseconds).
const MAX_PAUSE: u32 = 64;

/// How long a call may wait, with its deadline read from the clock only
/// once waiting is needed: most puts and gets never wait, and a clock read
/// is a good part of their cost.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Patience {
    /// `None`: forever.
    timeout: Option<Duration>,
    started: Option<Deadline>,
}

impl Patience {
    pub(crate) fn never() -> Self {
        Patience {
            timeout: None,
            started: None,
        }
    }
    pub(crate) fn now() -> Self {
        Self::after(Duration::ZERO)
    }
    pub(crate) fn after(timeout: Duration) -> Self {
        Patience {
            timeout: Some(timeout),
            started: None,
        }
    }
    /// The deadline, fixed the first time it is asked for.
    pub(crate) fn deadline(&mut self) -> Deadline {
        *self.started.get_or_insert_with(|| match self.timeout {
            None => Deadline::never(),
            Some(t) => Deadline::after(t),
        })
    }
    pub(crate) fn passed(&mut self) -> bool {
        match self.timeout {
            None => false,
            Some(t) if t.is_zero() => true,
            Some(_) => self.deadline().passed(),
        }
    }
}

/// A held side mutex; unlocked when dropped (also if a caller's closure
/// panics in the middle of a get).
pub(crate) struct Locked<'a> {
    mutex: &'a RobustMutex,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

/// Takes `mutex` as `patience` allows.
pub(crate) fn lock_side<'a>(
    mutex: &'a RobustMutex,
    patience: &mut Patience,
) -> Result<Locked<'a>, RingError> {
    // Free (the usual case): no clock, no deadline.
    let first = mutex.try_lock();
    let outcome = match first {
        Err(NotAcquired::Timeout) if !patience.passed() => mutex.lock(patience.deadline()),
        other => other,
    };
    match outcome {
        // A dead holder left nothing visible half-done: commit after copy.
        Ok(Acquired::Clean) | Ok(Acquired::OwnerDied) => Ok(Locked { mutex }),
        Err(NotAcquired::Timeout) => Err(RingError::Timeout),
        Err(NotAcquired::Os(e)) => Err(RingError::Os(e)),
    }
}

pub(crate) fn low32(word: &AtomicU64) -> &AtomicU32 {
    // SAFETY: the low half of an 8-aligned AtomicU64 is a 4-aligned u32 on
    // little-endian targets; the futex only reads it atomically.
    unsafe { &*(word.as_ptr() as *const AtomicU32) }
}

/// Waits for `word` to move from `seen`: spins as `budget` allows within
/// `spin` (not at all while the CPUs are oversubscribed), then sleeps at
/// most one liveness slice; records how long that took in `budget`. True
/// if the word moved. `writer_bias`: the bias of the side that moves
/// `word`, whose owner publishes and then checks for sleepers with no
/// fence of its own.
pub(crate) fn sleep_on(
    word: &AtomicU64,
    seen: u64,
    waiting: &AtomicU32,
    deadline: Deadline,
    spin: Duration,
    budget: &SpinBudget,
    writer_bias: &Bias<'_>,
) -> bool {
    let started = std::time::Instant::now();
    let spin = budget.limit(spin);
    if !spin.is_zero() {
        let limit = match deadline.remaining() {
            Some(left) => left.min(spin),
            None => spin,
        };
        // Look less and less often: each look pulls the other side's line
        // over, and a writer that finds it gone pays for it on every record.
        let mut pause = 4u32;
        loop {
            for _ in 0..16 {
                if word.load(Ordering::Acquire) != seen {
                    budget.record(started.elapsed());
                    return true;
                }
                for _ in 0..pause {
                    std::hint::spin_loop();
                }
                pause = (pause * 2).min(MAX_PAUSE);
            }
            if started.elapsed() >= limit {
                break;
            }
        }
    }
    let mut slice = match deadline.remaining() {
        Some(left) => left.min(LIVENESS_SLICE),
        None => LIVENESS_SLICE,
    };
    waiting.fetch_add(1, Ordering::AcqRel);
    // Either the owner sees us counted, or we see its new position. If that
    // cannot be made sure, sleep briefly instead.
    if writer_bias.active() && crate::os::membarrier::global_fence().is_err() {
        slice = slice.min(Duration::from_millis(1));
    }
    crate::os::futex::wait(low32(word), seen as u32, Deadline::after(slice));
    waiting.fetch_sub(1, Ordering::AcqRel);
    budget.record(started.elapsed());
    word.load(Ordering::Acquire) != seen
}
