//! The task ledger: at every instant, which tasks wait, which worker holds
//! which, which are done and which are dead letters.
//!
//! Guarantees, whatever happens to workers:
//! * a task is held by at most one worker at a time, and only results from
//!   the worker holding it are accepted, so each task id is counted once;
//! * when a worker is lost, every task it held goes back to the queue with
//!   `attempt + 1`, ahead of tasks never dispatched;
//! * a task that has *failed* `max_attempts` times (its worker died or hung
//!   while running it, or it returned an error) becomes a dead letter and is
//!   not retried. Tasks that were merely held by a dying worker are re-queued
//!   without blame, so one bad task cannot take its neighbours down with it.

use std::collections::VecDeque;

use crate::holdings::Holdings;
use crate::id_hash::IdMap;

use crate::settled::Settled;

/// Identifies one worker process for its whole life (never reused).
pub type WorkerId = u64;

/// A task handed out: its id and which dispatch of it this is (1 = first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    pub id: u64,
    pub attempt: u32,
}

/// A task given up on.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    pub task: u64,
    pub failures: u32,
    /// What happened the last time, e.g. `worker killed by SIGABRT`.
    pub last_cause: String,
    /// Exit code of the last worker it killed, Python style (-6 for SIGABRT).
    pub exit_code: Option<i32>,
    /// What the task was, when its job says (an exec job's input line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
}

/// What a result from a worker amounted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// First result for this task: count it.
    Counted,
    /// This worker does not hold the task (a protocol violation).
    NotHeld,
}

/// Why a held task is being given back.
#[derive(Clone, Debug)]
pub struct Failure {
    pub cause: String,
    pub exit_code: Option<i32>,
    /// An input or output over the cap (a final failure).
    pub oversize: Option<outlast_worker::work::Oversize>,
}

/// What releasing a lost worker's tasks did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Released {
    pub requeued: usize,
    pub dead: Vec<u64>,
}

/// The ledger itself.
#[derive(Debug)]
pub struct Ledger {
    total: u64,
    max_attempts: u32,
    /// Ids at or above this were never dispatched.
    next_fresh: u64,
    /// Re-queued tasks with their next attempt number, dispatched first.
    retry: VecDeque<Lease>,
    held: Holdings,
    /// Done or dead: a task is counted once, whatever comes back later.
    settled: Settled,
    done_count: u64,
    failures: IdMap<u64, u32>,
    dead: Vec<DeadLetter>,
    requeued_total: u64,
    /// Tasks settled before the run started (read back from a journal),
    /// and how many of them were done (the rest are dead letters).
    resumed: u64,
    resumed_done: u64,
}

impl Ledger {
    pub fn new(total: u64, max_attempts: u32) -> Self {
        Ledger {
            total,
            max_attempts: max_attempts.max(1),
            next_fresh: 0,
            retry: VecDeque::new(),
            held: Holdings::default(),
            settled: Settled::default(),
            done_count: 0,
            failures: IdMap::default(),
            dead: Vec::new(),
            requeued_total: 0,
            resumed: 0,
            resumed_done: 0,
        }
    }

    /// Task `id` was done before this run (a journal says so): it is
    /// counted and never handed out. False if unknown or settled already.
    pub fn resume_done(&mut self, id: u64) -> bool {
        if id >= self.total || !self.settled.insert(id) {
            return false;
        }
        self.done_count += 1;
        self.resumed += 1;
        self.resumed_done += 1;
        true
    }

    /// Task `dead.task` was given up on before this run: a dead letter of
    /// this one, never handed out. False if unknown or settled already.
    pub fn resume_dead(&mut self, dead: DeadLetter) -> bool {
        if dead.task >= self.total || !self.settled.insert(dead.task) {
            return false;
        }
        self.resumed += 1;
        self.dead.push(dead);
        true
    }

    /// Whether task `id` is done or dead.
    pub fn is_settled(&self, id: u64) -> bool {
        self.settled.contains(id)
    }

