//! The broker's tasks as the local engine sees them. Entries read from the
//! stream (or claimed from a dead host) wait in an inbox until the engine
//! tops up; each gets a local task id, and the engine's ledger, restart
//! policy and heartbeats treat it as any task. A result or a dead letter
//! goes to the outbox, which the broker loop stores and acks in batches.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::rc::Rc;

use outlast_worker::job::JobOutcome;
use outlast_worker::work::{GaveUp, Refused, Work};

/// A stream entry this supervisor holds.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub stream_id: String,
    pub task: u64,
    /// Deliveries so far, this one included (1 the first time).
    pub deliveries: u32,
}

/// What goes back to the broker.
#[derive(Clone, Debug)]
pub(crate) enum Outgoing {
    Result {
        stream_id: String,
        task: u64,
        output: Vec<u8>,
    },
    Dead {
        stream_id: String,
        task: u64,
        failures: u32,
        cause: String,
    },
}

/// What the broker loop and the engine's work share.
#[derive(Default)]
pub(crate) struct Shared {
    pub inbox: VecDeque<Entry>,
    /// Given to the engine, by local id, until settled.
    pub by_local: HashMap<u64, Entry>,
    /// Stream ids held (inbox or engine): a claim of one of them is ours already.
    pub held: HashSet<String>,
    pub next_local: u64,
    pub outbox: Vec<Outgoing>,
    /// Results this host computed (stored or found already stored).
    pub computed: u64,
}

impl Shared {
    /// Takes an entry read or claimed; false if it is held already.
    pub(crate) fn take(&mut self, entry: Entry) -> bool {
        if !self.held.insert(entry.stream_id.clone()) {
            return false;
        }
        self.inbox.push_back(entry);
        true
    }

    /// Entries held now (waiting or with the engine).
    pub(crate) fn holding(&self) -> usize {
        self.inbox.len() + self.by_local.len()
    }

    fn settle(&mut self, local: u64) -> Option<Entry> {
        let entry = self.by_local.remove(&local)?;
        self.held.remove(&entry.stream_id);
        Some(entry)
    }
}

/// The job's work, fed by the broker.
pub(crate) struct BrokerWork {
    pub inner: Box<dyn Work>,
    pub shared: Rc<RefCell<Shared>>,
}

impl BrokerWork {
    fn task_of(&self, local: u64) -> Option<u64> {
        self.shared.borrow().by_local.get(&local).map(|e| e.task)
    }
}

impl Work for BrokerWork {
    fn name(&self) -> String {
        self.inner.name()
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn task_count(&self) -> u64 {
        self.shared.borrow().next_local
    }

    fn input(&mut self, id: u64, out: &mut Vec<u8>) -> Result<(), String> {
        let task = self
            .task_of(id)
            .ok_or("a task the broker work does not hold")?;
        self.inner.input(task, out)
    }

    fn input_len(&mut self, id: u64) -> Option<usize> {
        let task = self.task_of(id)?;
        self.inner.input_len(task)
    }

    fn write_input(&mut self, id: u64, out: &mut dyn std::io::Write) -> Result<(), String> {
        let task = self
            .task_of(id)
            .ok_or("a task the broker work does not hold")?;
        self.inner.write_input(task, out)
    }

    fn input_size_hint(&mut self) -> usize {
        self.inner.input_size_hint()
    }

    fn accept(&mut self, id: u64, output: &[u8]) -> Result<(), Refused> {
        let task = self
            .task_of(id)
            .ok_or("bad output: a result for a task not held")?;
        self.inner.accept(task, output)?;
        let mut shared = self.shared.borrow_mut();
        if let Some(entry) = shared.settle(id) {
            shared.computed += 1;
            shared.outbox.push(Outgoing::Result {
                stream_id: entry.stream_id,
                task,
                output: output.to_vec(),
            });
        }
        Ok(())
    }

    fn describe_task(&self, id: u64) -> Option<String> {
        self.task_of(id).and_then(|t| self.inner.describe_task(t))
    }

    fn gave_up(&mut self, id: u64, why: &GaveUp) {
        let mut shared = self.shared.borrow_mut();
        if let Some(entry) = shared.settle(id) {
            self.inner.gave_up(entry.task, why);
            shared.outbox.push(Outgoing::Dead {
                stream_id: entry.stream_id,
                task: entry.task,
                failures: why.failures,
                cause: why.last_cause.clone(),
            });
        }
    }

    /// This host's share only: never complete, never checked against
    /// the whole job's known answer (`supervisor result` gives that).
    fn outcome(&self, _complete: bool) -> JobOutcome {
        self.inner.outcome(false)
    }

    fn halt(&self) -> Option<outlast_worker::job::Halt> {
        self.inner.halt()
    }

    fn tasks_per_worker(&self) -> Option<usize> {
        self.inner.tasks_per_worker()
    }

    fn top_up(&mut self, first: u64) -> u64 {
        let mut shared = self.shared.borrow_mut();
        let mut next = first;
        let start = next;
        while let Some(entry) = shared.inbox.pop_front() {
            shared.by_local.insert(next, entry);
            next += 1;
        }
        shared.next_local = next;
        next - start
    }

    fn prior_failures(&self, id: u64) -> u32 {
        self.shared
            .borrow()
            .by_local
            .get(&id)
            .map_or(0, |e| e.deliveries.saturating_sub(1))
    }
}
