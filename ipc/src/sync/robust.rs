//! [`RobustMutex`]: the lock word behind every lock of this crate (Lock,
//! RLock, Condition, Barrier, Value/Array, the queue's two sides), in shared
//! memory, written by nobody but the lock code itself.
//!
//! Why not a robust pthread mutex: glibc keeps a robust mutex on a list
//! that runs *through the mutex* (`__prev`/`__next` pointers inside the
//! shared bytes) and unlinks it by writing through those pointers, and it
//! asserts (aborts) on a `__kind` it does not expect. A process that
//! scribbles on the shared bytes could then make every other user write
//! chosen values at chosen addresses, or abort. This lock has no pointer in
//! shared memory and no assertion: whatever the words hold, it writes only
//! its own words, and a timed call returns by its deadline.
//!
//! The word holds the holder's thread id (bit 31: someone may be asleep).
//! Locking is one compare-and-swap when free; unlocking one swap, plus a
//! futex wake if someone sleeps. A holder that dies is found by its
//! waiters: every slice of waiting they check the holder's thread (gone, a
//! zombie, or a newer thread with the same id, told apart by the start
//! time the holder recorded: `/proc` the first time, a thread pidfd after,
//! see [`crate::os::liveness`]), take the lock over with a
//! compare-and-swap of the exact word they judged, and report
//! [`Acquired::OwnerDied`]. All users of a lock must share a pid namespace.

use std::io;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::os::thread_id::{thread_id, thread_start_time};
use crate::os::{futex, liveness, Deadline};

/// Set in the word when a waiter may be asleep on it.
const WAITERS: u32 = 1 << 31;
const TID_MASK: u32 = WAITERS - 1;
/// How long a waiter sleeps before it checks whether the holder lives;
/// then twice as long each time, up to `LONGEST_SLICE`. A check read
/// `/proc` every time (0.5-0.7 ms of CPU for a thread just woken, on a VM;
/// now only the first time where the kernel has thread pidfds), and a
/// thread waiting on a lock held for seconds used half a percent of a
/// core. The cost is a later notice of a holder's death, at most the
/// longest slice after it.
const FIRST_LOOK: Duration = Duration::from_millis(5);
const LIVENESS_SLICE: Duration = Duration::from_millis(50);
const LONGEST_SLICE: Duration = Duration::from_millis(800);

/// A lock word and its holder's record, in shared memory.
#[repr(C)]
pub(crate) struct RobustMutex {
    /// 0 when free; else the holder's thread id, with `WAITERS`.
    word: AtomicU32,
    /// Times the holder re-entered (recursive locks only).
    depth: AtomicU32,
    /// The holder's thread id and start time: its identity beyond the id.
    owner_tid: AtomicU32,
    recursive: AtomicU32,
    owner_start: AtomicU64,
}

/// How a lock was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Acquired {
    Clean,
    /// The previous holder died holding it; the data may be half-updated.
    OwnerDied,
}

/// Why a lock was not taken.
#[derive(Debug)]
pub(crate) enum NotAcquired {
    /// The deadline passed (or, for a try, it is held).
    Timeout,
    Os(io::Error),
}

impl RobustMutex {
    /// Sets the lock up, free (a zeroed one is free and non-recursive).
    /// Runs once, before any other process can see it.
    pub(crate) fn init(&self, recursive: bool) -> io::Result<()> {
        self.word.store(0, Ordering::Relaxed);
        self.depth.store(0, Ordering::Relaxed);
        self.recursive
            .store(u32::from(recursive), Ordering::Release);
        Ok(())
    }

    fn is_recursive(&self) -> bool {
        self.recursive.load(Ordering::Relaxed) != 0
    }

    /// Records the caller as the holder, after it won the word.
    #[inline]
    fn took(&self, tid: u32) {
        self.depth.store(0, Ordering::Relaxed);
        // The record is rewritten only when the holder changes (a thread
        // locking again and again writes nothing); the start time tells a
        // new thread that got a dead one's id from that one.
        let start = thread_start_time();
        if self.owner_tid.load(Ordering::Relaxed) != tid
            || self.owner_start.load(Ordering::Relaxed) != start
        {
            self.owner_start.store(0, Ordering::Relaxed);
            self.owner_tid.store(tid, Ordering::Relaxed);
            self.owner_start.store(start, Ordering::Relaxed);
        }
    }

