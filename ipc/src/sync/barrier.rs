//! [`Barrier`]: Python's `multiprocessing.Barrier`. `parties` processes wait
//! until all have arrived. A timeout, an `abort()`, or a party that dies
//! (seen by the others as their timeout running out) breaks it: every waiter
//! gets [`BarrierError`] instead of waiting forever. `reset()` makes it new
//! again (the parties waiting at that moment get `Broken`).
//!
//! As in Python, a barrier may have an *action*, run by the last party to
//! arrive before the others are released (a plain `fn()`; each handle
//! carries its own, so give every process's handle the same one), and a
//! default timeout for `wait()`.
//!
//! State: a count under a robust mutex, a generation, a broken flag, which
//! of the last 64 generations ended by a reset, and an epoch word that moves
//! on every change and is what waiters sleep on, so no wake-up can be missed
//! between checking and sleeping.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let barrier = outlast_ipc::sync::Barrier::new(1)?;
//! assert_eq!(barrier.wait(), Ok(0)); // a party of one passes at once
//! barrier.abort();
//! assert!(barrier.is_broken());
//! # Ok(())
//! # }
//! ```

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::BarrierError;
use super::robust::{Acquired, NotAcquired, RobustMutex};
use crate::os::futex;
use crate::os::Deadline;
use crate::shm::cell::{ShmCell, ShmState};
use crate::shm::ShmError;
use crate::watch::LazyWatch;

#[repr(C)]
pub(crate) struct BarrierState {
    mutex: RobustMutex,
    parties: AtomicU32,
    /// Parties arrived in this generation (changed under the mutex).
    count: AtomicU32,
    generation: AtomicU32,
    broken: AtomicU32,
    /// Moves on every generation change and every break: the futex word.
    epoch: AtomicU32,
    /// Bit `g % 64` is set if generation `g` ended by `reset()` (its
    /// waiters get `Broken`), clear if all its parties arrived.
    reset_ends: AtomicU64,
    /// `wait()`'s timeout in nanoseconds; 0 for none.
    default_timeout_ns: AtomicU64,
}

impl BarrierState {
    /// The word waiters sleep on: it moves on every change.
    pub(super) fn epoch(&self) -> &AtomicU32 {
        &self.epoch
    }
}

impl ShmState for BarrierState {
    const TAG: u64 = 0x4950_4342_4152_5204; // "IPCBARR" v4
}

/// How long a dropped future's party waits for the barrier's lock to
/// leave its generation before it breaks the barrier instead: the lock is
/// held for a few instructions, or while the last party's action runs.
const LEAVE_WAIT: Duration = Duration::from_millis(100);

/// Where a party stands once counted in.
pub(super) enum Arrival {
    /// It was the last: everyone passes; its arrival index.
    Passed(u32),
    /// It waits for the generation to end.
    Waiting { generation: u32, index: u32 },
}

fn generation_bit(generation: u32) -> u64 {
    1 << (generation % 64)
}

#[derive(Clone)]
pub struct Barrier {
    pub(super) cell: ShmCell<BarrierState>,
    /// Run by the last party to arrive, before the others go.
    action: Option<fn()>,
    /// The thread that `wait_async` futures leave their wakers with.
    pub(super) watch: Arc<LazyWatch>,
}

impl std::fmt::Debug for Barrier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Barrier")
            .field("parties", &self.parties())
            .field("action", &self.action.is_some())
            .finish()
    }
}

/// A barrier inside a serialized Process argument: its segment, and its
/// action as an offset in the code (the child runs the same executable).
#[derive(Serialize, Deserialize)]
struct BarrierWire<C> {
    cell: C,
    action: Option<i64>,
}

impl Serialize for Barrier {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        BarrierWire {
            cell: &self.cell,
            action: self.action.map(|f| crate::process::code_offset(f as usize)),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Barrier {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = BarrierWire::<ShmCell<BarrierState>>::deserialize(deserializer)?;
        let action = wire.action.map(|offset| {
            let addr = crate::process::code_address(offset);
            // SAFETY: the offset was taken in the parent from an `fn()` of
            // this same executable (a spawned child checks that it runs its
            // parent's executable before decoding its arguments), so the
            // address is that function.
            unsafe { std::mem::transmute::<*const (), fn()>(addr as *const ()) }
        });
        Ok(Barrier {
            cell: wire.cell,
            action,
            watch: Arc::default(),
        })
    }
}

impl Barrier {
    /// A barrier for `parties` processes (at least 1).
    pub fn new(parties: u32) -> Result<Self, ShmError> {
        let mut failed = None;
        let cell = ShmCell::<BarrierState>::new(0, |s, _| {
            s.parties.store(parties.max(1), Ordering::Release);
            failed = s.mutex.init(false).err();
        })?;
        match failed {
            Some(e) => Err(e.into()),
            None => Ok(Barrier {
                cell,
                action: None,
                watch: Arc::default(),
            }),
        }
    }

