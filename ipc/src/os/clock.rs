//! Time as the rest of the crate needs it: [`Deadline`] (when a blocking
//! call gives up), the precise and the coarse monotonic clocks in
//! nanoseconds (the same clocks in every process of a machine, so values
//! written into shared memory by one process mean the same in another),
//! and the realtime form the mq calls want.

use std::time::{Duration, Instant};

use nix::time::{clock_gettime, ClockId};

/// A point in time after which a blocking call gives up; `never()` waits forever.
#[derive(Clone, Copy, Debug)]
pub struct Deadline(Option<Instant>);

impl Deadline {
    pub fn never() -> Self {
        Deadline(None)
    }
    pub fn after(timeout: Duration) -> Self {
        // An absurd timeout (overflowing Instant) means "never".
        Deadline(Instant::now().checked_add(timeout))
    }
    pub fn is_never(&self) -> bool {
        self.0.is_none()
    }
    pub fn now() -> Self {
        Deadline(Some(Instant::now()))
    }
    /// The moment `at`.
    pub(crate) fn at(at: Instant) -> Self {
        Deadline(Some(at))
    }
    /// Milliseconds left for `poll(2)`: -1 for never, 0 when passed. Rounded up
    /// so a 0.5 ms remainder still waits instead of spinning.
    pub fn poll_millis(&self) -> i32 {
        match self.0 {
            None => -1,
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                let micros = left.as_micros();
                micros.div_ceil(1000).min(i32::MAX as u128) as i32
            }
        }
    }
    /// This deadline, or `now + step` if that comes first.
    pub fn or_sooner(self, step: Duration) -> Self {
        let stepped = Instant::now() + step;
        match self.0 {
            Some(at) if at < stepped => self,
            _ => Deadline(Some(stepped)),
        }
    }
    /// The earlier of two deadlines.
    pub fn min(self, other: Deadline) -> Self {
        match (self.0, other.0) {
            (Some(a), Some(b)) => Deadline(Some(a.min(b))),
            (Some(a), None) | (None, Some(a)) => Deadline(Some(a)),
            (None, None) => Deadline(None),
        }
    }
    pub fn passed(&self) -> bool {
        matches!(self.0, Some(at) if Instant::now() >= at)
    }
    /// Time left (zero once passed); `None` for a deadline that never comes.
    pub fn remaining(&self) -> Option<Duration> {
        self.0
            .map(|at| at.saturating_duration_since(Instant::now()))
    }
    /// The same moment on the `CLOCK_REALTIME` clock, as `mq_timedsend` wants.
    pub fn as_realtime(&self) -> Option<libc::timespec> {
        self.on_clock(ClockId::CLOCK_REALTIME)
    }

    /// The same moment on the `CLOCK_MONOTONIC` clock, as `futex_waitv` wants.
    pub(crate) fn as_monotonic(&self) -> Option<libc::timespec> {
        self.on_clock(ClockId::CLOCK_MONOTONIC)
    }

    /// The same moment on `clock`; `None` for never.
    fn on_clock(&self, clock: ClockId) -> Option<libc::timespec> {
        let left = self.remaining()?;
        let now = clock_gettime(clock).map_or(
            libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            |t| *t.as_ref(),
        );
        let nanos = now.tv_nsec as u64 + u64::from(left.subsec_nanos());
        Some(libc::timespec {
            tv_sec: now
                .tv_sec
                .saturating_add(left.as_secs().min(i64::MAX as u64 / 2) as libc::time_t)
                + (nanos / 1_000_000_000) as libc::time_t,
            tv_nsec: (nanos % 1_000_000_000) as libc::c_long,
        })
    }
}

fn nanos_of(clock: ClockId) -> u64 {
    // The monotonic clocks exist on every Linux; were the call refused, 0
    // reads as "long ago", which errs towards timing out, never hanging.
    clock_gettime(clock).map_or(0, |t| {
        (t.tv_sec() as u64)
            .saturating_mul(1_000_000_000)
            .saturating_add(t.tv_nsec() as u64)
    })
}

/// `CLOCK_MONOTONIC` in nanoseconds: comparable across the processes of one machine.
pub fn monotonic_ns() -> u64 {
    nanos_of(ClockId::CLOCK_MONOTONIC)
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: the same clock at tick
/// resolution (a few milliseconds), several times cheaper to read, for
/// stamps taken between tasks of a microsecond (heartbeats).
pub fn coarse_monotonic_ns() -> u64 {
    nanos_of(ClockId::CLOCK_MONOTONIC_COARSE)
}
