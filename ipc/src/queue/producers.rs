//! Who may still put: a table of producer slots (pid, process start time,
//! open flag) in the queue's shared memory. Every handle is a producer from
//! the moment it exists until `close` or drop: it registers when it is made
//! or cloned, and a handle sent to a child reserves a slot *before* the child
//! runs, which the child then adopts, so there is never a moment when a
//! producer-to-be is unknown. A process that dies is noticed by the consumers
//! (its pid is gone, a zombie, or now another process). Once every producer
//! has closed or died, consumers drain and then get `Disconnected`. Python's
//! `Queue` cannot tell a dead producer from a slow one.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crate::os::clock::monotonic_ns;
use crate::os::liveness::process_alive;

pub(crate) const SLOTS: usize = 256;

#[repr(C)]
pub(crate) struct ProducerSlot {
    pid: AtomicU32,
    open: AtomicU32,
    start_time: AtomicU64,
    /// For a slot reserved for a child that has not adopted it yet: when the
    /// reservation lapses (monotonic ns). A child killed before it ran would
    /// otherwise keep the queue open for as long as its parent lives.
    reserved_until: AtomicU64,
    /// Gets through this handle now waiting for a record: while every open
    /// handle waits so, none of them is putting (see `all_open_waiting`).
    getting: AtomicU32,
    /// Non-zero while a thread of the handle's process waits in a join
    /// (see `joining`).
    joining: AtomicU32,
    /// Items of a `JoinableQueue` taken through this handle and not yet
    /// marked done: lost, for `join` to report, if its process dies.
    held: AtomicU64,
    /// Puts of this handle's process now waiting for room (counted on one
    /// of its slots: see `nothing_can_take`).
    putting: AtomicU32,
}

/// Why every open handle of a queue waits (see `all_open_waiting` and
/// `nothing_can_take`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AllWaiting {
    /// Each in a get (or to put).
    NoneInJoin,
    /// Each in a get, or in a process waiting in a join (this pid's, first found).
    SomeInJoin(u32),
}

/// A slot's pid while a dead process's slot is being cleared: no process
/// has it, and nobody may take it yet.
const FREEING: u32 = u32::MAX;

/// How long a child has to adopt the producer slot reserved for it.
const RESERVATION: std::time::Duration = std::time::Duration::from_secs(5);

#[repr(C)]
pub(crate) struct Producers {
    /// Someone has registered at least once.
    ever: AtomicU32,
    /// The table was full once: stop judging disconnection (never wrongly).
    overflowed: AtomicU32,
    /// A get said that nothing can answer it (`stuck`): said once per queue.
    hinted: AtomicU32,
    /// A put said that nothing can take (`stuck`): said once per queue.
    put_hinted: AtomicU32,
    /// Items taken and never to be marked done (their handle's process
    /// died, or let the handle go first), not yet reported by a `join`.
    lost: AtomicU64,
    /// The last process that lost some.
    lost_by: AtomicU32,
    slots: [ProducerSlot; SLOTS],
}

impl Producers {
    /// Registers this process; the slot index, or `None` if the table is
    /// full. A full table is first rid of dead processes' slots: a queue
    /// that outlives hundreds of killed producers still tells when the
    /// last one is gone (their slots were freed only while a consumer
    /// waited, so a consumer that never waited long saw the table fill,
    /// and its gets waited forever once every producer was dead).
    pub(crate) fn register(&self) -> Option<usize> {
        let pid = std::process::id();
        let start = crate::os::procfs::own_start_time();
        for attempt in 0..2 {
            if let Some(index) = self.claim_free(pid, start) {
                return Some(index);
            }
            if attempt == 0 {
                self.free_dead();
            }
        }
        self.overflowed.store(1, Ordering::Release);
        self.ever.store(1, Ordering::Release);
        None
    }

