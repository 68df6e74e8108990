//! How the ring's callers wait: `Patience` (a timeout whose deadline is read
//! from the clock only once waiting is needed), `lock_side` (a robust mutex
//! taken under that patience, released by a guard), and `sleep_on` (spin on
//! a position word while that pays, then sleep on its futex).

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::os::Deadline;
use crate::spin::SpinBudget;
use crate::sync::robust::{Acquired, NotAcquired, RobustMutex};
use crate::watch::Arm;

use super::bias::Bias;
use super::ring::RingError;

/// How long a waiter sleeps before re-checking whether its peers are alive.
pub(crate) const LIVENESS_SLICE: Duration = Duration::from_millis(50);

/// The longest a waiter spins on the other side's word before sleeping: a
/// peer that is streaming or answering moves it within microseconds, and a
/// futex sleep plus wake-up costs more than that on most machines. Within
/// it, each handle spins as long as its recent waits say pays, and not at
/// all while more threads are runnable than CPUs.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// How long a sleeper waits for a bias owner's wake-up before it makes
/// sure, with a membarrier, that the owner cannot have missed it: the bound
/// on what a missed wake-up would cost. Not shorter: on a VM (measured here,
/// Firecracker, one CPU), a futex timeout under about half a millisecond
/// made every blocking round trip 16 us slower.
pub(crate) const UNFENCED_NAP: Duration = Duration::from_millis(2);

/// What a sleeper raises its side's wake-once flag to.
pub(super) const ARMED: u32 = 1;

/// The longest pause between two looks while spinning (in `spin_loop` hints,
/// each some tens of nanoseconds).
const MAX_PAUSE: u32 = 64;

/// How long a call may wait, with its deadline read from the clock only
/// once waiting is needed: most puts and gets never wait, and a clock read
/// is a good part of their cost.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Patience {
    /// `None`: forever.
    timeout: Option<Duration>,
    started: Option<Deadline>,
}

impl Patience {
    pub(crate) fn never() -> Self {
        Patience {
            timeout: None,
            started: None,
        }
    }
    pub(crate) fn now() -> Self {
        Self::after(Duration::ZERO)
    }
    pub(crate) fn after(timeout: Duration) -> Self {
        Patience {
            timeout: Some(timeout),
            started: None,
        }
    }
    /// The deadline, fixed the first time it is asked for.
    pub(crate) fn deadline(&mut self) -> Deadline {
        *self.started.get_or_insert_with(|| match self.timeout {
            None => Deadline::never(),
            Some(t) => Deadline::after(t),
        })
    }
    pub(crate) fn passed(&mut self) -> bool {
        match self.timeout {
            None => false,
            Some(t) if t.is_zero() => true,
            Some(_) => self.deadline().passed(),
        }
    }
}

/// A held side mutex; unlocked when dropped (also if a caller's closure
/// panics in the middle of a get).
pub(crate) struct Locked<'a> {
    mutex: &'a RobustMutex,
}

impl Drop for Locked<'_> {
    fn drop(&mut self) {
        self.mutex.unlock();
    }
}

/// Takes `mutex` as `patience` allows.
pub(crate) fn lock_side<'a>(
    mutex: &'a RobustMutex,
    patience: &mut Patience,
) -> Result<Locked<'a>, RingError> {
    // Free (the usual case): no clock, no deadline.
    let first = mutex.try_lock();
    let outcome = match first {
        Err(NotAcquired::Timeout) if !patience.passed() => mutex.lock(patience.deadline()),
        other => other,
    };
    match outcome {
        // A dead holder left nothing visible half-done: commit after copy.
        Ok(Acquired::Clean) | Ok(Acquired::OwnerDied) => Ok(Locked { mutex }),
        Err(NotAcquired::Timeout) => Err(RingError::Timeout),
        Err(NotAcquired::Os(e)) => Err(RingError::Os(e)),
    }
}

