//! A worker's heartbeat: a few words in the aux area of its own results
//! channel, written by the worker with plain atomic stores and read by the
//! supervisor without any message. A worker that stops beating (stopped,
//! hung, spinning in a task) is seen by its last beat, gunicorn's timeout
//! without a file per worker.
//!
//! Each worker can reach only its own slot (it is in its own link), so no
//! worker can make the supervisor blame another. The supervisor reads a
//! slot as a *claim* and [`judge`]s it: a beat in the future, an unknown
//! state, another pid, or a task the worker does not hold is that worker's
//! fault. The words are independent atomics, so a worker SIGKILLed
//! mid-update leaves each word either old or new: never a torn value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Words of the aux area a heartbeat takes.
pub const WORDS: usize = 6;

// Word offsets.
const PID: usize = 0;
/// The state in the low 8 bits, the current task's id + 1 above them (0
/// when not busy): one word, so a reader never sees a new state with an
/// old task (two words once made an honest worker look forged).
const STATE: usize = 1;
/// Programs this worker runs for its tasks (`--worker-cmd`'s) that died
/// or were killed: counted by the worker alone.
const PROGRAMS_REPLACED: usize = 2;
const STATE_BITS: u32 = 8;
const TASKS_DONE: usize = 3;
const LAST_BEAT_NS: usize = 4;
/// Set by the worker when it rings its doorbell, cleared by the supervisor.
pub(crate) const BELL: usize = 5;

/// How far in the future a beat may claim to be before it is a forgery:
/// both sides read the same coarse clock, a few milliseconds apart.
const FUTURE_SLACK: Duration = Duration::from_secs(1);

/// What a worker is doing, as its slot says.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum WorkerState {
    Starting = 0,
    Idle = 1,
    Busy = 2,
    Stopping = 3,
    /// Its task's panic was answered from the panic hook (an aborting
    /// build: see `last_words`) and the process is ending.
    Aborting = 4,
}

impl WorkerState {
    pub fn from_word(word: u64) -> Option<Self> {
        Some(match word {
            0 => WorkerState::Starting,
            1 => WorkerState::Idle,
            2 => WorkerState::Busy,
            3 => WorkerState::Stopping,
            4 => WorkerState::Aborting,
            _ => return None,
        })
    }
}

/// `CLOCK_MONOTONIC_COARSE` in nanoseconds: comparable across processes on
/// one machine, and a few times cheaper than the precise clock, which matters
/// when a worker beats between tasks of a microsecond. Its resolution (a few
/// milliseconds) is far below any heartbeat timeout.
pub fn monotonic_ns() -> u64 {
    outlast_ipc::os::clock::coarse_monotonic_ns()
}

/// A heartbeat slot: `WORDS` words of a link's aux area.
#[derive(Clone, Copy)]
pub struct Heartbeat<'a> {
    words: &'a [AtomicU64],
}

impl<'a> Heartbeat<'a> {
    /// The slot in `aux` (at least `WORDS` words; fewer make every call a no-op).
    pub fn new(aux: &'a [AtomicU64]) -> Self {
        Heartbeat { words: aux }
    }

    fn store(&self, word: usize, value: u64) {
        if let Some(w) = self.words.get(word) {
            w.store(value, Ordering::Release);
        }
    }

    fn load(&self, word: usize) -> u64 {
        self.words
            .get(word)
            .map_or(0, |w| w.load(Ordering::Acquire))
    }

    /// Supervisor side: a slot for a worker about to start, dated now.
    pub fn reset(&self) {
        for word in [PID, STATE, PROGRAMS_REPLACED, TASKS_DONE, BELL] {
            self.store(word, 0);
        }
        self.store(LAST_BEAT_NS, monotonic_ns());
    }

    /// Worker side: records a beat, with what the worker is doing.
    pub fn beat(&self, state: WorkerState, current_task: Option<u64>) {
        self.beat_at(state, current_task, monotonic_ns());
    }

    /// Worker side: a beat at `now` (a [`monotonic_ns`] the caller read
    /// lately: a worker running tasks of a microsecond reads the clock once
    /// a task, not once a beat).
    pub fn beat_at(&self, state: WorkerState, current_task: Option<u64>, now: u64) {
        self.store(STATE, pack(state, current_task));
        self.touch_at(now);
    }

    /// Worker side: only moves the last-beat time (cheap enough per sieve segment).
    pub fn touch(&self) {
        self.touch_at(monotonic_ns());
    }

