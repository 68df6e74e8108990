//! Handles on single items: [`AsyncResult`] (Python's `AsyncResult`, and
//! `concurrent.futures.Future` as [`Future`]), [`as_completed`] and
//! [`wait`] over several of them. An `AsyncResult` is also a
//! [`std::future::Future`]: `.await` it under any executor.

use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::offload::Decoding;
use super::{decode, succeeded, Pool, PoolError};

/// The result of an item submitted with `apply_async` or `submit`.
///
/// `Send + Sync`; `.await` gives the same as [`get`](Self::get) without
/// blocking the executor's thread (a result of a megabyte or more is
/// decoded on a thread of its own).
pub struct AsyncResult<R> {
    claim: Arc<Claim>,
    /// Awaited, a large result being decoded off the executor's thread.
    decoding: Option<Decoding>,
    _result: PhantomData<fn() -> R>,
}

/// What keeps an item's result in the pool: shared by the caller's handle
/// and its done callbacks' views, so that a handle dropped at once (as
/// Python's `apply_async(f, args, callback=cb)` is used) still has its
/// callbacks called with the value. The last one gone frees the result.
struct Claim {
    pool: Pool,
    id: u64,
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.pool.state().store.abandon(self.id);
    }
}

/// `concurrent.futures.Future`: the same handle.
pub type Future<R> = AsyncResult<R>;

impl<R: DeserializeOwned> AsyncResult<R> {
    pub(super) fn new(pool: Pool, id: u64) -> Self {
        AsyncResult {
            claim: Arc::new(Claim { pool, id }),
            decoding: None,
            _result: PhantomData,
        }
    }

    /// Waits for the result (as often as asked: it is kept).
    pub fn get(&self) -> Result<R, PoolError> {
        self.wait_until(None)?;
        self.decoded()
    }

    /// Waits at most `timeout`; `PoolError::Timeout` if not ready by then.
    pub fn get_timeout(&self, timeout: Duration) -> Result<R, PoolError> {
        self.wait_until(Some(Instant::now() + timeout))?;
        self.decoded()
    }

    /// `Future.result()`.
    pub fn result(&self) -> Result<R, PoolError> {
        self.get()
    }

    /// Waits until the item is settled (or the pool stops).
    pub fn wait(&self) {
        let _ = self.wait_until(None);
    }

    /// Waits at most `timeout`; true if it is settled.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(Instant::now() + timeout)).is_ok()
    }

    /// Whether the item is settled.
    pub fn ready(&self) -> bool {
        self.is_settled()
    }

    /// `Future.done()`.
    pub fn done(&self) -> bool {
        self.ready()
    }

    /// Whether it returned (`None` while not ready; Python raises then).
    pub fn successful(&self) -> Option<bool> {
        if !self.ready() {
            return None;
        }
        self.claim
            .pool
            .state()
            .store
            .result(self.claim.id)
            .as_ref()
            .map(succeeded)
    }

    /// `Future.cancel()`: takes the item back if no worker has it yet (it
    /// waits behind busy workers); it then settles as
    /// [`TaskError::Cancelled`](super::TaskError::Cancelled). False if it
    /// already runs or is done.
    pub fn cancel(&self) -> bool {
        let cancelled = self.claim.pool.state().store.cancel(self.claim.id);
        if cancelled {
            // Its callbacks and awaiting tasks learn at the next turn.
            self.claim.pool.shared.inner.wake_engine();
        }
        cancelled
    }

    /// `Future.cancelled()`.
    pub fn cancelled(&self) -> bool {
        matches!(
            self.claim.pool.state().store.result(self.claim.id),
            Some(Err(e)) if matches!(*e, super::TaskError::Cancelled)
        )
    }

    /// `Future.exception()`: waits, then the item's error, if it failed.
    pub fn exception(&self) -> Option<PoolError> {
        self.get().err()
    }

    /// `Future.add_done_callback(fn)`: calls `f` with this handle once the
    /// item is settled: at once (on this thread) if it already is, else on
    /// the pool's thread, as CPython's result handler does. Keep it short:
    /// results wait meanwhile; a call in it that would wait on the pool
    /// gives [`PoolError::WouldDeadlock`]. A panic in it is reported, not
    /// spread.
    pub fn add_done_callback(&self, f: impl FnOnce(&AsyncResult<R>) + Send + 'static)
    where
        R: 'static,
    {
        let view = AsyncResult::<R> {
            claim: Arc::clone(&self.claim),
            decoding: None,
            _result: PhantomData,
        };
        let callback: super::shared::Callback = Box::new(move || f(&view));
        let mut state = self.claim.pool.state();
        if state.store.is_settled(self.claim.id) || state.stopped.is_some() {
            drop(state);
            super::shared::run_callback(callback);
        } else {
            state.callbacks.push((self.claim.id, callback));
        }
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<(), PoolError> {
        let id = self.claim.id;
        self.claim.pool.pump(deadline, |store| store.is_settled(id))
    }

    fn decoded(&self) -> Result<R, PoolError> {
        let settled = self.claim.pool.state().store.result(self.claim.id);
        decode(settled).map_err(|error| PoolError::Task { index: 0, error })
    }

    fn is_settled(&self) -> bool {
        self.claim.pool.state().store.is_settled(self.claim.id)
    }
}

impl<R: DeserializeOwned + Send + 'static> std::future::Future for AsyncResult<R> {
    type Output = Result<R, PoolError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        outlast_ipc::coop::cooperative(cx, |cx| {
            if let Some(decoding) = &this.decoding {
                let decoded = std::task::ready!(decoding.poll::<R>(cx.waker()));
                this.decoding = None;
                return Poll::Ready(decoded.map_err(|error| PoolError::Task { index: 0, error }));
            }
            let mut state = this.claim.pool.state();
            if state.store.is_settled(this.claim.id) {
                let settled = state.store.result(this.claim.id);
                drop(state);
                return match Decoding::start::<R>(settled, cx.waker()) {
                    Ok(decoding) => {
                        this.decoding = Some(decoding);
                        Poll::Pending
                    }
                    Err(settled) => Poll::Ready(
                        decode(settled).map_err(|error| PoolError::Task { index: 0, error }),
                    ),
                };
            }
            if let Some(why) = &state.stopped {
                return Poll::Ready(Err(PoolError::Stopped(why.clone())));
            }
            // (The pool's thread wakes it once the item settles or the pool stops.)
            super::shared::wait_for(
                &mut state,
                super::shared::Awaited::Item(this.claim.id),
                cx.waker(),
            );
            Poll::Pending
        })
    }
}

