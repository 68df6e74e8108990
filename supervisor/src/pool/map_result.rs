//! [`MapResult`]: Python's `Pool.map_async` handle. Every item is
//! encoded and submitted when the map is asked for, as CPython's
//! `map_async` lists its input first; the handle then waits for the whole
//! list, with a timeout if asked (`get(timeout)`), or as a future.
//!
//! The handle keeps a cursor at the first item it has not yet seen
//! settled: settled items stay settled until the handle is dropped, so a
//! wait looks at each item about once, however often it is woken.

use std::marker::PhantomData;
use std::ops::Range;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::call::Call;
use super::shared::{self, Awaited};
use super::store::{Encoded, Store};
use super::taken::Taken;
use super::{succeeded, Pool, PoolError};

/// The results of a whole map, later: [`Pool::map_async`],
/// [`Pool::starmap_async`].
///
/// `Send + Sync`; `.await` gives the same as [`get`](Self::get) without
/// blocking the executor's thread. The results stay in the pool until the
/// handle is dropped, so `get` may be called again.
pub struct MapResult<R> {
    items: Arc<Items>,
    _result: PhantomData<fn() -> R>,
}

/// The map's items, shared by the caller's handle and a done callback's
/// view (a handle dropped at once still has its callback called); the
/// last one gone frees their results.
struct Items {
    pool: Pool,
    /// The items' ids, in input order: runs of consecutive ids, one per
    /// submission.
    runs: Vec<Range<u64>>,
    /// Where to look next: (run, id) of the first item not seen settled.
    cursor: Mutex<(usize, u64)>,
}

impl Drop for Items {
    fn drop(&mut self) {
        if !self.runs.is_empty() {
            self.pool
                .state()
                .store
                .abandon_all(self.runs.iter().flat_map(Clone::clone));
        }
    }
}

impl<R: DeserializeOwned> MapResult<R> {
    /// Encodes and submits every item of `items`, in batches the size of
    /// the pool's window (each holds the pool's lock only briefly).
    pub(super) fn submit<T: Serialize>(
        pool: &Pool,
        call: Call,
        input: impl IntoIterator<Item = T>,
    ) -> Result<Self, PoolError> {
        // Refused as Python's "Pool not running", before any encoding.
        if pool.state().closed {
            return Err(PoolError::Closed);
        }
        // Made first, so that a failed submission frees what went before.
        let mut items = Items {
            pool: pool.clone(),
            runs: Vec::new(),
            cursor: Mutex::new((0, 0)),
        };
        let batch = pool.shared.window();
        let mut input = input.into_iter().peekable();
        while input.peek().is_some() {
            let mut inputs = Encoded::default();
            for item in input.by_ref().take(batch) {
                // One that cannot be encoded is that item's error.
                inputs.push_or_fail(&item);
            }
            let n = inputs.len() as u64;
            let first = pool.submit_items(call, inputs, None)?;
            items.runs.push(first..first + n);
        }
        if let Some(first) = items.runs.first() {
            items.cursor = Mutex::new((0, first.start));
        }
        Ok(MapResult {
            items: Arc::new(items),
            _result: PhantomData,
        })
    }

    /// How many items the map has.
    pub fn len(&self) -> usize {
        self.items
            .runs
            .iter()
            .map(|r| (r.end - r.start) as usize)
            .sum()
    }

    /// Whether the map has no items (its result is an empty list at once).
    pub fn is_empty(&self) -> bool {
        self.items.runs.is_empty()
    }

    /// Waits for every item, then their results in input order; the first
    /// item that failed is the error (as [`Pool::map`]). As often as asked:
    /// the results are kept.
    pub fn get(&self) -> Result<Vec<R>, PoolError> {
        self.wait_until(None)?;
        self.collect()
    }

    /// As [`get`](Self::get), waiting at most `timeout`:
    /// `PoolError::Timeout` if not every item is settled by then (the map
    /// goes on; ask again later).
    pub fn get_timeout(&self, timeout: Duration) -> Result<Vec<R>, PoolError> {
        self.wait_until(Some(Instant::now() + timeout))?;
        self.collect()
    }

    /// Waits until every item is settled (or the pool stops).
    pub fn wait(&self) {
        let _ = self.wait_until(None);
    }

