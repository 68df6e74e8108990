//! Biased ownership of one side of a ring (the producers' or the
//! consumers'). Taking and releasing a side's robust mutex costs two locked
//! instructions per call, and each waits for the previous call's stores to
//! reach lines the other side has just read: a cross-core round trip per
//! message. When one thread has made every recent call on a side, it
//! becomes the side's *owner*: it then works with plain stores, holding no
//! lock, until another thread revokes the bias.
//!
//! The pairing (Dekker's, made asymmetric with `membarrier`):
//! * the owner stores `busy = 1`, then (compiler fence only) checks that the
//!   bias word still holds its token, does its work and publishes, and
//!   stores `busy = 0`;
//! * a revoker, holding the mutex, stores `REVOKING` into the bias word, runs
//!   a global membarrier, then waits for `busy == 0`.
//!
//! Either the owner sees the revocation and backs off, or the revoker sees
//! it busy and waits: never both at work. A dead owner (SIGKILLed in the
//! middle of a call) published nothing (commit after copy); its busy flag
//! is cleared once the revoker finds its thread gone. A revoker that dies or
//! times out leaves `REVOKING`, which the next mutex holder finishes.
//!
//! Each revocation doubles the streak of calls needed before the next bias,
//! so threads that take turns do not pay a membarrier per turn.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use super::ring::RingError;
use super::wait::Patience;
use crate::os::membarrier;
use crate::os::procfs::start_time_of;

/// Token bit: a revocation has started (the owner must not write).
const REVOKING: u64 = 1 << 63;
/// Busy flags, indexed by the token's generation: a thread that lost its
/// bias while it was about to write can only touch its own old flag.
const BUSY_FLAGS: usize = 256;
/// Calls by one thread in a row (through the mutex) before it owns the side.
const FIRST_STREAK: u32 = 64;
const LONGEST_STREAK: u32 = 1 << 20;
/// How many times a revoker looks at the owner's busy word, with a spin
/// hint between, before it sleeps between looks.
const SPINS: u32 = 4096;
/// How often a revoker waiting on a busy owner checks that it still lives.
const LIVENESS_EVERY: Duration = Duration::from_millis(5);

/// Shared bias state that only slow paths touch (on its own lines).
#[repr(C, align(64))]
pub(crate) struct BiasState {
    busy: [AtomicU32; BUSY_FLAGS],
    /// The owner thread's start time, to tell it from a recycled id.
    owner_start: AtomicU64,
    /// Calls in a row needed before the next bias (0 means FIRST_STREAK).
    streak_needed: AtomicU32,
    generation: AtomicU32,
}

#[inline]
fn tid_of(token: u64) -> u32 {
    token as u32
}

#[inline]
fn busy_of(state: &BiasState, token: u64) -> &AtomicU32 {
    &state.busy[((token >> 32) as usize) % BUSY_FLAGS]
}

/// The shared words of one ring's bias, seen together.
pub(crate) struct Bias<'a> {
    /// The owner's token (generation << 32 | thread id), 0 for none.
    word: &'a AtomicU64,
    /// (thread id << 32) | calls in a row, by whoever held the mutex last.
    streak: &'a AtomicU64,
    state: &'a BiasState,
}

/// What the owner's fast path holds while it writes.
pub(crate) struct Owned<'a> {
    busy: &'a AtomicU32,
}

impl Drop for Owned<'_> {
    #[inline]
    fn drop(&mut self) {
        self.busy.store(0, Ordering::Release);
    }
}

impl<'a> Bias<'a> {
    #[inline]
    pub(crate) fn new(word: &'a AtomicU64, streak: &'a AtomicU64, state: &'a BiasState) -> Self {
        Bias {
            word,
            streak,
            state,
        }
    }