/// The futures of `futures` as they finish (`concurrent.futures.as_completed`).
pub fn as_completed<R: DeserializeOwned>(futures: &[AsyncResult<R>]) -> AsCompleted<'_, R> {
    let mut ready = std::collections::VecDeque::new();
    let mut waiting = std::collections::HashMap::new();
    let pool = futures.first().map(|f| f.claim.pool.clone());
    let mut cursor = 0;
    if let Some(pool) = &pool {
        // One look, under one lock: the pool's thread settles items
        // meanwhile, and one settled between a look at the futures and a
        // look at the log would be in neither.
        let mut state = pool.state();
        let store = &mut state.store;
        store.log_readers += 1;
        for (index, future) in futures.iter().enumerate() {
            if store.is_settled(future.claim.id) {
                ready.push_back(index);
            } else {
                waiting.insert(future.claim.id, index);
            }
        }
        cursor = store.log.len();
    }
    AsCompleted {
        futures,
        pool,
        ready,
        waiting,
        cursor,
    }
}

/// The iterator of [`as_completed`].
pub struct AsCompleted<'a, R> {
    futures: &'a [AsyncResult<R>],
    pool: Option<Pool>,
    ready: std::collections::VecDeque<usize>,
    /// Unsettled futures by item id.
    waiting: std::collections::HashMap<u64, usize>,
    /// How far into the store's settled log this has read.
    cursor: usize,
}

impl<'a, R: DeserializeOwned> Iterator for AsCompleted<'a, R> {
    type Item = &'a AsyncResult<R>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_until(None).ok().flatten()
    }
}

impl<'a, R: DeserializeOwned> AsCompleted<'a, R> {
    /// The next future to finish, waiting at most `timeout`
    /// (`as_completed(fs, timeout)`): `Err(PoolError::Timeout)` if none
    /// did by then; the others are still there for the next call.
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<&'a AsyncResult<R>>, PoolError> {
        self.next_until(Some(Instant::now() + timeout))
    }

    fn next_until(
        &mut self,
        deadline: Option<Instant>,
    ) -> Result<Option<&'a AsyncResult<R>>, PoolError> {
        let Some(pool) = self.pool.clone() else {
            return Ok(None);
        };
        loop {
            if let Some(index) = self.ready.pop_front() {
                return Ok(self.futures.get(index));
            }
            if self.waiting.is_empty() {
                return Ok(None);
            }
            {
                let state = pool.state();
                let store = &state.store;
                for id in store.log.get(self.cursor..).unwrap_or_default() {
                    if let Some(index) = self.waiting.remove(id) {
                        self.ready.push_back(index);
                    }
                }
                self.cursor = store.log.len();
            }
            if self.ready.is_empty() {
                let cursor = self.cursor;
                match pool.pump(deadline, |store| store.log.len() > cursor) {
                    Ok(()) => {}
                    Err(PoolError::Stopped(_)) => {
                        // The pool stopped: what is left is settled as lost.
                        let left: Vec<usize> = self.waiting.drain().map(|(_, i)| i).collect();
                        self.ready.extend(left);
                    }
                    // A timeout, or a wait from the pool's own thread.
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

impl<R> Drop for AsCompleted<'_, R> {
    fn drop(&mut self) {
        if let Some(pool) = &self.pool {
            let mut state = pool.state();
            let store = &mut state.store;
            store.log_readers = store.log_readers.saturating_sub(1);
            if store.log_readers == 0 {
                store.log.clear();
            }
        }
    }
}

/// When [`wait`] returns (`concurrent.futures.wait`'s `return_when`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReturnWhen {
    FirstCompleted,
    /// The first that failed, or all.
    FirstError,
    AllCompleted,
}

/// Waits for `futures` as `when` says, at most `timeout`: the indices of
/// those done and of those not done.
pub fn wait<R: DeserializeOwned>(
    futures: &[AsyncResult<R>],
    timeout: Option<Duration>,
    when: ReturnWhen,
) -> (Vec<usize>, Vec<usize>) {
    let split = || {
        let (done, pending): (Vec<usize>, Vec<usize>) =
            (0..futures.len()).partition(|&i| futures[i].is_settled());
        (done, pending)
    };
    let Some(pool) = futures.first().map(|f| f.claim.pool.clone()) else {
        return (Vec::new(), Vec::new());
    };
    let deadline = timeout.map(|t| Instant::now() + t);
    let _ = pool.pump(deadline, |store| {
        let settled = |f: &AsyncResult<R>| store.is_settled(f.claim.id);
        match when {
            ReturnWhen::FirstCompleted => futures.iter().any(settled),
            ReturnWhen::AllCompleted => futures.iter().all(settled),
            ReturnWhen::FirstError => {
                futures.iter().all(settled)
                    || futures
                        .iter()
                        .any(|f| store.result(f.claim.id).is_some_and(|r| !succeeded(&r)))
            }
        }
    });
    split()
}