    /// Takes the lock only if it is free now, without reading any clock.
    #[inline]
    pub(crate) fn try_lock(&self) -> Result<Acquired, NotAcquired> {
        let tid = thread_id();
        match self
            .word
            .compare_exchange(0, tid, Ordering::SeqCst, Ordering::Relaxed)
        {
            Ok(_) => {
                self.took(tid);
                Ok(Acquired::Clean)
            }
            Err(held) => self.held_by_caller(held, tid, true),
        }
    }

    /// When the word names the caller: a recursive lock is taken again; a
    /// plain one would deadlock, which a try or a timed call reports as the
    /// lock being busy (as Python's `acquire(False)` does).
    fn held_by_caller(&self, held: u32, tid: u32, trying: bool) -> Result<Acquired, NotAcquired> {
        if held & TID_MASK == tid && self.owner_tid.load(Ordering::Relaxed) == tid {
            if self.is_recursive() {
                self.depth.fetch_add(1, Ordering::Relaxed);
                return Ok(Acquired::Clean);
            }
            if !trying {
                return Err(NotAcquired::Os(io::Error::from_raw_os_error(libc::EDEADLK)));
            }
        }
        Err(NotAcquired::Timeout)
    }

    /// Locks, waiting until `deadline`.
    pub(crate) fn lock(&self, deadline: Deadline) -> Result<Acquired, NotAcquired> {
        let tid = thread_id();
        let first = self.try_lock();
        if !matches!(first, Err(NotAcquired::Timeout)) || deadline.passed() {
            return first;
        }
        if let Err(NotAcquired::Os(e)) =
            self.held_by_caller(self.word.load(Ordering::Relaxed), tid, !deadline.is_never())
        {
            return Err(NotAcquired::Os(e));
        }
        let mut slice = FIRST_LOOK;
        loop {
            let word = self.word.load(Ordering::Relaxed);
            if word == 0 {
                // Free: take it, keeping the mark (others may sleep still).
                if self
                    .word
                    .compare_exchange(0, tid | WAITERS, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    self.took(tid);
                    return Ok(Acquired::Clean);
                }
                continue;
            }
            if word & WAITERS == 0
                && self
                    .word
                    .compare_exchange(word, word | WAITERS, Ordering::SeqCst, Ordering::Relaxed)
                    .is_err()
            {
                continue;
            }
            if deadline.passed() {
                return Err(NotAcquired::Timeout);
            }
            let woken = futex::wait(
                &self.word,
                word | WAITERS,
                deadline.min(Deadline::after(slice)),
            );
            if !woken && deadline.passed() {
                return Err(NotAcquired::Timeout);
            }
            let now = self.word.load(Ordering::Relaxed);
            if now == word | WAITERS && !self.holder_alive(now & TID_MASK) {
                // Take over the exact word judged dead; anyone faster wins.
                if self
                    .word
                    .compare_exchange(now, tid | WAITERS, Ordering::SeqCst, Ordering::Relaxed)
                    .is_ok()
                {
                    self.took(tid);
                    return Ok(Acquired::OwnerDied);
                }
            }
            slice = (slice * 2).clamp(LIVENESS_SLICE, LONGEST_SLICE);
        }
    }

    /// Whether the thread `tid` named by the word still lives and is the
    /// one that took the lock.
    fn holder_alive(&self, tid: u32) -> bool {
        #[cfg(test)]
        tests::HOLDER_CHECKS.with(|n| n.set(n.get() + 1));
        // The record is the holder's only if it names the same id (a
        // holder killed between winning the word and writing its record
        // leaves a record of someone else: judge by the id alone then).
        let start = if self.owner_tid.load(Ordering::Relaxed) == tid {
            self.owner_start.load(Ordering::Relaxed)
        } else {
            0
        };
        // A thread pidfd after the first ask: /proc is dear for a waiter
        // just woken.
        liveness::thread_alive(tid, start)
    }

