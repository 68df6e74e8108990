//! How long a waiter spins before it parks, learnt from its recent waits,
//! as glibc's adaptive mutexes and parking_lot's spin-then-park do: a peer
//! that typically answers within the caller's bound is worth spinning the
//! whole bound for, one that answers in a millisecond is not worth any.
//! And no spinning at all while the CPUs are oversubscribed
//! ([`crate::os::contention`]): then the spinner holds the CPU its peer
//! needs.
//!
//! Why the whole bound and not twice the typical wait: a park is dear. A
//! sleeping process takes 20-45 us to wake on an idle VM (`supervisor
//! bench queue` measures two processes waking each other through bare
//! futex words: 42 us a round trip here), so a wait that runs a little
//! past twice the typical one (a page fault in the peer, an allocation
//! that grows) costs a wake-up far longer than the spin it saved. With
//! twice the typical wait, a manager client filling a new dict parked on
//! about one call in 24 (the server's page faults); spinning the bound,
//! its calls went from 2.1 us to 1.6 us each, the same build otherwise,
//! runs taken in turns.
//!
//! When the CPUs are oversubscribed by the waiter's own peers (four
//! manager clients and the server on two cores), giving the CPU away with
//! `sched_yield` beats parking: the peers run at once and the waiter needs
//! no wake-up. When they are oversubscribed by someone else's busy loops, a
//! yield often hands a whole time slice (milliseconds) to a loop (measured:
//! one yield in five took 4 ms beside two busy loops). [`yield_pays`]
//! tells the two apart by whether more threads are runnable than the
//! waiter's peers. (Choosing by how long recent waits of each kind took
//! was tried: one client's yield among parking peers is slow, so every
//! client learnt to park, at half the rate of all yielding.)
//!
//! A [`SpinBudget`] keeps a moving average of how long its waits took
//! (until the awaited word moved, parked time included). While that is
//! within the caller's bound it spins the bound; past it, a [`FLOOR`], so
//! that a peer which became fast again is noticed.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::os::contention::{oversubscribed, runnable, usable_cpus};

/// The least a waiter that may spin at all spins: enough to catch a reply
/// already on its way, little enough to cost nothing against a park.
pub(crate) const FLOOR: Duration = Duration::from_micros(2);

/// The longest typical wait still worth a spin on oversubscribed CPUs.
pub(crate) const CROWDED: Duration = Duration::from_micros(2);

/// The moving average's unknown state: spin the whole bound.
const UNKNOWN: u32 = u32::MAX;

/// A waiter's spin budget (atomics, so a handle shared by threads can keep
/// one; a lost update between threads only blurs the average).
#[derive(Debug)]
pub(crate) struct SpinBudget {
    /// Moving average of recent waits, in nanoseconds.
    typical_ns: AtomicU32,
}

impl Default for SpinBudget {
    fn default() -> Self {
        SpinBudget {
            typical_ns: AtomicU32::new(UNKNOWN),
        }
    }
}

impl Clone for SpinBudget {
    fn clone(&self) -> Self {
        SpinBudget {
            typical_ns: AtomicU32::new(self.typical_ns.load(Ordering::Relaxed)),
        }
    }
}

impl SpinBudget {
    /// How long to spin now, at most `bound`: all of it when the typical
    /// wait is within `bound`, else [`FLOOR`]. While the CPUs are
    /// oversubscribed, a waiter that would spin more than the floor spins
    /// only if its waits typically end within [`CROWDED`] (a peer
    /// streaming on another CPU), that long at most; any longer spin would
    /// hold the CPU the peer needs. On one CPU, never.
    pub(crate) fn limit(&self, bound: Duration) -> Duration {
        self.limit_on(bound, usable_cpus(), oversubscribed)
    }

    /// [`limit`](Self::limit) for a process that may run on `cpus` CPUs,
    /// `crowded` saying whether they are oversubscribed (asked only when
    /// it matters: it may read `/proc`).
    fn limit_on(&self, bound: Duration, cpus: usize, crowded: impl FnOnce() -> bool) -> Duration {
        // On one CPU the peer can only run once we stop: a spin there only
        // delays the answer it waits for. (The count of runnable threads
        // is the machine's, so `crowded` would not see it: a process under
        // `taskset -c 0`, its manager server beside it, spun out its bound
        // on every call, at 140-160 k round trips/s against 190-230 k.)
        if bound.is_zero() || cpus <= 1 {
            return Duration::ZERO;
        }
        let learnt = self.learnt(bound);
        // A floor's spin costs too little to ask the machine's load about
        // (a read of /proc/loadavg, tens of microseconds after a sleep).
        if learnt <= FLOOR {
            return learnt;
        }
        if crowded() {
            return match self.typical() {
                Some(typical) if typical <= CROWDED => (typical * 2).min(bound),
                _ => Duration::ZERO,
            };
        }
        learnt
    }

