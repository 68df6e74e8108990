//! The messages between the supervisor and its workers, over each worker's
//! link (two SPSC rings and a doorbell): reading `Ready` and results, and
//! handing out tasks in batches sized to keep each worker busy without
//! flooding its ring.
//!
//! A worker is untrusted: a record that is not a protocol message, a
//! position its ring cannot have, or a result for a task it does not hold
//! gets it killed (and replaced), and each turn takes at most
//! `RECORDS_PER_TURN` records from one worker, so a flood from one cannot
//! keep the supervisor from the others.

use outlast_ipc::spsc::doorbell::Heard;
use outlast_ipc::spsc::TrySendError;
use outlast_worker::protocol::{FromWorker, TaskResult, PROTOCOL_VERSION};

use outlast_worker::numbers::plural;
use outlast_worker::work::GaveUp;

use super::{send_stop, Engine};
use crate::fleet::{Slot, StopReason, Worker};
use crate::kill::KillCause;
use crate::ledger::{Completion, Failure, WorkerId};

/// The most records taken from one worker's results ring in one turn.
const RECORDS_PER_TURN: usize = 64;

impl Engine {
    /// Reads every worker whose doorbell rang, that has records left from
    /// an earlier turn, or whose ring holds records though it did not ring.
    pub(super) fn read_channels(&mut self, rang: &[WorkerId]) {
        for index in 0..self.slots.len() {
            let Slot::Live(w) = &self.slots[index] else {
                continue;
            };
            let due = w.link.is_open()
                && (w.backlog || rang.contains(&w.id) || w.link.results.has_pending());
            if !due {
                continue;
            }
            let Slot::Live(mut w) = std::mem::replace(&mut self.slots[index], Slot::Closed) else {
                continue;
            };
            self.read_worker(&mut w);
            self.slots[index] = Slot::Live(w);
        }
    }

    /// Takes what the worker has sent so far, up to `RECORDS_PER_TURN`
    /// records: first the doorbell's rings (and whether its end is closed),
    /// then, with the bell cleared, the results ring.
    pub(super) fn read_worker(&mut self, w: &mut Worker) {
        if w.killed_because.is_some() {
            return;
        }
        if !w.channel_closed && w.link.doorbell.drain() == Heard::Closed {
            w.channel_closed = true;
        }
        let mut rings = std::mem::take(&mut self.buf);
        // Cleared before draining: a result published after this rings again.
        w.link.heartbeat().clear_bell();
        let mut messages: Vec<Result<FromWorker, String>> = Vec::new();
        let mut bytes = 0u64;
        let taken = w
            .link
            .results
            .drain(RECORDS_PER_TURN, &mut rings, &mut |payload| {
                bytes += payload.len() as u64 + 8;
                messages.push(
                    outlast_ipc::codec::decode_payload::<FromWorker>(payload)
                        .map_err(|e| e.to_string()),
                );
            });
        self.buf = rings;
        match taken {
            Ok(n) => {
                self.traffic.received += n as u64;
                self.traffic.bytes_received += bytes;
                w.backlog = n == RECORDS_PER_TURN;
            }
            Err(e) => {
                w.backlog = false;
                w.kill(KillCause::CorruptedLink(e.to_string()));
            }
        }
        for message in messages {
            if w.killed_because.is_some() {
                break;
            }
            match message {
                Ok(FromWorker::Ready { protocol, .. }) if protocol != PROTOCOL_VERSION => {
                    w.kill(KillCause::ProtocolViolation(format!(
                        "speaks protocol {protocol}, not {PROTOCOL_VERSION}"
                    )));
                }
                Ok(FromWorker::Ready { .. }) => self.on_ready(w),
                Ok(FromWorker::Results(results)) => self.on_results(w, results),
                Err(why) => w.kill(KillCause::SentGarbage(why)),
            }
        }
    }

    pub(super) fn on_ready(&mut self, w: &mut Worker) {
        if w.ready {
            return;
        }
        w.ready = true;
        self.readies += 1;
        if self.readies >= self.workers && self.all_ready_after.is_none() {
            self.all_ready_after = Some(self.started.elapsed());
        }
        if let Some(r) = w.replacing.take() {
            let ms = r.exit_seen.elapsed().as_secs_f64() * 1e3;
            if r.crash && r.backoff.is_zero() {
                self.replacement_ms.push(ms);
            }
            let backoff = if r.backoff.is_zero() {
                String::new()
            } else {
                format!(" (after a {} ms backoff)", r.backoff.as_millis())
            };
            let verb = if r.added { "started as" } else { "replaced by" };
            self.progress.event(&format!(
                "{}; {verb} pid {} in {ms:.1} ms{backoff}",
                r.what_happened, w.pid
            ));
        }
        if self.reloading == Some(w.slot) {
            self.reloading = None;
        }
    }

