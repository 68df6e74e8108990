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
//! A message of a megabyte or more is taken and decoded on a thread of
//! its own, which wakes the future: where the future was polled, a 50 MB
//! one in the ring held the executor's thread 30 ms, and a 100 MB one too
//! large for the ring (it travels in a memfd of its own) 70 ms, 7 ms of
//! which only to map it. A future dropped meanwhile leaves the message to
//! the handle's next get, first and in order (see `left`). A put's
//! message too large for the ring is encoded straight into its memfd
//! where `put_async` is called (see `spill_sink`), and the future only
//! announces it (see `awaited_spill`).

use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::shm::cell::ShmCell;
use crate::watch::{Arm, Registration, Watch, Watched};

use super::awaited_spill::Spill;
use super::left::{Bytes, Handoff, Outcome};
use super::ring::{LocalView, Ring};
use super::wait::Patience;
use super::{GetError, GetTimeoutError, PutError, PutTimeoutError, Queue, QueueState, Taken};
use crate::codec::spill_sink::{Encoded, SpillSink};

/// How many times a future that failed only because another thread held
/// the side for a moment tries again at once (through its executor)
/// before it waits for the watch.
const QUICK_RETRIES: u32 = 8;

/// From this size on, a message is taken and decoded off the executor's
/// thread (starting a thread costs tens of microseconds; a
/// megabyte decodes in about half a millisecond to a few).
const OFF_THREAD_BYTES: u64 = 1 << 20;

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
    /// sleeps on the queue and wakes them. A message of a megabyte or
    /// more is taken and decoded on a thread of its own (awaiting asks
    /// `T: Send + 'static`). Cancel-safe:
    /// a future dropped before it is ready (a `tokio::time::timeout` that
    /// ran out) has taken nothing, or leaves the large message it was
    /// taking to this handle's next get, first and in order.
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
            off_thread: None,
        }
    }

    /// Puts a message, as a future: [`put`](Self::put) for async code, as
    /// [`get_async`](Self::get_async) is `get`'s. The item is encoded now,
    /// where this is called; a message too large for the ring is encoded
    /// straight into the memfd it travels in (a 100 MB one takes some 35
    /// ms). The future is ready once it is in the queue. Dropped before
    /// that, it has put nothing.
    pub fn put_async(&self, item: &T) -> PutFuture<'_, T> {
        let inline = self.ring_message_bytes();
        let mut sink = SpillSink::new(Vec::new(), inline, &self.max_message, super::SPILLED_NAME);
        let outcome = crate::codec::encode_to(item, &mut sink);
        let (encoded, spill) = match sink.finish(outcome) {
            Ok(Encoded::Inline) => {
                let mut encoded = Vec::new();
                sink.give_back(&mut encoded, usize::MAX);
                (Some(Ok(encoded)), None)
            }
            Ok(Encoded::Spilled { memfd, len }) => (None, Some(Spill { len, memfd })),
            Err(e) => (Some(Err(e.into())), None),
        };
        PutFuture {
            queue: self,
            encoded,
            spill,
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
    /// A thread of ours taking a large message out of the ring, or
    /// decoding a whole one (spilled, or left by a dropped future).
    off_thread: Option<Arc<Handoff>>,
}