    /// Waits at most `timeout`; true if every item is settled.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Some(Instant::now() + timeout)).is_ok()
    }

    /// Whether every item is settled.
    pub fn ready(&self) -> bool {
        let state = self.items.pool.state();
        self.first_unsettled(&state.store).is_none()
    }

    /// Whether every item returned (`None` while not ready; Python raises then).
    pub fn successful(&self) -> Option<bool> {
        let state = self.items.pool.state();
        if self.first_unsettled(&state.store).is_some() {
            return None;
        }
        Some(
            self.ids()
                .all(|id| state.store.result(id).as_ref().is_some_and(succeeded)),
        )
    }

    fn ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.items.runs.iter().flat_map(Clone::clone)
    }

    fn lock_cursor(&self) -> std::sync::MutexGuard<'_, (usize, u64)> {
        self.items
            .cursor
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The first item not settled in `store`, moving the cursor past the
    /// settled ones; `None` once every item is.
    fn first_unsettled(&self, store: &Store) -> Option<u64> {
        let mut cursor = self.lock_cursor();
        let (mut run, mut id) = *cursor;
        let found = loop {
            let Some(ids) = self.items.runs.get(run) else {
                break None;
            };
            if id >= ids.end {
                run += 1;
                id = self.items.runs.get(run).map_or(id, |r| r.start);
                continue;
            }
            if !store.is_settled(id) {
                break Some(id);
            }
            id += 1;
        };
        *cursor = (run, id);
        found
    }

    fn wait_until(&self, deadline: Option<Instant>) -> Result<(), PoolError> {
        self.items
            .pool
            .pump(deadline, |store| self.first_unsettled(store).is_none())
    }

    /// Every result, decoded outside the pool's lock (its thread goes on
    /// meanwhile): under the lock, only each result's bytes are shared.
    /// (A done callback's view calls it without a wait: every item is
    /// settled then, or failed as lost when the pool stopped.)
    pub(super) fn collect(&self) -> Result<Vec<R>, PoolError> {
        let mut taken = Taken::default();
        {
            let state = self.items.pool.state();
            for id in self.ids() {
                state.store.result_into(id, &mut taken);
            }
        }
        let (mut values, mut failed) = (Vec::new(), None);
        values.reserve(taken.reply_sizes().0);
        taken.drain_decoded::<R>(|result| match result {
            _ if failed.is_some() => {}
            Ok(value) => values.push(value),
            Err(error) => {
                failed = Some(PoolError::Task {
                    index: values.len(),
                    error,
                })
            }
        });
        match failed {
            Some(e) => Err(e),
            None => Ok(values),
        }
    }

    /// Calls `done` once every item is settled (or the pool stopped), on
    /// the pool's thread, with a view of this map: one done callback at a
    /// time, on the first item not yet settled, moved on as items settle.
    pub(super) fn when_done(&self, done: impl FnOnce(&MapResult<R>) + Send + 'static)
    where
        R: 'static,
    {
        let view = MapResult::<R> {
            items: Arc::clone(&self.items),
            _result: PhantomData,
        };
        chain(view, Box::new(done));
    }
}

/// A map's done callback.
type Done<R> = Box<dyn FnOnce(&MapResult<R>) + Send>;

/// Runs `done` if every item of `view` is settled, or the pool stopped;
/// otherwise leaves itself as the done callback of the first unsettled one.
fn chain<R: DeserializeOwned + 'static>(view: MapResult<R>, done: Done<R>) {
    let pool = view.items.pool.clone();
    let mut state = pool.state();
    let waiting_on = match state.stopped {
        Some(_) => None,
        None => view.first_unsettled(&state.store),
    };
    match waiting_on {
        None => {
            drop(state);
            shared::run_callback(Box::new(move || done(&view)));
        }
        Some(id) => {
            let again: shared::Callback = Box::new(move || chain(view, done));
            state.callbacks.push((id, again));
        }
    }
}

impl<R: DeserializeOwned> std::future::Future for MapResult<R> {
    type Output = Result<Vec<R>, PoolError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.items.pool.state();
        let Some(id) = self.first_unsettled(&state.store) else {
            drop(state);
            return Poll::Ready(self.collect());
        };
        if let Some(why) = &state.stopped {
            return Poll::Ready(Err(PoolError::Stopped(why.clone())));
        }
        // (The pool's thread wakes it once that item settles or the pool
        // stops; the next poll moves on to the next unsettled one.)
        shared::wait_for(&mut state, Awaited::Item(id), cx.waker());
        Poll::Pending
    }
}
