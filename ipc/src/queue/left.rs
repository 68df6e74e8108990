//! Messages that dropped `get_async` futures took but never gave: the
//! handle's next gets give them first, in the order they were taken, so
//! cancelling a get loses nothing and reorders nothing.
//!
//! A large message is taken and decoded off the executor's thread, by a
//! thread of ours (see `future`). A future dropped meanwhile leaves that
//! thread's [`Handoff`] here: the thread, told, keeps the message whole (a
//! mapping or a copy) rather than as a value only that future could read.

use std::any::Any;
use std::collections::VecDeque;
use std::ops::Deref;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

use super::GetError;
use crate::codec::DecodeError;
use crate::off_thread::keep_waker;

/// A whole message's bytes: a spilled message's mapping, or a copy.
pub(super) type Bytes = Arc<dyn Deref<Target = [u8]> + Send + Sync>;

/// A handle's left messages, oldest first.
#[derive(Default)]
pub(super) struct LeftMessages {
    /// Each a thread's handoff: it has the message, or will.
    queue: Mutex<VecDeque<Arc<Handoff>>>,
    /// Whether `queue` may hold any: read on every get, unlocked.
    any: AtomicBool,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // (Nothing is left half-done under these locks: a poisoned one is fine.)
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LeftMessages {
    /// Whether any message is left (a look without the lock).
    #[inline]
    pub(super) fn any(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// An abandoned handoff's message, whenever its thread has it.
    pub(super) fn leave(&self, handoff: Arc<Handoff>) {
        let mut queue = lock(&self.queue);
        queue.push_back(handoff);
        self.any.store(true, Ordering::Release);
    }

    /// The oldest message left, for a get that may wait: for a thread of
    /// ours still taking it, it waits (as long as that take lasts). `None`
    /// once none is left.
    pub(super) fn pop_waiting(&self) -> Option<Result<Bytes, GetError>> {
        loop {
            let handoff = {
                let mut queue = lock(&self.queue);
                let oldest = queue.pop_front();
                self.any.store(!queue.is_empty(), Ordering::Release);
                oldest?
            };
            if let Some(message) = handoff.wait_for_left() {
                return Some(message);
            }
            // Its thread found nothing to take: the next one.
        }
    }

    /// The oldest message left, for a future: `Pending` while a thread of
    /// ours still takes it (`waker` is woken then); `Ready(None)` once
    /// none is left.
    pub(super) fn poll_pop(&self, waker: &Waker) -> Poll<Option<Result<Bytes, GetError>>> {
        let mut queue = lock(&self.queue);
        let popped = loop {
            let message = match queue.front() {
                None => break None,
                Some(handoff) => std::task::ready!(handoff.poll_left(waker)),
            };
            queue.pop_front();
            if message.is_some() {
                break message;
            }
        };
        self.any.store(!queue.is_empty(), Ordering::Release);
        Poll::Ready(popped)
    }
}

/// What a thread of ours made of the message it took for a future.
pub(super) enum Outcome {
    /// The message, decoded (the future's `T`), for the future that asked.
    Item(Box<dyn Any + Send>),
    /// The message, whole and not decoded: its future was dropped.
    Bytes(Bytes),
    /// The take failed.
    Failed(GetError),
    /// No message was there any more (another consumer took it first).
    Empty,
}

/// Turns a decoded item back into bytes, for a dropped future's message
/// (a function of the future's `T`, which the handoff does not know).
pub(super) type Reencode = fn(Box<dyn Any + Send>) -> Outcome;

/// What a thread taking a message shares with its future, and with the
/// handle's next get once the future is dropped.
pub(super) struct Handoff {
    state: Mutex<HandoffState>,
    /// Notified once the outcome is there, for a get waiting for it.
    done: Condvar,
    reencode: Reencode,
}

struct HandoffState {
    outcome: Option<Outcome>,
    /// The future's waker, woken once the outcome is there.
    waker: Option<Waker>,
    /// The future was dropped: the message is kept as bytes.
    abandoned: bool,
}

impl Handoff {
    pub(super) fn new(waker: &Waker, reencode: Reencode) -> Arc<Handoff> {
        Arc::new(Handoff {
            state: Mutex::new(HandoffState {
                outcome: None,
                waker: Some(waker.clone()),
                abandoned: false,
            }),
            done: Condvar::new(),
            reencode,
        })
    }

    /// The thread: whether the future was dropped (then the message is
    /// better copied than decoded).
    pub(super) fn abandoned(&self) -> bool {
        lock(&self.state).abandoned
    }

    /// The thread: what it made of the message; wakes whoever waits.
    pub(super) fn finish(&self, outcome: Outcome) {
        let waker = {
            let mut state = lock(&self.state);
            state.outcome = Some(match (state.abandoned, outcome) {
                (true, Outcome::Item(item)) => (self.reencode)(item),
                (_, outcome) => outcome,
            });
            state.waker.take()
        };
        self.done.notify_all();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// The future: the outcome, once there.
    pub(super) fn poll(&self, waker: &Waker) -> Poll<Outcome> {
        let mut state = lock(&self.state);
        match state.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                keep_waker(&mut state.waker, waker);
                Poll::Pending
            }
        }
    }

    /// The future is dropped: what the thread takes (or took) is kept as
    /// bytes, for the handle's next get.
    pub(super) fn abandon(&self) {
        let mut state = lock(&self.state);
        state.abandoned = true;
        state.waker = None;
        if let Some(Outcome::Item(item)) = state.outcome.take() {
            state.outcome = Some((self.reencode)(item));
        }
    }

    /// A get that may wait: the message, once the thread is done (`None`:
    /// it found none).
    fn wait_for_left(&self) -> Option<Result<Bytes, GetError>> {
        let mut state = lock(&self.state);
        loop {
            if let Some(outcome) = state.outcome.take() {
                return left_message(outcome);
            }
            state = self
                .done
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// A future: the message once the thread is done (`Ready(None)`: it
    /// found none); else `waker` is woken then.
    fn poll_left(&self, waker: &Waker) -> Poll<Option<Result<Bytes, GetError>>> {
        let mut state = lock(&self.state);
        match state.outcome.take() {
            Some(outcome) => Poll::Ready(left_message(outcome)),
            None => {
                keep_waker(&mut state.waker, waker);
                Poll::Pending
            }
        }
    }
}

/// An abandoned take's outcome as a left message.
fn left_message(outcome: Outcome) -> Option<Result<Bytes, GetError>> {
    match outcome {
        Outcome::Bytes(message) => Some(Ok(message)),
        Outcome::Failed(e) => Some(Err(e)),
        Outcome::Empty => None,
        // (`abandon` turned any item into bytes.)
        Outcome::Item(_) => Some(Err(GetError::Decode(DecodeError::Refused(
            "a message left by a dropped get was kept decoded".into(),
        )))),
    }
}
