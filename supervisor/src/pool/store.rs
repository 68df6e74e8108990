//! The pool's side of the engine: inputs waiting for a worker (kept until
//! their item is settled, for retries) and results waiting for their
//! handle. [`PoolWork`] is what the engine calls; the pool's handles read
//! the same [`Store`].

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

use worker::job::JobOutcome;
use worker::work::{GaveUp, Work};

use super::error::TaskError;

/// A result: the encoded reply, or why there is none.
pub(crate) type Settled = Result<Vec<u8>, TaskError>;

/// Where the inputs and results of a pool's items live.
#[derive(Default)]
pub(crate) struct Store {
    inputs: HashMap<u64, Vec<u8>>,
    results: HashMap<u64, Settled>,
    /// Items whose handle is gone: their results are dropped on arrival.
    abandoned: HashSet<u64>,
    /// Items of an unordered stream: their group, and each group's
    /// settled items in order of arrival.
    group_of: HashMap<u64, u64>,
    finished: HashMap<u64, VecDeque<u64>>,
    /// Every item settled while someone reads this log (`as_completed`).
    pub(crate) log: Vec<u64>,
    pub(crate) log_readers: usize,
    pub(crate) done: u64,
}

impl Store {
    pub(crate) fn put_input(&mut self, id: u64, input: Vec<u8>) {
        self.inputs.insert(id, input);
    }

    /// Puts item `id` in `group` (an unordered stream).
    pub(crate) fn join_group(&mut self, id: u64, group: u64) {
        self.group_of.insert(id, group);
    }

    pub(crate) fn is_settled(&self, id: u64) -> bool {
        self.results.contains_key(&id)
    }

    pub(crate) fn result(&self, id: u64) -> Option<&Settled> {
        self.results.get(&id)
    }

    pub(crate) fn take(&mut self, id: u64) -> Option<Settled> {
        self.results.remove(&id)
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
                self.results.remove(&id);
            }
        }
        let members: Vec<u64> = self
            .group_of
            .iter()
            .filter(|(_, g)| **g == group)
            .map(|(id, _)| *id)
            .collect();
        for id in members {
            self.group_of.remove(&id);
            self.abandoned.insert(id);
        }
    }

    /// Nobody will read `id`'s result.
    pub(crate) fn abandon(&mut self, id: u64) {
        if self.results.remove(&id).is_none() {
            self.abandoned.insert(id);
        }
    }

    /// Items whose input is held, not yet settled.
    pub(crate) fn unsettled(&self) -> usize {
        self.inputs.len()
    }

    fn settle(&mut self, id: u64, result: Settled) {
        if self.inputs.remove(&id).is_none() {
            return;
        }
        self.done += 1;
        if self.log_readers > 0 {
            self.log.push(id);
        }
        if let Some(group) = self.group_of.remove(&id) {
            self.finished.entry(group).or_default().push_back(id);
        }
        if self.abandoned.remove(&id) {
            return;
        }
        self.results.insert(id, result);
    }

    /// Every item still unsettled fails with `why` (the engine stopped).
    pub(crate) fn lose_all(&mut self, why: &str) {
        let ids: Vec<u64> = self.inputs.keys().copied().collect();
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
        match self.store.borrow().inputs.get(&id) {
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
