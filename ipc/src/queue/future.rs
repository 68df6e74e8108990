//! [`Queue::get_async`] and [`Queue::put_async`]: a get and a put as
//! `std::future::Future`s, for any executor.
//!
//! A future tries the non-waiting get (or put) each time it is polled, in
//! the polling thread; when that finds the queue empty (or full) it leaves
//! its waker with the queue's [`Watch`](crate::watch::Watch); a watcher
//! thread of this process sleeps on the ring's futex (with up to 126 other
//! objects' words) for every future waiting on that side, and wakes them
//! when a message comes (or room is made). A dropped future has taken
//! nothing: cancelling one loses no message.
//!
//! A message too large for the ring (it travels in a memfd of its own) is
//! decoded on a thread of its own, which wakes the future: a 100 MB one,
//! decoded where the future was polled, held the executor's thread for
//! 70 ms. A future dropped meanwhile leaves the message to the handle's
//! next get.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::off_thread::OffThread;
use crate::shm::cell::ShmCell;
use crate::spsc::spill::Spilled;
use crate::watch::{Arm, Registration, Watch, Watched};

use super::ring::{LocalView, Ring};
use super::wait::Patience;
use super::{GetError, GetTimeoutError, PutError, PutTimeoutError, Queue, QueueState, Taken};

/// How many times a future that failed only because another thread held
/// the side for a moment tries again at once (through its executor)
/// before it waits for the watch.
const QUICK_RETRIES: u32 = 8;

/// The two watches of a queue in this process, started on first use and
/// shared by the handles cloned from one another.
#[derive(Default)]
pub(super) struct Watches {
    taking: OnceLock<Arc<Watch>>,
    putting: OnceLock<Arc<Watch>>,
}

impl Drop for Watches {
    fn drop(&mut self) {
        // The last handle of this process is gone: the threads let go of
        // the mapping now, not after their idle wait.
        for watch in [self.taking.get(), self.putting.get()]
            .into_iter()
            .flatten()
        {
            watch.stop();
        }
    }
}

/// One side of a queue, as its watch sees it.
struct Side {
    cell: ShmCell<QueueState>,
    /// The watch's own view: its waits teach nothing to the handles'.
    seen: LocalView,
    putting: bool,
}

impl Side {
    fn ring(&self) -> Ring<'_> {
        super::ring_in(&self.cell, &self.seen)
    }
}

impl Watched for Side {
    fn epoch(&self) -> u64 {
        match self.putting {
            true => self.ring().head_word(),
            false => self.ring().tail_word(),
        }
    }

    fn ready_now(&self) -> bool {
        let ring = self.ring();
        ring.shutdown_state() != 0
            || (!self.putting && (ring.len() > 0 || ring.state.producers.all_gone(false)))
    }

    fn arm(&self, seen: u64) -> Arm<'_> {
        match self.putting {
            true => self.ring().arm_for_head(seen),
            false => self.ring().arm_for_tail(seen),
        }
    }

    fn has_costly_look(&self) -> bool {
        !self.putting
    }

    fn look_harder(&self) -> bool {
        // A producer SIGKILLed never closed its handle: only its death tells.
        !self.putting && self.ring().state.producers.all_gone(true)
    }
}

impl<T> Queue<T> {
    /// The watch of this queue's `putting` (or taking) side.
    fn watch(&self, putting: bool) -> &Arc<Watch> {
        let (cell, name) = match putting {
            true => (&self.watches.putting, "queue-put"),
            false => (&self.watches.taking, "queue-get"),
        };
        cell.get_or_init(|| {
            let side = Side {
                cell: self.cell.clone(),
                seen: LocalView::default(),
                putting,
            };
            Watch::new(Arc::new(side), name)
        })
    }
}

impl<T: Serialize + DeserializeOwned> Queue<T> {
    /// Takes a message, as a future: [`get`](Self::get) for async code,
    /// with no runtime of ours (any executor polls it). The waiting
    /// thread is not the executor's: a watcher thread of this process
    /// (one for up to 127 awaited queue sides, events and semaphores)
    /// sleeps on the queue and wakes them. A message too large for the
    /// ring is decoded on a thread of its own (awaiting asks `T: Send +
    /// 'static`). Cancel-safe: a future dropped before it is ready (a
    /// `tokio::time::timeout` that ran out) has taken nothing, or leaves
    /// the large message it was decoding to this handle's next get.
    ///
    /// ```
    /// use std::future::Future;
    /// use std::task::{Context, Poll, Waker};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let q = outlast_ipc::queue::Queue::<u32>::new(0)?;
    /// let mut get = std::pin::pin!(q.get_async());
    /// let mut cx = Context::from_waker(Waker::noop());
    /// assert!(get.as_mut().poll(&mut cx).is_pending());
    /// q.put(&7)?;
    /// // Each poll tries again, in the polling thread.
    /// assert!(matches!(get.as_mut().poll(&mut cx), Poll::Ready(Ok(7))));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Under an executor: `let item = q.get_async().await?;`.
    pub fn get_async(&self) -> GetFuture<'_, T> {
        GetFuture {
            queue: self,
            waiting: Waiting::default(),
            decoding: None,
        }
    }

    /// Puts a message, as a future: [`put`](Self::put) for async code, as
    /// [`get_async`](Self::get_async) is `get`'s. The item is encoded now;
    /// the future is ready once it is in the queue. Dropped before that,
    /// it has put nothing.
    pub fn put_async(&self, item: &T) -> PutFuture<'_, T> {
        let mut encoded = Vec::new();
        let encoded = crate::codec::encode_append(item, &mut encoded)
            .map(|()| encoded)
            .map_err(|e| PutError::Encode(e.to_string()));
        PutFuture {
            queue: self,
            encoded: Some(encoded),
            waiting: Waiting::default(),
        }
    }
}

