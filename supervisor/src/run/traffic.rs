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

use ipc::spsc::doorbell::Heard;
use ipc::spsc::TrySendError;
use worker::protocol::{FromWorker, Task, TaskResult, ToWorker, PROTOCOL_VERSION};

use super::{send_stop, Supervisor};
use crate::dispatch::{Completion, Failure, WorkerId};
use crate::fleet::{Slot, StopReason, Worker};
use crate::kill::KillCause;

/// The most records taken from one worker's results ring in one turn.
const RECORDS_PER_TURN: usize = 64;

impl Supervisor<'_> {
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
                    ipc::codec::decode_payload::<FromWorker>(payload).map_err(|e| e.to_string()),
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
            self.progress.event(&format!(
                "{}; replaced by pid {} in {ms:.1} ms{backoff}",
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
                Ok(output) => match self.job.combine(result.id, &output) {
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
                for task in released.dead {
                    self.progress.event(&format!(
                        "task {task} is a dead letter: it failed {} times, last: {}",
                        self.config.max_attempts, failure.cause
                    ));
                }
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
                return;
            }
            let tasks: Vec<Task> = leases
                .iter()
                .map(|l| Task {
                    id: l.id,
                    attempt: l.attempt,
                    input: self.job.task_input(l.id),
                })
                .collect();
            // Encoded into a buffer kept from batch to batch: a fresh one
            // per batch faulted its pages in every time.
            let mut out = std::mem::take(&mut self.encoded);
            out.clear();
            let bytes = match postcard::to_extend(&ToWorker::Tasks(tasks), out) {
                Ok(bytes) => bytes,
                Err(_) => {
                    self.ledger.untake(w.id, &leases);
                    continue;
                }
            };
            match w.link.tasks.try_send(&bytes) {
                Ok(()) => {
                    self.traffic.sent += 1;
                    self.traffic.bytes_sent += bytes.len() as u64 + 8;
                }
                // Its ring is full: it is behind, stopped or dying; the
                // tasks wait here instead.
                Err(
                    TrySendError::Full | TrySendError::TooLarge { .. } | TrySendError::Encode(_),
                ) => self.ledger.untake(w.id, &leases),
                Err(TrySendError::Failed(e)) => {
                    self.ledger.untake(w.id, &leases);
                    w.kill(KillCause::CorruptedLink(e.to_string()));
                }
            }
            self.encoded = bytes;
        }
    }
}
