//! [`Imap`] and [`ImapUnordered`]: lazy maps. Items are pulled from the
//! input only to keep a bounded number in flight, so an endless iterator
//! runs in bounded memory; each yields every item's own outcome.

use std::collections::VecDeque;
use std::marker::PhantomData;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::call::Call;
use super::store::Encoded;
use super::{decode, Pool, PoolError, TaskError};

/// Pulls up to `room` items from `items`, submits them; their ids.
fn refill<T: Serialize>(
    pool: &Pool,
    call: Call,
    items: &mut dyn Iterator<Item = T>,
    room: usize,
    group: Option<u64>,
    exhausted: &mut bool,
) -> Result<Vec<u64>, TaskError> {
    let mut inputs = Encoded::default();
    while inputs.len() < room {
        let Some(item) = items.next() else {
            *exhausted = true;
            break;
        };
        inputs.push(&item).map_err(TaskError::Failed)?;
    }
    if inputs.len() == 0 {
        return Ok(Vec::new());
    }
    let n = inputs.len();
    let first = pool
        .submit_items(call, inputs, group)
        .map_err(|e| TaskError::Lost(e.to_string()))?;
    Ok((first..first + n as u64).collect())
}

/// `Pool.imap`: results in input order.
pub struct Imap<T, R, I> {
    pool: Pool,
    call: Call,
    items: I,
    in_flight: VecDeque<u64>,
    exhausted: bool,
    _types: PhantomData<fn(T) -> R>,
}

impl<T, R, I> Imap<T, R, I>
where
    T: Serialize,
    R: DeserializeOwned,
    I: Iterator<Item = T>,
{
    pub(super) fn new(pool: Pool, call: Call, items: I) -> Self {
        Imap {
            pool,
            call,
            items,
            in_flight: VecDeque::new(),
            exhausted: false,
            _types: PhantomData,
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
        let window = self.pool.shared.window();
        if !self.exhausted && self.in_flight.len() <= window / 2 {
            let room = window - self.in_flight.len();
            match refill(
                &self.pool,
                self.call,
                &mut self.items,
                room,
                None,
                &mut self.exhausted,
            ) {
                Ok(ids) => self.in_flight.extend(ids),
                Err(e) => return Some(Err(e)),
            }
        }
        let id = self.in_flight.pop_front()?;
        let outcome = self.pool.pump(None, |store| store.is_settled(id));
        if let Err(e) = outcome {
            return Some(Err(lost(e)));
        }
        let settled = self.pool.shared.store.borrow_mut().take(id);
        Some(decode(settled))
    }
}

impl<T, R, I> Drop for Imap<T, R, I> {
    fn drop(&mut self) {
        if let Ok(mut store) = self.pool.shared.store.try_borrow_mut() {
            for &id in &self.in_flight {
                store.abandon(id);
            }
        }
    }
}

/// `Pool.imap_unordered`: results as items finish.
pub struct ImapUnordered<T, R, I> {
    pool: Pool,
    call: Call,
    items: I,
    group: u64,
    in_flight: usize,
    exhausted: bool,
    _types: PhantomData<fn(T) -> R>,
}

impl<T, R, I> ImapUnordered<T, R, I>
where
    T: Serialize,
    R: DeserializeOwned,
    I: Iterator<Item = T>,
{
    pub(super) fn new(pool: Pool, call: Call, items: I, group: u64) -> Self {
        ImapUnordered {
            pool,
            call,
            items,
            group,
            in_flight: 0,
            exhausted: false,
            _types: PhantomData,
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
        let window = self.pool.shared.window();
        if !self.exhausted && self.in_flight <= window / 2 {
            let room = window - self.in_flight;
            let group = Some(self.group);
            match refill(
                &self.pool,
                self.call,
                &mut self.items,
                room,
                group,
                &mut self.exhausted,
            ) {
                Ok(ids) => self.in_flight += ids.len(),
                Err(e) => return Some(Err(e)),
            }
        }
        if self.in_flight == 0 {
            return None;
        }
        let group = self.group;
        // (pump lends the store; the pop happens below.)
        let outcome = self
            .pool
            .pump(None, |store| store.peek_group(group).is_some());
        if let Err(e) = outcome {
            self.in_flight -= 1;
            return Some(Err(lost(e)));
        }
        let mut store = self.pool.shared.store.borrow_mut();
        let id = store.next_of_group(group)?;
        self.in_flight -= 1;
        let settled = store.take(id);
        drop(store);
        Some(decode(settled))
    }
}

impl<T, R, I> Drop for ImapUnordered<T, R, I> {
    fn drop(&mut self) {
        if let Ok(mut store) = self.pool.shared.store.try_borrow_mut() {
            store.abandon_group(self.group);
        }
    }
}

fn lost(e: PoolError) -> TaskError {
    match e {
        PoolError::Task { error, .. } => error,
        other => TaskError::Lost(other.to_string()),
    }
}