impl<T> Drop for GetFuture<'_, T> {
    fn drop(&mut self) {
        // Taken, not given: the handle's next get gives it.
        if let Some(handoff) = self.off_thread.take() {
            handoff.abandon();
            self.queue.left.leave(handoff);
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
        crate::coop::cooperative(cx, |cx| {
            // A thread that found its message gone hands the next take back
            // to this thread (no second thread for the same look).
            let mut take_here = false;
            if let Some(handoff) = &this.off_thread {
                let outcome = std::task::ready!(handoff.poll(cx.waker()));
                this.off_thread = None;
                match outcome {
                    Outcome::Item(item) => {
                        return Poll::Ready(item.downcast::<T>().map(|item| *item).map_err(|_| {
                            GetError::Decode(crate::codec::DecodeError::Refused(
                                "a message taken for this get came back as another type".into(),
                            ))
                        }))
                    }
                    // (Only a dropped future's thread keeps the bytes.)
                    Outcome::Bytes(message) => return this.decode_off_thread(message, cx),
                    Outcome::Failed(e) => return Poll::Ready(Err(e)),
                    Outcome::Empty => take_here = true,
                }
            }
            let queue = this.queue;
            if queue.left.any() {
                match queue.left.poll_pop(cx.waker()) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Some(Ok(message))) => return this.decode_off_thread(message, cx),
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Err(e)),
                    Poll::Ready(None) => {}
                }
            }
            // Before the try: a message put after it moves the tail from this.
            let seen = queue.ring().tail_word();
            if !take_here {
                let len = queue.ring().next_message_len().unwrap_or(0);
                if len >= OFF_THREAD_BYTES {
                    let taker = queue.taker();
                    let take = move |handoff: &Handoff| take_for(&taker, handoff);
                    if let Ok(handoff) = spawn::<T>(take, cx.waker()) {
                        this.off_thread = Some(handoff);
                        return Poll::Pending;
                    }
                }
            }
            match queue.try_take() {
                Ok(Taken::Item(item)) => Poll::Ready(Ok(item)),
                Ok(Taken::Spilled(message)) => this.decode_off_thread(Arc::new(message), cx),
                Err(GetTimeoutError::Get(e)) => Poll::Ready(Err(e)),
                Err(GetTimeoutError::Empty) => {
                    let held = !queue.is_empty();
                    match this.waiting.wait_for(queue, false, seen, held, cx) {
                        Ok(()) => Poll::Pending,
                        Err(e) => Poll::Ready(Err(GetError::Os(e))),
                    }
                }
            }
        })
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> GetFuture<'_, T> {
    /// Decodes a whole message this future took on a thread of its own
    /// (here if no thread can be had, as a get does).
    fn decode_off_thread(
        &mut self,
        message: Bytes,
        cx: &mut Context<'_>,
    ) -> Poll<Result<T, GetError>> {
        // Handed over through a cell, so a thread that never started
        // leaves the message here.
        let cell = Arc::new(Mutex::new(Some(message)));
        let theirs = Arc::clone(&cell);
        let decode = move |handoff: &Handoff| {
            let message = theirs.lock().ok().and_then(|mut m| m.take());
            message.map_or(Outcome::Empty, |m| decode_for::<T>(m, handoff))
        };
        match spawn::<T>(decode, cx.waker()) {
            Ok(handoff) => {
                self.off_thread = Some(handoff);
                Poll::Pending
            }
            Err(_) => Poll::Ready(match cell.lock().ok().and_then(|mut m| m.take()) {
                Some(message) => {
                    crate::codec::decode_payload::<T>(&message).map_err(GetError::Decode)
                }
                None => Err(panicked()),
            }),
        }
    }
}

/// Runs `work` on a thread of its own, which hands its outcome over and
/// wakes `waker`.
fn spawn<T: Serialize + 'static>(
    work: impl FnOnce(&Handoff) -> Outcome + Send + 'static,
    waker: &Waker,
) -> std::io::Result<Arc<Handoff>> {
    let handoff = Handoff::new(waker, reencode::<T>);
    let theirs = Arc::clone(&handoff);
    std::thread::Builder::new()
        .name("outlast-decode".into())
        .spawn(move || {
            let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| work(&theirs)))
                .unwrap_or_else(|_| Outcome::Failed(panicked()));
            theirs.finish(outcome);
        })?;
    Ok(handoff)
}