    pub(super) fn on_results(&mut self, w: &mut Worker, results: Vec<TaskResult>) {
        for result in results {
            if !self.ledger.holds(w.id, result.id) {
                w.kill(KillCause::ProtocolViolation(format!(
                    "sent a result for task {}, which it does not hold",
                    result.id
                )));
                return;
            }
            let failure = match Result::<Vec<u8>, String>::from(result.output) {
                Ok(output) => match self.work.accept(result.id, &output) {
                    Ok(()) => {
                        if self.ledger.complete(w.id, result.id) == Completion::NotHeld {
                            continue;
                        }
                        w.completed += 1;
                        self.crashes_in_a_row[w.slot] = 0;
                        continue;
                    }
                    Err(e) => format!("bad output: {e}"),
                },
                Err(e) => format!("task error: {e}"),
            };
            let failure = Failure {
                cause: failure,
                exit_code: None,
            };
            if let Some(released) = self.ledger.fail(w.id, result.id, &failure) {
                self.gave_up(&released.dead, &failure);
            }
        }
        // It ran dry before hearing from us: hand it more at a time.
        if self.ledger.held_by(w.id) == 0 {
            w.window = (w.window * 2).min(self.max_window);
        }
        if let Some(quota) = w.quota {
            if w.completed >= quota && w.stopping.is_none() {
                send_stop(w, StopReason::Recycle);
            }
        }
    }

    pub(super) fn dispatch(&mut self) {
        let mut dead_now = Vec::new();
        for index in 0..self.slots.len() {
            let Slot::Live(w) = &mut self.slots[index] else {
                continue;
            };
            if !w.ready || w.stopping.is_some() || w.killed_because.is_some() || w.channel_closed {
                continue;
            }
            // (Ready implies an open link: its message was read there.)
            let held = self.ledger.held_by(w.id);
            if held > w.window / 2 {
                continue;
            }
            let mut n = w.window - held;
            if let Some(quota) = w.quota {
                n = n.min(quota.saturating_sub(w.completed + held as u64) as usize);
            }
            if n == 0 {
                continue;
            }
            let leases = self.ledger.take(w.id, n);
            if leases.is_empty() {
                // Nothing left to hand out; what failed above still settles.
                break;
            }
            let mut batch = std::mem::take(&mut self.batch);
            batch.clear();
            let mut failed = Vec::new();
            for l in &leases {
                let work = &mut self.work;
                if let Err(e) = batch.push(l.id, l.attempt, |out| work.input(l.id, out)) {
                    failed.push((l.id, e));
                }
            }
            // (Rare) inputs that failed to encode leave the batch and fail
            // alone: not this worker's fault.
            let leases: Vec<_> = if failed.is_empty() {
                leases
            } else {
                for (id, cause) in &failed {
                    let failure = Failure {
                        cause: cause.clone(),
                        exit_code: None,
                    };
                    if let Some(released) = self.ledger.fail(w.id, *id, &failure) {
                        dead_now.push((released.dead, failure));
                    }
                }
                leases
                    .into_iter()
                    .filter(|l| !failed.iter().any(|(id, _)| *id == l.id))
                    .collect()
            };
            if batch.is_empty() {
                self.batch = batch;
                continue;
            }
            // Written into buffers kept from batch to batch: fresh ones
            // per batch faulted their pages in every time.
            let mut bytes = std::mem::take(&mut self.encoded);
            batch.finish_into(&mut bytes);
            self.batch = batch;
            match w.link.tasks.try_send(&bytes) {
                Ok(()) => {
                    self.traffic.sent += 1;
                    self.traffic.bytes_sent += bytes.len() as u64 + 8;
                }
                // Its ring is full: it is behind, stopped or dying; the
                // tasks wait here instead.
                Err(TrySendError::Full) => self.ledger.untake(w.id, &leases),
                // Too big for the ring together: fewer at a time. One
                // task too big on its own can never go: it fails.
                Err(TrySendError::TooLarge { .. } | TrySendError::Encode(_)) => {
                    if leases.len() == 1 {
                        let failure = Failure {
                            cause: format!(
                                "its input of {} bytes does not fit the link's largest message ({} bytes)",
                                bytes.len(),
                                w.link.tasks.max_message()
                            ),
                            exit_code: None,
                        };
                        // Every attempt would fail the same way.
                        if let Some(released) = self.ledger.give_up(w.id, leases[0].id, &failure) {
                            dead_now.push((released.dead, failure));
                        }
                    } else {
                        self.ledger.untake(w.id, &leases);
                        w.window = (leases.len() / 2).max(1);
                    }
                }
                Err(TrySendError::Failed(e)) => {
                    self.ledger.untake(w.id, &leases);
                    w.kill(KillCause::CorruptedLink(e.to_string()));
                }
            }
            self.encoded = bytes;
        }
        for (dead, failure) in dead_now {
            self.gave_up(&dead, &failure);
        }
    }

    /// Tasks that became dead letters: said, and told to the work.
    pub(super) fn gave_up(&mut self, dead: &[u64], failure: &Failure) {
        for &task in dead {
            let what = match self.work.describe_task(task) {
                Some(input) => {
                    let said = format!("task {task} (`{input}`)");
                    self.ledger.describe_dead(task, input);
                    said
                }
                None => format!("task {task}"),
            };
            self.progress.event(&format!(
                "{what} is a dead letter: it failed {}, last: {}",
                plural(u64::from(self.options.max_attempts.max(1)), "time"),
                failure.cause
            ));
            let failures = self
                .ledger
                .dead_letters()
                .iter()
                .rev()
                .find(|d| d.task == task)
                .map_or(self.options.max_attempts, |d| d.failures);
            self.work.gave_up(
                task,
                &GaveUp {
                    failures,
                    last_cause: failure.cause.clone(),
                    exit_code: failure.exit_code,
                },
            );
        }
    }
}