    /// Moves the last-beat time forward to `now`, writing only when the
    /// coarse clock has moved (the supervisor's copy of the line stays
    /// valid) and never back (a time read before a wait that beat).
    fn touch_at(&self, now: u64) {
        if now > self.load(LAST_BEAT_NS) {
            self.store(LAST_BEAT_NS, now);
        }
    }

    pub fn set_pid(&self, pid: u32) {
        self.store(PID, u64::from(pid));
    }

    /// Worker side (the only writer of this word: a load and a store, not
    /// a locked add).
    pub fn add_done(&self, n: u64) {
        if let Some(w) = self.words.get(TASKS_DONE) {
            w.store(w.load(Ordering::Relaxed).wrapping_add(n), Ordering::Release);
        }
    }

    /// Worker side (the only writer of this word): one more program died
    /// or was killed.
    pub fn add_program_replaced(&self) {
        if let Some(w) = self.words.get(PROGRAMS_REPLACED) {
            w.store(w.load(Ordering::Relaxed).wrapping_add(1), Ordering::Release);
        }
    }

    /// Worker side: claims the doorbell; true if the caller must ring it.
    pub(crate) fn claim_bell(&self) -> bool {
        self.words.get(BELL).is_some_and(|w| {
            w.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        })
    }

    /// Supervisor side: rings are read; the next result must ring again.
    pub fn clear_bell(&self) {
        self.store(BELL, 0);
    }

    /// A snapshot of the words, as claimed.
    pub fn read(&self) -> Claim {
        let word = self.load(STATE);
        Claim {
            pid: self.load(PID),
            state: word & ((1 << STATE_BITS) - 1),
            current: word >> STATE_BITS,
            tasks_done: self.load(TASKS_DONE),
            last_beat_ns: self.load(LAST_BEAT_NS),
            programs_replaced: self.load(PROGRAMS_REPLACED),
        }
    }
}

/// The state word for `state` and `current_task` (ids past 2^56 - 2 are
/// claimed as that; no run has so many tasks).
pub fn pack(state: WorkerState, current_task: Option<u64>) -> u64 {
    let max = (1u64 << (64 - STATE_BITS)) - 1;
    let current = current_task.map_or(0, |id| id.saturating_add(1).min(max));
    (current << STATE_BITS) | state as u64
}

/// The words of a slot as the worker wrote them: nothing is trusted yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Claim {
    pub pid: u64,
    pub state: u64,
    pub current: u64,
    pub tasks_done: u64,
    pub last_beat_ns: u64,
    /// Programs the worker says it started again (a statistic: a worker
    /// can only make its own count wrong).
    pub programs_replaced: u64,
}

/// A slot that passed [`judge`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Beat {
    pub state: WorkerState,
    /// The task running now, if any (one the worker holds).
    pub current_task: Option<u64>,
    pub tasks_done: u64,
    /// How long since the last beat.
    pub silent: Duration,
}

/// What a claim amounts to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Alive(Beat),
    /// No beat for longer than the timeout.
    Silent(Beat),
    /// Words no honest worker writes: the worker corrupted its slot.
    Forged(String),
}