/// A future's waiting: its place in the side's watch, once it has one,
/// and its immediate re-polls in a row.
#[derive(Debug, Default)]
struct Waiting {
    registration: Option<Registration>,
    retries: u32,
}

impl Waiting {
    /// Leaves `cx`'s waker with the `putting` side's watch of `queue`, to
    /// be woken once the side moves from `seen`; or has it polled again at
    /// once while the failed try was only another thread's moment on the
    /// side (`held`).
    fn wait_for<T>(
        &mut self,
        queue: &Queue<T>,
        putting: bool,
        seen: u64,
        held: bool,
        cx: &mut Context<'_>,
    ) -> std::io::Result<()> {
        if held && self.retries < QUICK_RETRIES {
            self.retries += 1;
            cx.waker().wake_by_ref();
            return Ok(());
        }
        self.retries = 0;
        self.registration
            .get_or_insert_with(|| Registration::new(Arc::clone(queue.watch(putting))))
            .wait(seen, cx.waker())
    }
}

/// The future of [`Queue::get_async`]: a message, or why there is none.
#[must_use = "a future takes nothing unless it is awaited"]
pub struct GetFuture<'a, T> {
    queue: &'a Queue<T>,
    waiting: Waiting,
    /// A spilled message taken, being decoded on a thread of its own.
    decoding: Option<Decoding<T>>,
}

/// A spilled message and its decoding off the executor's thread.
struct Decoding<T> {
    message: Arc<Spilled>,
    decoded: OffThread<Result<T, crate::codec::DecodeError>>,
}

impl<T> Drop for GetFuture<'_, T> {
    fn drop(&mut self) {
        // Taken, not given: the handle's next get gives it.
        if let Some(decoding) = self.decoding.take() {
            self.queue.leave(decoding.message);
        }
    }
}

impl<T> std::fmt::Debug for GetFuture<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetFuture")
            .field("queue", self.queue)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Future for GetFuture<'_, T> {
    type Output = Result<T, GetError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(decoding) = &this.decoding {
            let decoded = std::task::ready!(decoding.decoded.poll(cx.waker()));
            this.decoding = None;
            return Poll::Ready(match decoded {
                Ok(decoded) => decoded.map_err(GetError::Decode),
                Err(_) => Err(GetError::Decode(crate::codec::DecodeError::Refused(
                    "decoding the message panicked (see the message above)".into(),
                ))),
            });
        }
        // Before the try: a message put after it moves the tail from this.
        let seen = this.queue.ring().tail_word();
        match this.queue.try_take() {
            Ok(Taken::Item(item)) => Poll::Ready(Ok(item)),
            Ok(Taken::Spilled(message)) => {
                let message = Arc::new(message);
                let theirs = Arc::clone(&message);
                let decode = move || crate::codec::decode_payload::<T>(&theirs);
                match OffThread::spawn("outlast-decode", decode, cx.waker()) {
                    Ok(decoded) => {
                        this.decoding = Some(Decoding { message, decoded });
                        Poll::Pending
                    }
                    // No thread to be had: decoded here, as a get does.
                    Err(_) => Poll::Ready(
                        crate::codec::decode_payload::<T>(&message).map_err(GetError::Decode),
                    ),
                }
            }
            Err(GetTimeoutError::Get(e)) => Poll::Ready(Err(e)),
            Err(GetTimeoutError::Empty) => {
                let held = !this.queue.is_empty();
                match this.waiting.wait_for(this.queue, false, seen, held, cx) {
                    Ok(()) => Poll::Pending,
                    Err(e) => Poll::Ready(Err(GetError::Os(e))),
                }
            }
        }
    }
}

/// The future of [`Queue::put_async`].
#[must_use = "a future puts nothing unless it is awaited"]
pub struct PutFuture<'a, T> {
    queue: &'a Queue<T>,
    /// The item's bytes; taken once the future is ready.
    encoded: Option<Result<Vec<u8>, PutError>>,
    waiting: Waiting,
}

impl<T> std::fmt::Debug for PutFuture<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutFuture")
            .field("queue", self.queue)
            .finish()
    }
}

impl<T: Serialize + DeserializeOwned> Future for PutFuture<'_, T> {
    type Output = Result<(), PutError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let bytes = match this.encoded.as_ref() {
            Some(Ok(bytes)) => bytes,
            _ => {
                let why = this.encoded.take().and_then(Result::err);
                let why =
                    why.unwrap_or_else(|| PutError::Encode("polled after it was ready".into()));
                return Poll::Ready(Err(why));
            }
        };
        let queue = this.queue;
        // Before the try: room made after it moves the head from this.
        let seen = queue.ring().head_word();
        // A message beside the ring is copied into a memfd at every try:
        // not while the ring has no room even for its record.
        let spilled = bytes.len() > queue.ring_message_bytes();
        let outcome = match spilled && queue.is_full() {
            true => Err(PutTimeoutError::Full),
            false => queue.put_bytes_deadline(bytes, Patience::now()),
        };
        match outcome {
            Ok(()) => {
                this.encoded = None;
                Poll::Ready(Ok(()))
            }
            Err(PutTimeoutError::Put(e)) => {
                this.encoded = None;
                Poll::Ready(Err(e))
            }
            Err(PutTimeoutError::Full) => {
                let held = !spilled && !queue.is_full();
                match this.waiting.wait_for(queue, true, seen, held, cx) {
                    Ok(()) => Poll::Pending,
                    Err(e) => Poll::Ready(Err(PutError::Os(e))),
                }
            }
        }
    }
}
