//! Large results decoded off the executor's thread. An awaited result is
//! decoded where the future is polled: for a 100 MB `Vec<u8>` that was a
//! copy into fresh pages that held a current-thread tokio runtime for
//! 61-64 ms (a 100 MB `Vec<u64>`: 45-52 ms), where an executor's thread
//! should never wait more than some microseconds. A result of
//! [`OFFLOAD_BYTES`] or more is decoded on a thread of its own, which
//! wakes the future when it is done; the thread costs tens of
//! microseconds, a small share of decoding a megabyte.

use std::any::Any;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use serde::de::DeserializeOwned;

use super::store::Settled;
use super::taken::Taken;
use super::{decode, TaskError};

/// An awaited result this long, encoded, or longer is decoded on a
/// thread of its own (a megabyte: under a millisecond inline).
pub(crate) const OFFLOAD_BYTES: usize = 1 << 20;

/// Whether `settled` is a reply to decode off the executor's thread.
fn is_large(settled: &Option<Settled>) -> bool {
    matches!(settled, Some(Ok(bytes)) if bytes.as_slice().len() >= OFFLOAD_BYTES)
}

/// What the decoding thread and the future share. The value is kept as
/// `Any`: a handle that may decode one stays `Send` and `Sync` whatever
/// its result type (only awaiting it asks `R: Send`).
struct Slot {
    /// The encoded result, until the thread takes it.
    input: Option<Option<Settled>>,
    /// A `Result<R, TaskError>`, once decoded.
    done: Option<Box<dyn Any + Send>>,
    /// Woken once `done` is there.
    waker: Option<Waker>,
}

/// A large result being decoded on a thread of its own.
pub(crate) struct Decoding {
    slot: Arc<Mutex<Slot>>,
}

fn lock(slot: &Mutex<Slot>) -> MutexGuard<'_, Slot> {
    // (Nothing is left half-done under this lock: a poisoned one is fine.)
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Decoding {
    /// Starts decoding `settled` as an `R` on a thread of its own, which
    /// wakes `waker` when done, if it is a large reply; otherwise (or when
    /// no thread can start) gives it back, to be decoded where it is.
    pub(crate) fn start<R: DeserializeOwned + Send + 'static>(
        settled: Option<Settled>,
        waker: &Waker,
    ) -> Result<Self, Option<Settled>> {
        if !is_large(&settled) {
            return Err(settled);
        }
        let slot = Arc::new(Mutex::new(Slot {
            input: Some(settled),
            done: None,
            waker: Some(waker.clone()),
        }));
        let theirs = Arc::clone(&slot);
        let started = std::thread::Builder::new()
            .name("outlast-decode".into())
            .spawn(move || {
                let settled = lock(&theirs).input.take().flatten();
                // A user's `Deserialize` that panics fails this result
                // alone, in words, rather than leaving the future waiting.
                let value = std::panic::catch_unwind(AssertUnwindSafe(|| decode::<R>(settled)))
                    .unwrap_or_else(|_| {
                        Err(TaskError::Failed(
                            "decoding its result panicked (see the message above)".into(),
                        ))
                    });
                let waker = {
                    let mut slot = lock(&theirs);
                    slot.done = Some(Box::new(value));
                    slot.waker.take()
                };
                if let Some(waker) = waker {
                    waker.wake();
                }
            });
        match started {
            Ok(_) => Ok(Decoding { slot }),
            Err(_) => Err(lock(&slot).input.take().flatten()),
        }
    }

    /// The decoded result once it is there (`R` as [`start`](Self::start)
    /// was given); else `waker` is woken then.
    pub(crate) fn poll<R: 'static>(&self, waker: &Waker) -> Poll<Result<R, TaskError>> {
        let mut slot = lock(&self.slot);
        match slot.done.take() {
            Some(done) => Poll::Ready(match done.downcast::<Result<R, TaskError>>() {
                Ok(done) => *done,
                Err(_) => Err(TaskError::Failed(
                    "its result was decoded as another type".into(),
                )),
            }),
            None => {
                match &mut slot.waker {
                    Some(kept) => kept.clone_from(waker),
                    None => slot.waker = Some(waker.clone()),
                }
                Poll::Pending
            }
        }
    }
}

/// A lazy map's next result being decoded off the executor's thread,
/// kept too: a future dropped meanwhile leaves it to the map's next call,
/// which decodes it again where it is (the thread's work is dropped).
pub(crate) struct Offloaded {
    decoding: Decoding,
    kept: Settled,
}

/// A lazy map's next result: taken as the pool keeps it, then decoded
/// where it is asked for or, awaited, off the executor's thread.
pub(crate) trait NextResult<R> {
    /// Its result being decoded off an executor's thread, if any.
    fn offloaded(&mut self) -> &mut Option<Offloaded>;

    /// Its results taken from the pool and not yet given out.
    fn taken(&mut self) -> &mut Taken;

    /// The next result as the pool keeps it (`None` inside: an error made
    /// here; the outer `None`: the map is over), or `waker`, if any, left
    /// to be woken once there is one. Takes nothing when pending.
    fn try_next_settled(&mut self, waker: Option<&Waker>) -> Poll<Option<Option<Settled>>>;

    /// The next result, decoded here: what a dropped future left first.
    fn try_next(&mut self, waker: Option<&Waker>) -> Poll<Option<Result<R, TaskError>>>
    where
        R: DeserializeOwned,
    {
        if let Some(left) = self.offloaded().take() {
            return Poll::Ready(Some(decode(Some(left.kept))));
        }
        // Taken already: decoded straight from where it is.
        if let Some(next) = self.taken().pop_decoded(usize::MAX) {
            return Poll::Ready(Some(next));
        }
        self.try_next_settled(waker).map(|next| next.map(decode))
    }

    /// The next result, awaited: the one decoding first, if any; a large
    /// one decoded off this thread.
    fn poll_next(&mut self, waker: &Waker) -> Poll<Option<Result<R, TaskError>>>
    where
        R: DeserializeOwned + Send + 'static,
    {
        if let Some(pending) = self.offloaded() {
            let decoded = std::task::ready!(pending.decoding.poll::<R>(waker));
            *self.offloaded() = None;
            return Poll::Ready(Some(decoded));
        }
        // Taken already and small: decoded straight from where it is.
        if let Some(next) = self.taken().pop_decoded(OFFLOAD_BYTES) {
            return Poll::Ready(Some(next));
        }
        let Some(settled) = std::task::ready!(self.try_next_settled(Some(waker))) else {
            return Poll::Ready(None);
        };
        let Some(kept) = settled.as_ref().filter(|_| is_large(&settled)).cloned() else {
            return Poll::Ready(Some(decode(settled)));
        };
        match Decoding::start::<R>(settled, waker) {
            Ok(decoding) => {
                *self.offloaded() = Some(Offloaded { decoding, kept });
                Poll::Pending
            }
            Err(settled) => Poll::Ready(Some(decode(settled))),
        }
    }
}
