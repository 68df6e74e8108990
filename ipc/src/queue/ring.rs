//! The byte ring behind every queue: records of `[len: u32][kind: u32]
//! [payload, padded to 8]` in shared memory, and two sides (producers' and
//! consumers'), each a robust mutex, a position word and a bias (see
//! `bias`: a thread that has the side to itself works without the mutex).
//!
//! Commit after copy: a producer copies a record in and only then publishes
//! the new tail with one atomic store; a consumer copies a record out and only
//! then publishes the new head. Each position word packs the byte position
//! and the message count, so one store moves both. A process SIGKILLed in
//! the middle of a put leaves a record nobody can see (its `put` never
//! returned); one killed in the middle of a get leaves the record in place
//! for the next consumer. The next locker gets `EOWNERDEAD`, which here
//! needs no repair at all.
//!
//! Waiting: consumers sleep on the low 32 bits of the tail word (the byte
//! position, which moves with every record), producers on the head word.
//! Nobody holds a lock while sleeping.
//!
//! Corrupted words: every position read from shared memory is checked
//! before it is used (8-aligned, inside two laps of the ring), and every
//! record's length against the bytes left before the ring's end, so no
//! value written into the segment by anyone can make a put write, or a get
//! read, outside the ring: such a value is `RingError::Corrupted`.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use crate::os::thread_id::thread_id;
use crate::os::Deadline;
use crate::spin::SpinBudget;

use super::stuck::{WaitingGet, WaitingPut};
use crate::sync::robust::RobustMutex;
use crate::watch::Arm;

use super::bias::{Bias, BiasState};
use super::producers::Producers;
use super::wait::{arm_on, lock_side, sleep_on, Patience, DEFAULT_SPIN, LIVENESS_SLICE};

/// Bits of a position word that hold the byte position. Positions run over
/// two laps of the ring, `[0, 2 * capacity)`: an offset is then the
/// position or the position less the capacity (no division on the hot
/// path), and a full ring (distance = capacity) differs from an empty one.
const POS_BITS: u32 = 36;
const POS_MASK: u64 = (1 << POS_BITS) - 1;
const COUNT_MASK: u64 = (1 << (64 - POS_BITS)) - 1;
/// Largest ring: two laps of positions must fit in POS_BITS (and in the low
/// 32 bits, which the futex watches).
pub(crate) const MAX_RING: usize = 1 << 30;

const RECORD_HEADER: usize = 8;
const KIND_MESSAGE: u32 = 0;
const KIND_WRAP: u32 = 1;
/// A message too large for the ring: the record holds `[tag: u64][len:
/// u64]`, and the message itself went over the queue's spill socket, tagged
/// alike, before the record was published (see `queue::spill`).
const KIND_SPILLED: u32 = 2;
const SPILLED_RECORD: usize = 16;

/// A consumer that has waited `idle_slices` whole slices without a record
/// sleeps twice as long each time, up to 16 liveness slices (0.8 s): how
/// late it may notice that its last producer died. A wake-up is dear on a
/// VM (a thread that has just woken runs cold: there, reading /proc then
/// cost 0.5-0.7 ms of CPU), and at one per 50 ms a blocked consumer was on
/// a CPU for 1 % of the time.
fn idle_slice(idle_slices: u32) -> Duration {
    LIVENESS_SLICE * (1 << idle_slices.min(4))
}

/// One record as a consumer sees it.
pub(crate) enum Record<'a> {
    /// The message's bytes, in the ring.
    Inline(&'a [u8]),
    /// The announcement of a spilled message.
    Spilled { tag: u64, len: u64 },
}

/// Why one record could not be placed.
enum Placing {
    /// No room: the head seen.
    NoRoom(u64),
    /// A spilled message's memfd could not be handed over.
    Failed(std::io::Error),
}

/// How many new records a streaming consumer aims to find each time it
/// looks at the tail; finding fewer, it holds back one `spin_loop` hint per
/// missing record before its next look.
const LOOK_GOAL: u64 = 64;
const AFTER_WAIT: u64 = u64::MAX;