/// Judges a slot: `pid` is the worker's real pid, `now` the coarse clock,
/// `holds(task)` whether the ledger says the worker holds that task.
pub fn judge(
    claim: &Claim,
    pid: u32,
    now: u64,
    timeout: Duration,
    holds: impl FnOnce(u64) -> bool,
) -> Verdict {
    let Some(state) = WorkerState::from_word(claim.state) else {
        return Verdict::Forged(format!(
            "its heartbeat claims an unknown state {}",
            claim.state
        ));
    };
    if claim.pid != 0 && claim.pid != u64::from(pid) {
        return Verdict::Forged(format!("its heartbeat claims to be pid {}", claim.pid));
    }
    let slack = FUTURE_SLACK.as_nanos() as u64;
    if claim.last_beat_ns > now.saturating_add(slack) {
        return Verdict::Forged(format!(
            "its heartbeat claims a beat {:.1} s in the future",
            (claim.last_beat_ns - now) as f64 / 1e9
        ));
    }
    let current_task = match (state, claim.current) {
        (WorkerState::Busy, 0) => {
            return Verdict::Forged("its heartbeat claims to be busy with no task".into())
        }
        (WorkerState::Busy, n) => {
            let task = n - 1;
            if !holds(task) {
                return Verdict::Forged(format!(
                    "its heartbeat claims to run task {task}, which it does not hold"
                ));
            }
            Some(task)
        }
        _ => None,
    };
    let beat = Beat {
        state,
        current_task,
        tasks_done: claim.tasks_done,
        silent: Duration::from_nanos(now.saturating_sub(claim.last_beat_ns)),
    };
    if beat.silent > timeout {
        Verdict::Silent(beat)
    } else {
        Verdict::Alive(beat)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot() -> Vec<AtomicU64> {
        (0..WORDS).map(|_| AtomicU64::new(0)).collect()
    }

    fn judged(words: &[AtomicU64], holds: bool) -> Verdict {
        let hb = Heartbeat::new(words);
        judge(
            &hb.read(),
            42,
            monotonic_ns(),
            Duration::from_secs(30),
            |_| holds,
        )
    }

    #[test]
    fn honest_beats_are_alive_and_old_ones_silent() {
        let words = slot();
        let hb = Heartbeat::new(&words);
        hb.reset();
        hb.set_pid(42);
        hb.beat(WorkerState::Busy, Some(7));
        match judged(&words, true) {
            Verdict::Alive(beat) => assert_eq!(beat.current_task, Some(7)),
            other => panic!("{other:?}"),
        }
        words[LAST_BEAT_NS].store(1, Ordering::Release);
        assert!(matches!(judged(&words, true), Verdict::Silent(_)));
    }

    #[test]
    fn a_beat_dated_before_the_last_does_not_move_it_back() {
        // A worker dates a beat with the clock it read before a wait in
        // which it beat: the later time stays.
        let words = slot();
        let hb = Heartbeat::new(&words);
        hb.beat_at(WorkerState::Idle, None, 2_000);
        hb.beat_at(WorkerState::Busy, Some(5), 1_000);
        let claim = hb.read();
        assert_eq!(claim.last_beat_ns, 2_000);
        assert_eq!(claim.current, 6);
        hb.beat_at(WorkerState::Idle, None, 3_000);
        assert_eq!(hb.read().last_beat_ns, 3_000);
        hb.add_done(2);
        hb.add_done(3);
        assert_eq!(hb.read().tasks_done, 5);
    }

    #[test]
    fn state_and_task_are_read_together() {
        let words = slot();
        let hb = Heartbeat::new(&words);
        hb.beat(WorkerState::Busy, Some(41));
        let claim = hb.read();
        assert_eq!((claim.state, claim.current), (WorkerState::Busy as u64, 42));
        hb.beat(WorkerState::Idle, None);
        let claim = hb.read();
        assert_eq!((claim.state, claim.current), (WorkerState::Idle as u64, 0));
    }

    #[test]
    fn a_reader_racing_honest_beats_never_sees_a_forgery() {
        // One thread beats Busy(task) / Idle as the worker loop does; the
        // other judges as the supervisor does. A torn read (new state, old
        // task) would be "busy with no task".
        let words = slot();
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            scope.spawn(|| {
                let hb = Heartbeat::new(&words);
                hb.set_pid(42);
                let mut id = 0;
                while !stop.load(Ordering::Relaxed) {
                    hb.beat(WorkerState::Busy, Some(id));
                    hb.beat(WorkerState::Idle, None);
                    id += 1;
                }
            });
            let forged = (0..200_000)
                .map(|_| judged(&words, true))
                .find(|v| matches!(v, Verdict::Forged(_)));
            stop.store(true, Ordering::Relaxed);
            assert_eq!(forged, None);
        });
    }

    #[test]
    fn wild_words_are_forgeries() {
        let words = slot();
        let hb = Heartbeat::new(&words);
        hb.reset();
        words[LAST_BEAT_NS].store(u64::MAX, Ordering::Release);
        assert!(matches!(judged(&words, true), Verdict::Forged(_)), "future");
        hb.reset();
        words[STATE].store(99, Ordering::Release);
        assert!(matches!(judged(&words, true), Verdict::Forged(_)), "state");
        hb.reset();
        words[PID].store(1, Ordering::Release);
        assert!(matches!(judged(&words, true), Verdict::Forged(_)), "pid");
        hb.reset();
        hb.beat(WorkerState::Busy, Some(3));
        assert!(
            matches!(judged(&words, false), Verdict::Forged(_)),
            "task not held"
        );
        words[STATE].store(WorkerState::Busy as u64, Ordering::Release);
        assert!(
            matches!(judged(&words, true), Verdict::Forged(_)),
            "busy, no task"
        );
    }
}
