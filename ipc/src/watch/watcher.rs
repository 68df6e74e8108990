//! The watcher threads: each sleeps, in one `futex_waitv`, on the words of
//! up to 127 watched objects of this process (queue sides, events,
//! semaphores) and on a bell of its own, and wakes the futures of each
//! object that moves.
//!
//! A hundred awaited queues cost one thread, asleep in the kernel until one
//! of them moves or a costly look is due (every 50 ms while futures wait);
//! a thread each, woken every 10 ms, before. A watch joins a watcher with
//! its first wait and leaves it when its object's last handle is dropped.
//! A thread starts with the first wait and ends after a second with none.
//! On a kernel without `futex_waitv` (before 5.16) each watcher takes one
//! object, so each awaited object has a thread of its own again.
//!
//! A forked child does not use its copy of its parent's watchers (whose
//! locks another thread may have held at the fork): it makes its own.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

use crate::os::futex::{self, AnyWord, MAX_WAIT_ANY};
use crate::os::Deadline;
// How long a word whose mover may miss the flag is slept on before a
// fence rules that out: as a blocking get's nap.
use crate::queue::wait::UNFENCED_NAP;
use crate::queue::DEFAULT_SPIN;
use crate::spin::SpinBudget;

use super::{spawn_named, Look, Watch, IDLE_EXIT, SLICE};

/// The threads' name (after the watch threads' prefix).
const NAME: &str = "watch";

/// This process's watchers, and the process they belong to.
static WATCHERS: Mutex<Option<(u32, Vec<Arc<Watcher>>)>> = Mutex::new(None);

/// One thread and the watches it waits for.
pub(super) struct Watcher {
    members: Mutex<Members>,
    /// Moved and woken to make the thread look at its watches again.
    bell: AtomicU32,
    /// The thread may be asleep: a new future rings the bell.
    asleep: AtomicBool,
}

#[derive(Default)]
struct Members {
    watches: Vec<Arc<Watch>>,
    thread_running: bool,
}

/// Watches per watcher: as many words as one wait takes, less the bell.
fn capacity() -> usize {
    match futex::can_wait_any() {
        true => MAX_WAIT_ANY - 1,
        false => 1,
    }
}

impl Watcher {
    /// A watcher of this process with room for `watch`, which joins it.
    pub(super) fn adopt(watch: &Arc<Watch>) -> Arc<Watcher> {
        let mut all = WATCHERS.lock().unwrap_or_else(PoisonError::into_inner);
        let pid = std::process::id();
        if all.as_ref().is_some_and(|(of, _)| *of != pid) {
            // A forked child's copy of its parent's, whose threads are not
            // here: never used, and never dropped (its locks may have been
            // held at the fork).
            if let Some(theirs) = all.take() {
                std::mem::forget(theirs);
            }
        }
        let (_, watchers) = all.get_or_insert_with(|| (pid, Vec::new()));
        let room = capacity();
        let watcher = match watchers.iter().find(|w| w.lock().watches.len() < room) {
            Some(watcher) => Arc::clone(watcher),
            None => {
                let watcher = Arc::new(Watcher {
                    members: Mutex::new(Members::default()),
                    bell: AtomicU32::new(0),
                    asleep: AtomicBool::new(false),
                });
                watchers.push(Arc::clone(&watcher));
                watcher
            }
        };
        watcher.lock().watches.push(Arc::clone(watch));
        watcher
    }

    /// A future waits on one of this watcher's watches (`added`: one that
    /// did not wait there before): the thread starts, or is rung if it
    /// sleeps. An error only if the thread cannot start.
    pub(super) fn arrived(self: &Arc<Self>, added: bool) -> io::Result<()> {
        let mut members = self.lock();
        if members.thread_running {
            drop(members);
            // Rung though it has nothing to do yet, as the reactor is (see
            // there): on an idle machine, a wake-up that finds the thread
            // long asleep is several times slower.
            if added && self.asleep.swap(false, Ordering::SeqCst) {
                self.ring();
            }
            return Ok(());
        }
        let watcher = Arc::clone(self);
        spawn_named(NAME, move || watcher.run())?;
        members.thread_running = true;
        Ok(())
    }

    /// `watch`'s object has no handle left: it leaves at once (the
    /// thread, rung, lets go of its own reference at its next turn).
    pub(super) fn release(&self, watch: &Watch) {
        let gone: Vec<Arc<Watch>> = {
            let mut members = self.lock();
            let (gone, kept) = std::mem::take(&mut members.watches)
                .into_iter()
                .partition(|w| std::ptr::eq(Arc::as_ptr(w), watch));
            members.watches = kept;
            gone
        };
        for watch in &gone {
            watch.woken();
        }
        self.ring();
    }

    /// Makes the thread look at its watches again.
    pub(super) fn ring(&self) {
        self.bell.fetch_add(1, Ordering::SeqCst);
        futex::wake(&self.bell, 1);
    }

    /// Whether the thread runs now.
    #[cfg(test)]
    pub(super) fn running(&self) -> bool {
        self.lock().thread_running
    }