#[cfg(test)]
thread_local! {
    /// How many times this thread found the ring full and waited for room.
    pub(crate) static WAITS_FOR_ROOM: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    /// How many times this thread woke the consumers' sleepers.
    pub(crate) static CONSUMER_WAKES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// The room a producer that found the ring full waits for before it puts
/// again (at most an eighth of the ring), and for how long at most.
const RESUME_ROOM: usize = 16384;
const RESUME_PATIENCE: Duration = Duration::from_micros(200);

/// How far ahead of its records a producer asks for lines in writable
/// state. The consumer read those lines a lap ago; without the hint each
/// first store to a line waits for the other core to give it up, in order,
/// and small puts stall on a full store buffer (this machine: 2x slower).
const WRITE_AHEAD: usize = 512;

/// How far ahead of its head a consumer asks for the lines of records
/// already published. Without the hint a consumer that is behind (a full
/// ring) waits for each line to cross from the producer's core in turn
/// (this machine, 64 B puts one by one: 39-43 M msgs/s without it; with
/// it 42-44 M at 128 B ahead, 46-49 M at 256, 49-55 M at 512, 50-56 M at
/// 1 KiB, 48-56 M at 2 KiB, 44-53 M at 4 KiB).
const READ_AHEAD: usize = 1024;

/// One side of the ring (producers' or consumers'), on its own cache line.
#[repr(C, align(64))]
pub(crate) struct Side {
    lock: RobustMutex,
    /// (count << 36) | byte position: the end of the published records
    /// (producers' side) or the first unconsumed one (consumers').
    word: AtomicU64,
    /// The biased owner's token, 0 for none.
    bias: AtomicU64,
    /// Who used the side last under the mutex, and how many times in a row.
    streak: AtomicU64,
}

/// A side's wake-once flag (see [`crate::os::futex::owes_wake`]), alone on
/// its line: it changes only when someone sleeps or is woken, so reading it
/// on every put or get costs no cache traffic.
#[repr(C, align(64))]
pub(crate) struct Sleepers {
    owed: AtomicU32,
}

/// Written once at creation, read by everyone.
#[repr(C, align(64))]
struct Config {
    capacity: AtomicU64,
    /// Most messages held at once (0: bounded by bytes only).
    max_count: AtomicU64,
}

#[repr(C)]
pub(crate) struct RingState {
    tail: Side,
    head: Side,
    producers_waiting: Sleepers,
    consumers_waiting: Sleepers,
    config: Config,
    tail_bias: BiasState,
    head_bias: BiasState,
    pub(crate) producers: Producers,
    shutdown: Shutdown,
}

/// `Queue::shutdown` (Python 3.13): 0 open, 1 shut down (gets drain what
/// is left), 2 shut down at once (nothing is left). On its own line: only
/// empty gets and refused puts read it.
#[repr(C, align(64))]
struct Shutdown {
    state: AtomicU32,
}

pub(crate) const SHUTDOWN: u32 = 1;
pub(crate) const SHUTDOWN_NOW: u32 = 2;

fn pos(word: u64) -> u64 {
    word & POS_MASK
}
fn count(word: u64) -> u64 {
    word >> POS_BITS
}
fn pack(count: u64, pos: u64) -> u64 {
    ((count & COUNT_MASK) << POS_BITS) | (pos & POS_MASK)
}

/// Bytes a record of `len` payload bytes takes.
pub(crate) fn record_size(len: usize) -> usize {
    RECORD_HEADER + len.next_multiple_of(8)
}

/// Why a ring operation stopped.
pub(crate) enum RingError {
    Timeout,
    Disconnected,
    /// `shutdown` was called: no puts; gets once empty.
    ShutDown,
    Corrupted(String),
    Os(std::io::Error),
    /// A spilled message's hand-over failed (the socket is full, say):
    /// nothing of it was published.
    Spill(std::io::Error),
}

/// One handle's private view: what it last saw of the other side's
/// position (stale values are safe: they show less room, or fewer records,
/// than there are, and they save a cross-core cache miss on almost every put
/// and get), how long it spins before sleeping, and the bias tokens it holds.
#[derive(Debug)]
pub(crate) struct LocalView {
    head: AtomicU64,
    tail: AtomicU64,
    /// The last positions this handle published: while the shared word
    /// still holds it, nobody else has moved that side, and the cached view
    /// of the other side is at most one lap old.
    published_tail: AtomicU64,
    published_head: AtomicU64,
    spin_nanos: AtomicU64,
    /// What this handle's recent waits say about spinning.
    budget: SpinBudget,
    /// This handle's bias tokens, if it became the owner of a side.
    tail_token: AtomicU64,
    head_token: AtomicU64,
    /// New records the last look at the tail found (`AFTER_WAIT` once the
    /// handle has waited since: a consumer that had to wait is not
    /// streaming, and its next look finds what it waited for).
    last_found: AtomicU64,
}

impl Default for LocalView {
    fn default() -> Self {
        LocalView {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            published_tail: AtomicU64::new(0),
            published_head: AtomicU64::new(0),
            spin_nanos: AtomicU64::new(DEFAULT_SPIN.as_nanos() as u64),
            budget: SpinBudget::default(),
            tail_token: AtomicU64::new(0),
            head_token: AtomicU64::new(0),
            last_found: AtomicU64::new(0),
        }
    }
}

impl LocalView {
    pub(crate) fn set_spin(&self, spin: Duration) {
        self.spin_nanos.store(
            spin.as_nanos().min(u64::MAX as u128) as u64,
            Ordering::Relaxed,
        );
    }
}

/// The ring: its state and its bytes, seen through one handle.
pub(crate) struct Ring<'a> {
    pub(crate) state: &'a RingState,
    data: *mut u8,
    cap: usize,
    seen: &'a LocalView,
}

impl RingState {
    pub(crate) fn init(&self, capacity: usize, max_count: usize) -> std::io::Result<()> {
        self.tail.lock.init(false)?;
        self.head.lock.init(false)?;
        self.config
            .capacity
            .store(capacity as u64, Ordering::Release);
        self.config
            .max_count
            .store(max_count as u64, Ordering::Release);
        Ok(())
    }
}

