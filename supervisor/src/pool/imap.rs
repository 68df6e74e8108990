//! [`Imap`] and [`ImapUnordered`]: lazy maps. Items are pulled from the
//! input only to keep a bounded number in flight, so an endless iterator
//! runs in bounded memory; each yields every item's own outcome. Each
//! is a stream in the store, which holds back its items while the reader
//! lags far behind (see `stream.rs`).

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::ops::Range;
use std::task::{Poll, Waker};

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::call::Call;
use super::offload::{NextResult, Offloaded};
use super::shared::{wait_for, Awaited};
use super::store::{Encoded, Settled};
use super::stream::StreamId;
use super::taken::Taken;
use super::{Pool, PoolError, TaskError};

/// The input side both maps share: pulls items and submits them.
struct Feed<T, R, I> {
    pool: Pool,
    call: Call,
    items: I,
    /// The map's name in the store.
    stream: StreamId,
    exhausted: bool,
    /// Inputs encoded and results taken so far, to size the window in
    /// bytes.
    encoded: Average,
    results: Average,
    _types: PhantomData<fn(T) -> R>,
}

/// The encoded inputs, or results, a lazy map keeps in flight, at most
/// (and at least two items per worker): the window in items alone
/// (65,536 on 2 workers) held an endless input of 50 MB items until
/// memory ran out, and, behind a slow reader, as many 50 MB results.
const BYTES_IN_FLIGHT: usize = 256 << 20;

/// Items encoded so far and their bytes.
#[derive(Default)]
struct Average {
    items: usize,
    bytes: usize,
}

impl Average {
    /// An item's encoded size so far (1 before any).
    fn item_bytes(&self) -> usize {
        self.bytes.checked_div(self.items).unwrap_or(1).max(1)
    }

    /// Counts `items` replies of `bytes` in all.
    fn note(&mut self, (items, bytes): (usize, usize)) {
        self.items += items;
        self.bytes += bytes;
    }
}

impl<T: Serialize, R, I: Iterator<Item = T>> Feed<T, R, I> {
    /// With `in_flight` items out, pulls and submits more once a sixteenth
    /// of the window is free; the new items' ids. Small batches hold the
    /// store's lock briefly: a batch of half the window (32,768 items on 2
    /// workers) held it for most of a millisecond while the pool's thread
    /// waited to hand out chunks (`Pool::map` of 1 M no-ops, two builds in
    /// turns: 13.1-16.6 M items/s before, 13.8-17.5 M after). Awaited, a
    /// sixteenth at most: the first fill, once the first result gave the
    /// items' size, took the whole window at once, and held the
    /// executor's thread 0.8-1.8 ms.
    fn refill(&mut self, in_flight: usize, awaited: bool) -> Result<Range<u64>, TaskError> {
        let shared = &self.pool.shared;
        let item_bytes = self.encoded.item_bytes().max(self.results.item_bytes());
        let least = 2 * shared.workers;
        let mut window = shared
            .window()
            .min((BYTES_IN_FLIGHT / item_bytes).max(least));
        if self.results.items == 0 {
            // How large a result is, nobody knows before the first: the
            // items out meanwhile will all make theirs.
            window = window.min(least);
        }
        if self.exhausted || in_flight > window - window / 16 {
            return Ok(0..0);
        }
        // Before the sizes are known, the bytes bound this refill too.
        let room = BYTES_IN_FLIGHT.saturating_sub(in_flight.saturating_mul(item_bytes));
        let batch = match awaited {
            true => (window - in_flight).min((window / 16).max(least)),
            false => window - in_flight,
        };
        let mut inputs = Encoded::default();
        while inputs.len() < batch && (inputs.len() == 0 || inputs.bytes() < room) {
            let Some(item) = self.items.next() else {
                self.exhausted = true;
                break;
            };
            inputs.push_or_fail(&item);
        }
        self.encoded.items += inputs.len();
        self.encoded.bytes += inputs.bytes();
        if inputs.len() == 0 {
            return Ok(0..0);
        }
        let n = inputs.len() as u64;
        let first = self
            .pool
            .submit_items(self.call, inputs, Some(self.stream))
            .map_err(|e| TaskError::Lost(e.to_string()))?;
        Ok(first..first + n)
    }
}

/// `Pool.imap`: results in input order.
pub struct Imap<T, R, I> {
    feed: Feed<T, R, I>,
    in_flight: VecDeque<u64>,
    /// Results already taken from the pool, in order, not yet yielded:
    /// once the first in line is settled, every settled one after it is
    /// taken under the same lock (one lock per run, not two per item).
    taken: Taken,
    /// The next result, being decoded off an executor's thread.
    offloaded: Option<Offloaded>,
}

impl<T, R, I> Imap<T, R, I>
where
    T: Serialize,
    R: DeserializeOwned,
    I: Iterator<Item = T>,
{
    pub(super) fn new(pool: Pool, call: Call, items: I) -> Self {
        let stream = pool.new_stream(false);
        Imap {
            feed: Feed {
                pool,
                call,
                items,
                stream,
                exhausted: false,
                encoded: Average::default(),
                results: Average::default(),
                _types: PhantomData,
            },
            in_flight: VecDeque::new(),
            taken: Taken::default(),
            offloaded: None,
        }
    }
}

