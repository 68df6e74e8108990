//! The supervisor's event loop: one thread, one `poll(2)` over the signal
//! pipe, every worker's channel and every worker's pidfd. A worker's exit is
//! seen the moment its pidfd becomes readable; heartbeats are read from
//! shared memory on each turn; nothing sleeps and polls.
//!
//! Each turn: act on signals, read results, see exits (re-queue, replace or
//! stop), kill workers whose heartbeat stalled, start replacements whose
//! backoff is over, hand out tasks, and move the shutdown along.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use ipc::{RecvError, RecvTimeoutError, SendTimeoutError, StartMethod};
use worker::heartbeat::{monotonic_ns, HeartbeatTable, WorkerState};
use worker::job::{self, Job, JobSpec};
use worker::protocol::{FromWorker, Task, TaskResult, ToWorker, PROTOCOL_VERSION};

use crate::config::RunConfig;
use crate::dispatch::{Completion, Failure, Ledger, WorkerId};
use crate::fleet::{start_worker, Ending, Replacing, Slot, StopReason, Worker};
use crate::progress::{Gauges, Progress};
use crate::report::{IpcCounts, Latency, Outcome, Restarts, RunReport, TaskCounts};
use crate::restart::{RestartPolicy, Verdict};
use crate::signals::SignalPipe;

/// The loop wakes at least this often (progress, heartbeat checks).
const TICK: Duration = Duration::from_millis(100);
/// Batches of tasks are kept under this many bytes.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// And under this many tasks.
const MAX_WINDOW: usize = 8192;
/// Room in the heartbeat table for workers added by SIGTTIN.
const EXTRA_SLOTS: usize = 64;
/// After SIGTERM to workers, how long before SIGKILL.
const TERM_TO_KILL: Duration = Duration::from_secs(2);
/// Once every task is accounted for, how long workers get to exit.
const FINISH_GRACE: Duration = Duration::from_secs(5);

/// Why a run could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Job(#[from] job::JobError),
    #[error("--workers must be at least 1")]
    NoWorkers,
    #[error("cannot set up the supervisor: {0}")]
    Setup(String),
}

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Running,
    /// SIGTERM/SIGINT: no new tasks; workers finish what they hold.
    Draining {
        until: Instant,
    },
    /// The graceful timeout passed: workers got SIGTERM; SIGKILL at `kill_at`.
    Terminating {
        kill_at: Instant,
    },
    /// Every task is accounted for; workers were told to stop.
    Finishing {
        kill_at: Instant,
    },
    /// Everything gets SIGKILL (second SIGINT, SIGQUIT, restart limit).
    Halting,
}

/// IPC totals.
#[derive(Default)]
struct Traffic {
    sent: u64,
    received: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

/// Runs a job to the end and reports.
pub fn run(config: &RunConfig) -> Result<RunReport, RunError> {
    let workers = config.worker_count();
    if workers == 0 {
        return Err(RunError::NoWorkers);
    }
    let spec = config.job_spec();
    let job = job::build(&spec)?;
    let mut supervisor = Supervisor::new(config, spec, job, workers)?;
    supervisor.run_loop();
    Ok(supervisor.report())
}

struct Supervisor<'c> {
    config: &'c RunConfig,
    spec: JobSpec,
    job: Box<dyn Job>,
    method: StartMethod,
    ledger: Ledger,
    heartbeat: HeartbeatTable,
    signals: SignalPipe,
    slots: Vec<Slot>,
    /// Crashes in a row per slot without a finished task (for backoff).
    crashes_in_a_row: Vec<u32>,
    policy: RestartPolicy,
    phase: Phase,
    next_worker_id: WorkerId,
    traffic: Traffic,
    restarts: Restarts,
    replacement_ms: Vec<f64>,
    reload_queue: VecDeque<usize>,
    reloading: Option<usize>,
    interrupted: bool,
    stop: Option<(Outcome, String)>,
    progress: Progress,
    started: Instant,
    wall: Duration,
    max_window: usize,
    rng: u64,
    buf: Vec<u8>,
}

