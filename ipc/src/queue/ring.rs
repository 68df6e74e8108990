//! The byte ring behind every queue: records of `[len: u32][kind: u32]
//! [payload, padded to 8]` in shared memory, with two robust locks (one for
//! producers, one for consumers) and two position words.
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

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::sync::robust::{Acquired, NotAcquired, RobustMutex};
use crate::sys::Deadline;

use super::producers::Producers;

/// Bits of a position word that hold the byte position.
const POS_BITS: u32 = 36;
const POS_MASK: u64 = (1 << POS_BITS) - 1;
const COUNT_MASK: u64 = (1 << (64 - POS_BITS)) - 1;
/// Largest ring: positions wrap at 2^36, and differences must stay unambiguous.
pub(crate) const MAX_RING: usize = 1 << 30;

const RECORD_HEADER: usize = 8;
const KIND_MESSAGE: u32 = 0;
const KIND_WRAP: u32 = 1;

/// How long a waiter sleeps before re-checking whether its peers are alive.
const LIVENESS_SLICE: Duration = Duration::from_millis(50);

/// The producers' side: their lock and the tail.
#[repr(C, align(64))]
pub(crate) struct TailSide {
    lock: RobustMutex,
    /// (count << 36) | byte position, of the end of the published records.
    word: AtomicU64,
}

/// The consumers' side, on its own cache line so the two sides never share one.
#[repr(C, align(64))]
pub(crate) struct HeadSide {
    lock: RobustMutex,
    /// The same, of the first unconsumed record.
    word: AtomicU64,
}

/// A count of sleepers, alone on its line: it changes only when someone
/// sleeps, so reading it on every put or get costs no cache traffic.
#[repr(C, align(64))]
pub(crate) struct Sleepers {
    count: AtomicU32,
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
    tail: TailSide,
    head: HeadSide,
    producers_waiting: Sleepers,
    consumers_waiting: Sleepers,
    config: Config,
    pub(crate) producers: Producers,
}

fn pos(word: u64) -> u64 {
    word & POS_MASK
}
fn count(word: u64) -> u64 {
    word >> POS_BITS
}
fn pack(count: u64, pos: u64) -> u64 {
    ((count & COUNT_MASK) << POS_BITS) | (pos & POS_MASK)
}
fn low32(word: &AtomicU64) -> &AtomicU32 {
    // SAFETY: the low half of an 8-aligned AtomicU64 is a 4-aligned u32 on
    // little-endian targets; the futex only reads it atomically.
    unsafe { &*(word.as_ptr() as *const AtomicU32) }
}

/// Bytes a record of `len` payload bytes takes.
pub(crate) fn record_size(len: usize) -> usize {
    RECORD_HEADER + len.next_multiple_of(8)
}

/// Why a ring operation stopped.
pub(crate) enum RingError {
    Timeout,
    Disconnected,
    Corrupted(String),
    Os(std::io::Error),
}

/// One handle's private view: what it last saw of the other side's
/// position (stale values are safe: they show less room, or fewer records,
/// than there are, and they save a cross-core cache miss on almost every put
/// and get), and how long it spins before sleeping.
#[derive(Debug)]
pub(crate) struct LocalView {
    head: AtomicU64,
    tail: AtomicU64,
    spin_nanos: AtomicU64,
}

