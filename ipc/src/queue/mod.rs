//! Queues across processes, in shared memory: [`Queue`], [`JoinableQueue`]
//! and [`SimpleQueue`] (Python's), for any serde type, with many producers
//! and many consumers in any processes and either start method.
//!
//! * **Bounded twice**: by message count (`maxsize`, 0 for none, as in
//!   Python) and by bytes (the ring, 64 MiB by default). Pages of the ring
//!   are only allocated when first touched; a small ring
//!   (`with_ring_bytes`) keeps small messages in cache.
//! * **Messages of any size**: one too large for the ring (more than the
//!   ring less 16 bytes) travels in a sealed memfd handed over a socket
//!   beside the ring, in order with the rest, and is read in place by the
//!   consumer. `put` encodes it straight into that memfd, with no buffer
//!   of the whole message in between. Such messages count towards `maxsize`; their bytes are their
//!   memfds', outside the ring's bound (the socket holds a few hundred at
//!   most, and a put waits for room there as for room in the ring). Each handle caps the messages it puts and takes
//!   ([`set_max_message_bytes`](Queue::set_max_message_bytes), 1 GiB by
//!   default): a larger one is [`PutError::TooLarge`] or
//!   [`GetError::TooLarge`], naming both sizes.
//! * **Kill-safe**: records are copied in and out *before* the position that
//!   publishes or frees them is stored, under robust locks. A producer
//!   SIGKILLed inside `put` leaves nothing visible; a consumer SIGKILLed inside
//!   `get` leaves the message for the next consumer; nobody is ever blocked
//!   by a dead process.
//! * **Lock-free while one thread has a side to itself**: a thread that
//!   made every recent put (or every recent get) becomes that side's owner
//!   and then works with plain loads and stores, no lock and no atomic
//!   read-modify-write. Another thread or process that wants the side
//!   revokes the ownership first (a `membarrier(2)` and a wait for the
//!   owner's call in flight, or for its death), so only a change of hands
//!   costs anything. Where the kernel refuses `membarrier`, every call takes
//!   the locks. All users of a queue must share one pid namespace.
//! * **Disconnected**: every handle is a producer from the moment it exists
//!   (made, cloned, or handed to a child, which counts from before it runs)
//!   until `close()` or drop, or until its process dies. Once every producer
//!   is gone, consumers drain the queue and then get
//!   [`GetError::Disconnected`]. A process that only consumes calls `close()`
//!   on its handle first, as a Python process that only reads would.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let q = outlast_ipc::queue::Queue::<String>::new(0)?;
//! q.put(&"Item-0".to_string())?;
//! assert_eq!(q.len(), 1);
//! assert_eq!(q.get()?, "Item-0");
//! q.close();
//! assert!(matches!(q.get(), Err(outlast_ipc::queue::GetError::Disconnected)));
//! # Ok(())
//! # }
//! ```

mod awaited_spill;
mod bias;
mod error;
mod future;
mod joinable;
mod joining;
mod left;
mod producers;
mod ring;
mod simple;
mod spill;
mod stuck;
pub(crate) mod wait;

pub use error::{GetError, GetTimeoutError, PutError, PutTimeoutError, TaskDoneError};
pub use future::{GetFuture, PutFuture};
pub use joinable::{JoinQueueTimeoutError, JoinableQueue, LostItems};
pub(crate) use joining::Joining;
pub use simple::SimpleQueue;
pub use wait::DEFAULT_SPIN;

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::shm::cell::{ShmCell, ShmState};
use crate::shm::ShmError;
use crate::spsc::spill::Spilled;

use crate::codec::spill_sink::{Encoded, SpillSink};
use ring::{LocalView, Record, Ring, RingError, RingState};
use spill::SpillSocket;

/// What a message too large for the ring travels in (`/proc/<pid>/fd`).
const SPILLED_NAME: &std::ffi::CStr = c"ipc-queue-message";
use wait::Patience;

/// The largest message a handle puts or takes unless told otherwise.
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 1 << 30;

/// A thread's encoding buffer keeps its capacity between puts only up to
/// this size: one large message must not hold its memory for good.
const KEEP_ENCODE_BUFFER: usize = 4 << 20;

/// The default ring: room for one message of 64 MiB inside it (larger
/// ones travel beside it; pages are only allocated once touched, but a
/// ring in use cycles through all of them).
pub const DEFAULT_RING_BYTES: usize = (64 << 20) + 64 * 1024;

#[repr(C)]
pub(crate) struct QueueState {
    ring: RingState,
    joinable: Joinable,
    spill_tags: SpillTags,
}

/// The next tag of a spilled message (see `spill`): drawn by producers
/// while they hold their side, so tags grow in the ring's order.
#[repr(C, align(64))]
pub(crate) struct SpillTags {
    next: AtomicU64,
}

