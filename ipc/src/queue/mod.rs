//! Queues across processes, in shared memory: [`Queue`], [`JoinableQueue`]
//! and [`SimpleQueue`] (Python's), for any serde type, with many producers
//! and many consumers in any processes and either start method.
//!
//! * **Bounded twice**: by message count (`maxsize`, 0 for none, as in
//!   Python) and by bytes (the ring, 64 MiB by default; a message may be as
//!   large as the ring less 16 bytes, so the default takes any message up to
//!   64 MiB, and `with_ring_bytes` makes room for larger ones). Pages of the ring are only allocated when first
//!   touched; a small ring (`with_ring_bytes`) keeps small messages in cache.
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

mod bias;
mod error;
mod joinable;
mod producers;
mod ring;
mod simple;
mod wait;

pub use error::{GetError, GetTimeoutError, PutError, PutTimeoutError, TaskDoneError};
pub use joinable::JoinableQueue;
pub use simple::SimpleQueue;
pub use wait::DEFAULT_SPIN;

use std::cell::RefCell;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::shm::cell::{ShmCell, ShmState};
use crate::shm::ShmError;

use ring::{LocalView, Ring, RingError, RingState};
use wait::Patience;

/// The default ring: room for one message of 64 MiB (a queue's largest
/// message is its ring less 16 bytes; pages are only allocated once
/// touched, but a ring in use cycles through all of them).
pub const DEFAULT_RING_BYTES: usize = (64 << 20) + 64 * 1024;

#[repr(C)]
pub(crate) struct QueueState {
    ring: RingState,
    joinable: Joinable,
}

/// JoinableQueue's count of `task_done` calls, on its own cache line. The
/// items put are the ring's own count of committed messages, so a producer
/// killed in the middle of a put cannot leave the difference wrong.
#[repr(C, align(64))]
pub(crate) struct Joinable {
    done: AtomicU64,
}

impl ShmState for QueueState {
    const TAG: u64 = 0x4950_4351_5545_5504; // "IPCQUEU" v4
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
    producer: AtomicUsize,
    seen: LocalView,
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
    /// the byte bound, and the largest message plus 16.
    pub fn with_ring_bytes(maxsize: usize, ring_bytes: usize) -> Result<Self, ShmError> {
        let ring_bytes = ring_bytes.clamp(64, ring::MAX_RING).next_multiple_of(64);
        let mut failed = None;
        let cell = ShmCell::<QueueState>::new(ring_bytes, |s, _| {
            failed = s.ring.init(ring_bytes, maxsize).err();
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        let slot = cell.state().ring.producers.register();
        Ok(Queue::registered(cell, slot))
    }

    fn ring(&self) -> Ring<'_> {
        Ring::new(
            &self.cell.state().ring,
            self.cell.extra_ptr(),
            self.cell.extra_len(),
            &self.seen,
        )
    }

    pub(crate) fn state(&self) -> &QueueState {
        self.cell.state()
    }

    /// How long this handle spins before it sleeps when it must wait
    /// (default 20 us). Zero: sleep at once (pure blocking, least CPU). Longer
    /// spins give sub-microsecond hand-offs when both sides have a core
    /// ("spin-then-park"), at the cost of a busy core while waiting.
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

    /// The largest encoded message this queue takes.
    pub fn max_message_bytes(&self) -> usize {
        self.ring().max_message()
    }

    /// This handle will put no more (Python's `close()`). Consumers get
    /// `Disconnected` once every handle has closed (or been dropped, or its
    /// process died) and the queue is empty: a process that only consumes
    /// closes its handle first.
    pub fn close(&self) {
        let previous = self.producer.swap(CLOSED, Ordering::AcqRel);
        if previous < UNTRACKED {
            self.state().ring.producers.close(previous);
        }
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
            buf.clear();
            let encoded = postcard::to_extend(item, std::mem::take(&mut *buf))
                .map_err(|e| PutError::Encode(e.to_string()))?;
            let result = self.put_bytes_deadline(&encoded, deadline);
            *buf = encoded;
            result
        })
    }

    /// Puts raw bytes as one message (received with [`get_bytes`](Self::get_bytes)).
    pub fn put_bytes(&self, bytes: &[u8]) -> Result<(), PutTimeoutError> {
        self.put_bytes_deadline(bytes, Patience::never())
    }

    pub(crate) fn put_bytes_deadline(
        &self,
        bytes: &[u8],
        deadline: Patience,
    ) -> Result<(), PutTimeoutError> {
        let written = self.put_many_bytes_deadline(&[bytes], deadline)?;
        if written == 1 {
            Ok(())
        } else {
            Err(PutTimeoutError::Full)
        }
    }

    /// Puts several messages under one lock; returns how many went in
    /// before `timeout` (all of them unless the queue stayed full).
    pub fn put_many(&self, items: &[T], timeout: Duration) -> Result<usize, PutError> {
        let mut encoded = Vec::with_capacity(items.len());
        for item in items {
            encoded.push(postcard::to_allocvec(item).map_err(|e| PutError::Encode(e.to_string()))?);
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
        deadline: Patience,
    ) -> Result<usize, PutTimeoutError> {
        self.ensure_producer()?;
        let ring = self.ring();
        let max = ring.max_message();
        if let Some(big) = messages.iter().find(|m| m.len() > max) {
            return Err(PutError::TooLarge {
                len: big.len(),
                max,
            }
            .into());
        }
        match ring.put_many(messages, deadline) {
            Ok(n) => Ok(n),
            Err(RingError::Timeout) => Err(PutTimeoutError::Full),
            Err(RingError::Os(e)) => Err(PutError::Os(e).into()),
            Err(RingError::Disconnected) => Err(PutError::Closed.into()),
            Err(RingError::ShutDown) => Err(PutError::ShutDown.into()),
            Err(RingError::Corrupted(what)) => Err(PutError::Corrupted(what).into()),
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
                Ok(_) => return true,
                Err(seen) => now = seen,
            }
        }
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
    pub fn get_many_bytes_with(
        &self,
        max: usize,
        timeout: Duration,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, GetTimeoutError> {
        self.get_many_with(max, Patience::after(timeout), each)
    }

    fn get_many_with(
        &self,
        max: usize,
        deadline: Patience,
        each: &mut dyn FnMut(&[u8]),
    ) -> Result<usize, GetTimeoutError> {
        match self.ring().get_many(max.max(1), deadline, each) {
            Ok(n) => Ok(n),
            Err(RingError::Timeout) => Err(GetTimeoutError::Empty),
            Err(RingError::Disconnected) => Err(GetError::Disconnected.into()),
            Err(RingError::ShutDown) => Err(GetError::ShutDown.into()),
            Err(RingError::Corrupted(what)) => Err(GetError::Corrupted(what).into()),
            Err(RingError::Os(e)) => Err(GetError::Os(e).into()),
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
            while let Ok(n) = ring.get_many(usize::MAX, Patience::now(), &mut |_| {}) {
                dropped += n as u64;
            }
            self.state()
                .joinable
                .done
                .fetch_add(dropped, Ordering::AcqRel);
        }
    }

    /// Whether `shutdown` was called (by any handle).
    pub fn is_shut_down(&self) -> bool {
        self.ring().shutdown_state() != 0
    }

    /// A second handle on the same queue (for another process); a producer
    /// until it is closed or dropped, like every handle.
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        let cell = self.cell.try_clone()?;
        let slot = cell.state().ring.producers.register();
        Ok(Queue::registered(cell, slot))
    }
}