    /// The lock word, for a future's watch: it moves whenever the lock is
    /// taken or freed.
    pub(crate) fn lock_word(&self) -> &AtomicU32 {
        &self.word
    }

    /// After a try that found the lock held, with the word at `held`:
    /// raises the mark that makes the unlock wake a sleeper, so a watch
    /// thread may sleep on the word. The word it may sleep on, or `None`
    /// if the word moved meanwhile (try again).
    pub(crate) fn mark_waiting(&self, held: u32) -> Option<u32> {
        if held & WAITERS != 0 {
            return Some(held);
        }
        self.word
            .compare_exchange(held, held | WAITERS, Ordering::SeqCst, Ordering::Relaxed)
            .ok()
            .map(|_| held | WAITERS)
    }

    /// A try by a waiter that was asleep: it keeps the mark, as the
    /// blocking lock does, since others may sleep still.
    pub(crate) fn try_lock_marked(&self) -> Result<Acquired, NotAcquired> {
        let tid = thread_id();
        match self
            .word
            .compare_exchange(0, tid | WAITERS, Ordering::SeqCst, Ordering::Relaxed)
        {
            Ok(_) => {
                self.took(tid);
                Ok(Acquired::Clean)
            }
            Err(held) => self.held_by_caller(held, tid, true),
        }
    }

    /// Whether the word `held` names a holder that is gone (the costly
    /// look: `/proc` the first time, a thread pidfd after).
    pub(crate) fn holder_gone(&self, held: u32) -> bool {
        held & TID_MASK == 0 || !self.holder_alive(held & TID_MASK)
    }

    /// Takes over the word `held`, judged to name a dead holder; anyone
    /// faster wins (then `None`).
    pub(crate) fn take_over(&self, held: u32) -> Option<Acquired> {
        let tid = thread_id();
        self.word
            .compare_exchange(held, tid | WAITERS, Ordering::SeqCst, Ordering::Relaxed)
            .ok()
            .map(|_| {
                self.took(tid);
                Acquired::OwnerDied
            })
    }

    /// Whether someone holds the lock now (Python's `locked()`).
    pub(crate) fn is_locked(&self) -> bool {
        self.word.load(Ordering::Acquire) & TID_MASK != 0
    }