impl<'c> Supervisor<'c> {
    fn new(
        config: &'c RunConfig,
        spec: JobSpec,
        job: Box<dyn Job>,
        workers: u32,
    ) -> Result<Self, RunError> {
        let heartbeat = HeartbeatTable::new(workers as usize + EXTRA_SLOTS)
            .map_err(|e| RunError::Setup(e.to_string()))?;
        let signals = SignalPipe::install().map_err(|e| RunError::Setup(e.to_string()))?;
        let total = job.task_count();
        let input_len = if total > 0 {
            job.task_input(0).len()
        } else {
            0
        };
        let max_window = (MAX_BATCH_BYTES / (input_len + 16)).clamp(1, MAX_WINDOW);
        let mut supervisor = Supervisor {
            config,
            spec,
            method: config.start_method.into(),
            ledger: Ledger::new(total, config.max_attempts),
            heartbeat,
            signals,
            slots: Vec::new(),
            crashes_in_a_row: Vec::new(),
            policy: RestartPolicy::new(config.max_restarts, config.restart_window),
            phase: Phase::Running,
            next_worker_id: 1,
            traffic: Traffic::default(),
            restarts: Restarts::default(),
            replacement_ms: Vec::new(),
            reload_queue: VecDeque::new(),
            reloading: None,
            interrupted: false,
            stop: None,
            progress: Progress::new(total, config.quiet),
            started: Instant::now(),
            wall: Duration::ZERO,
            max_window,
            rng: seed(),
            buf: Vec::new(),
            job,
        };
        supervisor.progress.event(&format!(
            "{}: {} workers ({})",
            supervisor.job.describe(),
            workers,
            method_name(supervisor.method)
        ));
        for _ in 0..workers {
            supervisor.add_slot(None);
        }
        Ok(supervisor)
    }

    // ---- the loop -----------------------------------------------------------

    fn run_loop(&mut self) {
        loop {
            if self.phase == Phase::Running && self.ledger.is_finished() {
                self.begin_finish();
            }
            if self.phase != Phase::Running && self.live_count() == 0 {
                break;
            }
            if self.phase == Phase::Running && self.live_count() == 0 && !self.any_waiting() {
                // Every slot closed (cannot happen unless all were retired): stop.
                self.stop_with(Outcome::Failed, "no workers left".into());
                break;
            }
            let ready = self.wait();
            let child_exited = self.handle_signals();
            self.read_channels(&ready);
            self.see_exits(&ready, child_exited);
            self.check_heartbeats();
            self.restart_due();
            if self.phase == Phase::Running {
                self.dispatch();
                self.step_reload();
            }
            self.advance_shutdown();
            self.progress.update(self.gauges());
        }
        self.wall = self.started.elapsed();
        self.progress.finish();
    }