impl<T> Queue<T> {
    /// A handle on `cell` registered as a producer (or untracked if the
    /// table is full, which also stops consumers from judging disconnection).
    fn registered(cell: ShmCell<QueueState>, slot: Option<usize>) -> Self {
        Queue {
            producer: AtomicUsize::new(slot.unwrap_or(UNTRACKED)),
            cell,
            seen: LocalView::default(),
            _t: PhantomData,
        }
    }
}

impl<T> Drop for Queue<T> {
    fn drop(&mut self) {
        let slot = self.producer.swap(CLOSED, Ordering::AcqRel);
        if slot < UNTRACKED {
            self.cell.state().ring.producers.close(slot);
        }
    }
}

/// A queue inside a serialized Process argument: its segment, and the
/// producer slot reserved for the child (so it counts before it runs).
#[derive(Serialize, Deserialize)]
struct QueueWire<C> {
    cell: C,
    reserved: Option<u32>,
}

impl<T> Serialize for Queue<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // A closed handle hands over a closed one; otherwise the child is a
        // producer from now, held by this process until the child adopts it.
        let reserved = match self.producer.load(Ordering::Acquire) {
            CLOSED => None,
            _ => self.cell.state().ring.producers.reserve().map(|s| s as u32),
        };
        QueueWire {
            cell: &self.cell,
            reserved,
        }
        .serialize(serializer)
    }
}

impl<'de, T> Deserialize<'de> for Queue<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = QueueWire::<ShmCell<QueueState>>::deserialize(deserializer)?;
        let cell = wire.cell;
        if cell.extra_len() < 64 {
            return Err(D::Error::custom("the queue's segment has no ring"));
        }
        let producers = &cell.state().ring.producers;
        let slot = match wire.reserved {
            Some(index) => producers.adopt(index as usize),
            None => None,
        };
        let queue = Queue::registered(cell, slot);
        if wire.reserved.is_none() {
            queue.producer.store(CLOSED, Ordering::Release);
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
