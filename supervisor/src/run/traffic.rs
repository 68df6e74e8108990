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

use std::io::{Seek, Write};

use outlast_ipc::spsc::doorbell::Heard;
use outlast_ipc::spsc::spill::SpillPort;
use outlast_ipc::spsc::TrySendError;
use outlast_worker::protocol::{
    spilled_limit, FromWorker, TaskBatch, TaskOutput, TaskResult, ToWorker, PROTOCOL_VERSION,
};

use outlast_worker::numbers::plural;
use outlast_worker::work::{GaveUp, Oversize, Refused, Work};

use super::{send_stop, Engine};
use crate::fleet::{Slot, StopReason, Worker};
use crate::kill::KillCause;
use crate::ledger::{Completion, Failure, Lease, WorkerId};

/// The most records taken from one worker's results ring in one turn.
const RECORDS_PER_TURN: usize = 64;

/// The most tasks held by all workers together (each is 16 bytes in the
/// ledger): a thousand workers of no-op tasks, each at its window's cap of
/// 15,420, would otherwise hold 15 M (250 MB).
const MAX_IN_FLIGHT: usize = 1 << 20;

/// The most tasks one of `live` workers may hold: its share of
/// [`MAX_IN_FLIGHT`], and never less than a first window.
fn in_flight_share(live: usize) -> usize {
    (MAX_IN_FLIGHT / live.max(1)).max(crate::fleet::FIRST_WINDOW)
}

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
                messages.push(FromWorker::decode(payload).map_err(|e| e.to_string()));
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
                Ok(FromWorker::Spilled { len }) => match self.take_spilled(w, len) {
                    Ok(message) => self.on_message(w, message),
                    Err(cause) => w.kill(cause),
                },
                Ok(message) => self.on_message(w, message),
                Err(why) => w.kill(KillCause::SentGarbage(why)),
            }
        }
    }

    fn on_message(&mut self, w: &mut Worker, message: FromWorker) {
        match message {
            FromWorker::Ready { protocol, .. } if protocol != PROTOCOL_VERSION => {
                w.kill(KillCause::ProtocolViolation(format!(
                    "speaks protocol {protocol}, not {PROTOCOL_VERSION}"
                )));
            }
            FromWorker::Ready { .. } => self.on_ready(w),
            FromWorker::Results(results) => self.on_results(w, results),
            FromWorker::Spilled { .. } => w.kill(KillCause::ProtocolViolation(
                "a spilled message announced another".into(),
            )),
        }
    }

    /// The message a `Spilled { len }` record announced, from the link's
    /// spill port: a sealed memfd of exactly `len` bytes, no more than one
    /// result over the cap allows, decoded in place (it cannot change).
    fn take_spilled(&mut self, w: &mut Worker, len: u64) -> Result<FromWorker, KillCause> {
        let limit = spilled_limit(w.link.max_message);
        let bytes = w
            .link
            .spill
            .take(len, limit)
            .map_err(|e| KillCause::ProtocolViolation(format!("spilled message: {e}")))?;
        self.traffic.bytes_received += bytes.len() as u64;
        postcard::from_bytes::<FromWorker>(&bytes)
            .map_err(|e| KillCause::SentGarbage(format!("a spilled message: {e}")))
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
            // (One look at what it holds: whether, and in which attempt.)
            let Some(attempt) = self.ledger.attempt_of(w.id, result.id) else {
                w.kill(KillCause::ProtocolViolation(format!(
                    "sent a result for task {}, which it does not hold",
                    result.id
                )));
                return;
            };
            let failure = match result.output {
                TaskOutput::TooLarge { len, max } => {
                    // Final: another run would make the same output.
                    // A job may have a cap of its own below the run's (a
                    // worker program's --max-frame).
                    let cause = match max == w.link.max_message {
                        true => too_large("output", len, max),
                        false => format!(
                            "its output of {len} bytes is over its job's own cap ({max} bytes)"
                        ),
                    };
                    let failure = Failure {
                        cause,
                        exit_code: None,
                        oversize: Some(Oversize { len, max }),
                    };
                    if let Some(released) = self.ledger.give_up(w.id, result.id, &failure) {
                        self.gave_up(&released.dead, &failure);
                    }
                    continue;
                }
                TaskOutput::Done(output) => match self.accept(result.id, output) {
                    Ok(journaled) => {
                        if self.ledger.complete(w.id, result.id) == Completion::NotHeld {
                            continue;
                        }
                        if let Some(output) = journaled {
                            self.journal_done(result.id, attempt, &output);
                        }
                        w.completed += 1;
                        self.crashes_in_a_row[w.slot] = 0;
                        self.start_failures_in_a_row = 0;
                        continue;
                    }
                    // The work words its cause (`bad output: ...`), and
                    // says whether another attempt may follow.
                    Err(refused) => refused,
                },
                TaskOutput::Failed(e) => Refused::from(format!("task error: {e}")),
            };
            let retry = failure.retry;
            let failure = Failure {
                cause: failure.cause,
                exit_code: None,
                oversize: None,
            };
            let released = if retry {
                self.ledger.fail(w.id, result.id, &failure)
            } else {
                self.ledger.give_up(w.id, result.id, &failure)
            };
            if let Some(released) = released {
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

    /// Gives task `id`'s output to the work: whole, unless a journal
    /// keeps it too (then it comes back, for the journal).
    fn accept(&mut self, id: u64, output: Vec<u8>) -> Result<Option<Vec<u8>>, Refused> {
        match self.journal.is_some() {
            true => self.work.accept(id, &output).map(|()| Some(output)),
            false => self.work.accept_owned(id, output).map(|()| None),
        }
    }

    pub(super) fn dispatch(&mut self) {
        let mut dead_now = Vec::new();
        let share = in_flight_share(self.live_count());
        for index in 0..self.slots.len() {
            let Slot::Live(w) = &mut self.slots[index] else {
                continue;
            };
            if !w.ready || w.stopping.is_some() || w.killed_because.is_some() || w.channel_closed {
                continue;
            }
            // (Ready implies an open link: its message was read there.)
            let held = self.ledger.held_by(w.id);
            // (A first window may be over a job's own cap.)
            let window = w.window.min(self.max_window).min(share);
            if held > window / 2 {
                continue;
            }
            let mut n = window.saturating_sub(held);
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
            let mut failed: Vec<(u64, Failure)> = Vec::new();
            let cap = w.link.max_message;
            let ring = w.link.tasks.max_message();
            // Where the batch stopped because the next input would take it
            // past the ring: those tasks go back, for a batch of their own.
            let mut cut = None;
            // A first task too large for the ring, whose length is known:
            // it goes alone, its input written straight into its memfd.
            let mut alone = None;
            for (at, l) in leases.iter().enumerate() {
                let work = &mut self.work;
                let known = work.input_len(l.id);
                if let Some(len) =
                    known.filter(|len| batch.size() + BATCH_HEAD + TASK_HEAD + len > ring)
                {
                    if !batch.is_empty() {
                        cut = Some(at);
                        break;
                    }
                    let len64 = len as u64;
                    if len64 > cap {
                        failed.push((
                            l.id,
                            Failure {
                                cause: too_large("input", len64, cap),
                                exit_code: None,
                                oversize: Some(Oversize {
                                    len: len64,
                                    max: cap,
                                }),
                            },
                        ));
                        continue;
                    }
                    alone = Some((*l, len));
                    cut = Some(at + 1);
                    break;
                }
                let pushed = batch.push(l.id, l.attempt, |out| {
                    work.input(l.id, out).map_err(|cause| Failure {
                        cause,
                        exit_code: None,
                        oversize: None,
                    })?;
                    let len = out.len() as u64;
                    if len > cap {
                        return Err(Failure {
                            cause: too_large("input", len, cap),
                            exit_code: None,
                            oversize: Some(Oversize { len, max: cap }),
                        });
                    }
                    Ok(())
                });
                if let Err(failure) = pushed {
                    failed.push((l.id, failure));
                } else if batch.len() > 1 && batch.size() + BATCH_HEAD > ring {
                    // Its length was not known before: copied in for
                    // nothing, but only once.
                    batch.drop_last();
                    cut = Some(at);
                    break;
                }
            }
            let leases = match cut {
                Some(at) => {
                    self.ledger.untake(w.id, &leases[at..]);
                    leases[..at].to_vec()
                }
                None => leases,
            };
            // (Rare) inputs that failed to encode, or are over the cap,
            // leave the batch and fail alone: not this worker's fault. One
            // over the cap fails for good: every attempt would.
            let leases: Vec<_> = if failed.is_empty() {
                leases
            } else {
                for (id, failure) in failed.iter() {
                    let released = if failure.oversize.is_some() {
                        self.ledger.give_up(w.id, *id, failure)
                    } else {
                        self.ledger.fail(w.id, *id, failure)
                    };
                    if let Some(released) = released {
                        dead_now.push((released.dead, failure.clone()));
                    }
                }
                leases
                    .into_iter()
                    .filter(|l| !failed.iter().any(|(id, _)| *id == l.id))
                    .collect()
            };
            let sent = match alone {
                Some((lease, len)) => send_alone(w, &mut self.work, lease, len),
                None if batch.is_empty() => {
                    self.batch = batch;
                    continue;
                }
                None => {
                    // Written into a buffer kept from batch to batch: fresh
                    // ones per batch faulted their pages in every time.
                    let bytes = batch.finish();
                    let sent = send_tasks(w, bytes, leases.len()).map(|()| bytes.len() as u64);
                    // (A large one is let go now, not at the next batch.)
                    batch.clear();
                    sent
                }
            };
            self.batch = batch;
            match sent {
                Ok(bytes) => {
                    self.traffic.sent += 1;
                    self.traffic.bytes_sent += bytes + 8;
                }
                // Its input could not be written: this attempt fails, as
                // one that fails to encode in a batch does.
                Err(Unsent::Input(cause)) => {
                    let failure = Failure {
                        cause,
                        exit_code: None,
                        oversize: None,
                    };
                    if let Some(released) = self.ledger.fail(w.id, leases[0].id, &failure) {
                        dead_now.push((released.dead, failure));
                    }
                }
                // Its ring is full: it is behind, stopped or dying; the
                // tasks wait here instead.
                Err(Unsent::Full) => self.ledger.untake(w.id, &leases),
                // Too big for the ring together: fewer at a time.
                Err(Unsent::TooManyForRing) => {
                    self.ledger.untake(w.id, &leases);
                    w.window = (leases.len() / 2).max(1);
                }
                // One task over the cap can never go: it fails, once.
                Err(Unsent::OverCap(oversize)) => {
                    let failure = Failure {
                        cause: too_large("input", oversize.len, oversize.max),
                        exit_code: None,
                        oversize: Some(oversize),
                    };
                    if let Some(released) = self.ledger.give_up(w.id, leases[0].id, &failure) {
                        dead_now.push((released.dead, failure));
                    }
                }
                Err(Unsent::Broken(why)) => {
                    self.ledger.untake(w.id, &leases);
                    w.kill(KillCause::CorruptedLink(why));
                }
            }
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
            // What the ledger counted: 1 for a final failure (an
            // oversize message), up to max_attempts otherwise.
            let failures = self
                .ledger
                .dead_letters()
                .iter()
                .rev()
                .find(|d| d.task == task)
                .map_or(self.options.max_attempts, |d| d.failures);
            self.progress.event(&format!(
                "{what} is a dead letter: it failed {}, last: {}",
                plural(u64::from(failures.max(1)), "time"),
                failure.cause
            ));
            self.journal_dead(task, failures, failure.exit_code, &failure.cause);
            self.work.gave_up(
                task,
                &GaveUp {
                    oversize: failure.oversize,
                    failures,
                    last_cause: failure.cause.clone(),
                    exit_code: failure.exit_code,
                },
            );
        }
    }
}

/// The most a batch's variant and task count add to its tasks.
const BATCH_HEAD: usize = 4;
/// The most a task's id, attempt and input length add to its input.
const TASK_HEAD: usize = 10 + 5 + 10;

/// Sends one batch of `count` tasks: in the ring when it fits there;
/// a single task too large for the ring is spilled (handed over, then
/// announced in the ring); one over the cap is refused.
fn send_tasks(w: &mut Worker, bytes: &[u8], count: usize) -> Result<(), Unsent> {
    let broken = |e: &dyn std::fmt::Display| Unsent::Broken(e.to_string());
    if bytes.len() <= w.link.tasks.max_message() {
        return match w.link.tasks.try_send(bytes) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full) => Err(Unsent::Full),
            Err(e) => Err(broken(&e)),
        };
    }
    if count > 1 {
        return Err(Unsent::TooManyForRing);
    }
    let len = bytes.len() as u64;
    if len > spilled_limit(w.link.max_message) {
        return Err(Unsent::OverCap(Oversize {
            len,
            max: w.link.max_message,
        }));
    }
    spill(w, len, |port| port.send(bytes).map_err(|e| broken(&e)))
}

