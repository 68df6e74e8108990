//! Workers coming and going: starting one in a slot, seeing one exit (its
//! tasks go back to the ledger, the task it was running is blamed), the
//! restart policy's verdict, backoff, and killing workers whose heartbeat
//! has stalled.

use std::time::{Duration, Instant};

use outlast_worker::heartbeat::{self, monotonic_ns, Verdict as Heartbeat, WorkerState};

use super::shutdown::Phase;
use super::{send_stop, Engine, SlotHistory};
use crate::fleet::{start_worker, Ending, Replacing, Slot, StopReason, Worker};
use crate::kill::KillCause;
use crate::ledger::{Failure, WorkerId};
use crate::report::Outcome;
use crate::restart::Verdict;

/// Workers started per turn of the loop before it looks at signals again.
const START_BATCH: usize = 32;

impl Engine {
    pub(super) fn add_slot(&mut self, why: Option<&str>) {
        let index = self.slots.len();
        self.slots.push(Slot::Closed);
        self.crashes_in_a_row.push(0);
        self.history.push(SlotHistory::default());
        let replacing = why.map(|w| Replacing {
            what_happened: format!("worker {} {w}", index + 1),
            exit_seen: Instant::now(),
            backoff: Duration::ZERO,
            crash: false,
            added: true,
        });
        self.start_in(index, replacing);
    }

    /// Starts up to `START_BATCH` of the workers not started yet (all of
    /// them, a batch per turn, while the run goes on; none once it stops).
    pub(super) fn start_pending(&mut self) {
        let mut started = 0;
        for index in 0..self.slots.len() {
            if !matches!(self.slots[index], Slot::Pending) {
                continue;
            }
            if self.phase != Phase::Running {
                self.slots[index] = Slot::Closed;
                continue;
            }
            if started == START_BATCH {
                return;
            }
            self.start_in(index, None);
            started += 1;
        }
        // The last of them started: now the supervisor maps its ends.
        self.open_links();
    }

    /// Maps the supervisor's ends of every link still parked, unless
    /// workers are still to be started (each mapping would slow their forks).
    pub(super) fn open_links(&mut self) {
        if self.slots.iter().any(|s| matches!(s, Slot::Pending)) {
            return;
        }
        for slot in &mut self.slots {
            if let Slot::Live(w) = slot {
                if !w.link.is_open() && w.killed_because.is_none() {
                    if let Err(e) = w.link.open() {
                        w.kill(KillCause::LinkUnavailable(e.to_string()));
                    }
                }
            }
        }
    }