impl<T, R, I> Iterator for Imap<T, R, I>
where
    T: Serialize,
    R: DeserializeOwned,
    I: Iterator<Item = T>,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_until(None) {
            Ok(item) => item,
            Err(e) => Some(Err(lost(e))),
        }
    }
}

impl<T, R, I> Imap<T, R, I>
where
    T: Serialize,
    R: DeserializeOwned,
    I: Iterator<Item = T>,
{
    /// `IMapIterator.next(timeout)`: the next result in order, waiting at
    /// most `timeout`; `Err(PoolError::Timeout)` leaves it for the next call.
    pub fn next_timeout(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Option<Result<R, TaskError>>, PoolError> {
        self.next_until(Some(std::time::Instant::now() + timeout))
    }

    /// Every remaining result, in order, given to `f` (what `map`
    /// collects): each run taken from the pool is decoded in one loop,
    /// not handed out through `next` one item at a time (in a debug
    /// build, that hand-out cost more than the decoding).
    pub(super) fn for_each_result(&mut self, mut f: impl FnMut(Result<R, TaskError>)) {
        // What a dropped future left comes before what was taken after it.
        if self.offloaded.is_some() {
            if let Poll::Ready(Some(left)) = self.try_next(None) {
                f(left);
            }
        }
        loop {
            self.taken.drain_decoded(&mut f);
            match self.next_until(None) {
                Ok(Some(result)) => f(result),
                Ok(None) => return,
                Err(e) => f(Err(lost(e))),
            }
        }
    }

    /// The next result in order, waiting until `deadline` (`None`: for
    /// good): [`try_next`](Self::try_next), then a wait for the pool's
    /// thread to settle the item in line, until it is there.
    fn next_until(
        &mut self,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<Result<R, TaskError>>, PoolError> {
        loop {
            if let Poll::Ready(next) = self.try_next(None) {
                return Ok(next);
            }
            let Some(&id) = self.in_flight.front() else {
                return Ok(None);
            };
            match self.feed.pool.pump(deadline, |store| store.is_settled(id)) {
                Err(PoolError::Timeout) => return Err(PoolError::Timeout),
                // The next try takes it, or says the pool stopped.
                Ok(()) | Err(PoolError::Stopped(_)) => {}
                Err(e) => {
                    self.in_flight.pop_front();
                    return Ok(Some(Err(lost(e))));
                }
            }
        }
    }
}

impl<T, R, I> NextResult<R> for Imap<T, R, I>
where
    T: Serialize,
    I: Iterator<Item = T>,
{
    fn offloaded(&mut self) -> &mut Option<Offloaded> {
        &mut self.offloaded
    }

    fn taken(&mut self) -> &mut Taken {
        &mut self.taken
    }

    /// The next result in order if it is there (and, with the pool
    /// stopped, the item in line's loss); otherwise `waker`, if any, is
    /// left with the pool's thread, which wakes it once it is (or the pool
    /// stops). Takes nothing when pending.
    fn try_next_settled(&mut self, waker: Option<&Waker>) -> Poll<Option<Option<Settled>>> {
        if let Some(settled) = self.taken.pop_front() {
            return Poll::Ready(Some(settled));
        }
        match self.feed.refill(self.in_flight.len(), waker.is_some()) {
            Ok(ids) => self.in_flight.extend(ids),
            Err(e) => return Poll::Ready(Some(Some(Err(Box::new(e))))),
        }
        let Some(&id) = self.in_flight.front() else {
            return Poll::Ready(None);
        };
        let mut state = self.feed.pool.state();
        if state.store.is_settled(id) {
            // Every settled one after it too, under the same lock (awaited:
            // a bounded run, so that one poll stays short).
            let max_run = match waker {
                Some(_) => super::store::MAX_AWAITED_RUN,
                None => usize::MAX,
            };
            state
                .store
                .take_run(&mut self.in_flight, id, &mut self.taken, max_run);
            self.feed.pool.wake_if_released(state);
            // (Only these: it was empty.)
            self.feed.results.note(self.taken.reply_sizes());
            return Poll::Ready(self.taken.pop_front());
        }
        if let Some(why) = &state.stopped {
            let stopped = PoolError::Stopped(why.clone());
            drop(state);
            self.in_flight.pop_front();
            return Poll::Ready(Some(Some(Err(Box::new(lost(stopped))))));
        }
        if let Some(waker) = waker {
            wait_for(&mut state, Awaited::Item(id), waker);
        }
        Poll::Pending
    }
}

impl<T, R, I> Drop for Imap<T, R, I> {
    fn drop(&mut self) {
        let mut state = self.feed.pool.state();
        state.store.abandon_all(self.in_flight.iter().copied());
        state.store.close_stream(self.feed.stream);
    }
}

/// `Pool.imap_unordered`: results as items finish.
pub struct ImapUnordered<T, R, I> {
    feed: Feed<T, R, I>,
    in_flight: usize,
    /// Results already taken from the pool, in order of arrival, not yet
    /// yielded: every one settled is taken under the same lock.
    taken: Taken,
    /// The next result, being decoded off an executor's thread.
    offloaded: Option<Offloaded>,
}

impl<T, R, I> ImapUnordered<T, R, I>
where
    T: Serialize,
    R: DeserializeOwned,
    I: Iterator<Item = T>,
{
    pub(super) fn new(pool: Pool, call: Call, items: I) -> Self {
        let stream = pool.new_stream(true);
        ImapUnordered {
            feed: Feed {
                pool,
                call,
                items,
                stream,
                exhausted: false,
                encoded: Average::default(),
                results: Average::default(),
                _types: PhantomData,
            },
            in_flight: 0,
            taken: Taken::default(),
            offloaded: None,
        }
    }
}

impl<T, R, I> Iterator for ImapUnordered<T, R, I>
where
    T: Serialize,
    R: DeserializeOwned,
    I: Iterator<Item = T>,
{
    type Item = Result<R, TaskError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.next_until(None) {
            Ok(item) => item,
            Err(e) => Some(Err(lost(e))),
        }
    }
}

impl<T, R, I> ImapUnordered<T, R, I>
where
    T: Serialize,
    R: DeserializeOwned,
    I: Iterator<Item = T>,
{
    /// The next result to finish, waiting at most `timeout`;
    /// `Err(PoolError::Timeout)` if none did by then.
    pub fn next_timeout(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Option<Result<R, TaskError>>, PoolError> {
        self.next_until(Some(std::time::Instant::now() + timeout))
    }

    /// The next result to finish, waiting until `deadline` (`None`: for
    /// good): [`try_next`](Self::try_next), then a wait for the pool's
    /// thread to settle one of this map's items, until one is there.
    fn next_until(
        &mut self,
        deadline: Option<std::time::Instant>,
    ) -> Result<Option<Result<R, TaskError>>, PoolError> {
        let stream = self.feed.stream;
        loop {
            if let Poll::Ready(next) = self.try_next(None) {
                return Ok(next);
            }
            match self
                .feed
                .pool
                .pump(deadline, |store| store.peek_stream(stream).is_some())
            {
                Err(PoolError::Timeout) => return Err(PoolError::Timeout),
                // The next try takes it, or says the pool stopped.
                Ok(()) | Err(PoolError::Stopped(_)) => {}
                Err(e) => {
                    self.in_flight -= 1;
                    return Ok(Some(Err(lost(e))));
                }
            }
        }
    }
}

impl<T, R, I> NextResult<R> for ImapUnordered<T, R, I>
where
    T: Serialize,
    I: Iterator<Item = T>,
{
    fn offloaded(&mut self) -> &mut Option<Offloaded> {
        &mut self.offloaded
    }

    fn taken(&mut self) -> &mut Taken {
        &mut self.taken
    }

    /// The next result to finish if one has (and, with the pool stopped,
    /// an item's loss); otherwise `waker`, if any, is left with the pool's
    /// thread, which wakes it once one does (or the pool stops). Takes
    /// nothing when pending.
    fn try_next_settled(&mut self, waker: Option<&Waker>) -> Poll<Option<Option<Settled>>> {
        if let Some(settled) = self.taken.pop_front() {
            return Poll::Ready(Some(settled));
        }
        match self.feed.refill(self.in_flight, waker.is_some()) {
            Ok(ids) => self.in_flight += (ids.end - ids.start) as usize,
            Err(e) => return Poll::Ready(Some(Some(Err(Box::new(e))))),
        }
        if self.in_flight == 0 {
            return Poll::Ready(None);
        }
        let mut state = self.feed.pool.state();
        // Every one settled, under one lock (awaited: a bounded run, so
        // that one poll stays short).
        let max_run = match waker {
            Some(_) => super::store::MAX_AWAITED_RUN,
            None => usize::MAX,
        };
        let taken = state
            .store
            .take_finished(self.feed.stream, &mut self.taken, max_run);
        if taken > 0 {
            self.in_flight -= taken;
            self.feed.pool.wake_if_released(state);
            // (Only these: it was empty.)
            self.feed.results.note(self.taken.reply_sizes());
            return Poll::Ready(self.taken.pop_front());
        }
        if let Some(why) = &state.stopped {
            let stopped = PoolError::Stopped(why.clone());
            drop(state);
            self.in_flight -= 1;
            return Poll::Ready(Some(Some(Err(Box::new(lost(stopped))))));
        }
        if let Some(waker) = waker {
            wait_for(&mut state, Awaited::Stream(self.feed.stream), waker);
        }
        Poll::Pending
    }
}

impl<T, R, I> Drop for ImapUnordered<T, R, I> {
    fn drop(&mut self) {
        self.feed.pool.state().store.close_stream(self.feed.stream);
    }
}

fn lost(e: PoolError) -> TaskError {
    match e {
        PoolError::Task { error, .. } => error,
        other => TaskError::Lost(other.to_string()),
    }
}
