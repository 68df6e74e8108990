//! [`Waiters`]: a table of waiter slots in shared memory, each a futex word
//! of its own, through which a `Condition` wakes exactly the waiters it
//! means to, oldest first.
//!
//! A waiter claims a free slot (holding the condition's lock), stamps it
//! with an arrival ticket and its thread's identity, and sleeps on it.
//! `wake(n)` moves the `n` oldest waiting slots to `SIGNALED`, one
//! compare-and-swap each; a waiter whose deadline passes moves its own slot
//! back to `FREE` the same way, so exactly one of the two wins: a waiter is
//! either notified or timed out, never both, and a notify is never spent
//! on a waiter that left. A waiter that arrives after a notify cannot take
//! it (it is not in a slot the notify chose). A waiter SIGKILLed in its
//! slot is found dead (its thread is gone from `/proc`) by the next
//! `wake(n)` that picks it, or by a waiter looking for a free slot, and its
//! slot is freed.
//!
//! More waiters at once than slots: the rest wait on a shared sequence
//! word, which a notify moves; those may wake a little more than asked
//! (never fewer), as Python's own `Condition` can when it times out.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::os::thread_id::{thread_id, thread_start_time};
use crate::os::{futex, procfs, Deadline};

pub(crate) const SLOTS: usize = 64;

const FREE: u32 = 0;
/// Claimed, being stamped: not yet visible to `wake`.
const CLAIMED: u32 = 1;
const WAITING: u32 = 2;
const SIGNALED: u32 = 3;

#[repr(C)]
struct Slot {
    state: AtomicU32,
    tid: AtomicU32,
    ticket: AtomicU64,
    start: AtomicU64,
}

#[repr(C)]
pub(crate) struct Waiters {
    next_ticket: AtomicU64,
    /// Waiters that found no free slot, and the word they sleep on.
    overflow_waiting: AtomicU32,
    overflow_sequence: AtomicU32,
    slots: [Slot; SLOTS],
}

/// Where a waiter waits.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Place {
    Slot(usize),
    /// No free slot: on the overflow sequence, as it was when read.
    Overflow(u32),
}

impl Waiters {
    /// Takes a place; call holding the condition's lock.
    pub(crate) fn enter(&self) -> Place {
        for reclaim in [false, true] {
            for (i, slot) in self.slots.iter().enumerate() {
                if reclaim {
                    self.reclaim_if_dead(slot);
                }
                if slot
                    .state
                    .compare_exchange(FREE, CLAIMED, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    slot.tid.store(thread_id(), Ordering::Relaxed);
                    slot.start.store(thread_start_time(), Ordering::Relaxed);
                    slot.ticket.store(
                        self.next_ticket.fetch_add(1, Ordering::Relaxed),
                        Ordering::Relaxed,
                    );
                    slot.state.store(WAITING, Ordering::Release);
                    return Place::Slot(i);
                }
            }
        }
        self.overflow_waiting.fetch_add(1, Ordering::AcqRel);
        Place::Overflow(self.overflow_sequence.load(Ordering::Acquire))
    }

    /// Sleeps in `place` until woken (true) or `deadline` (false), and
    /// leaves the place.
    pub(crate) fn wait(&self, place: Place, deadline: Deadline) -> bool {
        match place {
            Place::Slot(i) => {
                let Some(slot) = self.slots.get(i) else {
                    return false;
                };
                loop {
                    if slot.state.load(Ordering::Acquire) == SIGNALED {
                        slot.state.store(FREE, Ordering::Release);
                        return true;
                    }
                    if !futex::wait(&slot.state, WAITING, deadline) {
                        // Out of time, unless a notify got here first.
                        return match slot.state.compare_exchange(
                            WAITING,
                            FREE,
                            Ordering::AcqRel,
                            Ordering::Acquire,
                        ) {
                            Ok(_) => false,
                            Err(_) => {
                                slot.state.store(FREE, Ordering::Release);
                                true
                            }
                        };
                    }
                }
            }
            Place::Overflow(seen) => {
                let in_time = loop {
                    if self.overflow_sequence.load(Ordering::Acquire) != seen {
                        break true;
                    }
                    if !futex::wait(&self.overflow_sequence, seen, deadline) {
                        break self.overflow_sequence.load(Ordering::Acquire) != seen;
                    }
                };
                self.overflow_waiting.fetch_sub(1, Ordering::AcqRel);
                in_time
            }
        }
    }