    /// Enters the fast path if `token` (this handle's) still owns the side
    /// and the caller is its thread.
    #[inline]
    pub(crate) fn enter(&self, token: u64, thread: u32) -> Option<Owned<'a>> {
        if token == 0 || tid_of(token) != thread {
            return None;
        }
        let busy = busy_of(self.state, token);
        busy.store(1, Ordering::Relaxed);
        // The owner's half of the asymmetric fence; the revoker's membarrier
        // supplies the hardware barrier between this store and the load below.
        std::sync::atomic::compiler_fence(Ordering::SeqCst);
        let owned = Owned { busy };
        (self.word.load(Ordering::Relaxed) == token).then_some(owned)
    }

    /// Is any thread biased (or being revoked)? For sleepers that must pair
    /// with an owner that publishes without a fence.
    pub(crate) fn active(&self) -> bool {
        self.word.load(Ordering::Acquire) != 0
    }

    /// Holding the mutex: makes sure no owner but the caller (`mine`, the
    /// handle's token, on its own thread) can write. Waits for a busy owner.
    pub(crate) fn settle(
        &self,
        mine: u64,
        thread: u32,
        patience: &mut Patience,
    ) -> Result<(), RingError> {
        let token = self.word.load(Ordering::Acquire);
        if token == 0 || (token == mine && tid_of(mine) == thread) {
            return Ok(());
        }
        self.revoke(token & !REVOKING, patience)
    }

    fn revoke(&self, token: u64, patience: &mut Patience) -> Result<(), RingError> {
        self.word.store(token | REVOKING, Ordering::SeqCst);
        membarrier::global_fence().map_err(RingError::Os)?;
        // The owner either saw REVOKING (and will not write) or is busy now.
        let busy = busy_of(self.state, token);
        // Spinning while the CPUs are oversubscribed would hold the CPU the
        // owner needs to finish its put.
        let mut spins = if crate::os::contention::oversubscribed() {
            SPINS
        } else {
            0
        };
        let mut next_check = std::time::Instant::now() + LIVENESS_EVERY;
        while busy.load(Ordering::Acquire) != 0 {
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            if patience.passed() {
                // Left REVOKING: the next mutex holder finishes the wait.
                return Err(RingError::Timeout);
            }
            std::thread::sleep(Duration::from_micros(50));
            if std::time::Instant::now() >= next_check {
                next_check += LIVENESS_EVERY;
                if !self.owner_alive(token) {
                    // Died inside a put: nothing of it was published.
                    busy.store(0, Ordering::Release);
                }
            }
        }
        let needed = self.streak_needed();
        self.state.streak_needed.store(
            needed.saturating_mul(2).min(LONGEST_STREAK),
            Ordering::Relaxed,
        );
        self.word.store(0, Ordering::Release);
        Ok(())
    }

    fn owner_alive(&self, token: u64) -> bool {
        match start_time_of(tid_of(token)) {
            Some((start, state)) => {
                state != 'Z'
                    && state != 'X'
                    && start == self.state.owner_start.load(Ordering::Acquire)
            }
            None => false,
        }
    }

    fn streak_needed(&self) -> u32 {
        match self.state.streak_needed.load(Ordering::Relaxed) {
            0 => FIRST_STREAK,
            n => n,
        }
    }

    /// Holding the mutex, after `n` messages moved by `thread`: counts the
    /// streak and, once it is long enough, makes the caller the owner.
    /// Returns the new token for the handle to keep, if it became the owner.
    pub(crate) fn after_turn(&self, thread: u32, n: usize) -> Option<u64> {
        let streak = self.streak.load(Ordering::Relaxed);
        let run = if (streak >> 32) as u32 == thread {
            (streak as u32).saturating_add(n.min(u32::MAX as usize) as u32)
        } else {
            n.min(u32::MAX as usize) as u32
        };
        self.streak.store(
            (u64::from(thread) << 32) | u64::from(run),
            Ordering::Relaxed,
        );
        if n == 0 || run < self.streak_needed() || self.word.load(Ordering::Acquire) != 0 {
            return None;
        }
        // Without membarrier (or /proc) there is no safe bias: start the
        // streak over, so a refusing kernel is asked once per streak, not
        // once per call.
        let start = match start_time_of(thread) {
            Some((start, _)) if membarrier::register() => start,
            _ => {
                self.streak
                    .store(u64::from(thread) << 32, Ordering::Relaxed);
                return None;
            }
        };
        let generation = self.state.generation.fetch_add(1, Ordering::Relaxed) & 0x00ff_ffff;
        let token = (u64::from(generation) << 32) | u64::from(thread);
        busy_of(self.state, token).store(0, Ordering::Relaxed);
        self.state.owner_start.store(start, Ordering::Relaxed);
        // Published by the mutex's unlock, a full fence, before any fast put.
        self.word.store(token, Ordering::Release);
        Some(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::sync::Arc;

    struct Shared {
        word: AtomicU64,
        streak: AtomicU64,
        state: BiasState,
    }

    fn shared() -> Arc<Shared> {
        // SAFETY: every field is an atomic integer, for which all-zero bytes
        // are a valid value (no bias, no streak).
        Arc::new(unsafe { std::mem::zeroed() })
    }

    fn bias(s: &Shared) -> Bias<'_> {
        Bias::new(&s.word, &s.streak, &s.state)
    }

    /// Makes `thread` the owner, as `after_turn` does once a streak is long enough.
    fn own(s: &Shared, thread: u32) -> u64 {
        let b = bias(s);
        let token = b.after_turn(thread, FIRST_STREAK as usize);
        token.expect("a full streak makes the thread the owner")
    }

    /// A live thread's id, and what ends it.
    fn other_thread() -> (u32, mpsc::Sender<()>, std::thread::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel();
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let handle = std::thread::spawn(move || {
            let _ = tx.send(crate::os::thread_id::thread_id());
            let _ = done_rx.recv();
        });
        let tid = rx.recv().expect("the thread's id");
        (tid, done_tx, handle)
    }

    #[test]
    fn a_streak_makes_an_owner_and_only_its_thread_enters() {
        let s = shared();
        let me = crate::os::thread_id::thread_id();
        let (other, done, handle) = other_thread();
        let b = bias(&s);
        assert_eq!(b.after_turn(me, 10), None);
        assert_eq!(
            b.after_turn(other, 60),
            None,
            "another thread broke the streak"
        );
        let token = b.after_turn(other, 10).expect("70 calls in a row");
        assert!(
            b.enter(token, me).is_none(),
            "a thread that is not the owner"
        );
        assert!(b.enter(token, other).is_some());
        assert!(b.enter(token + (1 << 32), other).is_none(), "an old token");
        let _ = done.send(());
        let _ = handle.join();
    }

    #[test]
    fn revoking_an_idle_owner_is_immediate_and_doubles_the_streak() {
        let s = shared();
        let (tid, done_tx, owner) = other_thread();
        let token = own(&s, tid);
        let me = crate::os::thread_id::thread_id();
        bias(&s)
            .settle(0, me, &mut Patience::never())
            .unwrap_or_else(|_| panic!("revoke"));
        assert_eq!(s.word.load(Ordering::Acquire), 0);
        assert!(bias(&s).enter(token, tid).is_none(), "revoked");
        assert_eq!(bias(&s).streak_needed(), 2 * FIRST_STREAK);
        let _ = done_tx.send(());
        let _ = owner.join();
    }

    #[test]
    fn a_busy_owner_holds_off_the_revoker_until_it_is_done() {
        let s = shared();
        let (tx, rx) = mpsc::channel();
        let (go_tx, go_rx) = mpsc::channel::<()>();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let s2 = Arc::clone(&s);
        let owner = std::thread::spawn(move || {
            let me = crate::os::thread_id::thread_id();
            let token = own(&s2, me);
            let _ = tx.send(bias(&s2).enter(token, me).is_some());
            let _ = go_rx.recv();
            // The guard was dropped at once; hold busy by hand, as a put in
            // flight would, until told to finish.
            busy_of(&s2.state, token).store(1, Ordering::Release);
            let _ = tx.send(true);
            let _ = release_rx.recv();
            busy_of(&s2.state, token).store(0, Ordering::Release);
        });
        assert_eq!(rx.recv().ok(), Some(true), "the owner enters");
        let _ = go_tx.send(());
        assert_eq!(rx.recv().ok(), Some(true), "the owner is busy");
        let me = crate::os::thread_id::thread_id();
        let quick = bias(&s).settle(0, me, &mut Patience::after(Duration::from_millis(1)));
        assert!(matches!(quick, Err(RingError::Timeout)), "owner still busy");
        assert_ne!(
            s.word.load(Ordering::Acquire) & REVOKING,
            0,
            "left revoking"
        );
        let _ = release_tx.send(());
        let patient = bias(&s).settle(0, me, &mut Patience::never());
        assert!(patient.is_ok());
        assert_eq!(s.word.load(Ordering::Acquire), 0);
        let _ = owner.join();
    }

    #[test]
    fn an_owner_that_died_busy_is_found_dead() {
        let s = shared();
        // A real process that exits at once and is reaped: its id names nobody.
        // SAFETY: the child only calls _exit.
        let pid = unsafe { libc::fork() };
        if pid == 0 {
            // SAFETY: leaving the forked child without running anything else.
            unsafe { libc::_exit(0) };
        }
        assert!(pid > 0, "fork failed");
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        let token = (7u64 << 32) | pid as u64;
        s.word.store(token, Ordering::Release);
        busy_of(&s.state, token).store(1, Ordering::Release);
        let me = crate::os::thread_id::thread_id();
        let revoked = bias(&s).settle(0, me, &mut Patience::after(Duration::from_secs(10)));
        assert!(revoked.is_ok(), "a dead owner must not block the revoker");
        assert_eq!(s.word.load(Ordering::Acquire), 0);
        assert_eq!(busy_of(&s.state, token).load(Ordering::Acquire), 0);
    }
}