    fn lock(&self) -> MutexGuard<'_, Members> {
        // Each change is whole before unlock: go on after a panic.
        self.members.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The thread: looks at every watch (waking the futures whose epoch
    /// moved, arming the others), sleeps on all their words and the bell
    /// at once, and ends after a while with no future waiting.
    fn run(self: Arc<Self>) {
        let mut idle_since: Option<Instant> = None;
        let mut fence_works = true;
        let budget = SpinBudget::default();
        loop {
            // Before the bell is read: a ring after this moves it.
            self.asleep.store(true, Ordering::SeqCst);
            let bell_seen = self.bell.load(Ordering::SeqCst);
            let watches = self.lock().watches.clone();
            let now = Instant::now();
            let mut words = vec![AnyWord {
                word: &self.bell,
                expected: bell_seen,
            }];
            // Which watch each word belongs to (the bell: none).
            let mut owners = vec![None];
            let mut armed = Vec::new();
            let mut unfenced = Vec::new();
            let mut until: Option<Instant> = None;
            let mut again = false;
            let mut waited_on = false;
            for (index, watch) in watches.iter().enumerate() {
                match watch.look(now, fence_works) {
                    Look::Idle => {}
                    Look::Again => {
                        waited_on = true;
                        again = true;
                    }
                    Look::Sleep {
                        word,
                        until: by,
                        unfenced: needs_fence,
                        epoch,
                        armed: was_armed,
                    } => {
                        waited_on = true;
                        if was_armed {
                            armed.push(index);
                        }
                        if let Some(word) = word {
                            words.push(word);
                            owners.push(Some(index));
                        }
                        if needs_fence {
                            unfenced.push((index, epoch));
                        }
                        until = Some(until.map_or(by, |t| t.min(by)));
                    }
                }
            }
            if waited_on {
                idle_since = None;
            } else {
                let since = *idle_since.get_or_insert(now);
                if now.saturating_duration_since(since) >= IDLE_EXIT && self.end_if_idle() {
                    return;
                }
                until = Some(since + IDLE_EXIT);
            }
            if !unfenced.is_empty() {
                until = Some(until.map_or(now + UNFENCED_NAP, |t| t.min(now + UNFENCED_NAP)));
            }
            let woken = match again {
                true => None,
                false => self.sleep(&words, until, &budget),
            };
            self.asleep.store(false, Ordering::SeqCst);
            for &index in &armed {
                if let Some(watch) = watches.get(index) {
                    watch.object.disarm();
                }
            }
            let woken_watch = woken
                .and_then(|k| owners.get(k).copied().flatten())
                .and_then(|index| watches.get(index));
            if let Some(watch) = woken_watch {
                watch.woken();
            }
            let napped = until.is_some_and(|t| Instant::now() >= t);
            if !unfenced.is_empty() && woken.is_none() && napped {
                // A nap passed on words whose movers may have missed the
                // flag: one fence rules that out for all of them, and
                // they sleep long from then on.
                match crate::os::membarrier::global_fence() {
                    Ok(()) => {
                        for (index, epoch) in unfenced {
                            if let Some(watch) = watches.get(index) {
                                watch.fenced(epoch);
                            }
                        }
                    }
                    // Short sleeps instead (see `Watch::look`).
                    Err(_) => fence_works = false,
                }
            }
        }
    }

    /// Sleeps on `words` (the bell first) until one is woken or `until`:
    /// the index of the woken word, if known. With objects armed, first
    /// spins on their words while `budget` says that pays, as a blocking
    /// wait does: an answer a few microseconds away is caught without the
    /// wake-up, which takes tens of them on an idle VM (an awaited Queue
    /// round trip with a child: 53-56 us p50 without the spin, 1-3 us with
    /// it, as with the thread per queue before).
    fn sleep(
        &self,
        words: &[AnyWord<'_>],
        until: Option<Instant>,
        budget: &SpinBudget,
    ) -> Option<usize> {
        let started = Instant::now();
        let armed = words.len() > 1;
        if armed {
            let left = until.map_or(DEFAULT_SPIN, |t| t.saturating_duration_since(started));
            let spin = budget.limit(DEFAULT_SPIN).min(left);
            let moved = || {
                words
                    .iter()
                    .position(|w| w.word.load(Ordering::Acquire) != w.expected)
            };
            let mut pause = 4u32;
            while !spin.is_zero() {
                if let Some(index) = moved() {
                    budget.record(started.elapsed());
                    return Some(index);
                }
                if started.elapsed() >= spin {
                    break;
                }
                for _ in 0..pause {
                    std::hint::spin_loop();
                }
                pause = (pause * 2).min(64);
            }
        }
        let woken = self.park(words, until);
        if armed {
            budget.record(started.elapsed());
        }
        woken
    }

    /// The sleep itself (see [`sleep`](Self::sleep)).
    fn park(&self, words: &[AnyWord<'_>], until: Option<Instant>) -> Option<usize> {
        let deadline = until.map_or_else(Deadline::never, |t| {
            Deadline::after(t.saturating_duration_since(Instant::now()))
        });
        if futex::can_wait_any() {
            return futex::wait_any(words, deadline);
        }
        // One watch at most: on its word (a ring is then only needed to
        // stop it, which a slice bounds), or on the bell.
        match words {
            [_, one] => futex::wait(one.word, one.expected, deadline.min(Deadline::after(SLICE)))
                .then_some(1),
            [bell, ..] => {
                futex::wait(bell.word, bell.expected, deadline);
                None
            }
            [] => None,
        }
    }

    /// Ends the thread if no future waits on any of its watches (looked at
    /// under the members' lock, which a new future's arrival takes too).
    fn end_if_idle(&self) -> bool {
        let mut members = self.lock();
        if members.watches.iter().any(|w| w.has_futures()) {
            return false;
        }
        members.thread_running = false;
        true
    }
}
