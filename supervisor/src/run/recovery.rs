//! Workers coming and going: starting one in a slot, seeing one exit (its
//! tasks go back to the ledger, the task it was running is blamed), the
//! restart policy's verdict, backoff, and killing workers whose heartbeat
//! has stalled.

use std::time::{Duration, Instant};

use worker::heartbeat::{monotonic_ns, WorkerState};

use super::shutdown::Phase;
use super::Supervisor;
use crate::dispatch::{Failure, WorkerId};
use crate::fleet::{start_worker, Ending, Replacing, Slot, StopReason, Worker};
use crate::report::Outcome;
use crate::restart::Verdict;

impl Supervisor<'_> {
    pub(super) fn add_slot(&mut self, why: Option<&str>) {
        let index = self.slots.len();
        self.slots.push(Slot::Closed);
        self.crashes_in_a_row.push(0);
        let replacing = why.map(|w| Replacing {
            what_happened: format!("worker {} {w}", index + 1),
            exit_seen: Instant::now(),
            backoff: Duration::ZERO,
            crash: false,
        });
        self.start_in(index, replacing);
    }

    /// Starts a worker in slot `index`; a failure to start counts as a crash.
    pub(super) fn start_in(&mut self, index: usize, replacing: Option<Replacing>) {
        let id = self.next_worker_id;
        self.next_worker_id += 1;
        match start_worker(
            id,
            index,
            &self.spec,
            self.method,
            &self.heartbeat,
            self.ring_bytes,
        ) {
            Ok(mut w) => {
                if self.config.max_tasks_per_child > 0 {
                    let jitter = match self.config.max_tasks_jitter {
                        0 => 0,
                        j => self.random() % (j + 1),
                    };
                    w.quota = Some(self.config.max_tasks_per_child + jitter);
                }
                w.replacing = replacing;
                self.slots[index] = Slot::Live(Box::new(w));
            }
            Err(e) => {
                let what = format!("worker {} could not start: {e}", index + 1);
                self.progress.event(&what);
                *self
                    .restarts
                    .causes
                    .entry("could not start".into())
                    .or_default() += 1;
                self.after_crash(index, what);
            }
        }
    }

    /// After a crash in slot `index`: restart now, later, or stop the run.
    pub(super) fn after_crash(&mut self, index: usize, what_happened: String) {
        self.restarts.crashes += 1;
        self.crashes_in_a_row[index] += 1;
        let now = Instant::now();
        match self.policy.on_crash(now, self.crashes_in_a_row[index]) {
            Verdict::RestartAfter(backoff) => {
                let replacing = Replacing {
                    what_happened,
                    exit_seen: now,
                    backoff,
                    crash: true,
                };
                if backoff.is_zero() {
                    self.start_in(index, Some(replacing));
                } else {
                    self.slots[index] = Slot::Waiting {
                        at: now + backoff,
                        replacing,
                    };
                }
            }
            Verdict::GiveUp { crashes, window } => {
                self.slots[index] = Slot::Closed;
                let reason = format!(
                    "{crashes} worker crashes within {:.0} s (more than --max-restarts {}); last: {what_happened}",
                    window.as_secs_f64(),
                    self.config.max_restarts
                );
                self.progress.event(&format!("giving up: {reason}"));
                self.stop_with(Outcome::RestartLimit, reason);
                self.halt();
            }
        }
    }

    pub(super) fn restart_due(&mut self) {
        let now = Instant::now();
        for index in 0..self.slots.len() {
            let due = matches!(&self.slots[index], Slot::Waiting { at, .. } if *at <= now);
            if !due {
                continue;
            }
            if self.phase != Phase::Running {
                self.slots[index] = Slot::Closed;
                continue;
            }
            if let Slot::Waiting { replacing, .. } =
                std::mem::replace(&mut self.slots[index], Slot::Closed)
            {
                self.start_in(index, Some(replacing));
            }
        }
    }

    /// Reaps workers that exited and deals with each. A worker is checked
    /// when its pidfd (or a hang-up on its doorbell) woke the loop, or on
    /// SIGCHLD (which also covers kernels without pidfds).
    pub(super) fn see_exits(&mut self, exited: &[WorkerId], child_exited: bool) {
        for index in 0..self.slots.len() {
            let Slot::Live(w) = &mut self.slots[index] else {
                continue;
            };
            let woke = child_exited || exited.contains(&w.id) || w.process.exit_fd().is_none();
            if !woke {
                continue;
            }
            let Some(ending) = w.try_ending() else {
                continue;
            };
            let Slot::Live(w) = std::mem::replace(&mut self.slots[index], Slot::Closed) else {
                continue;
            };
            self.on_exit(index, *w, ending);
        }
    }

    pub(super) fn on_exit(&mut self, index: usize, mut w: Worker, ending: Ending) {
        // Results it sent before dying still count.
        if w.killed_because.is_none() {
            self.read_worker(&mut w);
        }
        let planned = ending.clean && w.stopping.is_some() && w.killed_because.is_none();
        let cause = match (&w.killed_because, planned) {
            (Some(why), _) => why.clone(),
            (None, true) => "stopped".into(),
            (None, false) if ending.clean => "exited unasked".into(),
            (None, false) => ending.description.clone(),
        };
        let beat = self.heartbeat.read(index);
        let blamed = (beat.state == WorkerState::Busy)
            .then_some(beat.current_task)
            .flatten();
        let failure = Failure {
            cause: format!("worker {cause}"),
            exit_code: ending.exit_code,
        };
        let released = self
            .ledger
            .release(w.id, if planned { None } else { blamed }, &failure);
        for task in &released.dead {
            self.progress.event(&format!(
                "task {task} is a dead letter: it failed {} times, last: {}",
                self.config.max_attempts, failure.cause
            ));
        }
        let mut what = format!("{} {cause}", w.label());
        if released.requeued > 0 {
            what.push_str(&format!("; {} tasks re-queued", released.requeued));
        }
        if !planned {
            *self
                .restarts
                .causes
                .entry(strip_counts(&cause))
                .or_default() += 1;
        }
        if self.reloading == Some(index) && !(planned && w.stopping == Some(StopReason::Reload)) {
            // The worker being reloaded died some other way: the reload goes on.
            self.reloading = None;
        }
        let running = self.phase == Phase::Running;
        match (running, w.stopping) {
            (false, _) | (true, Some(StopReason::Retire)) | (true, Some(StopReason::Shutdown)) => {
                // Workers that stop when asked at the end are no news.
                if !planned || w.stopping == Some(StopReason::Retire) {
                    self.progress.event(&what);
                }
            }
            (true, Some(StopReason::Recycle)) if planned => {
                self.restarts.recycled += 1;
                let replacing =
                    planned_replacement(format!("{what} (recycled after {} tasks)", w.completed));
                self.start_in(index, Some(replacing));
            }
            (true, Some(StopReason::Reload)) if planned => {
                self.restarts.reloaded += 1;
                let replacing = planned_replacement(format!("{what} (reload)"));
                self.start_in(index, Some(replacing));
            }
            _ => self.after_crash(index, what),
        }
    }

    pub(super) fn check_heartbeats(&mut self) {
        let now = monotonic_ns();
        let limit = self.config.worker_timeout.as_nanos() as u64;
        for slot in &mut self.slots {
            let Slot::Live(w) = slot else { continue };
            if w.killed_because.is_some() {
                continue;
            }
            let beat = self.heartbeat.read(w.slot);
            let silent = now.saturating_sub(beat.last_beat_ns);
            if silent > limit {
                let what = match beat.current_task {
                    Some(task) if beat.state == WorkerState::Busy => format!(" during task {task}"),
                    _ => String::new(),
                };
                w.kill(format!(
                    "had no heartbeat for {:.1} s{what} (--worker-timeout); killed",
                    silent as f64 / 1e9
                ));
            }
        }
    }
}

fn planned_replacement(what_happened: String) -> Replacing {
    Replacing {
        what_happened,
        exit_seen: Instant::now(),
        backoff: Duration::ZERO,
        crash: false,
    }
}

/// A cause without its figures, so causes group in the report.
fn strip_counts(cause: &str) -> String {
    if cause.starts_with("had no heartbeat") {
        return "killed: no heartbeat (--worker-timeout)".into();
    }
    if cause.starts_with("sent garbage") {
        return "killed: sent garbage".into();
    }
    cause.to_string()
}