impl Default for LocalView {
    fn default() -> Self {
        LocalView {
            head: AtomicU64::new(0),
            tail: AtomicU64::new(0),
            spin_nanos: AtomicU64::new(DEFAULT_SPIN.as_nanos() as u64),
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
    fn deadline(&mut self) -> Deadline {
        *self.started.get_or_insert_with(|| match self.timeout {
            None => Deadline::never(),
            Some(t) => Deadline::after(t),
        })
    }
    fn passed(&mut self) -> bool {
        match self.timeout {
            None => false,
            Some(t) if t.is_zero() => true,
            Some(_) => self.deadline().passed(),
        }
    }
}

fn lock(mutex: &RobustMutex, patience: &mut Patience) -> Result<(), RingError> {
    // Free (the usual case): no clock, no deadline.
    let first = mutex.try_lock();
    let outcome = match first {
        Err(NotAcquired::Timeout) if !patience.passed() => mutex.lock(patience.deadline()),
        other => other,
    };
    match outcome {
        // A dead holder left nothing visible half-done: commit after copy.
        Ok(Acquired::Clean) | Ok(Acquired::OwnerDied) => Ok(()),
        Err(NotAcquired::Timeout) => Err(RingError::Timeout),
        Err(NotAcquired::Os(e)) => Err(RingError::Os(e)),
    }
}

/// How long a waiter spins on the other side's word before sleeping: a
/// peer that is streaming or answering moves it within microseconds, and a
/// futex sleep plus wake-up costs more than that on most machines.
pub const DEFAULT_SPIN: Duration = Duration::from_micros(20);

/// The longest pause between two looks while spinning (in `spin_loop` hints,
/// each some tens of nanoseconds).
const MAX_PAUSE: u32 = 64;

/// Waits for `word` to move from `seen`: spins up to `spin`, then sleeps at
/// most one liveness slice. True if the word moved.
fn sleep_on(
    word: &AtomicU64,
    seen: u64,
    waiting: &AtomicU32,
    deadline: Deadline,
    spin: Duration,
) -> bool {
    if !spin.is_zero() {
        let started = std::time::Instant::now();
        let limit = match deadline.remaining() {
            Some(left) => left.min(spin),
            None => spin,
        };
        // Look less and less often: each look pulls the other side's line
        // over, and a writer that finds it gone pays for it on every record.
        let mut pause = 4u32;
        loop {
            for _ in 0..16 {
                if word.load(Ordering::Acquire) != seen {
                    return true;
                }
                for _ in 0..pause {
                    std::hint::spin_loop();
                }
                pause = (pause * 2).min(MAX_PAUSE);
            }
            if started.elapsed() >= limit {
                break;
            }
        }
    }
    let slice = match deadline.remaining() {
        Some(left) => left.min(LIVENESS_SLICE),
        None => LIVENESS_SLICE,
    };
    waiting.fetch_add(1, Ordering::AcqRel);
    crate::sync::futex_wait_u32(low32(word), seen as u32, Deadline::after(slice));
    waiting.fetch_sub(1, Ordering::AcqRel);
    word.load(Ordering::Acquire) != seen
}

impl<'a> Ring<'a> {
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

    fn spin(&self) -> Duration {
        Duration::from_nanos(self.seen.spin_nanos.load(Ordering::Relaxed))
    }

    /// The largest payload a record can carry.
    pub(crate) fn max_message(&self) -> usize {
        self.cap.saturating_sub(RECORD_HEADER + 8)
    }

    pub(crate) fn len(&self) -> u64 {
        let tail = self.state.tail.word.load(Ordering::Acquire);
        let head = self.state.head.word.load(Ordering::Acquire);
        count(tail).wrapping_sub(count(head)) & COUNT_MASK
    }

    pub(crate) fn is_full(&self) -> bool {
        let max = self.state.config.max_count.load(Ordering::Acquire);
        (max > 0 && self.len() >= max) || self.free_bytes() < record_size(0) as u64
    }

    fn free_bytes(&self) -> u64 {
        let tail = self.state.tail.word.load(Ordering::Acquire);
        let head = self.state.head.word.load(Ordering::Acquire);
        self.cap as u64 - (pos(tail).wrapping_sub(pos(head)) & POS_MASK)
    }

    /// Writes as many of `messages` as fit by `deadline` (all, unless it
    /// passes); returns how many went in. Each is published as it is written.
    pub(crate) fn put_many(
        &self,
        messages: &mut dyn Iterator<Item = &[u8]>,
        mut deadline: Patience,
    ) -> Result<usize, RingError> {
        let s = self.state;
        lock(&s.tail.lock, &mut deadline)?;
        let mut written = 0;
        let mut pending = messages.next();
        let mut tail = s.tail.word.load(Ordering::Acquire);
        let result = loop {
            let Some(message) = pending else { break Ok(()) };
            let need = record_size(message.len());
            let at = (pos(tail) % self.cap as u64) as usize;
            let contiguous = self.cap - at;
            let total = if contiguous < need {
                contiguous + need
            } else {
                need
            };
            let max = s.config.max_count.load(Ordering::Relaxed);
            let fits = |head: u64| {
                let used = pos(tail).wrapping_sub(pos(head)) & POS_MASK;
                let held = count(tail).wrapping_sub(count(head)) & COUNT_MASK;
                used <= self.cap as u64
                    && self.cap as u64 - used >= total as u64
                    && (max == 0 || held < max)
            };
            let mut head = self.seen.head.load(Ordering::Relaxed);
            if !fits(head) {
                head = s.head.word.load(Ordering::Acquire);
                self.seen.head.store(head, Ordering::Relaxed);
            }
            if !fits(head) && contiguous < need && at != 0 {
                // A record that must start a new lap and cannot fit behind
                // this one's end (larger than half the ring, say) would wait
                // forever: skip to the next lap now, with a wrap record of
                // its own, and wait for room there.
                let used = pos(tail).wrapping_sub(pos(head)) & POS_MASK;
                if used <= self.cap as u64 && self.cap as u64 - used >= contiguous as u64 {
                    // SAFETY: `at` is 8-aligned, 8 bytes remain, and the
                    // `contiguous` bytes from `at` are free.
                    unsafe { self.write_header(at, 0, KIND_WRAP) };
                    tail = pack(count(tail), pos(tail) + contiguous as u64);
                    continue;
                }
            }
            if !fits(head) {
                // Full: publish what we have, let go of the lock, wait for room.
                s.tail.word.store(tail, Ordering::Release);
                self.wake_consumers();
                if deadline.passed() {
                    break Err(RingError::Timeout);
                }
                s.tail.lock.unlock();
                sleep_on(
                    &s.head.word,
                    head,
                    &s.producers_waiting.count,
                    deadline.deadline(),
                    self.spin(),
                );
                if let Err(e) = lock(&s.tail.lock, &mut deadline) {
                    // What was written is published; say how much.
                    return if written > 0 { Ok(written) } else { Err(e) };
                }
                tail = s.tail.word.load(Ordering::Acquire);
                continue;
            }
            let mut at = at;
            let mut new_pos = pos(tail);
            if contiguous < need {
                // SAFETY: `at` is 8-aligned and at least 8 bytes remain before the end.
                unsafe { self.write_header(at, 0, KIND_WRAP) };
                new_pos += contiguous as u64;
                at = 0;
            }
            // SAFETY: `need` bytes from `at` are inside the ring and free.
            unsafe {
                self.write_header(at, message.len() as u32, KIND_MESSAGE);
                std::ptr::copy_nonoverlapping(
                    message.as_ptr(),
                    self.data.add(at + RECORD_HEADER),
                    message.len(),
                );
            }
            new_pos += need as u64;
            tail = pack(count(tail) + 1, new_pos);
            written += 1;
            pending = messages.next();
        };
        // Commit: one store makes every record written above visible.
        s.tail.word.store(tail, Ordering::Release);
        s.tail.lock.unlock();
        self.wake_consumers();
        match result {
            Ok(()) => Ok(written),
            Err(RingError::Timeout) if written > 0 => Ok(written),
            Err(e) => Err(e),
        }
    }

    fn wake_consumers(&self) {
        if self.state.consumers_waiting.count.load(Ordering::Acquire) > 0 {
            crate::sync::futex_wake_all_u32(low32(&self.state.tail.word));
        }
    }

    fn wake_producers(&self) {
        if self.state.producers_waiting.count.load(Ordering::Acquire) > 0 {
            crate::sync::futex_wake_all_u32(low32(&self.state.head.word));
        }
    }

    /// SAFETY: `at` must be 8-aligned with 8 bytes inside the ring.
    unsafe fn write_header(&self, at: usize, len: u32, kind: u32) {
        // SAFETY: per the caller; the ring start is 64-aligned.
        unsafe {
            let p = self.data.add(at) as *mut u32;
            p.write(len);
            p.add(1).write(kind);
        }
    }

    /// Takes up to `max` messages, waiting for the first until `deadline`;
    /// `each` sees every payload (in the shared memory, before it is freed).
    pub(crate) fn get_many(
        &self,
        max: usize,
        mut deadline: Patience,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, RingError> {
        let s = self.state;
        lock(&s.head.lock, &mut deadline)?;
        let mut head = s.head.word.load(Ordering::Acquire);
        let mut idle_slices = 0u32;
        let mut taken = 0;
        let result = loop {
            if taken == max {
                break Ok(());
            }
            let mut tail = self.seen.tail.load(Ordering::Relaxed);
            let available = pos(tail).wrapping_sub(pos(head)) & POS_MASK;
            if available == 0 || available > self.cap as u64 {
                tail = s.tail.word.load(Ordering::Acquire);
                self.seen.tail.store(tail, Ordering::Relaxed);
            }
            if pos(tail) == pos(head) {
                if taken > 0 {
                    break Ok(());
                }
                // Reading /proc for every producer costs microseconds: only
                // after a whole slice without a record; before that, only
                // the free check of whether any producer is still open.
                if s.producers.all_gone(idle_slices > 0)
                    && pos(s.tail.word.load(Ordering::Acquire)) == pos(head)
                {
                    break Err(RingError::Disconnected);
                }
                if deadline.passed() {
                    break Err(RingError::Timeout);
                }
                s.head.lock.unlock();
                if !sleep_on(
                    &s.tail.word,
                    tail,
                    &s.consumers_waiting.count,
                    deadline.deadline(),
                    self.spin(),
                ) {
                    idle_slices += 1;
                }
                lock(&s.head.lock, &mut deadline)?;
                head = s.head.word.load(Ordering::Acquire);
                continue;
            }
            let mut at = (pos(head) % self.cap as u64) as usize;
            let mut new_pos = pos(head);
            // SAFETY: `at` is 8-aligned inside the ring; the record there is published.
            let (mut len, mut kind) = unsafe { self.read_header(at) };
            if kind == KIND_WRAP {
                new_pos += (self.cap - at) as u64;
                at = 0;
                if (new_pos & POS_MASK) == pos(tail) {
                    // A wrap published alone (its record waits for room):
                    // consume it, so the producer finds that room.
                    head = pack(count(head), new_pos);
                    s.head.word.store(head, Ordering::Release);
                    self.wake_producers();
                    continue;
                }
                // SAFETY: as above, at the start of the ring.
                (len, kind) = unsafe { self.read_header(0) };
            }
            let len = len as usize;
            if kind != KIND_MESSAGE || record_size(len) > self.cap - at {
                break Err(RingError::Corrupted(format!(
                    "record of kind {kind}, {len} bytes at {at}"
                )));
            }
            // SAFETY: the payload lies inside the ring (checked) and is published.
            let payload =
                unsafe { std::slice::from_raw_parts(self.data.add(at + RECORD_HEADER), len) };
            each(payload);
            new_pos += record_size(len) as u64;
            head = pack(count(head) + 1, new_pos);
            taken += 1;
        };
        // Commit: the records are freed only now.
        s.head.word.store(head, Ordering::Release);
        s.head.lock.unlock();
        self.wake_producers();
        match result {
            Ok(()) => Ok(taken),
            Err(RingError::Timeout | RingError::Disconnected) if taken > 0 => Ok(taken),
            Err(e) => Err(e),
        }
    }

    /// SAFETY: `at` must be 8-aligned with 8 bytes inside the ring.
    unsafe fn read_header(&self, at: usize) -> (u32, u32) {
        // SAFETY: per the caller.
        unsafe {
            let p = self.data.add(at) as *const u32;
            (p.read_volatile(), p.add(1).read_volatile())
        }
    }
}