/// Hands a message of `len` bytes over the link's spill port
/// (`hand_over`), then announces it in the ring.
fn spill(
    w: &mut Worker,
    len: u64,
    hand_over: impl FnOnce(&SpillPort) -> Result<(), Unsent>,
) -> Result<(), Unsent> {
    let broken = |e: &dyn std::fmt::Display| Unsent::Broken(e.to_string());
    let record = postcard::to_allocvec(&ToWorker::Spilled { len }).map_err(|e| broken(&e))?;
    // Room for the record first: once the message is handed over, the
    // record announcing it must follow.
    match w.link.tasks.has_room_for(record.len()) {
        Ok(true) => {}
        Ok(false) => return Err(Unsent::Full),
        Err(e) => return Err(broken(&e)),
    }
    hand_over(&w.link.spill)?;
    w.link.tasks.try_send(&record).map_err(|e| broken(&e))
}

/// Sends task `lease` alone, its input of `len` bytes (too large for the
/// ring) written by the work straight into the memfd that carries it,
/// then announced in the ring. The bytes sent, or why not.
fn send_alone(
    w: &mut Worker,
    work: &mut Box<dyn Work>,
    lease: Lease,
    len: usize,
) -> Result<u64, Unsent> {
    let head = TaskBatch::head_of_one(lease.id, lease.attempt, len);
    let total = (head.len() + len) as u64;
    spill(w, total, |port| {
        let mut refused = None;
        let written = port.send_written(|file| {
            file.write_all(&head)?;
            work.write_input(lease.id, file).map_err(|cause| {
                refused = Some(cause);
                std::io::Error::other("the input was not written")
            })?;
            // What the record announces is what the work said it would write.
            match file.stream_position()? == total {
                true => Ok(()),
                false => {
                    refused = Some(format!("its input was not the {len} bytes announced"));
                    Err(std::io::Error::other("the input's length changed"))
                }
            }
        });
        match (written, refused) {
            (_, Some(cause)) => Err(Unsent::Input(cause)),
            (Ok(_), None) => Ok(()),
            (Err(e), None) => Err(Unsent::Broken(e.to_string())),
        }
    })
    .map(|()| total)
}