/// Waits for `word` to move from `seen`: spins as `budget` allows within
/// `spin` (not at all while the CPUs are oversubscribed), then sleeps at
/// most until `deadline` (the caller's, capped at a liveness slice or so);
/// records how long that took in `budget`. True
/// if the word moved. `waiting`: the side's wake-once flag, raised here and
/// slept on (see [`futex::owes_wake`](crate::os::futex::owes_wake)). `writer_bias`: the bias of the side that moves
/// `word`, whose owner publishes and then checks for sleepers with no
/// fence of its own.
pub(crate) fn sleep_on(
    word: &AtomicU64,
    seen: u64,
    waiting: &AtomicU32,
    deadline: Deadline,
    spin: Duration,
    budget: &SpinBudget,
    writer_bias: &Bias<'_>,
) -> bool {
    let started = std::time::Instant::now();
    let spin = budget.limit(spin);
    if !spin.is_zero() {
        let limit = match deadline.remaining() {
            Some(left) => left.min(spin),
            None => spin,
        };
        // Look less and less often: each look pulls the other side's line
        // over, and a writer that finds it gone pays for it on every record.
        // The clock is read after every look: a `spin_loop` hint is 40-140
        // cycles, so even the first 16 looks would spin 50 us, where the
        // limit may be 2.
        let mut pause = 4u32;
        loop {
            if word.load(Ordering::Acquire) != seen {
                budget.record(started.elapsed());
                return true;
            }
            if started.elapsed() >= limit {
                break;
            }
            for _ in 0..pause {
                std::hint::spin_loop();
            }
            pause = (pause * 2).min(MAX_PAUSE);
        }
    }
    let mut slice = deadline.remaining().unwrap_or(LIVENESS_SLICE);
    // Raised: the writer's next record clears it and wakes everyone asleep
    // on it (see `futex::owes_wake`). The swap is a full fence: the look at
    // `word` below is after it.
    waiting.swap(ARMED, Ordering::SeqCst);
    // Whether to stop waiting: the word moved, or someone cleared the flag
    // without moving it (a shutdown: the caller looks).
    let done = || word.load(Ordering::Acquire) != seen || waiting.load(Ordering::Acquire) != ARMED;
    if done() {
        slice = Duration::ZERO;
    } else if writer_bias.active() {
        // The bias owner publishes and then reads the flag with no fence of
        // its own, so in theory it can miss our raising it. A first nap
        // bounds what such a miss costs; only a wait that outlasts it pays
        // for the membarrier that rules the miss out. That fence interrupts
        // every CPU running one of our processes, the peer about to answer
        // among them: on a VM, each such interrupt is tens of microseconds.
        let nap = slice.min(UNFENCED_NAP);
        crate::os::futex::wait(waiting, ARMED, Deadline::after(nap));
        slice = slice.saturating_sub(nap);
        if done() {
            slice = Duration::ZERO;
        } else if !slice.is_zero() {
            // (Nothing left to sleep, a short timeout: no fence either.)
            // Either the owner sees the flag, or we see its new position.
            // If that cannot be made sure, sleep briefly instead.
            if crate::os::membarrier::global_fence().is_err() {
                slice = slice.min(Duration::from_millis(1));
            }
            if done() {
                slice = Duration::ZERO;
            }
        }
    }
    if !slice.is_zero() {
        crate::os::futex::wait(waiting, ARMED, Deadline::after(slice));
    }
    budget.record(started.elapsed());
    word.load(Ordering::Acquire) != seen
}

/// Raises `waiting` (the side's wake-once flag) for a watcher about to
/// sleep until `word` moves from `seen`: the flag, with `ARMED`, to sleep
/// on; `Moved` if the word moved or the flag was cleared meanwhile (a
/// shutdown). As [`sleep_on`] without the sleep, which the watcher takes
/// for many objects at once; `unfenced` while the writer has a bias owner
/// (see there).
pub(crate) fn arm_on<'a>(
    word: &AtomicU64,
    seen: u64,
    waiting: &'a AtomicU32,
    writer_bias: &Bias<'_>,
) -> Arm<'a> {
    // A full fence: the look at `word` below is after it.
    waiting.swap(ARMED, Ordering::SeqCst);
    if word.load(Ordering::Acquire) != seen || waiting.load(Ordering::Acquire) != ARMED {
        return Arm::Moved;
    }
    Arm::Word {
        word: waiting,
        value: ARMED,
        unfenced: writer_bias.active(),
    }
}

#[cfg(test)]
mod tests {
    use crate::os::membarrier::FENCES_ON_THIS_THREAD;
    use crate::queue::Queue;
    use std::time::Duration;

    const ROUNDS: u64 = 400;
    const PATIENCE: Duration = Duration::from_secs(30);

    /// Answers `ROUNDS` pings; returns how many fences it asked for.
    fn answer(ping: Queue<u64>, pong: Queue<u64>) -> u64 {
        for _ in 0..ROUNDS {
            let n = ping.get_timeout(PATIENCE).expect("a ping");
            pong.put(&(n + 1)).expect("room for the answer");
        }
        FENCES_ON_THIS_THREAD.with(|n| n.get())
    }