    /// Unlocks; the caller must hold it.
    #[inline]
    pub(crate) fn unlock(&self) {
        if self.is_recursive() && self.depth.load(Ordering::Relaxed) > 0 {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        // A full fence: what the holder wrote is out before the lock is free.
        if self.word.swap(0, Ordering::SeqCst) & WAITERS != 0 {
            futex::wake(&self.word, 1);
        }
    }

    /// The raw word, for tests that play a process corrupting it.
    #[cfg(test)]
    pub(crate) fn word(&self) -> &AtomicU32 {
        &self.word
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    thread_local! {
        /// How many times this thread asked whether a holder lives.
        pub(super) static HOLDER_CHECKS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    fn fresh(recursive: bool) -> RobustMutex {
        // SAFETY: every field is an atomic integer; all zeroes is a free lock.
        let m: RobustMutex = unsafe { std::mem::zeroed() };
        let _ = m.init(recursive);
        m
    }

    #[test]
    fn a_held_lock_is_busy_for_a_try_even_from_its_own_thread() {
        let m = fresh(false);
        assert_eq!(m.try_lock().ok(), Some(Acquired::Clean));
        assert!(matches!(m.try_lock(), Err(NotAcquired::Timeout)));
        assert!(matches!(
            m.lock(Deadline::after(Duration::from_millis(20))),
            Err(NotAcquired::Timeout)
        ));
        assert!(matches!(m.lock(Deadline::never()), Err(NotAcquired::Os(_))));
        m.unlock();
        assert_eq!(m.try_lock().ok(), Some(Acquired::Clean));
        m.unlock();
    }

    #[test]
    fn a_recursive_lock_counts_its_depth() {
        let m = fresh(true);
        for _ in 0..3 {
            assert_eq!(m.try_lock().ok(), Some(Acquired::Clean));
        }
        m.unlock();
        m.unlock();
        assert_eq!(m.word.load(Ordering::Relaxed) & TID_MASK, thread_id());
        m.unlock();
        assert_eq!(m.word.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_word_naming_a_dead_thread_is_taken_over() {
        let m = fresh(false);
        let dead = std::thread::spawn(thread_id).join().unwrap_or(0);
        m.word().store(dead, Ordering::Relaxed);
        let got = m.lock(Deadline::after(Duration::from_secs(30)));
        assert_eq!(got.ok(), Some(Acquired::OwnerDied));
        m.unlock();
    }

    #[test]
    fn a_word_naming_a_live_foreign_thread_times_out_on_time() {
        let m = fresh(false);
        // Our parent process: alive for the whole test.
        m.word()
            .store(crate::os::process::parent_pid() as u32, Ordering::Relaxed);
        let started = std::time::Instant::now();
        let got = m.lock(Deadline::after(Duration::from_millis(120)));
        assert!(matches!(got, Err(NotAcquired::Timeout)));
        assert!(started.elapsed() >= Duration::from_millis(120));
        // Garbage in every bit: still no write but our own, still on time.
        m.word().store(u32::MAX, Ordering::Relaxed);
        assert!(matches!(
            m.lock(Deadline::after(Duration::from_millis(30))),
            Err(NotAcquired::Timeout) | Ok(Acquired::OwnerDied)
        ));
    }

    /// A waiter on a lock held for long asks about the holder less and
    /// less often (each ask reads /proc, dear for a thread just woken):
    /// in 2 s, at 5, 55, 155, 355, 755 and 1,555 ms, where one ask every
    /// 50 ms made 40.
    #[test]
    fn a_long_wait_asks_about_a_live_holder_a_few_times() {
        let m = fresh(false);
        m.word()
            .store(crate::os::process::parent_pid() as u32, Ordering::Relaxed);
        let before = HOLDER_CHECKS.with(|n| n.get());
        let got = m.lock(Deadline::after(Duration::from_secs(2)));
        assert!(matches!(got, Err(NotAcquired::Timeout)));
        let checks = HOLDER_CHECKS.with(|n| n.get()) - before;
        assert!((3..=8).contains(&checks), "{checks} checks in 2 s");
    }

    /// Where the kernel has thread pidfds, only the first ask about a
    /// holder reads /proc (0.5-0.7 ms of CPU for a waiter just woken, on
    /// a VM); the later ones poll the pidfd. Every ask read it before.
    #[test]
    fn asking_again_about_a_live_holder_reads_no_proc() {
        use crate::os::procfs::STAT_READS;
        let me = crate::os::thread_id::thread_id() as i32;
        let thread_pidfds = matches!(crate::os::process::pidfd_open_thread(me), Ok(Some(_)));
        // A thread that holds the lock for the whole wait.
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _ = tx.send(crate::os::thread_id::thread_id());
            let _ = done_rx.recv();
        });
        let tid = rx.recv().expect("the holder's id");
        let m = fresh(false);
        m.word().store(tid, Ordering::Relaxed);
        let (checks_before, reads_before) = (
            HOLDER_CHECKS.with(|n| n.get()),
            STAT_READS.with(|n| n.get()),
        );
        let got = m.lock(Deadline::after(Duration::from_millis(1200)));
        assert!(matches!(got, Err(NotAcquired::Timeout)));
        let checks = HOLDER_CHECKS.with(|n| n.get()) - checks_before;
        let reads = STAT_READS.with(|n| n.get()) - reads_before;
        assert!(checks >= 4, "{checks} checks in 1.2 s");
        if thread_pidfds {
            // One read opens the pidfd; another only when the table was
            // busy (other threads asking), which a check never waits for.
            assert!(reads < checks, "{reads} reads of /proc in {checks} checks");
        } else {
            crate::os::stderr::line(format_args!(
                "no thread pidfds on this kernel: {reads} reads in {checks} checks"
            ));
            assert_eq!(reads, checks);
        }
        // Once the holder has ended, an ask says so. (A join returns when
        // the thread's id is cleared, a moment before the kernel has it
        // exit: ask until then.)
        let _ = done_tx.send(());
        holder.join().expect("the holder ends");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while m.holder_alive(tid) {
            assert!(
                std::time::Instant::now() < deadline,
                "an ended holder lives on"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}