    /// The moving average; `None` before the first wait.
    fn typical(&self) -> Option<Duration> {
        match self.typical_ns.load(Ordering::Relaxed) {
            UNKNOWN => None,
            ns => Some(Duration::from_nanos(u64::from(ns))),
        }
    }

    /// What the recent waits say, the machine's load aside.
    fn learnt(&self, bound: Duration) -> Duration {
        match self.typical() {
            None => bound,
            Some(typical) if typical > bound => FLOOR.min(bound),
            // Waits end within the bound: one that runs longer than usual
            // is still cheaper to spin through than to wake from.
            Some(_) => bound,
        }
    }

    /// Records how long a wait took.
    pub(crate) fn record(&self, took: Duration) {
        let took = took.as_nanos().min(u128::from(UNKNOWN - 1)) as u32;
        let typical = self.typical_ns.load(Ordering::Relaxed);
        let next = if typical == UNKNOWN {
            took
        } else {
            // A quarter of the way towards the latest: a few waits change it.
            let (t, n) = (i64::from(typical), i64::from(took));
            (t + (n - t) / 4).clamp(0, i64::from(UNKNOWN - 1)) as u32
        };
        self.typical_ns.store(next, Ordering::Relaxed);
    }
}

/// How many times a yielding wait yields before it parks.
pub(crate) const YIELDS: usize = 3;

/// Whether a wait on oversubscribed CPUs should yield a few times (looking
/// in between) before it parks: only when no more threads are runnable
/// than the waiter's own `peers` (itself included: the server and the
/// clients it serves lately). Then the others are peers, and a yield hands
/// one the CPU with no wake-up to pay (two idle cores, four manager clients
/// and the server: 2x the rate of parking at once). With more runnable,
/// someone else's busy loops are among them, and a yield often gives one a
/// whole time slice: park.
pub(crate) fn yield_pays(peers: usize) -> bool {
    let runnable = runnable();
    runnable > usable_cpus() && runnable <= peers
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_micros(20);

    #[test]
    fn learns_from_waits() {
        let budget = SpinBudget::default();
        assert_eq!(budget.learnt(BOUND), BOUND);
        // Quick answers: the whole bound, so a slower one is still caught.
        budget.record(Duration::from_micros(1));
        assert_eq!(budget.learnt(BOUND), BOUND);
        // Answers slower than the bound: only the floor.
        for _ in 0..40 {
            budget.record(Duration::from_millis(1));
        }
        assert_eq!(budget.learnt(BOUND), FLOOR);
        // A peer that became quick again is noticed within a few waits.
        for _ in 0..40 {
            budget.record(Duration::from_micros(5));
        }
        assert_eq!(budget.learnt(BOUND), BOUND);
        let typical = budget.typical().expect("waits were recorded");
        assert!(
            typical >= Duration::from_micros(4) && typical <= Duration::from_micros(6),
            "{typical:?}"
        );
        assert_eq!(budget.limit(Duration::ZERO), Duration::ZERO);
        assert_eq!(SpinBudget::default().typical(), None);
    }

    #[test]
    fn one_cpu_never_spins_and_a_crowded_machine_spins_only_for_a_streaming_peer() {
        let budget = SpinBudget::default();
        assert_eq!(budget.limit_on(BOUND, 2, || false), BOUND);
        assert_eq!(budget.limit_on(BOUND, 1, || false), Duration::ZERO);
        assert_eq!(budget.limit_on(BOUND, 2, || true), Duration::ZERO);
        budget.record(Duration::from_micros(1));
        assert_eq!(budget.limit_on(BOUND, 2, || true), Duration::from_micros(2));
        assert_eq!(budget.limit_on(BOUND, 1, || true), Duration::ZERO);
        // At the floor the load is not asked about; on one CPU, no floor.
        for _ in 0..40 {
            budget.record(Duration::from_millis(1));
        }
        assert_eq!(
            budget.limit_on(BOUND, 2, || panic!("the load is not read")),
            FLOOR
        );
        assert_eq!(budget.limit_on(BOUND, 1, || false), Duration::ZERO);
    }
}