    /// The word a future waiting in `place` sleeps on, and the value it
    /// holds until a notify comes.
    pub(crate) fn word(&self, place: &Place) -> Option<(&AtomicU32, u32)> {
        match *place {
            Place::Slot(i) => self.slots.get(i).map(|slot| (&slot.state, WAITING)),
            Place::Overflow(seen) => Some((&self.overflow_sequence, seen)),
        }
    }

    /// Whether a notify has come to `place`, without sleeping; if it has,
    /// the place is left.
    pub(crate) fn take_wake(&self, place: &Place) -> bool {
        match *place {
            Place::Slot(i) => {
                let Some(slot) = self.slots.get(i) else {
                    return true;
                };
                let signaled = slot.state.load(Ordering::Acquire) == SIGNALED;
                if signaled {
                    slot.state.store(FREE, Ordering::Release);
                }
                signaled
            }
            Place::Overflow(seen) => {
                let moved = self.overflow_sequence.load(Ordering::Acquire) != seen;
                if moved {
                    self.overflow_waiting.fetch_sub(1, Ordering::AcqRel);
                }
                moved
            }
        }
    }

    /// A waiter that will not wait after all (its future was dropped)
    /// leaves `place`; true if a notify had chosen it already, which the
    /// caller passes on, so that no notify is spent on a waiter that left.
    pub(crate) fn abandon(&self, place: &Place) -> bool {
        match *place {
            Place::Slot(i) => {
                let Some(slot) = self.slots.get(i) else {
                    return false;
                };
                match slot.state.compare_exchange(
                    WAITING,
                    FREE,
                    Ordering::AcqRel,
                    Ordering::Acquire,
                ) {
                    Ok(_) => false,
                    Err(SIGNALED) => {
                        slot.state.store(FREE, Ordering::Release);
                        true
                    }
                    // Freed as a dead waiter's meanwhile: nothing was given.
                    Err(_) => false,
                }
            }
            Place::Overflow(seen) => {
                self.overflow_waiting.fetch_sub(1, Ordering::AcqRel);
                self.overflow_sequence.load(Ordering::Acquire) != seen
            }
        }
    }

    /// Wakes up to `n` waiters, oldest first; how many it woke.
    pub(crate) fn wake(&self, n: u32) -> u32 {
        let everyone = n == u32::MAX;
        let mut woken = 0;
        while woken < n {
            // The oldest waiting slot.
            let oldest = self
                .slots
                .iter()
                .filter(|s| s.state.load(Ordering::Acquire) == WAITING)
                .min_by_key(|s| s.ticket.load(Ordering::Relaxed));
            let Some(slot) = oldest else { break };
            // A wake-up given to a dead waiter would be lost to the living.
            if !everyone && self.reclaim_if_dead(slot) {
                continue;
            }
            if slot
                .state
                .compare_exchange(WAITING, SIGNALED, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
            {
                futex::wake(&slot.state, u32::MAX);
                woken += 1;
            }
        }
        if woken < n && self.overflow_waiting.load(Ordering::Acquire) > 0 {
            self.overflow_sequence.fetch_add(1, Ordering::AcqRel);
            futex::wake(&self.overflow_sequence, n - woken);
            woken = n.min(woken + self.overflow_waiting.load(Ordering::Acquire));
        }
        woken
    }

    /// Frees `slot` if the waiter in it is gone; true if it did.
    fn reclaim_if_dead(&self, slot: &Slot) -> bool {
        let state = slot.state.load(Ordering::Acquire);
        if state != WAITING && state != SIGNALED {
            return false;
        }
        let tid = slot.tid.load(Ordering::Relaxed);
        let alive = procfs::start_time_of(tid).is_some_and(|(start, st)| {
            st != 'Z' && st != 'X' && start == slot.start.load(Ordering::Relaxed)
        });
        !alive
            && slot
                .state
                .compare_exchange(state, FREE, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
    }
}