    /// The same barrier, with `action` run by the last party to arrive in
    /// each generation, before the others are released (Python's `action`).
    pub fn with_action(mut self, action: fn()) -> Self {
        self.action = Some(action);
        self
    }

    /// Sets the timeout `wait()` uses (Python's `timeout`), for every handle.
    pub fn with_timeout(self, timeout: Duration) -> Self {
        self.state().default_timeout_ns.store(
            timeout.as_nanos().min(u128::from(u64::MAX)) as u64,
            Ordering::Release,
        );
        self
    }

    /// The default timeout of `wait()`, if one was set.
    pub fn timeout(&self) -> Option<Duration> {
        match self.state().default_timeout_ns.load(Ordering::Acquire) {
            0 => None,
            ns => Some(Duration::from_nanos(ns)),
        }
    }

    fn state(&self) -> &BarrierState {
        self.cell.state()
    }

    pub fn parties(&self) -> u32 {
        self.state().parties.load(Ordering::Acquire)
    }

    /// Parties waiting now.
    pub fn n_waiting(&self) -> u32 {
        self.state().count.load(Ordering::Acquire)
    }

    pub fn is_broken(&self) -> bool {
        self.state().broken.load(Ordering::Acquire) != 0
    }

    /// Waits for every party (at most the default timeout, if one was
    /// set); returns this party's arrival index (0 to parties - 1).
    pub fn wait(&self) -> Result<u32, BarrierError> {
        match self.timeout() {
            Some(t) => self.wait_deadline(Deadline::after(t)),
            None => self.wait_deadline(Deadline::never()),
        }
    }

    /// Waits at most `timeout`; running out breaks the barrier for all.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u32, BarrierError> {
        self.wait_deadline(Deadline::after(timeout))
    }

    fn wait_deadline(&self, deadline: Deadline) -> Result<u32, BarrierError> {
        let (generation, index) = match self.arrive(deadline)? {
            Arrival::Passed(index) => return Ok(index),
            Arrival::Waiting { generation, index } => (generation, index),
        };
        let s = self.state();
        loop {
            let epoch = s.epoch.load(Ordering::Acquire);
            if let Some(done) = self.outcome(generation, index) {
                return done;
            }
            if !futex::wait(&s.epoch, epoch, deadline) {
                if let Some(done) = self.ended(generation, index) {
                    return done;
                }
                return Err(self.break_for_timeout());
            }
        }
    }

    /// Counts this party in, taking the barrier's lock until `deadline`:
    /// the last party runs the action and releases the others.
    pub(super) fn arrive(&self, deadline: Deadline) -> Result<Arrival, BarrierError> {
        let s = self.state();
        match s.mutex.lock(deadline) {
            Ok(Acquired::Clean) => {}
            Ok(Acquired::OwnerDied) => {
                // A party died inside the barrier's bookkeeping: nothing can be trusted.
                self.break_locked();
                s.mutex.unlock();
                return Err(BarrierError::Broken);
            }
            Err(_) => return Err(self.break_for_timeout()),
        }
        if self.is_broken() {
            s.mutex.unlock();
            return Err(BarrierError::Broken);
        }
        let generation = s.generation.load(Ordering::Acquire);
        let index = s.count.fetch_add(1, Ordering::AcqRel);
        if index + 1 >= s.parties.load(Ordering::Acquire) {
            if let Some(action) = self.action {
                // Run before anyone is released, holding the lock, as Python.
                if let Err(payload) = std::panic::catch_unwind(action) {
                    self.break_locked();
                    s.mutex.unlock();
                    return Err(BarrierError::ActionPanicked(crate::process::panic_message(
                        payload.as_ref(),
                    )));
                }
            }
            s.count.store(0, Ordering::Release);
            s.reset_ends
                .fetch_and(!generation_bit(generation), Ordering::AcqRel);
            s.generation.fetch_add(1, Ordering::AcqRel);
            s.epoch.fetch_add(1, Ordering::AcqRel);
            futex::wake_all(&s.epoch);
            s.mutex.unlock();
            return Ok(Arrival::Passed(index));
        }
        s.mutex.unlock();
        Ok(Arrival::Waiting { generation, index })
    }