    /// Tasks settled before this run started.
    pub fn resumed(&self) -> u64 {
        self.resumed
    }

    /// Of those, the ones done.
    pub fn done_resumed(&self) -> u64 {
        self.resumed_done
    }

    /// The attempt `worker` holds task `id` in.
    pub fn attempt_of(&self, worker: WorkerId, id: u64) -> Option<u32> {
        let held = self.held.get(worker)?;
        // Results come back in dispatch order: nearly always the front.
        match held.front() {
            Some(first) if first.id == id => Some(first.attempt),
            _ => held.iter().find(|l| l.id == id).map(|l| l.attempt),
        }
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    pub fn done(&self) -> u64 {
        self.done_count
    }

    pub fn dead_letters(&self) -> &[DeadLetter] {
        &self.dead
    }

    /// Task `id` already failed `n` times elsewhere (another host's worker,
    /// as the broker's delivery count says): its attempts go on from there.
    pub fn set_prior_failures(&mut self, id: u64, n: u32) {
        if n > 0 {
            self.failures.insert(id, n);
        }
    }

    /// Says what dead letter `task` was.
    pub fn describe_dead(&mut self, task: u64, input: String) {
        if let Some(dead) = self.dead.iter_mut().rev().find(|d| d.task == task) {
            dead.input = Some(input);
        }
    }

    /// Tasks neither done nor dead.
    pub fn remaining(&self) -> u64 {
        self.total - self.done_count - self.dead.len() as u64
    }

    /// How many times tasks went back to the queue.
    pub fn requeued(&self) -> u64 {
        self.requeued_total
    }

    /// Every task is done or dead.
    pub fn is_finished(&self) -> bool {
        self.remaining() == 0
    }

    pub fn held_by(&self, worker: WorkerId) -> usize {
        self.held.get(worker).map_or(0, VecDeque::len)
    }

    /// Whether `worker` holds task `id` now.
    pub fn holds(&self, worker: WorkerId, id: u64) -> bool {
        self.held
            .get(worker)
            .is_some_and(|held| held.iter().any(|l| l.id == id))
    }

    /// Hands up to `n` tasks to `worker`: re-queued ones first, then fresh ones.
    pub fn take(&mut self, worker: WorkerId, n: usize) -> Vec<Lease> {
        let mut leases = Vec::with_capacity(n.min(4096));
        while leases.len() < n {
            if let Some(lease) = self.retry.pop_front() {
                leases.push(lease);
            } else if self.next_fresh < self.total {
                if self.settled.contains(self.next_fresh) {
                    // Settled before this run (resumed from a journal).
                    self.next_fresh += 1;
                    continue;
                }
                leases.push(Lease {
                    id: self.next_fresh,
                    attempt: 1,
                });
                self.next_fresh += 1;
            } else {
                break;
            }
        }
        if !leases.is_empty() {
            self.held.entry(worker).extend(&leases);
        }
        leases
    }

    /// Takes back tasks that never reached the worker (the send did not
    /// start): they keep their attempt number and go to the front.
    pub fn untake(&mut self, worker: WorkerId, leases: &[Lease]) {
        if let Some(held) = self.held.get_mut(worker) {
            held.retain(|h| !leases.iter().any(|l| l.id == h.id));
        }
        for lease in leases.iter().rev() {
            self.retry.push_front(*lease);
        }
    }

    /// Removes `id` from what `worker` holds; its lease if it was there.
    fn unhold(&mut self, worker: WorkerId, id: u64) -> Option<Lease> {
        let held = self.held.get_mut(worker)?;
        // Results come back in dispatch order, so this is nearly always the front.
        if held.front().is_some_and(|first| first.id == id) {
            return held.pop_front();
        }
        let at = held.iter().position(|l| l.id == id)?;
        held.remove(at)
    }

    /// A result for `id` from `worker`.
    pub fn complete(&mut self, worker: WorkerId, id: u64) -> Completion {
        if self.unhold(worker, id).is_none() {
            return Completion::NotHeld;
        }
        // A held task is never settled: leases are unique. Guard anyway.
        if id < self.total && self.settled.insert(id) {
            self.done_count += 1;
        }
        // (Nearly always empty: no hashing then.)
        if !self.failures.is_empty() {
            self.failures.remove(&id);
        }
        Completion::Counted
    }

    /// The task `id` held by `worker` failed (it returned an error, or its
    /// output was unusable): retried, or a dead letter. `None` if not held.
    pub fn fail(&mut self, worker: WorkerId, id: u64, failure: &Failure) -> Option<Released> {
        let lease = self.unhold(worker, id)?;
        let mut released = Released::default();
        self.blame(lease, failure, &mut released);
        Some(released)
    }

    /// The task `id` held by `worker` can never succeed: a dead letter now,
    /// whatever its attempts. `None` if not held.
    pub fn give_up(&mut self, worker: WorkerId, id: u64, failure: &Failure) -> Option<Released> {
        let lease = self.unhold(worker, id)?;
        let failures = self.failures.remove(&id).unwrap_or(0) + 1;
        self.settled.insert(id);
        self.dead.push(DeadLetter {
            task: id,
            failures,
            last_cause: failure.cause.clone(),
            exit_code: failure.exit_code,
            input: None,
        });
        let _ = lease;
        Some(Released {
            requeued: 0,
            dead: vec![id],
        })
    }

    /// More tasks: ids `total..total + n`, after every task known so far.
    /// Returns the first new id.
    pub fn extend(&mut self, n: u64) -> u64 {
        let first = self.total;
        self.total = self.total.saturating_add(n);
        first
    }

    /// `worker` is gone: its tasks go back to the queue; `blamed` (the task it
    /// was running when it died or hung) is charged a failure.
    pub fn release(
        &mut self,
        worker: WorkerId,
        blamed: Option<u64>,
        failure: &Failure,
    ) -> Released {
        let mut released = Released::default();
        let held = self.held.remove(worker).unwrap_or_default();
        // Behind earlier retries, in dispatch order, so no retry starves.
        for lease in held {
            if Some(lease.id) == blamed {
                self.blame(lease, failure, &mut released);
            } else {
                self.requeue(lease, &mut released);
            }
        }
        released
    }

    fn blame(&mut self, lease: Lease, failure: &Failure, released: &mut Released) {
        let failures = self.failures.entry(lease.id).or_insert(0);
        *failures += 1;
        if *failures >= self.max_attempts {
            let failures = *failures;
            self.failures.remove(&lease.id);
            self.settled.insert(lease.id);
            self.dead.push(DeadLetter {
                task: lease.id,
                failures,
                last_cause: failure.cause.clone(),
                exit_code: failure.exit_code,
                input: None,
            });
            released.dead.push(lease.id);
        } else {
            self.requeue(lease, released);
        }
    }

    fn requeue(&mut self, lease: Lease, released: &mut Released) {
        self.retry.push_back(Lease {
            id: lease.id,
            attempt: lease.attempt.saturating_add(1),
        });
        self.requeued_total += 1;
        released.requeued += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure() -> Failure {
        Failure {
            oversize: None,
            cause: "killed by SIGKILL".into(),
            exit_code: Some(-9),
        }
    }

    #[test]
    fn a_ledger_for_billions_of_tasks_starts_at_once() {
        // The done set grows with what is in flight, not with the total
        // (a bit per task would want 2^59 bytes here).
        let mut ledger = Ledger::new(1 << 62, 3);
        let leases = ledger.take(1, 1000);
        for lease in leases.iter().rev() {
            assert_eq!(ledger.complete(1, lease.id), Completion::Counted);
        }
        assert_eq!(ledger.done(), 1000);
        assert_eq!(ledger.remaining(), (1 << 62) - 1000);
    }

    #[test]
    fn results_count_once_and_only_from_the_holder() {
        let mut ledger = Ledger::new(4, 3);
        let a = ledger.take(1, 2);
        assert_eq!(a.iter().map(|l| l.id).collect::<Vec<_>>(), [0, 1]);
        assert_eq!(ledger.complete(2, 0), Completion::NotHeld);
        assert_eq!(ledger.complete(1, 0), Completion::Counted);
        assert_eq!(ledger.complete(1, 0), Completion::NotHeld);
        assert_eq!(ledger.done(), 1);
    }

    #[test]
    fn a_lost_worker_gives_its_tasks_back_with_one_more_attempt() {
        let mut ledger = Ledger::new(5, 3);
        ledger.take(1, 3);
        let released = ledger.release(1, Some(1), &failure());
        assert_eq!(
            released,
            Released {
                requeued: 3,
                dead: vec![]
            }
        );
        let again = ledger.take(2, 10);
        assert_eq!(
            again,
            [
                Lease { id: 0, attempt: 2 },
                Lease { id: 1, attempt: 2 },
                Lease { id: 2, attempt: 2 },
                Lease { id: 3, attempt: 1 },
                Lease { id: 4, attempt: 1 },
            ]
        );
        for id in 0..5 {
            assert_eq!(ledger.complete(2, id), Completion::Counted);
        }
        assert!(ledger.is_finished());
        assert_eq!(ledger.requeued(), 3);
    }

    #[test]
    fn only_the_blamed_task_becomes_a_dead_letter() {
        let mut ledger = Ledger::new(3, 2);
        for worker in 1..=2 {
            ledger.take(worker, 3);
            ledger.release(worker, Some(1), &failure());
        }
        assert_eq!(ledger.dead_letters().len(), 1);
        assert_eq!(ledger.dead_letters()[0].task, 1);
        assert_eq!(ledger.dead_letters()[0].failures, 2);
        let rest = ledger.take(3, 10);
        assert_eq!(rest.iter().map(|l| l.id).collect::<Vec<_>>(), [0, 2]);
        ledger.complete(3, 0);
        ledger.complete(3, 2);
        assert!(ledger.is_finished());
        assert_eq!(ledger.remaining(), 0);
        assert_eq!(ledger.done(), 2);
    }

    #[test]
    fn untaken_tasks_keep_their_attempt_and_come_first() {
        let mut ledger = Ledger::new(3, 3);
        let leases = ledger.take(1, 2);
        ledger.untake(1, &leases);
        assert_eq!(ledger.held_by(1), 0);
        assert_eq!(ledger.take(2, 1), [Lease { id: 0, attempt: 1 }]);
    }

    #[test]
    fn resumed_tasks_are_counted_and_never_handed_out() {
        let mut ledger = Ledger::new(6, 3);
        assert!(ledger.resume_done(1));
        assert!(ledger.resume_done(2));
        assert!(!ledger.resume_done(2), "settled twice");
        assert!(!ledger.resume_done(6), "not a task");
        assert!(ledger.resume_dead(DeadLetter {
            task: 4,
            failures: 3,
            last_cause: "exited with code 1".into(),
            exit_code: None,
            input: None,
        }));
        assert_eq!(ledger.resumed(), 3);
        let ids: Vec<u64> = ledger.take(1, 10).iter().map(|l| l.id).collect();
        assert_eq!(ids, [0, 3, 5]);
        for id in ids {
            ledger.complete(1, id);
        }
        assert!(ledger.is_finished());
        assert_eq!(ledger.done(), 5);
        assert_eq!(ledger.dead_letters().len(), 1);
    }

    #[test]
    fn a_task_error_is_retried_then_dead() {
        let mut ledger = Ledger::new(1, 2);
        ledger.take(1, 1);
        assert_eq!(ledger.fail(1, 0, &failure()).map(|r| r.requeued), Some(1));
        ledger.take(1, 1);
        assert_eq!(ledger.fail(1, 0, &failure()).map(|r| r.dead), Some(vec![0]));
        assert!(ledger.is_finished());
        assert_eq!(ledger.done(), 0);
    }
}