/// Combines what a fast path did with what the slow path after it did.
fn add_up(before: usize, after: Result<usize, RingError>) -> Result<usize, RingError> {
    match after {
        Ok(n) => Ok(before + n),
        Err(_) if before > 0 => Ok(before),
        Err(e) => Err(e),
    }
}

impl<'a> Ring<'a> {
    #[inline]
    pub(crate) fn new(
        state: &'a RingState,
        data: *mut u8,
        data_len: usize,
        seen: &'a LocalView,
    ) -> Self {
        let cap = (state.config.capacity.load(Ordering::Acquire) as usize).min(data_len) & !7;
        Ring {
            state,
            data,
            cap,
            seen,
        }
    }

    #[inline]
    fn spin(&self) -> Duration {
        Duration::from_nanos(self.seen.spin_nanos.load(Ordering::Relaxed))
    }

    #[inline]
    fn tail_bias(&self) -> Bias<'a> {
        let s = self.state;
        Bias::new(&s.tail.bias, &s.tail.streak, &s.tail_bias)
    }

    #[inline]
    fn head_bias(&self) -> Bias<'a> {
        let s = self.state;
        Bias::new(&s.head.bias, &s.head.streak, &s.head_bias)
    }

    /// The largest payload a record can carry.
    /// Where position `pos` lies in the ring.
    #[inline]
    fn offset(&self, pos: u64) -> usize {
        let cap = self.cap as u64;
        let at = if pos >= cap { pos - cap } else { pos };
        // Only a corrupted position word gets this far; stay inside the ring.
        (if at >= cap { at % cap.max(1) } else { at }) as usize
    }

    /// The position `n` bytes after `pos` (n at most one lap).
    #[inline]
    fn advance(&self, pos: u64, n: usize) -> u64 {
        let lap = 2 * self.cap as u64;
        let next = pos + n as u64;
        if next >= lap {
            next - lap
        } else {
            next
        }
    }

    /// Bytes from position `from` forward to position `to`.
    #[inline]
    fn distance(&self, to: u64, from: u64) -> u64 {
        let lap = 2 * self.cap as u64;
        if to >= from {
            to - from
        } else {
            (to + lap).wrapping_sub(from)
        }
    }

    /// A position word read from shared memory, checked: 8-aligned and
    /// inside two laps (what every writer of this library leaves there).
    #[inline]
    fn checked(&self, word: u64, which: &str) -> Result<u64, RingError> {
        let p = pos(word);
        if p % 8 != 0 || p >= 2 * self.cap as u64 || self.cap < 64 {
            return Err(RingError::Corrupted(format!(
                "{which} position {p} is impossible in a ring of {} bytes",
                self.cap
            )));
        }
        Ok(word)
    }

    #[inline]
    pub(crate) fn max_message(&self) -> usize {
        self.cap.saturating_sub(RECORD_HEADER + 8)
    }

    pub(crate) fn len(&self) -> u64 {
        // Head first: the tail read after it is never behind it.
        let head = self.state.head.word.load(Ordering::Acquire);
        let tail = self.state.tail.word.load(Ordering::Acquire);
        count(tail).wrapping_sub(count(head)) & COUNT_MASK
    }

    /// Messages ever committed less `done` (both counted modulo the count
    /// field, so the difference stays right across its wrap).
    pub(crate) fn unfinished_since(&self, done: u64) -> u64 {
        let tail = self.state.tail.word.load(Ordering::Acquire);
        count(tail).wrapping_sub(done) & COUNT_MASK
    }

    /// The length of the oldest message, if one is published (a spilled
    /// one's as announced): a look without the consumers' side, so another
    /// consumer may take it first. For choosing how to take a message,
    /// never for reading one.
    pub(crate) fn next_message_len(&self) -> Option<u64> {
        let head = self.checked(self.state.head.word.load(Ordering::Acquire), "head");
        let tail = self.checked(self.state.tail.word.load(Ordering::Acquire), "tail");
        let (head, tail) = (head.ok()?, tail.ok()?);
        if pos(head) == pos(tail) {
            return None;
        }
        let mut at = self.offset(pos(head));
        // SAFETY: `at` is 8-aligned inside the ring (a checked position).
        let (mut len, mut kind) = unsafe { self.read_header(at) };
        if kind == KIND_WRAP {
            at = 0;
            // SAFETY: the start of the ring. (A lone wrap's next record may
            // not be published yet: then this reads a stale header, which
            // only misleads the choice.)
            (len, kind) = unsafe { self.read_header(0) };
        }
        match kind {
            KIND_MESSAGE => Some(len.into()),
            KIND_SPILLED
                if len as usize == SPILLED_RECORD && at + record_size(len as usize) <= self.cap =>
            {
                // SAFETY: the record's payload lies inside the ring (checked
                // just above); its second word is the announced length.
                let announced = unsafe {
                    (self.data.add(at + RECORD_HEADER + 8) as *const u64).read_volatile()
                };
                Some(u64::from_le(announced))
            }
            _ => None,
        }
    }

    pub(crate) fn is_full(&self) -> bool {
        let max = self.state.config.max_count.load(Ordering::Acquire);
        (max > 0 && self.len() >= max) || self.free_bytes() < record_size(0) as u64
    }

    fn free_bytes(&self) -> u64 {
        let head = self.state.head.word.load(Ordering::Acquire);
        let tail = self.state.tail.word.load(Ordering::Acquire);
        (self.cap as u64).saturating_sub(self.distance(pos(tail), pos(head)))
    }

    /// How far the queue is shut down (0: not at all).
    #[inline]
    pub(crate) fn shutdown_state(&self) -> u32 {
        self.state.shutdown.state.load(Ordering::Acquire)
    }

    /// Shuts the queue down and wakes everyone waiting on it.
    pub(crate) fn shut_down(&self, how: u32) {
        self.state.shutdown.state.fetch_max(how, Ordering::AcqRel);
        // Cleared, so that a sleeper about to sleep does not; then woken.
        for sleepers in [&self.state.consumers_waiting, &self.state.producers_waiting] {
            sleepers.owed.store(0, Ordering::SeqCst);
            crate::os::futex::wake_all(&sleepers.owed);
        }
    }

    #[inline]
    fn wake_consumers(&self) {
        let sleepers = &self.state.consumers_waiting.owed;
        if crate::os::futex::owes_wake(sleepers) {
            #[cfg(test)]
            CONSUMER_WAKES.with(|n| n.set(n.get() + 1));
            crate::os::futex::wake_all(sleepers);
        }
    }

    /// Whether a consumer has armed the consumers' sleepers word (it is
    /// asleep, or about to be).
    #[cfg(test)]
    pub(crate) fn consumers_armed(&self) -> bool {
        self.state.consumers_waiting.owed.load(Ordering::Acquire) == super::wait::ARMED
    }

    #[inline]
    fn wake_producers(&self) {
        let sleepers = &self.state.producers_waiting.owed;
        if crate::os::futex::owes_wake(sleepers) {
            crate::os::futex::wake_all(sleepers);
        }
    }

    // ---- for futures (see `crate::watch`) -------------------------------------

    /// The tail word: moves with every message put.
    pub(crate) fn tail_word(&self) -> u64 {
        self.state.tail.word.load(Ordering::Acquire)
    }

    /// The head word: moves with every message taken.
    pub(crate) fn head_word(&self) -> u64 {
        self.state.head.word.load(Ordering::Acquire)
    }

    /// What a watcher sleeps on until the tail moves from `seen` (the
    /// consumers' wake-once flag, raised here; see [`arm_on`]).
    pub(crate) fn arm_for_tail(&self, seen: u64) -> Arm<'a> {
        let s = self.state;
        arm_on(
            &s.tail.word,
            seen,
            &s.consumers_waiting.owed,
            &self.tail_bias(),
        )
    }

    /// [`arm_for_tail`](Self::arm_for_tail), for the head.
    pub(crate) fn arm_for_head(&self, seen: u64) -> Arm<'a> {
        let s = self.state;
        arm_on(
            &s.head.word,
            seen,
            &s.producers_waiting.owed,
            &self.head_bias(),
        )
    }

    // ---- putting ----------------------------------------------------------

    /// The shared tail, for a caller holding the producers' side. If some
    /// other handle has put since this one last published, the cached head
    /// may be laps behind (positions only tell apart two laps): drop it.
    #[inline]
    fn load_tail_to_put(&self) -> Result<u64, RingError> {
        let tail = self.checked(self.state.tail.word.load(Ordering::Acquire), "tail")?;
        if tail != self.seen.published_tail.load(Ordering::Relaxed) {
            let head = self.state.head.word.load(Ordering::Acquire);
            self.seen.head.store(head, Ordering::Relaxed);
        }
        Ok(tail)
    }

    #[inline]
    fn publish_tail(&self, tail: u64) {
        self.state.tail.word.store(tail, Ordering::Release);
        self.seen.published_tail.store(tail, Ordering::Relaxed);
    }

    /// Writes as many of `messages` as fit by `deadline` (all, unless it
    /// passes); returns how many went in. Each is published as it is written.
    #[inline(always)]
    pub(crate) fn put_many(
        &self,
        messages: &[&[u8]],
        deadline: Patience,
    ) -> Result<usize, RingError> {
        self.put_with(messages.len(), deadline, |ring, i, tail| {
            ring.place(tail, messages[i], KIND_MESSAGE)
                .map_err(Placing::NoRoom)
        })
    }

    /// Publishes the announcement of one spilled message of `len` bytes.
    /// While this side is held, it draws the next tag from `tags` and calls
    /// `send(tag)`, which hands the memfd over; the record is published
    /// only if that worked. Records and hand-overs are thus in the same
    /// order, which is what lets a consumer pair them (see `queue::spill`).
    pub(crate) fn put_spilled(
        &self,
        len: u64,
        tags: &AtomicU64,
        send: &mut dyn FnMut(u64) -> std::io::Result<()>,
        deadline: Patience,
    ) -> Result<(), RingError> {
        let n = self.put_with(1, deadline, |ring, _, tail| {
            let tag = tags.fetch_add(1, Ordering::AcqRel);
            let mut record = [0u8; SPILLED_RECORD];
            record[..8].copy_from_slice(&tag.to_le_bytes());
            record[8..].copy_from_slice(&len.to_le_bytes());
            let mut placed = *tail;
            ring.place(&mut placed, &record, KIND_SPILLED)
                .map_err(Placing::NoRoom)?;
            send(tag).map_err(Placing::Failed)?;
            *tail = placed;
            Ok(())
        })?;
        match n {
            1 => Ok(()),
            _ => Err(RingError::Timeout),
        }
    }

    /// The put paths, for `n` records that `place(ring, i, tail)` writes.
    /// Always inlined: the owner's path is a few dozen instructions, and
    /// the call cost a third (a user crate's loop of 64 B `put_bytes`: 40 M
    /// msgs/s through the call, 57-60 M inlined).
    #[inline(always)]
    fn put_with<F>(&self, n: usize, deadline: Patience, mut place: F) -> Result<usize, RingError>
    where
        F: FnMut(&Self, usize, &mut u64) -> Result<(), Placing>,
    {
        if n == 0 {
            return Ok(0);
        }
        if self.shutdown_state() != 0 {
            return Err(RingError::ShutDown);
        }
        let thread = thread_id();
        let mut written = 0;
        let token = self.seen.tail_token.load(Ordering::Relaxed);
        if let Some(_owned) = self.tail_bias().enter(token, thread) {
            // The owner: no mutex, plain stores.
            let mut tail = self.load_tail_to_put()?;
            let mut failed = None;
            while written < n {
                match place(self, written, &mut tail) {
                    Ok(()) => written += 1,
                    Err(Placing::NoRoom(_)) => break,
                    Err(Placing::Failed(e)) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            self.publish_tail(tail);
            // Pairs with a sleeping consumer's nap and membarrier (see `sleep_on`).
            std::sync::atomic::compiler_fence(Ordering::SeqCst);
            self.wake_consumers();
            if let Some(e) = failed {
                return add_up(written, Err(RingError::Spill(e)));
            }
            if written == n {
                return Ok(written);
            }
            // Full: wait for room the slow way, still the owner.
        }
        add_up(
            written,
            self.put_locked(written, n, deadline, thread, &mut place),
        )
    }

    /// The slow path: under the producers' mutex, waiting for room as the
    /// deadline allows; places records `from..n`.
    fn put_locked<F>(
        &self,
        from: usize,
        n: usize,
        mut deadline: Patience,
        thread: u32,
        place: &mut F,
    ) -> Result<usize, RingError>
    where
        F: FnMut(&Self, usize, &mut u64) -> Result<(), Placing>,
    {
        let s = self.state;
        let bias = self.tail_bias();
        let mine = self.seen.tail_token.load(Ordering::Relaxed);
        let mut locked = lock_side(&s.tail.lock, &mut deadline)?;
        bias.settle(mine, thread, &mut deadline)?;
        let mut written = 0;
        let mut tail = self.load_tail_to_put()?;
        // Counted from its second wait for room, so that a put nobody can
        // take from is told apart (and one that waits little pays nothing).
        let mut waiting: Option<WaitingPut<'_>> = None;
        let mut waits = 0u32;
        let result = loop {
            if from + written == n {
                break Ok(());
            }
            let head = match place(self, from + written, &mut tail) {
                Ok(()) => {
                    written += 1;
                    continue;
                }
                Err(Placing::Failed(e)) => break Err(RingError::Spill(e)),
                Err(Placing::NoRoom(head)) => head,
            };
            // Full: publish what we have, let go of the lock, wait for room.
            self.publish_tail(tail);
            if self.shutdown_state() != 0 {
                break Err(RingError::ShutDown);
            }
            if deadline.passed() {
                break Err(RingError::Timeout);
            }
            drop(locked);
            self.wake_consumers();
            if waits > 0 {
                waiting
                    .get_or_insert_with(|| WaitingPut::new(&s.producers))
                    .look(head);
            }
            waits += 1;
            self.wait_for_room(head, &mut deadline);
            let again = lock_side(&s.tail.lock, &mut deadline)
                .and_then(|l| bias.settle(mine, thread, &mut deadline).map(|()| l));
            locked = match again {
                Ok(l) => l,
                // What was written is published; say how much.
                Err(e) => return add_up(written, Err(e)),
            };
            tail = match self.load_tail_to_put() {
                Ok(t) => t,
                Err(e) => break Err(e),
            };
        };
        // Commit: one store makes every record written above visible.
        self.publish_tail(tail);
        if let Some(token) = bias.after_turn(thread, written) {
            self.seen.tail_token.store(token, Ordering::Relaxed);
        }
        // The unlock is a full fence: the tail is out before we look for sleepers.
        drop(locked);
        self.wake_consumers();
        add_up(written, result.map(|()| 0))
    }

    /// Waits, after a put found the ring full at `head`, until the
    /// consumers have freed a run of room ([`RESUME_ROOM`]), not one record:
    /// a producer that resumes at each freed record writes into the lines
    /// the consumer is reading, and both then pay a cross-core transfer per
    /// message. Only for [`RESUME_PATIENCE`] (a slow consumer, or other
    /// producers taking the room, must not hold this one back), and never
    /// past a slice in which nothing moved, the deadline, or a shutdown.
    fn wait_for_room(&self, mut head: u64, deadline: &mut Patience) {
        #[cfg(test)]
        WAITS_FOR_ROOM.with(|n| n.set(n.get() + 1));
        let s = self.state;
        let want = (self.cap / 8).min(RESUME_ROOM) as u64;
        let mut started = None;
        loop {
            sleep_on(
                &s.head.word,
                head,
                &s.producers_waiting.owed,
                deadline.deadline().min(Deadline::after(LIVENESS_SLICE)),
                self.spin(),
                &self.seen.budget,
                &self.head_bias(),
            );
            let now = s.head.word.load(Ordering::Acquire);
            if now == head || deadline.passed() || self.shutdown_state() != 0 {
                return;
            }
            // A heuristic only: a corrupted tail word costs at most the patience.
            let tail = s.tail.word.load(Ordering::Acquire);
            let used = self.distance(pos(tail), pos(now));
            let free = (self.cap as u64).saturating_sub(used);
            let since = *started.get_or_insert_with(std::time::Instant::now);
            if free >= want || since.elapsed() >= RESUME_PATIENCE {
                return;
            }
            head = now;
        }
    }

    /// Writes one record at `*tail` and moves `*tail` past it (not yet
    /// published), or returns the head it saw if there is no room. The
    /// caller holds the producers' side (its mutex, or the bias).
    #[inline]
    fn place(&self, tail: &mut u64, message: &[u8], kind: u32) -> Result<(), u64> {
        let s = self.state;
        let need = record_size(message.len());
        let max = s.config.max_count.load(Ordering::Relaxed);
        loop {
            let at = self.offset(pos(*tail));
            let contiguous = self.cap - at;
            let total = if contiguous < need {
                contiguous + need
            } else {
                need
            };
            let tail_now = *tail;
            let fits = |head: u64| {
                let used = self.distance(pos(tail_now), pos(head));
                let held = count(tail_now).wrapping_sub(count(head)) & COUNT_MASK;
                used <= self.cap as u64
                    && self.cap as u64 - used >= total as u64
                    && (max == 0 || held < max)
            };
            let mut head = self.seen.head.load(Ordering::Relaxed);
            if !fits(head) {
                head = s.head.word.load(Ordering::Acquire);
                self.seen.head.store(head, Ordering::Relaxed);
            }
            if !fits(head) {
                // A record that must start a new lap and cannot fit behind
                // this one's end (larger than half the ring, say) would wait
                // forever: skip to the next lap now, with a wrap record of
                // its own, and wait for room there.
                let used = self.distance(pos(tail_now), pos(head));
                if contiguous < need
                    && at != 0
                    && used <= self.cap as u64
                    && self.cap as u64 - used >= contiguous as u64
                {
                    // SAFETY: `at` is 8-aligned, 8 bytes remain, and the
                    // `contiguous` bytes from `at` are free.
                    unsafe { self.write_header(at, 0, KIND_WRAP) };
                    *tail = pack(count(tail_now), self.advance(pos(tail_now), contiguous));
                    continue;
                }
                return Err(head);
            }
            let mut at = at;
            let mut new_pos = pos(tail_now);
            if contiguous < need {
                // SAFETY: `at` is 8-aligned and at least 8 bytes remain before the end.
                unsafe { self.write_header(at, 0, KIND_WRAP) };
                new_pos = self.advance(new_pos, contiguous);
                at = 0;
            }
            // Only into free space: in a nearly full ring the lines ahead
            // are records the consumer is about to read.
            let used = self.distance(pos(tail_now), pos(head));
            if used + (total + WRITE_AHEAD + 64) as u64 <= self.cap as u64 {
                let mut ahead = at + need + WRITE_AHEAD;
                if ahead >= self.cap {
                    ahead %= self.cap;
                }
                crate::prefetch::for_write(self.data.wrapping_add(ahead));
            }
            // SAFETY: `need` bytes from `at` are inside the ring and free.
            unsafe {
                self.write_header(at, message.len() as u32, kind);
                std::ptr::copy_nonoverlapping(
                    message.as_ptr(),
                    self.data.add(at + RECORD_HEADER),
                    message.len(),
                );
            }
            *tail = pack(count(tail_now) + 1, self.advance(new_pos, need));
            return Ok(());
        }
    }

    /// SAFETY: `at` must be 8-aligned with 8 bytes inside the ring.
    #[inline]
    unsafe fn write_header(&self, at: usize, len: u32, kind: u32) {
        // SAFETY: per the caller; the ring start is 64-aligned.
        unsafe {
            let p = self.data.add(at) as *mut u32;
            p.write(len);
            p.add(1).write(kind);
        }
    }

    // ---- getting ----------------------------------------------------------

    /// The shared head, for a caller holding the consumers' side. If some
    /// other handle has taken since this one last published, the cached
    /// tail may be laps behind: forget it (the next look reads the tail).
    #[inline]
    fn load_head_to_get(&self) -> Result<u64, RingError> {
        let head = self.checked(self.state.head.word.load(Ordering::Acquire), "head")?;
        if head != self.seen.published_head.load(Ordering::Relaxed) {
            self.seen.tail.store(head, Ordering::Relaxed);
        }
        Ok(head)
    }

    #[inline]
    fn publish_head(&self, head: u64) {
        self.state.head.word.store(head, Ordering::Release);
        self.seen.published_head.store(head, Ordering::Relaxed);
    }

    /// Takes up to `max` messages, waiting for the first until `deadline`;
    /// `each` sees every payload (in the shared memory, before it is freed).
    #[inline(always)]
    /// (`me`: the getting handle's producer word, read only if it waits.)
    pub(crate) fn get_many<F: FnMut(Record<'_>)>(
        &self,
        max: usize,
        deadline: Patience,
        me: Option<&AtomicUsize>,
        each: &mut F,
    ) -> Result<usize, RingError> {
        let thread = thread_id();
        let mut taken = 0;
        let token = self.seen.head_token.load(Ordering::Relaxed);
        if let Some(_owned) = self.head_bias().enter(token, thread) {
            // The owner: no mutex, plain stores.
            let start = self.load_head_to_get()?;
            let mut head = start;
            let result = self.take(&mut head, max, &mut taken, each, true);
            if head != start {
                self.publish_head(head);
                // Pairs with a sleeping producer's nap and membarrier (see `sleep_on`).
                std::sync::atomic::compiler_fence(Ordering::SeqCst);
                self.wake_producers();
            }
            match result {
                Ok(()) if taken == 0 => {} // empty: wait the slow way
                Ok(()) => return Ok(taken),
                Err(e) => return add_up(taken, Err(e)),
            }
        }
        self.get_locked(max, deadline, me, each, thread)
    }

    /// The slow path: under the consumers' mutex, waiting for a record as
    /// the deadline allows, and seeing whether every producer is gone.
    fn get_locked<F: FnMut(Record<'_>)>(
        &self,
        max: usize,
        mut deadline: Patience,
        me: Option<&AtomicUsize>,
        each: &mut F,
        thread: u32,
    ) -> Result<usize, RingError> {
        let s = self.state;
        // Counted from its first sleep past a slice, so that a get nothing
        // can answer is told apart (and one that waits little pays nothing).
        let mut waiting: Option<WaitingGet<'_>> = None;
        let bias = self.head_bias();
        let mine = self.seen.head_token.load(Ordering::Relaxed);
        let mut locked = lock_side(&s.head.lock, &mut deadline)?;
        bias.settle(mine, thread, &mut deadline)?;
        let mut head = self.load_head_to_get()?;
        let mut idle_slices = 0u32;
        let mut taken = 0;
        let result = loop {
            let result = self.take(&mut head, max, &mut taken, each, false);
            if taken > 0 || result.is_err() {
                break result;
            }
            // Empty. Reading /proc for every producer costs microseconds
            // (80 us after a sleep, on a VM): only after a whole slice
            // without a record; before that, only the free check of
            // whether any producer is still open.
            if self.shutdown_state() != 0 {
                break Err(RingError::ShutDown);
            }
            if s.producers.all_gone(idle_slices > 0)
                && pos(s.tail.word.load(Ordering::Acquire)) == pos(head)
            {
                break Err(RingError::Disconnected);
            }
            if deadline.passed() {
                break Err(RingError::Timeout);
            }
            // A lone wrap record may have been consumed: free its room.
            self.publish_head(head);
            drop(locked);
            self.wake_producers();
            let seen_tail = self.seen.tail.load(Ordering::Relaxed);
            if idle_slices > 0 {
                waiting
                    .get_or_insert_with(|| WaitingGet::new(&s.producers, me))
                    .sleeps();
            }
            // A wait that outlasted a whole slice is not one a spin can cut.
            let spin = match idle_slices {
                0 => self.spin(),
                _ => Duration::ZERO,
            };
            if !sleep_on(
                &s.tail.word,
                seen_tail,
                &s.consumers_waiting.owed,
                deadline
                    .deadline()
                    .min(Deadline::after(idle_slice(idle_slices))),
                spin,
                &self.seen.budget,
                &self.tail_bias(),
            ) {
                idle_slices += 1;
                if let Some(waiting) = &waiting {
                    let tail = pos(s.tail.word.load(Ordering::Acquire));
                    waiting.look(tail, tail == pos(s.head.word.load(Ordering::Acquire)));
                }
            }
            self.seen.last_found.store(AFTER_WAIT, Ordering::Relaxed);
            locked = lock_side(&s.head.lock, &mut deadline)?;
            bias.settle(mine, thread, &mut deadline)?;
            head = match self.load_head_to_get() {
                Ok(h) => h,
                Err(e) => break Err(e),
            };
        };
        // Commit: the records are freed only now.
        self.publish_head(head);
        if let Some(token) = bias.after_turn(thread, taken) {
            self.seen.head_token.store(token, Ordering::Relaxed);
        }
        // The unlock is a full fence: the head is out before we look for sleepers.
        drop(locked);
        self.wake_producers();
        match result {
            Ok(()) => Ok(taken),
            Err(RingError::Timeout | RingError::Disconnected | RingError::ShutDown)
                if taken > 0 =>
            {
                Ok(taken)
            }
            Err(e) => Err(e),
        }
    }

    /// Takes published records from `*head` on, showing each payload to
    /// `each` and moving `*head` past it (not yet published), until `*taken`
    /// reaches `max` or no record is left. The caller holds the consumers'
    /// side (its mutex, or the bias: only the owner may `hold_back` before
    /// looking at the tail, since nobody waits for it).
    #[inline]
    fn take<F: FnMut(Record<'_>)>(
        &self,
        head: &mut u64,
        max: usize,
        taken: &mut usize,
        each: &mut F,
        hold_back: bool,
    ) -> Result<(), RingError> {
        while *taken < max {
            let mut tail = self.seen.tail.load(Ordering::Relaxed);
            let available = self.distance(pos(tail), pos(*head));
            if available == 0 || available > self.cap as u64 {
                tail = self.look_at_tail(*head, hold_back);
            }
            if pos(tail) == pos(*head) {
                return Ok(());
            }
            let mut at = self.offset(pos(*head));
            let mut new_pos = pos(*head);
            // Published records lie ahead: ask for their lines now, so the
            // reads below do not wait for each one to cross from the
            // producer's core in turn (never past the tail, where the
            // producer is still writing).
            if available > READ_AHEAD as u64 && available <= self.cap as u64 {
                let mut ahead = at + READ_AHEAD;
                if ahead >= self.cap {
                    ahead -= self.cap;
                }
                crate::prefetch::for_read(self.data.wrapping_add(ahead));
            }
            // SAFETY: `at` is 8-aligned inside the ring; the record there is published.
            let (mut len, mut kind) = unsafe { self.read_header(at) };
            if kind == KIND_WRAP {
                new_pos = self.advance(new_pos, self.cap - at);
                at = 0;
                if new_pos == pos(tail) {
                    // A wrap published alone (its record waits for room):
                    // consume it, so the producer finds that room.
                    *head = pack(count(*head), new_pos);
                    continue;
                }
                // SAFETY: as above, at the start of the ring.
                (len, kind) = unsafe { self.read_header(0) };
            }
            let len = len as usize;
            let spilled = kind == KIND_SPILLED && len == SPILLED_RECORD;
            if !(kind == KIND_MESSAGE || spilled) || record_size(len) > self.cap - at {
                return Err(RingError::Corrupted(format!(
                    "record of kind {kind}, {len} bytes at {at}"
                )));
            }
            // SAFETY: the payload lies inside the ring (checked) and is published.
            let payload =
                unsafe { std::slice::from_raw_parts(self.data.add(at + RECORD_HEADER), len) };
            if spilled {
                let word = |i: usize| {
                    let mut b = [0u8; 8];
                    b.copy_from_slice(&payload[i..i + 8]);
                    u64::from_le_bytes(b)
                };
                each(Record::Spilled {
                    tag: word(0),
                    len: word(8),
                });
            } else {
                each(Record::Inline(payload));
            }
            *head = pack(count(*head) + 1, self.advance(new_pos, record_size(len)));
            *taken += 1;
        }
        Ok(())
    }

    /// Reads the shared tail (for a consumer whose view is used up). A
    /// consumer that keeps finding one or two new records is in lockstep
    /// with a faster-writing producer: every look pulls the tail's line, and
    /// the line of the record being written, away from the producer just
    /// before it writes there again, a cross-core round trip per message
    /// (this machine, 64 B puts: medians of 8 M msgs/s with no holding
    /// back, 15 M with a goal of 32, 16 M with 64, 18 M with 256, in one
    /// alternating run). So a consumer that found few holds back before its
    /// next look (at most 63 hints, about 1.6 us here), letting the producer
    /// get ahead. A consumer that had to wait (a ping-pong, a trickle) does
    /// not hold back.
    #[inline]
    fn look_at_tail(&self, head: u64, hold_back: bool) -> u64 {
        let last = self.seen.last_found.load(Ordering::Relaxed);
        if hold_back && last > 0 && last < LOOK_GOAL {
            for _ in 0..LOOK_GOAL - last {
                std::hint::spin_loop();
            }
        }
        let mut tail = self.state.tail.word.load(Ordering::Acquire);
        if self.checked(tail, "tail").is_err() {
            // Read as "nothing new": the consumer never follows it.
            tail = head;
        }
        self.seen.tail.store(tail, Ordering::Relaxed);
        let new = count(tail).wrapping_sub(count(head)) & COUNT_MASK;
        let found = if last == AFTER_WAIT { 0 } else { new };
        self.seen.last_found.store(found, Ordering::Relaxed);
        tail
    }

    /// SAFETY: `at` must be 8-aligned with 8 bytes inside the ring.
    #[inline]
    unsafe fn read_header(&self, at: usize) -> (u32, u32) {
        // SAFETY: per the caller.
        unsafe {
            let p = self.data.add(at) as *const u32;
            (p.read_volatile(), p.add(1).read_volatile())
        }
    }
}

#[cfg(test)]
#[path = "ring_corruption_tests.rs"]
mod corruption_tests;
