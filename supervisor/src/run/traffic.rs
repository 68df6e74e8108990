//! The messages between the supervisor and its workers, over each worker's
//! link (two shared-memory queues and a doorbell): reading `Ready` and
//! results (garbage gets the worker killed), and handing out tasks in
//! batches sized to keep each worker busy without flooding its queue.

use std::time::Duration;

use ipc::queue::{GetError, GetTimeoutError};
use ipc::{RecvError, RecvTimeoutError};
use worker::protocol::{FromWorker, Task, TaskResult, ToWorker, PROTOCOL_VERSION};

use super::{send_stop, Supervisor};
use crate::dispatch::{Completion, Failure, WorkerId};
use crate::fleet::{Slot, StopReason, Worker};

impl Supervisor<'_> {
    pub(super) fn read_channels(&mut self, ready: &[WorkerId]) {
        for index in 0..self.slots.len() {
            let Slot::Live(w) = &mut self.slots[index] else {
                continue;
            };
            if !ready.contains(&w.id) {
                continue;
            }
            let Slot::Live(mut w) = std::mem::replace(&mut self.slots[index], Slot::Closed) else {
                continue;
            };
            self.read_worker(&mut w);
            self.slots[index] = Slot::Live(w);
        }
    }

    /// Takes every message the worker has sent so far: first the doorbell
    /// rings (and whether its end is closed), then, with the bell cleared,
    /// everything in its results queue.
    pub(super) fn read_worker(&mut self, w: &mut Worker) {
        if w.killed_because.is_some() {
            return;
        }
        let mut rings = std::mem::take(&mut self.buf);
        while !w.channel_closed {
            match w
                .link
                .doorbell
                .recv_bytes_into_timeout(&mut rings, Duration::ZERO)
            {
                Ok(_) => {}
                Err(RecvTimeoutError::Recv(RecvError::Disconnected)) => w.channel_closed = true,
                // Nothing more now, or bytes that are no frame: either way
                // the queue below is what counts.
                Err(_) => break,
            }
        }
        self.buf = rings;
        // Cleared before draining: a result put after this rings again.
        w.link.bell_pending.store(0);
        while w.killed_because.is_none() {
            let mut messages: Vec<Result<FromWorker, String>> = Vec::new();
            let mut bytes = 0u64;
            let taken = w
                .link
                .results
                .get_many_bytes_with(256, Duration::ZERO, &mut |payload| {
                    bytes += payload.len() as u64 + 8;
                    messages.push(
                        ipc::codec::decode_payload::<FromWorker>(payload)
                            .map_err(|e| format!("sent garbage ({e}); killed")),
                    );
                });
            match taken {
                Ok(n) => {
                    self.traffic.received += n as u64;
                    self.traffic.bytes_received += bytes;
                }
                Err(GetTimeoutError::Empty) => return,
                Err(GetTimeoutError::Get(GetError::Disconnected)) => return,
                Err(GetTimeoutError::Get(e)) => {
                    w.kill(format!("broke its results queue ({e}); killed"));
                    return;
                }
            }
            for message in messages {
                if w.killed_because.is_some() {
                    break;
                }
                match message {
                    Ok(FromWorker::Ready { protocol, .. }) if protocol != PROTOCOL_VERSION => {
                        w.kill(format!(
                            "speaks protocol {protocol}, not {PROTOCOL_VERSION}; killed"
                        ));
                    }
                    Ok(FromWorker::Ready { .. }) => self.on_ready(w),
                    Ok(FromWorker::Results(results)) => self.on_results(w, results),
                    Err(why) => w.kill(why),
                }
            }
        }
    }

    pub(super) fn on_ready(&mut self, w: &mut Worker) {
        w.ready = true;
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
                w.kill(format!(
                    "sent a result for task {}, which it does not hold; killed",
                    result.id
                ));
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
            let bytes = match postcard::to_allocvec(&ToWorker::Tasks(tasks)) {
                Ok(bytes) => bytes,
                Err(_) => {
                    self.ledger.untake(w.id, &leases);
                    continue;
                }
            };
            match w.link.tasks.put_many_bytes(&[&bytes], Duration::ZERO) {
                Ok(1) => {
                    self.traffic.sent += 1;
                    self.traffic.bytes_sent += bytes.len() as u64 + 8;
                }
                // Its queue is full: it is behind, stopped or dying; the
                // tasks wait here instead.
                _ => self.ledger.untake(w.id, &leases),
            }
        }
    }
}
