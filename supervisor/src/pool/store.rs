//! The pool's side of the engine: inputs waiting for a worker (kept until
//! their item is settled, for retries) and results waiting for their
//! handle. [`PoolWork`] is what the engine calls; the pool's handles read
//! the same [`Store`].

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;

use worker::job::JobOutcome;
use worker::work::{GaveUp, Work};

use super::error::TaskError;

/// A result: the encoded reply, or why there is none.
pub(crate) type Settled = Result<Vec<u8>, TaskError>;

/// One item, from submission until its result is taken or abandoned.
#[derive(Default)]
struct Entry {
    /// Until settled (kept for retries).
    input: Option<Vec<u8>>,
    /// Settled and not yet taken.
    result: Option<Settled>,
    settled: bool,
    /// Its handle is gone: its result is dropped on arrival.
    abandoned: bool,
    /// The unordered stream it belongs to.
    group: Option<u64>,
}

/// Where the inputs and results of a pool's items live: a deque indexed
/// by item id (ids are handed out in order), trimmed at the front as
/// items are consumed, so every operation is O(1).
#[derive(Default)]
pub(crate) struct Store {
    /// The id of `entries[0]`.
    base: u64,
    entries: VecDeque<Entry>,
    /// Items not settled yet.
    pending: usize,
    /// Each unordered stream's settled items in order of arrival.
    finished: HashMap<u64, VecDeque<u64>>,
    /// Every item settled while someone reads this log (`as_completed`).
    pub(crate) log: Vec<u64>,
    pub(crate) log_readers: usize,
    pub(crate) done: u64,
}

impl Store {
    fn entry(&self, id: u64) -> Option<&Entry> {
        self.entries.get(usize::try_from(id.checked_sub(self.base)?).ok()?)
    }

    fn entry_mut(&mut self, id: u64) -> Option<&mut Entry> {
        let at = usize::try_from(id.checked_sub(self.base)?).ok()?;
        self.entries.get_mut(at)
    }

    /// Drops consumed items from the front.
    fn compact(&mut self) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.settled && e.result.is_none())
        {
            self.entries.pop_front();
            self.base += 1;
        }
    }

    pub(crate) fn put_input(&mut self, id: u64, input: Vec<u8>) {
        if self.entries.is_empty() {
            self.base = id;
        }
        let Some(at) = id.checked_sub(self.base).and_then(|a| usize::try_from(a).ok()) else {
            return;
        };
        while self.entries.len() <= at {
            // Ids skipped (none are, but a gap must not shift the rest):
            // settled with nothing to take.
            self.entries.push_back(Entry {
                settled: true,
                ..Entry::default()
            });
        }
        let entry = &mut self.entries[at];
        *entry = Entry {
            input: Some(input),
            ..Entry::default()
        };
        self.pending += 1;
    }

    /// Puts item `id` in `group` (an unordered stream).
    pub(crate) fn join_group(&mut self, id: u64, group: u64) {
        if let Some(entry) = self.entry_mut(id) {
            entry.group = Some(group);
        }
    }

    /// Whether `id` has a result waiting.
    pub(crate) fn is_settled(&self, id: u64) -> bool {
        self.entry(id).is_some_and(|e| e.result.is_some())
    }

    pub(crate) fn result(&self, id: u64) -> Option<&Settled> {
        self.entry(id)?.result.as_ref()
    }

    pub(crate) fn take(&mut self, id: u64) -> Option<Settled> {
        let taken = self.entry_mut(id)?.result.take();
        self.compact();
        taken
    }

    /// The next settled item of `group`.
    pub(crate) fn next_of_group(&mut self, group: u64) -> Option<u64> {
        self.finished.get_mut(&group)?.pop_front()
    }

    /// The next settled item of `group`, left in place.
    pub(crate) fn peek_group(&self, group: u64) -> Option<u64> {
        self.finished.get(&group)?.front().copied()
    }

    /// Nobody will read the results of `group`'s items.
    pub(crate) fn abandon_group(&mut self, group: u64) {
        if let Some(done) = self.finished.remove(&group) {
            for id in done {
                self.abandon(id);
            }
        }
        for entry in self.entries.iter_mut() {
            if entry.group == Some(group) && !entry.settled {
                entry.abandoned = true;
                entry.group = None;
            }
        }
    }

    /// Nobody will read `id`'s result.
    pub(crate) fn abandon(&mut self, id: u64) {
        if let Some(entry) = self.entry_mut(id) {
            entry.abandoned = true;
            entry.result = None;
        }
        self.compact();
    }

    /// Items submitted and not yet settled.
    pub(crate) fn unsettled(&self) -> usize {
        self.pending
    }

    fn input(&self, id: u64) -> Option<&[u8]> {
        self.entry(id)?.input.as_deref()
    }

    fn settle(&mut self, id: u64, result: Settled) {
        let Some(entry) = self.entry_mut(id) else {
            return;
        };
        if entry.input.take().is_none() {
            return;
        }
        entry.settled = true;
        let group = entry.group.take();
        if !entry.abandoned {
            entry.result = Some(result);
        }
        self.pending -= 1;
        self.done += 1;
        if self.log_readers > 0 {
            self.log.push(id);
        }
        if let Some(group) = group {
            self.finished.entry(group).or_default().push_back(id);
        }
        self.compact();
    }

    /// Every item still unsettled fails with `why` (the engine stopped).
    pub(crate) fn lose_all(&mut self, why: &str) {
        let ids: Vec<u64> = (self.base..)
            .zip(self.entries.iter())
            .filter(|(_, e)| e.input.is_some())
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            self.settle(id, Err(TaskError::Lost(why.to_string())));
        }
    }
}

/// The engine's view of a pool: [`Work`] over the shared [`Store`].
pub(crate) struct PoolWork {
    pub(crate) store: Rc<RefCell<Store>>,
    pub(crate) workers: u32,
}

impl Work for PoolWork {
    fn name(&self) -> String {
        "pool".into()
    }

    fn describe(&self) -> String {
        format!("a pool of {} workers", self.workers)
    }

    fn task_count(&self) -> u64 {
        0
    }

    fn input(&mut self, id: u64, out: &mut Vec<u8>) -> Result<(), String> {
        match self.store.borrow().input(id) {
            Some(input) => {
                out.extend_from_slice(input);
                Ok(())
            }
            None => Err(format!("item {id} has no input")),
        }
    }

    fn input_size_hint(&mut self) -> usize {
        0
    }

    fn accept(&mut self, id: u64, output: &[u8]) -> Result<(), String> {
        self.store.borrow_mut().settle(id, Ok(output.to_vec()));
        Ok(())
    }

    fn gave_up(&mut self, id: u64, why: &GaveUp) {
        let error = TaskError::WorkerDied {
            attempts: why.failures,
            cause: why.last_cause.clone(),
            exit_code: why.exit_code,
        };
        self.store.borrow_mut().settle(id, Err(error));
    }

    fn outcome(&self, _complete: bool) -> JobOutcome {
        JobOutcome::value(self.store.borrow().done)
    }
}