    /// Polls until something happens or a deadline comes; returns the worker
    /// ids whose channel or pidfd is ready.
    fn wait(&mut self) -> Vec<WorkerId> {
        let mut fds = vec![libc::pollfd {
            fd: self.signals.fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let mut owners = vec![0];
        for slot in &self.slots {
            if let Slot::Live(w) = slot {
                if !w.channel_closed && w.killed_because.is_none() {
                    let mut events = libc::POLLIN;
                    if w.channel.has_unsent() {
                        events |= libc::POLLOUT;
                    }
                    fds.push(libc::pollfd {
                        fd: w.channel.as_raw_fd(),
                        events,
                        revents: 0,
                    });
                    owners.push(w.id);
                }
                if let Some(fd) = w.process.exit_fd() {
                    fds.push(libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    });
                    owners.push(w.id);
                }
            }
        }
        let timeout = self
            .next_deadline()
            .saturating_duration_since(Instant::now());
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: `fds` is a valid, exclusively borrowed array of pollfd.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, millis) };
        if n <= 0 {
            // Timeout, or EINTR from a signal whose byte is in the pipe now.
            return Vec::new();
        }
        fds.iter()
            .zip(owners)
            .skip(1)
            .filter(|(p, _)| p.revents != 0)
            .map(|(_, id)| id)
            .collect()
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut next = now
            + TICK
                .min(self.config.worker_timeout / 4)
                .max(Duration::from_millis(5));
        for slot in &self.slots {
            if let Slot::Waiting { at, .. } = slot {
                next = next.min(*at);
            }
        }
        match self.phase {
            Phase::Draining { until } => next = next.min(until),
            Phase::Terminating { kill_at } | Phase::Finishing { kill_at } => {
                next = next.min(kill_at)
            }
            _ => {}
        }
        next
    }

    // ---- signals --------------------------------------------------------------

    /// Acts on the signals received; true if one was SIGCHLD.
    fn handle_signals(&mut self) -> bool {
        let mut child_exited = false;
        for signal in self.signals.drain() {
            match signal {
                libc::SIGTERM | libc::SIGINT => self.on_interrupt(signal),
                libc::SIGQUIT => {
                    self.progress.event("SIGQUIT: stopping at once");
                    self.interrupted = true;
                    self.halt();
                }
                libc::SIGHUP => self.on_reload(),
                libc::SIGTTIN => self.on_more(),
                libc::SIGTTOU => self.on_fewer(),
                libc::SIGCHLD => child_exited = true,
                _ => {}
            }
        }
        child_exited
    }

    fn on_interrupt(&mut self, signal: libc::c_int) {
        let name = ipc::signal_name(signal);
        match self.phase {
            Phase::Running => {
                self.interrupted = true;
                let until = Instant::now() + self.config.graceful_timeout;
                self.phase = Phase::Draining { until };
                self.progress.event(&format!(
                    "{name}: no new tasks; waiting up to {:.1} s for the {} in flight (SIGINT again: stop at once)",
                    self.config.graceful_timeout.as_secs_f64(),
                    self.in_flight()
                ));
                self.stop_all(StopReason::Shutdown);
            }
            _ if signal == libc::SIGINT => {
                self.progress.event("second SIGINT: stopping at once");
                self.interrupted = true;
                self.halt();
            }
            _ => self.progress.event(&format!("{name}: already stopping")),
        }
    }

    fn on_reload(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        self.reload_queue = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Slot::Live(_)))
            .map(|(i, _)| i)
            .collect();
        self.progress.event(&format!(
            "SIGHUP: replacing {} workers one by one",
            self.reload_queue.len()
        ));
    }

    fn on_more(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        if self.slots.len() >= self.heartbeat.slots() {
            self.progress
                .event("SIGTTIN: at the most workers this run allows");
            return;
        }
        self.add_slot(Some("added (SIGTTIN)"));
    }

    fn on_fewer(&mut self) {
        if self.phase != Phase::Running || self.open_count() <= 1 {
            return;
        }
        let Some(index) = (0..self.slots.len()).rev().find(|&i| match &self.slots[i] {
            Slot::Live(w) => w.stopping.is_none(),
            Slot::Waiting { .. } => true,
            Slot::Closed => false,
        }) else {
            return;
        };
        match &mut self.slots[index] {
            Slot::Live(w) => {
                let label = w.label();
                send_stop(w, StopReason::Retire);
                self.progress.event(&format!("SIGTTOU: retiring {label}"));
            }
            slot => {
                *slot = Slot::Closed;
                self.progress.event(&format!(
                    "SIGTTOU: worker {} will not be restarted",
                    index + 1
                ));
            }
        }
    }

    // ---- workers coming and going -----------------------------------------------

    fn add_slot(&mut self, why: Option<&str>) {
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
    fn start_in(&mut self, index: usize, replacing: Option<Replacing>) {
        let id = self.next_worker_id;
        self.next_worker_id += 1;
        match start_worker(id, index, &self.spec, self.method, &self.heartbeat) {
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
    fn after_crash(&mut self, index: usize, what_happened: String) {
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

    fn restart_due(&mut self) {
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
    /// when its pidfd or channel woke the loop, or on SIGCHLD (which also
    /// covers kernels without pidfds).
    fn see_exits(&mut self, ready: &[WorkerId], child_exited: bool) {
        for index in 0..self.slots.len() {
            let Slot::Live(w) = &mut self.slots[index] else {
                continue;
            };
            let woke = child_exited || ready.contains(&w.id) || w.process.exit_fd().is_none();
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

    fn on_exit(&mut self, index: usize, mut w: Worker, ending: Ending) {
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

    /// Stops the run at once: SIGKILL to every worker.
    fn halt(&mut self) {
        self.phase = Phase::Halting;
        for slot in &mut self.slots {
            match slot {
                Slot::Live(w) => {
                    let _ = w.process.kill();
                }
                Slot::Waiting { .. } => *slot = Slot::Closed,
                Slot::Closed => {}
            }
        }
    }

    fn stop_with(&mut self, outcome: Outcome, reason: String) {
        if self.stop.is_none() {
            self.stop = Some((outcome, reason));
        }
    }

    fn stop_all(&mut self, reason: StopReason) {
        for slot in &mut self.slots {
            match slot {
                Slot::Live(w) => send_stop(w, reason),
                Slot::Waiting { .. } => *slot = Slot::Closed,
                Slot::Closed => {}
            }
        }
    }

    fn begin_finish(&mut self) {
        self.phase = Phase::Finishing {
            kill_at: Instant::now() + FINISH_GRACE,
        };
        self.stop_all(StopReason::Shutdown);
    }

    fn advance_shutdown(&mut self) {
        let now = Instant::now();
        match self.phase {
            Phase::Draining { until } if now >= until => {
                self.progress.event(&format!(
                    "graceful timeout: sending SIGTERM to {} workers",
                    self.live_count()
                ));
                self.phase = Phase::Terminating {
                    kill_at: now + TERM_TO_KILL,
                };
                for slot in &mut self.slots {
                    if let Slot::Live(w) = slot {
                        let _ = w.process.terminate();
                    }
                }
            }
            Phase::Terminating { kill_at } | Phase::Finishing { kill_at } if now >= kill_at => {
                self.progress.event("workers did not exit in time: SIGKILL");
                self.halt();
            }
            _ => {}
        }
    }

    // ---- heartbeats ---------------------------------------------------------------

    fn check_heartbeats(&mut self) {
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

    // ---- messages -------------------------------------------------------------------

    fn read_channels(&mut self, ready: &[WorkerId]) {
        for index in 0..self.slots.len() {
            let Slot::Live(w) = &mut self.slots[index] else {
                continue;
            };
            if !ready.contains(&w.id) {
                continue;
            }
            if w.channel.has_unsent() {
                let _ = w.channel.flush_timeout(Duration::ZERO);
            }
            let Slot::Live(mut w) = std::mem::replace(&mut self.slots[index], Slot::Closed) else {
                continue;
            };
            self.read_worker(&mut w);
            self.slots[index] = Slot::Live(w);
        }
    }

    /// Takes every message the worker has sent so far.
    fn read_worker(&mut self, w: &mut Worker) {
        while !w.channel_closed && w.killed_because.is_none() {
            let mut buf = std::mem::take(&mut self.buf);
            let received = w.channel.recv_bytes_into_timeout(&mut buf, Duration::ZERO);
            let message = match received {
                Ok(n) => {
                    self.traffic.received += 1;
                    self.traffic.bytes_received += n as u64 + 4;
                    ipc::codec::decode_payload::<FromWorker>(&buf[..n])
                        .map_err(|e| format!("sent garbage ({e}); killed"))
                }
                Err(RecvTimeoutError::Timeout) => {
                    self.buf = buf;
                    return;
                }
                Err(RecvTimeoutError::Recv(RecvError::Disconnected)) => {
                    w.channel_closed = true;
                    self.buf = buf;
                    return;
                }
                Err(RecvTimeoutError::Recv(e)) => Err(format!("sent garbage ({e}); killed")),
            };
            self.buf = buf;
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

    fn on_ready(&mut self, w: &mut Worker) {
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

    fn on_results(&mut self, w: &mut Worker, results: Vec<TaskResult>) {
        for result in results {
            if !self.ledger.holds(w.id, result.id) {
                w.kill(format!(
                    "sent a result for task {}, which it does not hold; killed",
                    result.id
                ));
                return;
            }
            let failure = match result.output {
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

    // ---- dispatch ---------------------------------------------------------------------

    fn dispatch(&mut self) {
        for index in 0..self.slots.len() {
            let Slot::Live(w) = &mut self.slots[index] else {
                continue;
            };
            if !w.ready
                || w.stopping.is_some()
                || w.killed_because.is_some()
                || w.channel_closed
                || w.channel.has_unsent()
            {
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
            match w.channel.send_bytes_timeout(&bytes, Duration::ZERO) {
                Ok(()) => {
                    self.traffic.sent += 1;
                    self.traffic.bytes_sent += bytes.len() as u64 + 4;
                }
                Err(SendTimeoutError::Timeout) => self.ledger.untake(w.id, &leases),
                Err(SendTimeoutError::Send(_)) => {
                    // Its end is gone: its exit follows; the tasks are not lost.
                    self.ledger.untake(w.id, &leases);
                    w.channel_closed = true;
                }
            }
        }
    }

    fn step_reload(&mut self) {
        if self.reloading.is_some() {
            return;
        }
        while let Some(index) = self.reload_queue.pop_front() {
            if let Some(Slot::Live(w)) = self.slots.get_mut(index) {
                if w.stopping.is_none() {
                    send_stop(w, StopReason::Reload);
                    self.reloading = Some(index);
                    return;
                }
            }
        }
    }

    // ---- figures ----------------------------------------------------------------------

    fn live_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Live(_)))
            .count()
    }

    fn any_waiting(&self) -> bool {
        self.slots.iter().any(|s| matches!(s, Slot::Waiting { .. }))
    }

    fn open_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| match s {
                Slot::Live(w) => w.stopping.is_none(),
                Slot::Waiting { .. } => true,
                Slot::Closed => false,
            })
            .count()
    }

    fn in_flight(&self) -> usize {
        self.slots
            .iter()
            .map(|s| match s {
                Slot::Live(w) => self.ledger.held_by(w.id),
                _ => 0,
            })
            .sum()
    }

    fn gauges(&self) -> Gauges {
        Gauges {
            done: self.ledger.done(),
            messages: self.traffic.sent + self.traffic.received,
            bytes: self.traffic.bytes_sent + self.traffic.bytes_received,
            workers_alive: self.live_count(),
            crashes: self.restarts.crashes,
        }
    }

    fn random(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn report(&mut self) -> RunReport {
        let complete = self.ledger.done() == self.ledger.total();
        let outcome = match &self.stop {
            Some((outcome, _)) => *outcome,
            None if self.interrupted && !self.ledger.is_finished() => Outcome::Interrupted,
            None if !self.ledger.dead_letters().is_empty() => Outcome::DeadLetters,
            None if complete => Outcome::Success,
            None => Outcome::Interrupted,
        };
        let job_outcome = self.job.outcome(complete);
        let secs = self.wall.as_secs_f64().max(1e-9);
        let t = &self.traffic;
        let messages = t.sent + t.received;
        let bytes = t.bytes_sent + t.bytes_received;
        let mut restarts = std::mem::take(&mut self.restarts);
        restarts.replacement = Latency::of(std::mem::take(&mut self.replacement_ms));
        RunReport {
            outcome,
            exit_code: outcome.exit_code(),
            reason: self.stop.as_ref().map(|(_, r)| r.clone()),
            job: self.spec.name.clone(),
            description: self.job.describe(),
            result: job_outcome.value,
            summary: job_outcome.summary,
            verified: job_outcome.verified,
            complete,
            workers: self.config.worker_count(),
            start_method: method_name(self.method).into(),
            wall_seconds: secs,
            tasks: TaskCounts {
                total: self.ledger.total(),
                done: self.ledger.done(),
                dead: self.ledger.dead_letters().len() as u64,
                remaining: self.ledger.remaining(),
                requeued: self.ledger.requeued(),
            },
            tasks_per_second: self.ledger.done() as f64 / secs,
            ipc: IpcCounts {
                messages_sent: t.sent,
                messages_received: t.received,
                bytes_sent: t.bytes_sent,
                bytes_received: t.bytes_received,
                messages_per_second: messages as f64 / secs,
                megabytes_per_second: bytes as f64 / secs / 1e6,
            },
            restarts,
            dead_letters: self.ledger.dead_letters().to_vec(),
        }
    }
}

fn send_stop(w: &mut Worker, reason: StopReason) {
    if w.stopping.is_some() {
        return;
    }
    w.stopping = Some(reason);
    if let Ok(bytes) = postcard::to_allocvec(&ToWorker::Stop) {
        // A full channel: the worker is stuck or dying; its heartbeat or exit settles it.
        let _ = w
            .channel
            .send_bytes_timeout(&bytes, Duration::from_millis(10));
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

fn method_name(method: StartMethod) -> &'static str {
    match method {
        StartMethod::Fork => "fork",
        StartMethod::Spawn => "spawn",
    }
}

fn seed() -> u64 {
    (monotonic_ns() ^ u64::from(std::process::id()).rotate_left(32)) | 1
}