    /// Takes a free slot for `pid`, started at `start`.
    fn claim_free(&self, pid: u32, start: u64) -> Option<usize> {
        for (i, slot) in self.slots.iter().enumerate() {
            if slot
                .pid
                .compare_exchange(0, pid, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
            {
                slot.start_time.store(start, Ordering::Release);
                slot.getting.store(0, Ordering::Release);
                slot.joining.store(0, Ordering::Release);
                slot.held.store(0, Ordering::Release);
                slot.putting.store(0, Ordering::Release);
                slot.open.store(1, Ordering::Release);
                // Only now: a consumer must never see "someone produced" and no one open.
                self.ever.store(1, Ordering::Release);
                return Some(i);
            }
        }
        None
    }

    /// Registers a slot on behalf of a child about to be started.
    pub(crate) fn reserve(&self) -> Option<usize> {
        let index = self.register()?;
        if let Some(slot) = self.slots.get(index) {
            slot.reserved_until.store(
                monotonic_ns() + RESERVATION.as_nanos() as u64,
                Ordering::Release,
            );
        }
        Some(index)
    }

    /// A child process takes over a slot its parent reserved for it (or,
    /// if the reservation lapsed, registers afresh).
    pub(crate) fn adopt(&self, index: usize) -> Option<usize> {
        self.adopt_reserved(index).or_else(|| self.register())
    }

    fn adopt_reserved(&self, index: usize) -> Option<usize> {
        let slot = self.slots.get(index)?;
        let me = std::process::id();
        let start = crate::os::procfs::own_start_time();
        let owner = slot.pid.load(Ordering::Acquire);
        if owner == 0 || owner == FREEING || slot.reserved_until.load(Ordering::Acquire) == 0 {
            return None;
        }
        // The reserving parent's pid becomes ours; the start time with it.
        if slot
            .pid
            .compare_exchange(owner, me, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return None;
        }
        slot.start_time.store(start, Ordering::Release);
        slot.reserved_until.store(0, Ordering::Release);
        Some(index)
    }

    /// The handle of slot `index` will put no more; it keeps the slot
    /// (it may still take, and its process counts as one that may) until
    /// [`free`](Self::free).
    pub(crate) fn close(&self, index: usize) {
        if let Some(slot) = self.slots.get(index) {
            slot.open.store(0, Ordering::Release);
        }
    }

    /// Lets go of a slot taken by `register` (its handle is dropped).
    /// Items it holds go to another handle of this process (whose
    /// `task_done` may yet mark them), or are lost.
    pub(crate) fn free(&self, index: usize) {
        if let Some(slot) = self.slots.get(index) {
            let held = slot.held.swap(0, Ordering::AcqRel);
            if held > 0 {
                let me = std::process::id();
                // Not a slot reserved for a child: the child adopts it.
                let heir = self.slots.iter().enumerate().find(|(i, other)| {
                    *i != index
                        && other.pid.load(Ordering::Acquire) == me
                        && other.reserved_until.load(Ordering::Acquire) == 0
                });
                match heir {
                    Some((_, heir)) => {
                        heir.held.fetch_add(held, Ordering::AcqRel);
                    }
                    None => self.lose(held, me),
                }
            }
            slot.open.store(0, Ordering::Release);
            slot.start_time.store(0, Ordering::Release);
            slot.reserved_until.store(0, Ordering::Release);
            slot.pid.store(0, Ordering::Release);
        }
    }

    /// `n` items of a `JoinableQueue` are taken through the handle of slot
    /// `index` (counted before the take commits: a death in between counts
    /// one too many, never one too few, so a `join` never waits for it).
    pub(crate) fn took(&self, index: usize, n: u64) {
        if let Some(slot) = self.slots.get(index) {
            slot.held.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// One item is marked done through the handle of slot `index` (if it
    /// has one): taken off its count, or off another handle's of this
    /// process (taken by one thread, marked by another), or else off the
    /// lost ones.
    pub(crate) fn done_through(&self, index: Option<usize>) {
        let take_one = |slot: &ProducerSlot| {
            slot.held
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
        };
        if index.and_then(|i| self.slots.get(i)).is_some_and(take_one) {
            return;
        }
        let me = std::process::id();
        let ours = self
            .slots
            .iter()
            .filter(|slot| {
                slot.pid.load(Ordering::Acquire) == me
                    && slot.reserved_until.load(Ordering::Acquire) == 0
            })
            .any(take_one);
        if !ours {
            // Taken elsewhere: perhaps one counted lost (its taker's handle
            // went) that was done after all.
            let _ = self
                .lost
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// Counts `n` items that will never be marked done, taken by `pid`.
    fn lose(&self, n: u64, pid: u32) {
        self.lost_by.store(pid, Ordering::Release);
        self.lost.fetch_add(n, Ordering::AcqRel);
    }

    /// Items lost and not yet reported.
    pub(crate) fn lost(&self) -> u64 {
        self.lost.load(Ordering::Acquire)
    }

    /// Takes the lost items to report them: how many, and who lost the
    /// last of them (`None` if none, or another `join` took them first).
    pub(crate) fn take_lost(&self) -> Option<(u64, u32)> {
        let n = self.lost.swap(0, Ordering::AcqRel);
        (n > 0).then(|| (n, self.lost_by.load(Ordering::Acquire)))
    }

    /// A get through the handle of slot `index` starts (`true`) or stops
    /// waiting for a record.
    pub(crate) fn getting(&self, index: usize, waits: bool) {
        if let Some(slot) = self.slots.get(index) {
            if waits {
                slot.getting.fetch_add(1, Ordering::AcqRel);
            } else {
                // Never below zero: a slot freed and taken again meanwhile
                // started again from zero.
                let _ = slot
                    .getting
                    .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
            }
        }
    }

    /// The handle of slot `index` belongs to a process with a thread
    /// waiting in a join (`true`), or no longer.
    pub(crate) fn joining(&self, index: usize, joins: bool) {
        if let Some(slot) = self.slots.get(index) {
            slot.joining.store(u32::from(joins), Ordering::Release);
        }
    }

    /// `Some` when some handle is open and every open one has a get
    /// waiting on it, or is held by a process waiting in a join: no put
    /// can come through any of them while that lasts (unless another
    /// thread puts through a handle it shares with a waiting one). `None`
    /// otherwise, and when the table overflowed (it does not know every
    /// handle).
    pub(crate) fn all_open_waiting(&self) -> Option<AllWaiting> {
        if self.overflowed.load(Ordering::Acquire) != 0 {
            return None;
        }
        let mut any_getting = false;
        let mut in_join = None;
        for slot in &self.slots {
            let pid = slot.pid.load(Ordering::Acquire);
            if pid == 0 || slot.open.load(Ordering::Acquire) == 0 {
                continue;
            }
            if slot.getting.load(Ordering::Acquire) > 0 {
                any_getting = true;
            } else if slot.joining.load(Ordering::Acquire) != 0 {
                in_join.get_or_insert(pid);
            } else {
                return None;
            }
        }
        // Someone must be in a get: a join among joins alone is not ours.
        match (any_getting, in_join) {
            (false, _) => None,
            (true, None) => Some(AllWaiting::NoneInJoin),
            (true, Some(pid)) => Some(AllWaiting::SomeInJoin(pid)),
        }
    }

    /// True the first time it is asked, of every process sharing the queue.
    pub(crate) fn first_to_hint(&self) -> bool {
        self.hinted.swap(1, Ordering::AcqRel) == 0
    }

    /// [`first_to_hint`](Self::first_to_hint), for a put that nothing can answer.
    pub(crate) fn first_to_hint_put(&self) -> bool {
        self.put_hinted.swap(1, Ordering::AcqRel) == 0
    }

    /// A put of this process starts waiting for room: counted on one of
    /// its open slots, whose index is returned to [`put_ends`](Self::put_ends).
    pub(crate) fn put_waits(&self) -> Option<usize> {
        let me = std::process::id();
        let (index, slot) = self.slots.iter().enumerate().find(|(_, slot)| {
            slot.pid.load(Ordering::Acquire) == me
                && slot.open.load(Ordering::Acquire) != 0
                && slot.reserved_until.load(Ordering::Acquire) == 0
        })?;
        slot.putting.fetch_add(1, Ordering::AcqRel);
        Some(index)
    }

    /// The put counted by [`put_waits`](Self::put_waits) stops waiting.
    pub(crate) fn put_ends(&self, index: usize) {
        if let Some(slot) = self.slots.get(index) {
            let _ = slot
                .putting
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
        }
    }

    /// `Some` when every handle still held, closed or not (after the dead
    /// are let go), belongs to a process with a put waiting for room, or to
    /// one waiting in a join: nobody can take from the full ring then (unless another
    /// thread gets through one of those handles). `None` otherwise, and
    /// when the table overflowed.
    pub(crate) fn nothing_can_take(&self) -> Option<AllWaiting> {
        let _ = self.all_gone(true);
        if self.overflowed.load(Ordering::Acquire) != 0 {
            return None;
        }
        // Every handle, closed or not: a closed one may still take.
        let open = |slot: &&ProducerSlot| slot.pid.load(Ordering::Acquire) != 0;
        let putters: Vec<u32> = self
            .slots
            .iter()
            .filter(open)
            .filter(|slot| slot.putting.load(Ordering::Acquire) > 0)
            .map(|slot| slot.pid.load(Ordering::Acquire))
            .collect();
        if putters.is_empty() {
            return None;
        }
        let mut in_join = None;
        for slot in self.slots.iter().filter(open) {
            let pid = slot.pid.load(Ordering::Acquire);
            if putters.contains(&pid) {
                continue;
            }
            if slot.joining.load(Ordering::Acquire) != 0 {
                in_join.get_or_insert(pid);
                continue;
            }
            return None;
        }
        Some(in_join.map_or(AllWaiting::NoneInJoin, AllWaiting::SomeInJoin))
    }

    /// True once someone produced and no producer is open and alive. Without
    /// `check_liveness`, open producers count as alive (no /proc reads: cheap);
    /// with it, slots of dead producers are found and freed on the way.
    pub(crate) fn all_gone(&self, check_liveness: bool) -> bool {
        if self.ever.load(Ordering::Acquire) == 0 || self.overflowed.load(Ordering::Acquire) != 0 {
            return false;
        }
        if !check_liveness {
            return !self.slots.iter().any(|slot| {
                slot.pid.load(Ordering::Acquire) != 0 && slot.open.load(Ordering::Acquire) != 0
            });
        }
        !self.free_dead()
    }

    /// Frees the slots of dead processes and of lapsed reservations (what
    /// they held is lost); whether an open slot of a live process remains.
    fn free_dead(&self) -> bool {
        let mut any_alive = false;
        // Closed slots too: a dead process's are let go here as well.
        for slot in &self.slots {
            let pid = slot.pid.load(Ordering::Acquire);
            if pid == 0 || pid == FREEING {
                continue;
            }
            let open = slot.open.load(Ordering::Acquire) != 0;
            let registered = slot.start_time.load(Ordering::Acquire);
            let reserved_until = slot.reserved_until.load(Ordering::Acquire);
            let lapsed = reserved_until != 0 && monotonic_ns() > reserved_until;
            let alive = !lapsed && process_alive(pid, registered);
            if alive {
                any_alive |= open;
                continue;
            }
            // Ours to free (a racing re-registration or freeing wins the
            // CAS instead). The slot is cleared before it is free: a
            // process that takes it next must not be judged, for a moment,
            // by the dead one's start time.
            if slot
                .pid
                .compare_exchange(pid, FREEING, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
            {
                continue;
            }
            slot.open.store(0, Ordering::Release);
            // What it held is lost.
            let held = slot.held.swap(0, Ordering::AcqRel);
            if held > 0 {
                self.lose(held, pid);
            }
            slot.start_time.store(0, Ordering::Release);
            slot.reserved_until.store(0, Ordering::Release);
            slot.pid.store(0, Ordering::Release);
        }
        any_alive
    }
}