/// Why a batch of tasks did not go to a worker.
enum Unsent {
    /// A task's input could not be written (its work's words).
    Input(String),
    Full,
    TooManyForRing,
    OverCap(Oversize),
    Broken(String),
}

/// A message over the link's cap, in words.
fn too_large(what: &str, len: u64, max: u64) -> String {
    format!("its {what} of {len} bytes is over the largest message allowed ({max} bytes, max_message_bytes)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_workers_together_hold_at_most_a_million_tasks() {
        // Two workers: far above any window, so nothing changes for them.
        assert_eq!(in_flight_share(2), MAX_IN_FLIGHT / 2);
        assert!(in_flight_share(2) > super::super::MAX_WINDOW);
        for live in [1, 2, 64, 1000, 5000, 100_000] {
            let share = in_flight_share(live);
            assert!(share * live <= MAX_IN_FLIGHT || share == crate::fleet::FIRST_WINDOW);
            assert!(share >= crate::fleet::FIRST_WINDOW);
        }
        assert_eq!(in_flight_share(1000), 1048);
        // Past half a million workers, each still gets a first window.
        assert_eq!(in_flight_share(1 << 21), crate::fleet::FIRST_WINDOW);
        assert_eq!(in_flight_share(0), MAX_IN_FLIGHT);
    }
}