    /// Starts a worker in slot `index`; a failure to start counts as a crash.
    pub(super) fn start_in(&mut self, index: usize, replacing: Option<Replacing>) {
        let id = self.next_worker_id;
        self.next_worker_id += 1;
        match start_worker(
            id,
            index,
            self.launch.as_ref(),
            self.method,
            self.options.allow_threads,
            self.ring_bytes,
            self.options.max_message_bytes,
        ) {
            Ok(mut w) => {
                self.workers_started += 1;
                if let Some(quota) = self.options.max_tasks_per_child.filter(|&q| q > 0) {
                    let jitter = match self.options.max_tasks_jitter {
                        0 => 0,
                        j => self.random() % (j + 1),
                    };
                    w.quota = Some(quota + jitter);
                }
                w.replacing = replacing;
                if let Some(h) = self.history.get_mut(index) {
                    if h.started {
                        h.restarts += 1;
                    }
                    h.started = true;
                }
                self.slots[index] = Slot::Live(Box::new(w));
                self.open_links();
            }
            Err(e) => {
                let what = format!("worker {} could not start: {e}", index + 1);
                self.progress.event(&what);
                self.restarts.crashes += 1;
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
    /// Counts toward the restart policy (crashes and kills for a fault alike).
    pub(super) fn after_crash(&mut self, index: usize, what_happened: String) {
        self.crashes_in_a_row[index] += 1;
        let now = Instant::now();
        match self.policy.on_crash(now, self.crashes_in_a_row[index]) {
            Verdict::RestartAfter(backoff) => {
                let replacing = Replacing {
                    what_happened,
                    exit_seen: now,
                    backoff,
                    crash: true,
                    added: false,
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
                    "{crashes} worker crashes within {:.0} s, more than the restart limit of {}; last: {what_happened}",
                    window.as_secs_f64(),
                    self.options.max_restarts
                );
                self.progress.event(&format!("giving up: {reason}"));
                self.stop_with(Outcome::RestartLimit, reason);
                self.halt(KillCause::RestartLimit);
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
        if w.killed_because.is_none() && w.link.is_open() {
            self.read_worker(&mut w);
        }
        // Programs it started again since its last beat was read.
        let replaced = w.link.heartbeat().read().programs_replaced;
        self.restarts.programs += program_restarts(w.programs_replaced, replaced);
        let planned = ending.clean && w.stopping.is_some() && w.killed_because.is_none();
        let cause = match (&w.killed_because, planned) {
            (Some(kill), _) => kill.to_string(),
            (None, true) => "stopped".into(),
            (None, false) if ending.clean => "exited unasked".into(),
            (None, false) => ending.description.clone(),
        };
        // The task it was running is charged, if its heartbeat says so
        // believably; nothing is charged for a stop the supervisor decided.
        let ends_run = w.killed_because.as_ref().is_some_and(KillCause::ends_run);
        // A worker that could not start (its job's start, or a program it
        // starts, failed) ran no task: what it held goes back uncharged,
        // and the restart limit ends a run whose workers never start.
        let could_not_start = w.killed_because.is_none()
            && ending.exit_code == Some(outlast_worker::runtime::EXIT_START_FAILED);
        // A pool's worker in a `panic = "abort"` build answers a panicking
        // item from its panic hook, then aborts: the death is that
        // answer's cost, not a crash, so it is kept out of the restart
        // limit. Only a worker with a task accepted may claim so: each
        // excused death took an answer with it, so a worker lying about it
        // cannot keep the fleet restarting.
        let answered_panic = w.killed_because.is_none()
            && ending.exit_code == Some(-libc::SIGABRT)
            && w.completed > 0
            && WorkerState::from_word(w.link.heartbeat().read().state)
                == Some(WorkerState::Aborting);
        let blamed = if planned || ends_run || could_not_start {
            None
        } else {
            let claim = w.link.heartbeat().read();
            let ledger = &self.ledger;
            match heartbeat::judge(&claim, w.pid, monotonic_ns(), Duration::MAX, |task| {
                ledger.holds(w.id, task)
            }) {
                Heartbeat::Alive(beat) | Heartbeat::Silent(beat) => beat.current_task,
                Heartbeat::Forged(_) => None,
            }
        };
        let failure = Failure {
            cause: format!("worker {cause}"),
            exit_code: ending.exit_code,
            oversize: None,
        };
        let released = self.ledger.release(w.id, blamed, &failure);
        self.gave_up(&released.dead, &failure);
        if let Some(h) = self.history.get_mut(index) {
            h.last_exit = Some(match (planned, w.stopping) {
                (true, Some(StopReason::Memory)) => "stopped: past --max-worker-memory".into(),
                (true, Some(StopReason::Recycle)) => "stopped: --max-tasks-per-child".into(),
                (true, Some(StopReason::Reload)) => "stopped: reload".into(),
                _ => cause.clone(),
            });
        }
        let mut what = format!("{} {cause}", w.label());
        if released.requeued > 0 {
            what.push_str(&format!("; {} tasks re-queued", released.requeued));
        }
        match (&w.killed_because, planned) {
            (Some(kill), _) if kill.ends_run() => {
                self.restarts.stopped += 1;
                *self
                    .restarts
                    .stop_causes
                    .entry(kill.kind().into())
                    .or_default() += 1;
            }
            (Some(kill), _) => {
                self.restarts.killed += 1;
                *self
                    .restarts
                    .kill_causes
                    .entry(kill.kind().into())
                    .or_default() += 1;
            }
            (None, false) => {
                self.restarts.crashes += 1;
                let kind = if ending.clean {
                    "exited unasked".to_string()
                } else {
                    ending.description.clone()
                };
                *self.restarts.causes.entry(kind).or_default() += 1;
            }
            (None, true) => {}
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
            (true, Some(StopReason::Memory)) if planned => {
                self.restarts.memory += 1;
                let replacing = planned_replacement(format!("{what} (past --max-worker-memory)"));
                self.start_in(index, Some(replacing));
            }
            (true, Some(StopReason::Reload)) if planned => {
                self.restarts.reloaded += 1;
                let replacing = planned_replacement(format!("{what} (reload)"));
                self.start_in(index, Some(replacing));
            }
            _ if could_not_start && running => self.after_start_failure(index, what),
            _ if answered_panic => {
                let replacing = planned_replacement(format!("{what} (its task's panic answered)"));
                self.start_in(index, Some(replacing));
            }
            _ => self.after_crash(index, what),
        }
    }

    /// After a worker could not start: a crash, and one more in a row
    /// with no task finished in between. More of those than the restart
    /// limit stop the run, however slowly they come (a `--worker-cmd`
    /// program that never says hello fails once a minute, never 20 times
    /// in 10 s).
    fn after_start_failure(&mut self, index: usize, what: String) {
        self.start_failures_in_a_row += 1;
        let failures = self.start_failures_in_a_row;
        if failures > self.options.max_restarts {
            self.slots[index] = Slot::Closed;
            let reason = format!(
                "workers could not start {failures} times in a row, more than the restart limit of {}; last: {what}",
                self.options.max_restarts
            );
            self.progress.event(&format!("giving up: {reason}"));
            self.stop_with(Outcome::RestartLimit, reason);
            self.halt(KillCause::RestartLimit);
            return;
        }
        self.after_crash(index, what);
    }

    /// Asks every worker whose resident memory passed
    /// `--max-worker-memory` to finish what it holds and exit (it is then
    /// replaced, as a recycled worker is).
    pub(super) fn check_memory(&mut self) {
        let Some(limit) = self.options.max_worker_memory else {
            return;
        };
        if self.phase != Phase::Running {
            return;
        }
        for slot in &mut self.slots {
            let Slot::Live(w) = slot else { continue };
            if w.stopping.is_some() || w.killed_because.is_some() || !w.ready {
                continue;
            }
            // The worker and what it started (an --exec command, a
            // --worker-cmd program): its whole tree.
            let Some(kb) = outlast_ipc::os::procfs::tree_resident_kb(w.pid) else {
                continue;
            };
            if kb.saturating_mul(1024) > limit {
                let what = format!(
                    "{} uses {:.1} MB, past --max-worker-memory {:.1} MB: replaced once it finishes its tasks",
                    w.label(),
                    kb as f64 / 1024.0,
                    limit as f64 / 1048576.0
                );
                send_stop(w, StopReason::Memory);
                self.progress.event(&what);
            }
        }
    }

    /// Judges every live worker's heartbeat claim: silent past the
    /// timeout, or forged, gets it killed (and replaced). With long tasks
    /// allowed, a worker silent in a task is killed only if it is stopped.
    pub(super) fn check_heartbeats(&mut self) {
        let timeout = self.options.worker_timeout;
        let long_tasks_allowed = self.options.long_tasks_allowed;
        let ledger = &self.ledger;
        for slot in &mut self.slots {
            let Slot::Live(w) = slot else { continue };
            if w.killed_because.is_some() || !w.link.is_open() {
                continue;
            }
            let claim = w.link.heartbeat().read();
            // The clock is read after the claim: a beat written before we
            // read it is never "in the future", however long this loop over
            // thousands of workers has taken (it took seconds under load,
            // and honest workers were killed as forgers).
            let now = monotonic_ns();
            // The same task as last time was held then (a task is never
            // claimed again once its result is in): no need to look it up.
            let same_task = w
                .last_claim
                .is_some_and(|c| c.state == claim.state && c.current == claim.current);
            let id = w.id;
            let verdict = heartbeat::judge(&claim, w.pid, now, timeout, |task| {
                same_task || ledger.holds(id, task)
            });
            let verdict = match verdict {
                Heartbeat::Silent(beat)
                    if long_tasks_allowed && beat.current_task.is_some() && !is_stopped(w.pid) =>
                {
                    Heartbeat::Alive(beat)
                }
                other => other,
            };
            match verdict {
                Heartbeat::Alive(beat) => {
                    let seen = w.programs_replaced;
                    w.programs_replaced = claim.programs_replaced.max(seen);
                    self.restarts.programs += program_restarts(seen, claim.programs_replaced);
                    w.last_claim = Some(claim);
                    w.busy_since = match (beat.current_task, w.busy_since) {
                        (Some(task), Some((held, since))) if held == task => Some((task, since)),
                        (Some(task), _) => Some((task, Instant::now())),
                        (None, _) => None,
                    };
                }
                Heartbeat::Silent(beat) => w.kill(KillCause::NoHeartbeat {
                    silent: beat.silent,
                    task: beat.current_task,
                }),
                Heartbeat::Forged(why) => w.kill(KillCause::ForgedHeartbeat(why)),
            }
        }
    }
}

/// Whether process `pid` is stopped (`SIGSTOP`, `SIGTSTP`), as `/proc`
/// says: it runs no task, however long it waits. One held by a debugger
/// (`t`) is someone looking at it, and one that cannot be read (it just
/// ended) is seen ending anyway: neither is.
fn is_stopped(pid: u32) -> bool {
    outlast_ipc::os::procfs::task_stat(pid).is_some_and(|stat| stat.state == 'T')
}

/// Programs started again since `seen`, as a worker claims it: a count
/// that goes back is ignored, and one step counts at most
/// `MAX_PROGRAM_RESTARTS_A_LOOK` (a worker's claim moves only its own
/// statistic, and not without bound).
fn program_restarts(seen: u64, claimed: u64) -> u64 {
    claimed
        .saturating_sub(seen)
        .min(MAX_PROGRAM_RESTARTS_A_LOOK)
}

const MAX_PROGRAM_RESTARTS_A_LOOK: u64 = 10_000;

fn planned_replacement(what_happened: String) -> Replacing {
    Replacing {
        what_happened,
        exit_seen: Instant::now(),
        backoff: Duration::ZERO,
        crash: false,
        added: false,
    }
}
