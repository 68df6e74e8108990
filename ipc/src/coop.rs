//! Sharing an executor's thread. A loop that awaits futures of ours one
//! after another, each ready at once (a queue full of items, a lazy map's
//! finished results), never gives the executor its thread back: under a
//! current-thread tokio runtime a 1 ms ticker waited 42-68 ms while a loop
//! took 2 M results of a lazy map, and would wait as long as the items
//! came. tokio's own resources give the thread back after a budget of
//! operations; ours cannot see that budget, so they count time: once the
//! futures of ours polled on a thread have been ready, without waiting,
//! for [`SLICE`], the next one polled there returns `Pending` once, its
//! waker woken at once, so the executor runs its other tasks first.
//!
//! Each future's poll goes through [`cooperative`] (or calls
//! [`yield_now`] first, and [`waited`] when it returns `Pending` to wait).
//!
//! ```
//! use std::future::Future;
//! use std::pin::Pin;
//! use std::task::{Context, Poll};
//!
//! /// A future that is always ready, and still lets others run.
//! struct Ready;
//!
//! impl Future for Ready {
//!     type Output = ();
//!     fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
//!         outlast_ipc::coop::cooperative(cx, |_| Poll::Ready(()))
//!     }
//! }
//! ```

use std::cell::Cell;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

/// How long the futures of one thread may be ready in a row before one
/// of them yields.
pub const SLICE: Duration = Duration::from_micros(500);

/// How many polls pass between two looks at the clock (a look costs tens
/// of nanoseconds; a queue's awaited get of 64 B, about as much).
const POLLS_PER_LOOK: u32 = 64;

#[derive(Clone, Copy)]
struct Streak {
    /// Polls since the last wait or yield.
    polls: u32,
    /// When the first look of this streak was.
    since: Option<Instant>,
}

const NO_STREAK: Streak = Streak {
    polls: 0,
    since: None,
};

thread_local! {
    static STREAK: Cell<Streak> = const { Cell::new(NO_STREAK) };
}

/// `poll`, unless this thread's futures have been ready for a whole
/// [`SLICE`]: then `Pending` (the waker woken) and `poll` is not called.
#[inline]
pub fn cooperative<T>(
    cx: &mut Context<'_>,
    poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
) -> Poll<T> {
    if yield_now(cx) {
        return Poll::Pending;
    }
    let polled = poll(cx);
    if polled.is_pending() {
        waited();
    }
    polled
}

/// Counts a poll of a future on this thread: `true` if it should return
/// `Pending` now, before it does anything (the waker is woken already),
/// to let the executor's other tasks run.
#[inline]
pub fn yield_now(cx: &mut Context<'_>) -> bool {
    let Ok(mut streak) = STREAK.try_with(Cell::get) else {
        return false;
    };
    streak.polls += 1;
    if streak.polls % POLLS_PER_LOOK != 0 {
        let _ = STREAK.try_with(|s| s.set(streak));
        return false;
    }
    look(streak, cx)
}

/// [`yield_now`] for a future each of whose polls costs microseconds (a
/// round trip to a manager): looks at the clock at every poll, not every
/// 64th. (Counted by the look, a loop of awaited manager
/// calls gave the thread back every 1.4 ms or so, not every [`SLICE`].)
#[inline]
pub fn yield_now_costly(cx: &mut Context<'_>) -> bool {
    let Ok(mut streak) = STREAK.try_with(Cell::get) else {
        return false;
    };
    streak.polls += 1;
    look(streak, cx)
}

#[cold]
fn look(mut streak: Streak, cx: &mut Context<'_>) -> bool {
    let now = Instant::now();
    let since = *streak.since.get_or_insert(now);
    let yielding = now.duration_since(since) >= SLICE;
    if yielding {
        streak = NO_STREAK;
        cx.waker().wake_by_ref();
    }
    let _ = STREAK.try_with(|s| s.set(streak));
    yielding
}

/// A future of this thread returns `Pending` to wait: the executor gets
/// its thread back anyway.
#[inline]
pub fn waited() {
    let _ = STREAK.try_with(|s| s.set(NO_STREAK));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn a_thread_of_ready_futures_yields_once_per_slice_and_a_wait_starts_afresh() {
        let mut cx = Context::from_waker(Waker::noop());
        waited();
        let started = Instant::now();
        let mut yields = 0;
        while yields < 3 {
            yields += u32::from(yield_now(&mut cx));
            assert!(started.elapsed() < Duration::from_secs(30), "no yield");
        }
        assert!(
            started.elapsed() >= SLICE * 3,
            "a yield before its slice was up"
        );
        waited();
        let quick = (0..POLLS_PER_LOOK).filter(|_| yield_now(&mut cx)).count();
        assert_eq!(quick, 0, "a streak starts at its first look");
    }
}
