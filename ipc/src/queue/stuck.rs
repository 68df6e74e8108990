//! A get that nothing can answer: every handle still open on the queue is
//! itself waiting in a get, so no put can come through any of them. The
//! usual cause is a consumer process that kept its handle open (each handle
//! counts as a producer until `close`), waiting for the `Disconnected` its
//! own handle holds off; or a parent that waits in `join()` for consumers
//! that wait for its end marker (see `joining`). Python's `Queue` hangs
//! silently there; this says so once per queue, on stderr, and waits on
//! (another thread may yet put through a handle it shares with a waiting
//! get: only the program knows).
//!
//! The other way round: a put that waits for room in a full ring while
//! every handle still open belongs to a process that is itself waiting to
//! put (or in a join): its consumers ended or died. That is said once too.

use std::cell::Cell;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use super::producers::{AllWaiting, Producers};

/// How long a get waits before it looks for the cause: far past any
/// hand-off, short enough that a stuck program says why while its user
/// still looks at it.
pub(crate) const HINT_AFTER: Duration = Duration::from_secs(10);

/// A get through the handle of producer slot `index` (if it has one)
/// that may have to wait; counted as waiting from its first sleep until
/// dropped (a get that finds its record at once costs nothing here).
pub(crate) struct WaitingGet<'a> {
    producers: &'a Producers,
    index: Option<usize>,
    /// When it first slept (and was counted).
    since: Cell<Option<Instant>>,
    /// The tail position at the last look that found the queue stuck: the
    /// next such look says so only if no put came between (the tail did
    /// not move), so a get about to return with the last item, whose
    /// process then puts again, is not taken for a stuck one.
    stuck_at: Cell<Option<u64>>,
}

impl<'a> WaitingGet<'a> {
    /// (`producer`: the getting handle's producer word.)
    #[cold]
    pub(crate) fn new(producers: &'a Producers, producer: Option<&AtomicUsize>) -> Self {
        WaitingGet {
            producers,
            index: producer.and_then(super::open_slot),
            since: Cell::new(None),
            stuck_at: Cell::new(None),
        }
    }

    /// The get is about to sleep: from now on it counts as waiting.
    pub(crate) fn sleeps(&self) {
        if let (Some(index), None) = (self.index, self.since.get()) {
            self.producers.getting(index, true);
            self.since.set(Some(Instant::now()));
        }
    }

    /// Called after each empty slice with the ring's tail position and
    /// whether the ring is empty: says, once per queue, what keeps every
    /// open handle waiting, when two looks past [`HINT_AFTER`] found it so
    /// with no put between.
    pub(crate) fn look(&self, tail: u64, empty: bool) {
        let Some(since) = self.since.get() else {
            return;
        };
        if since.elapsed() < HINT_AFTER {
            return;
        }
        let waiting = match self.producers.all_open_waiting() {
            Some(waiting) if empty => waiting,
            _ => {
                self.stuck_at.set(None);
                return;
            }
        };
        if self.stuck_at.replace(Some(tail)) != Some(tail) || !self.producers.first_to_hint() {
            return;
        }
        let me = std::process::id();
        let waited = since.elapsed().as_secs();
        match waiting {
            AllWaiting::NoneInJoin => crate::os::stderr::line(format_args!(
                "outlast: a Queue get (pid {me}) has waited {waited} s, and every handle still \
                 open on that queue is itself waiting in a get: no put can come, and no get \
                 ends with Disconnected while they stay open. A process that only takes items \
                 should close() its handle first (every open handle counts as a producer), or \
                 the producer should shutdown(false) the queue once all is put."
            )),
            AllWaiting::SomeInJoin(joiner) => crate::os::stderr::line(format_args!(
                "outlast: a Queue get (pid {me}) has waited {waited} s; every handle still open \
                 on that queue is waiting in a get, or held by a process waiting in join() \
                 (pid {joiner}): no put can come, so the join waits for a get that waits for \
                 it. Before join(), put an end marker for each consumer, or shutdown(false) the \
                 queue (its gets then end with ShutDown once it is drained)."
            )),
        }
    }
}

impl Drop for WaitingGet<'_> {
    fn drop(&mut self) {
        if let (Some(index), Some(_)) = (self.index, self.since.get()) {
            self.producers.getting(index, false);
        }
    }
}

/// How often a stuck put looks again (each look reads `/proc` for every
/// open handle, to let the dead go).
const PUT_LOOKS_EVERY: Duration = Duration::from_millis(800);

/// A put waiting for room in a full ring; counted on one of this
/// process's slots from its first sleep until dropped.
pub(crate) struct WaitingPut<'a> {
    producers: &'a Producers,
    index: Option<usize>,
    since: Instant,
    looked: Cell<Instant>,
    /// The head position at the last look that found nobody to take.
    stuck_at: Cell<Option<u64>>,
}

impl<'a> WaitingPut<'a> {
    #[cold]
    pub(crate) fn new(producers: &'a Producers) -> Self {
        let now = Instant::now();
        WaitingPut {
            producers,
            index: producers.put_waits(),
            since: now,
            looked: Cell::new(now),
            stuck_at: Cell::new(None),
        }
    }

    /// Called after each wait for room that freed none, with the ring's
    /// head position: says, once per queue, that nobody can take, when two
    /// looks past [`HINT_AFTER`] found it so with no get between.
    pub(crate) fn look(&self, head: u64) {
        if self.since.elapsed() < HINT_AFTER || self.looked.get().elapsed() < PUT_LOOKS_EVERY {
            return;
        }
        self.looked.set(Instant::now());
        let Some(waiting) = self.producers.nothing_can_take() else {
            self.stuck_at.set(None);
            return;
        };
        if self.stuck_at.replace(Some(head)) != Some(head) || !self.producers.first_to_hint_put() {
            return;
        }
        let me = std::process::id();
        let waited = self.since.elapsed().as_secs();
        let joiner = match waiting {
            AllWaiting::SomeInJoin(pid) => format!(", or in join() (pid {pid})"),
            AllWaiting::NoneInJoin => String::new(),
        };
        crate::os::stderr::line(format_args!(
            "outlast: a Queue put (pid {me}) has waited {waited} s for room, and every handle \
             still open on that queue belongs to a process waiting to put{joiner}: nobody can \
             take. Its consumers have ended or died. put_timeout() bounds the wait, and \
             shutdown(true) ends it."
        ));
    }
}

impl Drop for WaitingPut<'_> {
    fn drop(&mut self) {
        if let Some(index) = self.index {
            self.producers.put_ends(index);
        }
    }
}