/// Takes the next message, if one is there now, and decodes it where it
/// is (in the ring, or in its memfd's mapping); copied instead if the
/// future was dropped already.
fn take_for<T: Serialize + DeserializeOwned + Send + 'static>(
    taker: &Queue<T>,
    handoff: &Handoff,
) -> Outcome {
    let mut outcome = Outcome::Empty;
    let mut show = |bytes: &[u8]| {
        let copy = || Outcome::Bytes(Arc::new(bytes.to_vec()));
        outcome = match handoff.abandoned() {
            true => copy(),
            false => match crate::codec::decode_payload::<T>(bytes) {
                Ok(item) => Outcome::Item(Box::new(item)),
                Err(_) if handoff.abandoned() => copy(),
                Err(e) => Outcome::Failed(GetError::Decode(e)),
            },
        };
    };
    match taker.take_many::<false>(1, Patience::now(), &mut show, &mut |_| {}) {
        Ok(_) => outcome,
        // The future looks again itself, and finds why.
        Err(GetTimeoutError::Empty | GetTimeoutError::Get(GetError::Disconnected))
        | Err(GetTimeoutError::Get(GetError::ShutDown)) => Outcome::Empty,
        Err(GetTimeoutError::Get(e)) => Outcome::Failed(e),
    }
}

/// Decodes a whole message, which is then let go on this thread too
/// (unmapping a 100 MB one takes milliseconds); kept whole if the future
/// was dropped.
fn decode_for<T: DeserializeOwned + Send + 'static>(message: Bytes, handoff: &Handoff) -> Outcome {
    if handoff.abandoned() {
        return Outcome::Bytes(message);
    }
    match crate::codec::decode_payload::<T>(&message) {
        Ok(item) => Outcome::Item(Box::new(item)),
        Err(_) if handoff.abandoned() => Outcome::Bytes(message),
        Err(e) => Outcome::Failed(GetError::Decode(e)),
    }
}

/// A dropped future's decoded message, as bytes again for the next get.
fn reencode<T: Serialize + 'static>(item: Box<dyn Any + Send>) -> Outcome {
    let Ok(item) = item.downcast::<T>() else {
        return Outcome::Failed(panicked());
    };
    let mut bytes = Vec::new();
    match crate::codec::encode_append(&*item, &mut bytes) {
        Ok(()) => Outcome::Bytes(Arc::new(bytes)),
        Err(e) => Outcome::Failed(GetError::Decode(crate::codec::DecodeError::Refused(
            format!("a message left by a dropped get could not be kept: {e}"),
        ))),
    }
}

fn panicked() -> GetError {
    GetError::Decode(crate::codec::DecodeError::Refused(
        "decoding the message panicked (see the message above)".into(),
    ))
}

/// The future of [`Queue::put_async`].
#[must_use = "a future puts nothing unless it is awaited"]
pub struct PutFuture<'a, T> {
    queue: &'a Queue<T>,
    /// The item's bytes; taken once the future is ready.
    encoded: Option<Result<Vec<u8>, PutError>>,
    /// A message too large for the ring, in its memfd (see `awaited_spill`).
    spill: Option<Spill>,
    waiting: Waiting,
}

impl<T: Serialize + DeserializeOwned> PutFuture<'_, T> {
    /// The put of a message too large for the ring; `None` for a message
    /// that goes in the ring.
    fn poll_spill(&mut self, cx: &mut Context<'_>) -> Option<Poll<Result<(), PutError>>> {
        let queue = self.queue;
        let spill = self.spill.as_ref()?;
        Some(match spill.try_put(queue) {
            Ok(Some(seen)) => match self.waiting.wait_for(queue, true, seen, false, cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(PutError::Os(e))),
            },
            done => {
                self.spill = None;
                Poll::Ready(done.map(drop))
            }
        })
    }
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
        crate::coop::cooperative(cx, |cx| {
            if let Some(put) = this.poll_spill(cx) {
                return put;
            }
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
            let outcome = queue.put_bytes_deadline(bytes, Patience::now());
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
                    let held = !queue.is_full();
                    match this.waiting.wait_for(queue, true, seen, held, cx) {
                        Ok(()) => Poll::Pending,
                        Err(e) => Poll::Ready(Err(PutError::Os(e))),
                    }
                }
            }
        })
    }
}