    /// A producer ahead of a slower consumer resumes once a run of room is
    /// free, not at every freed record (which kept both sides on the same
    /// lines, a cross-core transfer per message: a plain loop of puts ran
    /// at half the rate of the same puts in a slightly slower loop).
    #[test]
    fn a_producer_ahead_of_its_consumer_resumes_in_runs() {
        const MESSAGES: u64 = 20_000;
        let q = Queue::<u64>::with_ring_bytes(0, 64 * 1024).expect("a queue");
        let theirs = q.try_clone().expect("a clone");
        let producer = std::thread::spawn(move || {
            for n in 0..MESSAGES {
                theirs.put(&n).expect("room, in time");
            }
            crate::queue::ring::WAITS_FOR_ROOM.with(|n| n.get())
        });
        // Slower than the producer: a microsecond of work per message.
        for n in 0..MESSAGES {
            assert_eq!(q.get_timeout(PATIENCE).expect("a message"), n);
            let until = std::time::Instant::now() + Duration::from_micros(1);
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        let waits = producer.join().expect("the producer");
        assert!(
            waits < MESSAGES / 10,
            "{waits} waits for room in {MESSAGES} puts"
        );
    }

    /// A consumer that was woken but has not run yet (here: stopped)
    /// costs its producer one wake-up call, not one per message. Without
    /// the armed bit, every put paid one until the consumer ran: on one
    /// CPU, 1.7 futex calls a message, and 3 M msgs/s where 30 M are the
    /// rate with the bit.
    #[test]
    fn a_sleeper_slow_to_run_costs_its_producer_one_wake_up() {
        const MESSAGES: u64 = 1_000;
        let q = Queue::<u64>::with_ring_bytes(0, 256 * 1024).expect("a queue");
        // This thread is a producer from the start: the consumer's first
        // get does not find every producer gone.
        q.put(&0).expect("room");
        // SAFETY: the child only takes messages (shared memory, futexes,
        // glibc's malloc, safe after fork) and leaves with `_exit`.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0, "fork failed");
        if pid == 0 {
            let all = (0..MESSAGES).all(|n| q.get_timeout(PATIENCE).ok() == Some(n));
            // SAFETY: ends the forked child without the parent's destructors.
            unsafe { libc::_exit(if all { 0 } else { 1 }) };
        }
        // Once the child sleeps on the empty queue, stop it there.
        let deadline = std::time::Instant::now() + PATIENCE;
        while !q.ring().consumers_armed() {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never slept"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        // SAFETY: signals to our own child.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
        let mut status = 0;
        // SAFETY: waiting for our own child to stop.
        let stopped = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
        assert_eq!(stopped, pid);
        assert!(libc::WIFSTOPPED(status), "status {status:#x}");
        let before = crate::queue::ring::CONSUMER_WAKES.with(|n| n.get());
        for n in 1..MESSAGES {
            q.put(&n).expect("room");
        }
        let wakes = crate::queue::ring::CONSUMER_WAKES.with(|n| n.get()) - before;
        // SAFETY: as above.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
        // SAFETY: waiting for our own child to end.
        assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
        assert!(
            libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
            "the child took every message in order: status {status:#x}"
        );
        assert_eq!(wakes, 1, "{wakes} wake-ups for {} puts", MESSAGES - 1);
    }

    /// A caller polling with short timeouts (a loop of `get_timeout(1 ms)`
    /// beside other work) sleeps out its timeouts within the nap: a fence
    /// for each would interrupt every CPU a thousand times a second.
    #[test]
    fn short_timeouts_on_an_empty_queue_ask_for_no_fences() {
        let q = Queue::<u64>::with_ring_bytes(0, 64 * 1024).expect("a queue");
        let writer = q.try_clone().expect("a clone");
        // A thread that puts in streaks becomes the producers' owner, so
        // the sleeps below are the ones that pair with a fence-less writer.
        std::thread::spawn(move || {
            for n in 0..1_000 {
                writer.put(&n).expect("room");
            }
        })
        .join()
        .expect("the writer");
        while q.try_get().is_ok() {}
        let before = FENCES_ON_THIS_THREAD.with(|n| n.get());
        for _ in 0..20 {
            assert!(q.get_timeout(Duration::from_millis(1)).is_err(), "empty");
        }
        let fences = FENCES_ON_THIS_THREAD.with(|n| n.get()) - before;
        assert_eq!(fences, 0, "fences in 20 short waits");
    }

    /// A blocking round trip wakes its sleeper within the nap, so neither
    /// side interrupts every CPU with a membarrier (each one made a round
    /// trip on a VM 5x slower). A wait longer than the nap (a loaded
    /// machine) may fence: the bound leaves room for a quarter of them.
    #[test]
    fn a_blocking_ping_pong_asks_for_no_fences() {
        let ping = Queue::<u64>::with_ring_bytes(0, 64 * 1024).expect("a queue");
        let pong = Queue::<u64>::with_ring_bytes(0, 64 * 1024).expect("a queue");
        for q in [&ping, &pong] {
            q.set_spin(Duration::ZERO);
        }
        let theirs = (
            ping.try_clone().expect("a clone"),
            pong.try_clone().expect("a clone"),
        );
        let answering = std::thread::spawn(move || answer(theirs.0, theirs.1));
        let before = FENCES_ON_THIS_THREAD.with(|n| n.get());
        for n in 0..ROUNDS {
            ping.put(&n).expect("room for the ping");
            assert_eq!(pong.get_timeout(PATIENCE).expect("an answer"), n + 1);
        }
        let ours = FENCES_ON_THIS_THREAD.with(|n| n.get()) - before;
        let theirs = answering.join().expect("the answering thread");
        assert!(
            ours + theirs < ROUNDS / 2,
            "{ours} + {theirs} fences in {ROUNDS} round trips"
        );
    }
}