    /// How a party waiting in `generation` stands: `None` while it waits.
    pub(super) fn outcome(&self, generation: u32, index: u32) -> Option<Result<u32, BarrierError>> {
        if let Some(done) = self.ended(generation, index) {
            return Some(done);
        }
        self.is_broken().then_some(Err(BarrierError::Broken))
    }

    /// A party that arrived in `generation` and will not wait after all
    /// (its future was dropped): it leaves, as if it never came, unless
    /// the generation has ended. If the lock cannot be had, the barrier
    /// breaks instead, so nobody waits for a party that left.
    pub(super) fn leave(&self, generation: u32) {
        let s = self.state();
        match s.mutex.lock(Deadline::after(LEAVE_WAIT)) {
            Ok(Acquired::Clean) => {}
            Ok(Acquired::OwnerDied) => {
                self.break_locked();
                s.mutex.unlock();
                return;
            }
            Err(_) => {
                self.abort();
                return;
            }
        }
        if s.generation.load(Ordering::Acquire) == generation && !self.is_broken() {
            let count = s.count.load(Ordering::Acquire);
            s.count.store(count.saturating_sub(1), Ordering::Release);
        }
        s.mutex.unlock();
    }

    /// The word waiters sleep on: it moves on every change.
    pub(super) fn epoch_word(&self) -> &AtomicU32 {
        self.state().epoch()
    }

    /// How a wait in `generation` ended, once it has: passed, or reset.
    fn ended(&self, generation: u32, index: u32) -> Option<Result<u32, BarrierError>> {
        let s = self.state();
        if s.generation.load(Ordering::Acquire) == generation {
            return None;
        }
        if s.reset_ends.load(Ordering::Acquire) & generation_bit(generation) != 0 {
            Some(Err(BarrierError::Broken))
        } else {
            Some(Ok(index))
        }
    }

    /// Breaks the barrier after this party's timeout.
    fn break_for_timeout(&self) -> BarrierError {
        let s = self.state();
        s.broken.store(1, Ordering::Release);
        s.epoch.fetch_add(1, Ordering::AcqRel);
        futex::wake_all(&s.epoch);
        BarrierError::Timeout
    }

    fn break_locked(&self) {
        let s = self.state();
        s.broken.store(1, Ordering::Release);
        s.count.store(0, Ordering::Release);
        s.epoch.fetch_add(1, Ordering::AcqRel);
        futex::wake_all(&s.epoch);
    }

    /// Breaks the barrier: every waiter, now and later, gets `Broken`.
    pub fn abort(&self) {
        let s = self.state();
        s.broken.store(1, Ordering::Release);
        s.epoch.fetch_add(1, Ordering::AcqRel);
        futex::wake_all(&s.epoch);
    }

    /// Makes the barrier new again, empty and unbroken (Python's `reset()`):
    /// the parties waiting at this moment get `Broken`; waits after it work
    /// as on a new barrier. Fails only if the barrier's lock cannot be taken.
    pub fn reset(&self) -> std::io::Result<()> {
        let s = self.state();
        match s.mutex.lock(Deadline::never()) {
            // A holder that died left the count unknown: resetting repairs it.
            Ok(Acquired::Clean) | Ok(Acquired::OwnerDied) => {}
            Err(NotAcquired::Timeout) => return Err(std::io::ErrorKind::TimedOut.into()),
            Err(NotAcquired::Os(e)) => return Err(e),
        }
        let generation = s.generation.load(Ordering::Acquire);
        if s.count.load(Ordering::Acquire) > 0 || self.is_broken() {
            s.reset_ends
                .fetch_or(generation_bit(generation), Ordering::AcqRel);
            s.count.store(0, Ordering::Release);
            s.generation.fetch_add(1, Ordering::AcqRel);
            s.broken.store(0, Ordering::Release);
            s.epoch.fetch_add(1, Ordering::AcqRel);
            futex::wake_all(&s.epoch);
        }
        s.mutex.unlock();
        Ok(())
    }

    /// A second handle on the same barrier, with the same action.
    /// The same as [`clone`](Clone::clone), which cannot fail: handles in
    /// one process share a mapping. Kept for code from when a handle had
    /// its own.
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(self.clone())
    }
}