/// JoinableQueue's count of `task_done` calls, on its own cache line. The
/// items put are the ring's own count of committed messages, so a producer
/// killed in the middle of a put cannot leave the difference wrong.
#[repr(C, align(64))]
pub(crate) struct Joinable {
    done: AtomicU64,
    /// Non-zero for a `JoinableQueue`: each handle counts what it takes
    /// and has not marked done (see `Producers::took`).
    counts_takes: AtomicU32,
    /// Moves when a `task_done` (or a write-off) may have let a `join`
    /// return: the futex word joins sleep on.
    done_seq: AtomicU32,
    /// Joins asleep on `done_seq` (none: nobody is woken).
    joiners: AtomicU32,
}

impl ShmState for QueueState {
    const TAG: u64 = 0x4950_4351_5545_5506; // "IPCQUEU" v6
}

/// This handle's producer registration.
/// No slot: the producer table was full when this handle was made.
const UNTRACKED: usize = usize::MAX - 1;
const CLOSED: usize = usize::MAX;

thread_local! {
    static ENCODE: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// Python's `multiprocessing.Queue`, in shared memory.
pub struct Queue<T> {
    cell: ShmCell<QueueState>,
    /// Shared by this process's handles, as the cell's mapping is.
    spill: std::sync::Arc<SpillSocket>,
    max_message: AtomicUsize,
    /// The slot while this handle may put; `CLOSED` once it may not.
    producer: AtomicUsize,
    /// The slot this handle holds until it is dropped, closed or not (a
    /// closed handle still takes: see `Producers::close`).
    slot: AtomicUsize,
    /// A `JoinableQueue`'s handle: what it takes counts as held until done.
    counts_takes: bool,
    seen: LocalView,
    /// The threads that wait for this process's futures (see `future`),
    /// shared by the handles cloned from one another.
    watches: std::sync::Arc<future::Watches>,
    /// Large messages `get_async` futures took and were dropped before
    /// they had decoded: this handle's next gets give them first.
    left: left::LeftMessages,
    _t: PhantomData<fn(T) -> T>,
}

impl<T> std::fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("cell", &self.cell).finish()
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// A queue of at most `maxsize` messages (0: no count limit) in the default ring.
    pub fn new(maxsize: usize) -> Result<Self, ShmError> {
        Self::with_ring_bytes(maxsize, DEFAULT_RING_BYTES)
    }

    /// A queue whose ring has `ring_bytes` bytes (at least 64, at most 1 GiB):
    /// the byte bound, and the largest message that travels inside the ring
    /// plus 16 (larger ones travel beside it, each in a sealed memfd).
    pub fn with_ring_bytes(maxsize: usize, ring_bytes: usize) -> Result<Self, ShmError> {
        let ring_bytes = ring_bytes.clamp(64, ring::MAX_RING).next_multiple_of(64);
        let mut failed = None;
        let cell = ShmCell::<QueueState>::new(ring_bytes, |s, _| {
            failed = s.ring.init(ring_bytes, maxsize).err();
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        let spill = SpillSocket::new()?;
        let slot = cell.state().ring.producers.register();
        Ok(Queue::registered(
            cell,
            spill.into(),
            Default::default(),
            slot,
        ))
    }

    fn ring(&self) -> Ring<'_> {
        ring_in(&self.cell, &self.seen)
    }

    pub(crate) fn state(&self) -> &QueueState {
        self.cell.state()
    }

    /// The longest this handle spins before it sleeps when it must wait
    /// (default 20 us). Zero: sleep at once (pure blocking, least CPU). Longer
    /// spins give sub-microsecond hand-offs when both sides have a core
    /// ("spin-then-park"), at the cost of a busy core while waiting.
    ///
    /// Within this bound the handle spins only while its recent waits say
    /// it pays (the whole bound while they typically end within it; a
    /// couple of microseconds when they are longer), and not at all while more threads
    /// are runnable on the machine than CPUs this process may use, unless
    /// its waits typically end within 2 us (a peer streaming on another
    /// CPU): a spin on an oversubscribed machine holds the CPU the peer
    /// needs.
    pub fn set_spin(&self, spin: Duration) {
        self.seen.set_spin(spin);
    }

    /// Messages in the queue now.
    pub fn len(&self) -> usize {
        self.ring().len() as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// No room for another (empty) message, by count or by bytes.
    pub fn is_full(&self) -> bool {
        self.ring().is_full()
    }

    /// The largest encoded message this handle puts or takes.
    pub fn max_message_bytes(&self) -> usize {
        self.max_message.load(Ordering::Relaxed)
    }

    /// Caps the encoded messages this handle puts and takes (default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`]): a larger put is
    /// [`PutError::TooLarge`]; a larger message taken is thrown away
    /// unread as [`GetError::TooLarge`]. Messages up to the ring's own
    /// largest ([`ring_message_bytes`](Self::ring_message_bytes)) always go.
    pub fn set_max_message_bytes(&self, max: usize) {
        self.max_message.store(max, Ordering::Relaxed);
    }

    /// The largest encoded message that travels inside the ring; larger
    /// ones travel in a memfd beside it.
    pub fn ring_message_bytes(&self) -> usize {
        self.ring().max_message()
    }

    /// This handle's cap, never below what the ring holds inline.
    fn cap(&self) -> usize {
        self.max_message_bytes().max(self.ring_message_bytes())
    }

    /// This handle will put no more (Python's `close()`). Consumers get
    /// `Disconnected` once every handle has closed (or been dropped, or its
    /// process died) and the queue is empty: a process that only consumes
    /// closes its handle first. (A blocking `get` that waits 10 s while
    /// every open handle is itself waiting in a get, or held by a process
    /// waiting in `Process::join`, says so once per queue on stderr:
    /// nothing can come then; so does a `put` into a full queue that only
    /// processes waiting to put still hold.) A closed handle still takes,
    /// and its process still counts as one that may.
    pub fn close(&self) {
        self.close_producer();
    }

    fn ensure_producer(&self) -> Result<(), PutError> {
        match self.producer.load(Ordering::Acquire) {
            CLOSED => Err(PutError::Closed),
            _ => Ok(()),
        }
    }

    // ---- putting --------------------------------------------------------------

    /// Puts a message, waiting while the queue is full.
    pub fn put(&self, item: &T) -> Result<(), PutError> {
        self.put_deadline(item, Patience::never())
            .map_err(|e| match e {
                PutTimeoutError::Put(e) => e,
                PutTimeoutError::Full => PutError::Os(std::io::ErrorKind::TimedOut.into()),
            })
    }

    /// Puts a message if there is room now.
    pub fn try_put(&self, item: &T) -> Result<(), PutTimeoutError> {
        self.put_deadline(item, Patience::now())
    }

    /// Puts a message, waiting at most `timeout` for room.
    pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<(), PutTimeoutError> {
        self.put_deadline(item, Patience::after(timeout))
    }

    fn put_deadline(&self, item: &T, deadline: Patience) -> Result<(), PutTimeoutError> {
        ENCODE.with(|cell| {
            let mut buf = cell
                .try_borrow_mut()
                .map_err(|_| PutError::Encode("re-entrant put".into()))?;
            let ring = self.ring();
            let inline = ring.max_message();
            let mut sink = SpillSink::new(
                std::mem::take(&mut *buf),
                inline,
                &self.max_message,
                SPILLED_NAME,
            );
            let outcome = crate::codec::encode_to(item, &mut sink);
            // (No tuple of the buffer and the outcome on this path: moving
            // one through the stack cost typed `u64` puts a sixth.)
            let result = match (outcome.is_ok(), sink.inline()) {
                (true, Some(encoded)) => self.put_in_ring(&ring, encoded, deadline),
                _ => self.put_encoded_slowly(&mut sink, outcome, deadline),
            };
            sink.give_back(&mut buf, KEEP_ENCODE_BUFFER);
            result
        })
    }

    /// The rest of a put whose encoding failed or outgrew the ring: apart
    /// from the small message's path, which it slowed down by a quarter
    /// (a `Queue<u64>`'s typed puts) where it was inlined there.
    #[cold]
    #[inline(never)]
    fn put_encoded_slowly(
        &self,
        sink: &mut SpillSink<'_>,
        outcome: Result<(), crate::codec::EncodeError>,
        mut deadline: Patience,
    ) -> Result<(), PutTimeoutError> {
        match sink.finish(outcome).map_err(PutError::from)? {
            Encoded::Inline => {
                let encoded = sink.inline().unwrap_or_default();
                self.put_bytes_deadline(encoded, deadline)
            }
            Encoded::Spilled { memfd, len } => self.publish_spilled(&memfd, len, &mut deadline),
        }
    }

    /// Puts raw bytes as one message (received with [`get_bytes`](Self::get_bytes)).
    #[inline]
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(), PutTimeoutError> {
        self.put_bytes_deadline(bytes, Patience::never())
    }

    #[inline(always)]
    pub(crate) fn put_bytes_deadline(
        &self,
        bytes: &[u8],
        deadline: Patience,
    ) -> Result<(), PutTimeoutError> {
        let ring = self.ring();
        if bytes.len() <= ring.max_message() {
            // The hot path, apart from the batch's (which sizes up every
            // message first), so that it inlines into the caller's loop.
            self.put_in_ring(&ring, bytes, deadline)
        } else {
            match self.put_many_bytes_deadline(&[bytes], deadline)? {
                1 => Ok(()),
                _ => Err(PutTimeoutError::Full),
            }
        }
    }

    /// Puts `bytes`, which fit `ring`, as one message in it.
    #[inline(always)]
    fn put_in_ring(
        &self,
        ring: &Ring<'_>,
        bytes: &[u8],
        deadline: Patience,
    ) -> Result<(), PutTimeoutError> {
        self.ensure_producer()?;
        match ring.put_many(&[bytes], deadline).map_err(put_error)? {
            1 => Ok(()),
            _ => Err(PutTimeoutError::Full),
        }
    }

    /// Puts several messages under one lock; returns how many went in
    /// before `timeout` (all of them unless the queue stayed full).
    pub fn put_many(&self, items: &[T], timeout: Duration) -> Result<usize, PutError> {
        let mut encoded = Vec::with_capacity(items.len());
        for item in items {
            let mut bytes = Vec::new();
            crate::codec::encode_append(item, &mut bytes)
                .map_err(|e| PutError::Encode(e.to_string()))?;
            encoded.push(bytes);
        }
        let slices: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
        match self.put_many_bytes_deadline(&slices, Patience::after(timeout)) {
            Ok(n) => Ok(n),
            Err(PutTimeoutError::Full) => Ok(0),
            Err(PutTimeoutError::Put(e)) => Err(e),
        }
    }

    /// Raw-bytes form of [`put_many`](Self::put_many).
    pub fn put_many_bytes(
        &self,
        messages: &[&[u8]],
        timeout: Duration,
    ) -> Result<usize, PutTimeoutError> {
        self.put_many_bytes_deadline(messages, Patience::after(timeout))
    }

    fn put_many_bytes_deadline(
        &self,
        messages: &[&[u8]],
        mut deadline: Patience,
    ) -> Result<usize, PutTimeoutError> {
        self.ensure_producer()?;
        let ring = self.ring();
        let inline = ring.max_message();
        let largest = messages.iter().fold(0, |most, m| most.max(m.len()));
        if largest <= inline {
            // The common case, and the hot path: every message fits the ring.
            return ring.put_many(messages, deadline).map_err(put_error);
        }
        let cap = self.cap();
        if largest > cap {
            return Err(PutError::TooLarge {
                len: largest,
                max: cap,
            }
            .into());
        }
        let mut written = 0;
        // Runs of messages that fit go in together; each larger one alone.
        while written < messages.len() {
            let rest = &messages[written..];
            let result = match rest.iter().position(|m| m.len() > inline) {
                Some(0) => self.put_spilled(rest[0], &mut deadline).map(|()| 1),
                Some(fitting) => self.put_inline(&rest[..fitting], deadline),
                None => self.put_inline(rest, deadline),
            };
            match result {
                Ok(n) => {
                    written += n;
                    if written < messages.len() && n == 0 {
                        break;
                    }
                }
                Err(_) if written > 0 => break,
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    fn put_inline(&self, messages: &[&[u8]], deadline: Patience) -> Result<usize, PutTimeoutError> {
        self.ring().put_many(messages, deadline).map_err(put_error)
    }

    /// One message too large for the ring: into a sealed memfd, handed
    /// over beside the ring, announced by a record in it.
    fn put_spilled(&self, message: &[u8], deadline: &mut Patience) -> Result<(), PutTimeoutError> {
        let memfd = spill_memfd(message).map_err(PutError::Os)?;
        self.publish_spilled(&memfd, message.len(), deadline)
    }

    /// Announces a message of `len` bytes already in `memfd` (see
    /// [`spill_memfd`]), waiting until `deadline` for room: the memfd is
    /// still the caller's to try again with if the queue is full.
    pub(crate) fn publish_spilled(
        &self,
        memfd: &std::os::fd::OwnedFd,
        len: usize,
        deadline: &mut Patience,
    ) -> Result<(), PutTimeoutError> {
        self.check_spill(len)?;
        let ring = self.ring();
        let tags = &self.state().spill_tags.next;
        let len = len as u64;
        loop {
            let mut hand_over = |tag| self.spill.hand_over(memfd, tag);
            match ring.put_spilled(len, tags, &mut hand_over, *deadline) {
                Ok(()) => return Ok(()),
                Err(RingError::Spill(e)) if socket_full(&e) => {
                    // Consumers have many large messages to take: wait for
                    // room on the socket, not holding the producers' side.
                    if deadline.passed() {
                        return Err(PutTimeoutError::Full);
                    }
                    let until = deadline
                        .deadline()
                        .min(crate::os::Deadline::after(Duration::from_millis(10)));
                    if e.raw_os_error() == Some(libc::ETOOMANYREFS) {
                        std::thread::sleep(until.remaining().unwrap_or_default());
                    } else {
                        self.spill.wait_for_room(until).map_err(PutError::Os)?;
                    }
                }
                Err(e) => return Err(put_error(e)),
            }
        }
    }

    /// Why a message of `len` bytes beside the ring could not be put, if
    /// it could not: checked before it is copied into its memfd.
    fn check_spill(&self, len: usize) -> Result<(), PutError> {
        self.ensure_producer()?;
        let cap = self.cap();
        match len > cap {
            true => Err(PutError::TooLarge { len, max: cap }),
            false => Ok(()),
        }
    }

    /// Items put (committed) and not yet marked done, for JoinableQueue.
    pub(crate) fn unfinished(&self) -> u64 {
        let done = self.state().joinable.done.load(Ordering::Acquire);
        self.ring().unfinished_since(done)
    }

    /// Counts one `task_done`; false if every item put is already done.
    pub(crate) fn mark_done(&self) -> bool {
        let done = &self.state().joinable.done;
        let mut now = done.load(Ordering::Acquire);
        loop {
            if self.ring().unfinished_since(now) == 0 {
                return false;
            }
            match done.compare_exchange_weak(now, now + 1, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    let producers = &self.state().ring.producers;
                    producers.done_through(open_slot(&self.slot));
                    // Joins wait until what is left is what was lost.
                    if self.ring().unfinished_since(now + 1) <= producers.lost() {
                        self.done_moved();
                    }
                    return true;
                }
                Err(seen) => now = seen,
            }
        }
    }

    /// Makes this queue a `JoinableQueue`'s: from now on every handle
    /// counts what it takes until it is marked done.
    pub(crate) fn count_takes(&mut self) {
        self.state()
            .joinable
            .counts_takes
            .store(1, Ordering::Release);
        self.counts_takes = true;
    }

    /// Items taken by handles whose process died (or let the handle go)
    /// before marking them done, not yet reported.
    pub(crate) fn lost(&self) -> u64 {
        self.state().ring.producers.lost()
    }

    /// Looks for dead processes among the handles (reading `/proc`): what
    /// they held is lost from then on.
    pub(crate) fn find_dead_holders(&self) {
        let _ = self.state().ring.producers.all_gone(true);
    }

    /// Reports the lost items once, and counts them as done (they never
    /// will be): how many, and the process that lost the last of them.
    pub(crate) fn write_off_lost(&self) -> Option<(u64, u32)> {
        let (lost, pid) = self.state().ring.producers.take_lost()?;
        let items = lost.min(self.unfinished());
        self.state()
            .joinable
            .done
            .fetch_add(items, Ordering::AcqRel);
        self.done_moved();
        Some((items, pid))
    }

    /// Wakes the joins asleep (see [`sleep_until_done_moves`](Self::sleep_until_done_moves)).
    fn done_moved(&self) {
        let joinable = &self.state().joinable;
        joinable.done_seq.fetch_add(1, Ordering::SeqCst);
        if joinable.joiners.load(Ordering::SeqCst) > 0 {
            crate::os::futex::wake_all(&joinable.done_seq);
        }
    }

    /// Sleeps until a `task_done` may have let a join return, or `until`;
    /// `ready` is looked at once more after this join is counted, so a
    /// `task_done` in between is not slept through.
    pub(crate) fn sleep_until_done_moves(
        &self,
        ready: impl Fn() -> bool,
        until: crate::os::Deadline,
    ) {
        let joinable = &self.state().joinable;
        joinable.joiners.fetch_add(1, Ordering::SeqCst);
        let seen = joinable.done_seq.load(Ordering::SeqCst);
        if !ready() {
            crate::os::futex::wait(&joinable.done_seq, seen, until);
        }
        joinable.joiners.fetch_sub(1, Ordering::SeqCst);
    }

    // ---- getting --------------------------------------------------------------

    /// Takes a message, waiting for one; `Disconnected` once every producer
    /// is gone and the queue is empty.
    pub fn get(&self) -> Result<T, GetError> {
        self.get_deadline(Patience::never()).map_err(|e| match e {
            GetTimeoutError::Get(e) => e,
            GetTimeoutError::Empty => GetError::Os(std::io::ErrorKind::TimedOut.into()),
        })
    }

    /// Takes a message if one is there now.
    pub fn try_get(&self) -> Result<T, GetTimeoutError> {
        self.get_deadline(Patience::now())
    }

    /// Takes a message, waiting at most `timeout`.
    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.get_deadline(Patience::after(timeout))
    }

    fn get_deadline(&self, deadline: Patience) -> Result<T, GetTimeoutError> {
        let mut out: Option<Result<T, crate::codec::DecodeError>> = None;
        self.get_many_with(1, deadline, &mut |bytes| {
            out = Some(crate::codec::decode_payload(bytes))
        })?;
        match out {
            Some(Ok(item)) => Ok(item),
            Some(Err(e)) => Err(GetError::Decode(e).into()),
            None => Err(GetTimeoutError::Empty),
        }
    }

    /// Takes one message as raw bytes into `out` (reused); its length.
    pub fn get_bytes(
        &self,
        out: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, GetTimeoutError> {
        let mut len = 0;
        self.get_many_with(1, Patience::after(timeout), &mut |bytes| {
            out.clear();
            out.extend_from_slice(bytes);
            len = bytes.len();
        })?;
        Ok(len)
    }

    /// Takes up to `max` messages under one lock, waiting at most `timeout`
    /// for the first. Messages that do not decode are dropped; if none of
    /// the batch decoded, the first decode error is returned.
    pub fn get_many(&self, max: usize, timeout: Duration) -> Result<Vec<T>, GetTimeoutError> {
        let mut items = Vec::new();
        let mut first_error = None;
        self.get_many_with(max, Patience::after(timeout), &mut |bytes| {
            match crate::codec::decode_payload(bytes) {
                Ok(item) => items.push(item),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        })?;
        match (items.is_empty(), first_error) {
            (true, Some(e)) => Err(GetError::Decode(e).into()),
            _ => Ok(items),
        }
    }

    /// Takes up to `max` messages and shows each one's bytes to `each` in
    /// place (no copy, no allocation); returns how many.
    #[inline]
    pub fn get_many_bytes_with(
        &self,
        max: usize,
        timeout: Duration,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, GetTimeoutError> {
        self.get_many_with(max, Patience::after(timeout), each)
    }

    #[inline(always)]
    fn get_many_with(
        &self,
        max: usize,
        deadline: Patience,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, GetTimeoutError> {
        self.take_many::<false>(max, deadline, each, &mut |_| {})
    }

    /// Takes one message if one is here now: decoded here, or, if it was
    /// spilled (larger than the ring), as it is mapped, for a future to
    /// decode off the executor's thread.
    fn try_take(&self) -> Result<Taken<T>, GetTimeoutError> {
        let mut decoded: Option<Result<T, crate::codec::DecodeError>> = None;
        let mut spilled = None;
        self.take_many::<true>(
            1,
            Patience::now(),
            &mut |bytes| decoded = Some(crate::codec::decode_payload(bytes)),
            &mut |message| spilled = Some(message),
        )?;
        match (spilled, decoded) {
            (Some(message), _) => Ok(Taken::Spilled(message)),
            (None, Some(Ok(item))) => Ok(Taken::Item(item)),
            (None, Some(Err(e))) => Err(GetError::Decode(e).into()),
            (None, None) => Err(GetTimeoutError::Empty),
        }
    }

    /// Takes up to `max` messages, each shown to `each`, waiting until
    /// `deadline` for the first; with `HAND_SPILLED`, a spilled message is
    /// handed to `spilled_out` instead, whole and undecoded. A message a
    /// dropped future left comes first, alone. (A flag of the type, not an
    /// argument: with an `Option` of a second callback, the plain get
    /// lost 12 % of its rate at 64 B.)
    #[inline(always)]
    fn take_many<const HAND_SPILLED: bool>(
        &self,
        max: usize,
        deadline: Patience,
        each: &mut dyn FnMut(&[u8]),
        spilled_out: &mut dyn FnMut(Spilled),
    ) -> Result<usize, GetTimeoutError> {
        if self.left.any() {
            if let Some(given) = self.give_left(each) {
                return given;
            }
        }
        let mut shown = 0;
        let mut failed = None;
        let mut show = |record: Record<'_>| match record {
            Record::Inline(bytes) => {
                shown += 1;
                each(bytes);
            }
            Record::Spilled { tag, len } => match self.spill.take(tag, len, self.cap() as u64) {
                Ok(message) => {
                    shown += 1;
                    if HAND_SPILLED {
                        spilled_out(message);
                    } else {
                        each(&message);
                    }
                }
                Err(e) => {
                    failed.get_or_insert(e);
                }
            },
        };
        let ring = self.ring();
        let max = max.max(1);
        let me = Some(&self.producer);
        let holder = match self.counts_takes {
            true => open_slot(&self.slot),
            false => None,
        };
        let taken = match holder {
            None => ring.get_many(max, deadline, me, &mut show),
            // A JoinableQueue's: counted as each record is seen, before
            // the take commits (a plain queue's gets pay nothing for it).
            Some(index) => {
                let producers = &self.state().ring.producers;
                ring.get_many(max, deadline, me, &mut |record| {
                    producers.took(index, 1);
                    show(record);
                })
            }
        };
        match (taken, failed) {
            (Ok(_), Some(e)) if shown == 0 => Err(GetError::from(e).into()),
            (Ok(_), _) => Ok(shown),
            (Err(RingError::Timeout), _) => Err(GetTimeoutError::Empty),
            (Err(RingError::Disconnected), _) => Err(GetError::Disconnected.into()),
            (Err(RingError::ShutDown), _) => Err(GetError::ShutDown.into()),
            (Err(RingError::Corrupted(what)), _) => Err(GetError::Corrupted(what).into()),
            (Err(RingError::Os(e) | RingError::Spill(e)), _) => Err(GetError::Os(e).into()),
        }
    }

    /// Shuts the queue down (Python 3.13's `shutdown`): every handle's
    /// puts fail with `ShutDown` from now on, and so do gets once the queue
    /// is empty; everyone waiting on the queue wakes up. With `immediate`,
    /// what the queue holds is dropped now (for a `JoinableQueue`, counted
    /// as done), so gets fail at once.
    pub fn shutdown(&self, immediate: bool) {
        let ring = self.ring();
        ring.shut_down(if immediate {
            ring::SHUTDOWN_NOW
        } else {
            ring::SHUTDOWN
        });
        if immediate {
            let mut dropped = 0u64;
            let mut drop_record = |record: Record<'_>| {
                if let Record::Spilled { tag, .. } = record {
                    self.spill.discard(tag);
                }
            };
            while let Ok(n) = ring.get_many(usize::MAX, Patience::now(), None, &mut drop_record) {
                dropped += n as u64;
            }
            self.state()
                .joinable
                .done
                .fetch_add(dropped, Ordering::AcqRel);
            self.done_moved();
        }
    }

    /// Whether `shutdown` was called (by any handle).
    pub fn is_shut_down(&self) -> bool {
        self.ring().shutdown_state() != 0
    }

    /// A second handle on the same queue.
    ///
    /// The same as [`clone`](Clone::clone), which cannot fail: handles in
    /// one process share a mapping. Kept for code from when a handle had
    /// its own.
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(self.clone())
    }
}

/// A message [`Queue::try_take`] took.
enum Taken<T> {
    Item(T),
    /// Spilled, mapped, not decoded yet.
    Spilled(Spilled),
}

/// The producer slot a handle's `producer` word names, while it has one open.
fn open_slot(producer: &AtomicUsize) -> Option<usize> {
    Some(producer.load(Ordering::Relaxed)).filter(|&slot| slot < UNTRACKED)
}

impl<T> Queue<T> {
    /// Shows the oldest message a dropped future left to `each` (waiting
    /// for a thread of ours that is still taking it); `None` if none is
    /// left.
    #[cold]
    #[inline(never)]
    fn give_left(&self, each: &mut dyn FnMut(&[u8])) -> Option<Result<usize, GetTimeoutError>> {
        Some(match self.left.pop_waiting()? {
            Ok(message) => {
                each(&message);
                Ok(1)
            }
            Err(e) => Err(e.into()),
        })
    }

    /// [`close`](Self::close).
    fn close_producer(&self) {
        let previous = self.producer.swap(CLOSED, Ordering::AcqRel);
        if previous < UNTRACKED {
            self.cell.state().ring.producers.close(previous);
        }
    }

    /// A handle for one take by a thread of ours: the same queue, no
    /// messages left. A plain queue's has no producer slot (it never puts,
    /// and counts for nothing). A `JoinableQueue`'s counts its take in a
    /// slot of its own, closed (it puts nothing): once it is dropped, what
    /// it took is counted as held by another handle of this process, whose
    /// `task_done` marks it, as when one thread takes and another marks.
    fn taker(&self) -> Queue<T> {
        if self.counts_takes {
            let taker = self.clone();
            taker.close_producer();
            return taker;
        }
        Queue::registered(
            self.cell.clone(),
            std::sync::Arc::clone(&self.spill),
            std::sync::Arc::clone(&self.watches),
            None,
        )
    }

    /// A handle on `cell` registered as a producer (or untracked if the
    /// table is full, which also stops consumers from judging disconnection).
    fn registered(
        cell: ShmCell<QueueState>,
        spill: std::sync::Arc<SpillSocket>,
        watches: std::sync::Arc<future::Watches>,
        slot: Option<usize>,
    ) -> Self {
        if let Some(index) = slot {
            joining::remember(&cell.state().ring.producers, index);
        }
        let counts_takes = cell.state().joinable.counts_takes.load(Ordering::Acquire) != 0;
        Queue {
            counts_takes,
            producer: AtomicUsize::new(slot.unwrap_or(UNTRACKED)),
            slot: AtomicUsize::new(slot.unwrap_or(UNTRACKED)),
            spill,
            watches,
            max_message: AtomicUsize::new(DEFAULT_MAX_MESSAGE_BYTES),
            cell,
            seen: LocalView::default(),
            left: left::LeftMessages::default(),
            _t: PhantomData,
        }
    }
}

/// Another handle on the same queue, in this process: a producer of its
/// own until it is closed or dropped, like every handle (so closing one
/// clone does not close the others). Put it in a `Process`'s arguments
/// to give the child its own.
impl<T> Clone for Queue<T> {
    fn clone(&self) -> Self {
        let slot = self.cell.state().ring.producers.register();
        let queue = Queue::registered(
            self.cell.clone(),
            std::sync::Arc::clone(&self.spill),
            std::sync::Arc::clone(&self.watches),
            slot,
        );
        queue
            .max_message
            .store(self.max_message.load(Ordering::Relaxed), Ordering::Relaxed);
        queue
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        self.producer.store(CLOSED, Ordering::Release);
        let slot = self.slot.swap(UNTRACKED, Ordering::AcqRel);
        if slot < UNTRACKED {
            let producers = &self.cell.state().ring.producers;
            joining::forget(producers, slot);
            producers.free(slot);
        }
    }
}

/// A message too large for the ring, in the sealed memfd it travels in:
/// the one copy a spilled put makes, which an awaited put makes on a
/// thread of its own.
pub(crate) fn spill_memfd(message: &[u8]) -> std::io::Result<std::os::fd::OwnedFd> {
    crate::os::memory::sealed_memfd_with(c"ipc-queue-message", message)
}

/// A queue inside a serialized Process argument: its segment, its spill
/// socket, the producer slot reserved for the child (so it counts before
/// it runs) and the handle's cap.
#[derive(Serialize, Deserialize)]
struct QueueWire<C, P> {
    cell: C,
    spill: P,
    reserved: Option<u32>,
    max_message: u64,
    /// The handle may not put (its slot is reserved closed).
    closed: bool,
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // The child holds a slot from now (held by this process until the
        // child adopts it): a producer, or a closed one that only takes.
        let producers = &self.cell.state().ring.producers;
        let reserved = producers.reserve();
        let closed = self.producer.load(Ordering::Acquire) == CLOSED;
        if let (Some(index), true) = (reserved, closed) {
            producers.close(index);
        }
        QueueWire {
            cell: &self.cell,
            spill: &*self.spill,
            reserved: reserved.map(|s| s as u32),
            max_message: self.max_message.load(Ordering::Relaxed) as u64,
            closed,
        }
        .serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = QueueWire::<ShmCell<QueueState>, SpillSocket>::deserialize(deserializer)?;
        let cell = wire.cell;
        if cell.extra_len() < 64 {
            return Err(D::Error::custom("the queue's segment has no ring"));
        }
        let producers = &cell.state().ring.producers;
        let slot = match wire.reserved {
            Some(index) => producers.adopt(index as usize),
            None => None,
        };
        let queue = Queue::registered(cell, wire.spill.into(), Default::default(), slot);
        queue.max_message.store(
            usize::try_from(wire.max_message).unwrap_or(usize::MAX),
            Ordering::Relaxed,
        );
        if wire.closed {
            // (Also when the reservation had lapsed and a slot was taken afresh.)
            let previous = queue.producer.swap(CLOSED, Ordering::AcqRel);
            if previous < UNTRACKED {
                queue.cell.state().ring.producers.close(previous);
            }
        }
        Ok(queue)
    }
}

impl<T> crate::wait::Waitable for Queue<T> {
    fn ready_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
    fn ready_now(&self) -> bool {
        let ring = Ring::new(
            &self.cell.state().ring,
            self.cell.extra_ptr(),
            self.cell.extra_len(),
            &self.seen,
        );
        // A get would not wait: a message, a shutdown, or nobody left to put.
        ring.len() > 0 || ring.shutdown_state() != 0 || ring.state.producers.all_gone(false)
    }
}

/// The ring in `cell`, as `seen` (a handle's view, or a watch's) sees it.
#[inline]
fn ring_in<'a>(cell: &'a ShmCell<QueueState>, seen: &'a LocalView) -> Ring<'a> {
    Ring::new(&cell.state().ring, cell.extra_ptr(), cell.extra_len(), seen)
}

/// A ring error of a put, in the queue's words.
fn put_error(e: RingError) -> PutTimeoutError {
    match e {
        RingError::Timeout => PutTimeoutError::Full,
        RingError::Os(e) | RingError::Spill(e) => PutError::Os(e).into(),
        RingError::Disconnected => PutError::Closed.into(),
        RingError::ShutDown => PutError::ShutDown.into(),
        RingError::Corrupted(what) => PutError::Corrupted(what).into(),
    }
}

/// The spill socket has no room now (consumers are behind), or the kernel
/// holds as many descriptors in flight for this user as it allows.
fn socket_full(e: &std::io::Error) -> bool {
    e.kind() == std::io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ETOOMANYREFS)
}
