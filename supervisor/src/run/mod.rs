//! The supervisor's event loop: one thread, one `poll(2)` over the signal
//! pipe, every worker's doorbell (its results wait in a shared-memory
//! ring) and every worker's pidfd. A worker's exit is
//! seen the moment its pidfd becomes readable; heartbeats are read from
//! shared memory on each turn; nothing sleeps and polls.
//!
//! Each turn: act on signals, read results, see exits (re-queue, replace or
//! stop), kill workers whose heartbeat stalled, start replacements whose
//! backoff is over, hand out tasks, and move the shutdown along.

use std::collections::VecDeque;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use outlast_ipc::StartMethod;
use outlast_worker::heartbeat::monotonic_ns;
use outlast_worker::launch::Launch;
use outlast_worker::protocol::ToWorker;
use outlast_worker::work::{AnyJob, Work};

use crate::fleet::{Slot, StopReason, Worker};
use crate::ledger::{Ledger, WorkerId};
use crate::options::RunOptions;
use crate::progress::{Gauges, Progress};
use crate::report::{IpcCounts, Latency, Outcome, Restarts, RunReport, TaskCounts};
use crate::restart::RestartPolicy;
use outlast_ipc::os::signals::SelfPipe;
use outlast_worker::numbers::plural;

mod commands;
mod control;
mod journal;
#[cfg(feature = "metrics")]
mod metrics;
mod recovery;
mod shutdown;
mod status;

use shutdown::Phase;
mod traffic;

/// The loop wakes at least this often (progress, heartbeat checks).
const TICK: Duration = Duration::from_millis(100);
/// Heartbeats are judged at most this often (a turn can be microseconds).
const HEARTBEAT_EVERY: Duration = Duration::from_millis(10);
/// Workers' memory is read at most this often (from /proc, per worker).
const MEMORY_EVERY: Duration = Duration::from_millis(250);
/// Batches of tasks are kept under this many bytes.
const MAX_BATCH_BYTES: usize = 256 * 1024;
/// And under this many tasks. (At 8192, two workers of no-op tasks each
/// ran dry every 1.5 ms waiting for the supervisor to hand out more, and
/// the three processes slept a third of a 2M-task run; a task of a byte's
/// input is held to 15,420 by the bytes first.)
const MAX_WINDOW: usize = 16384;

/// What woke the loop: workers whose doorbell rang, and workers whose
/// pidfd says they exited.
#[derive(Default)]
struct Wakeups {
    channels: Vec<WorkerId>,
    exited: Vec<WorkerId>,
    /// The control socket has a client or a request.
    control: bool,
}

/// The owner of the control socket's descriptors in the poll set.
const CONTROL: WorkerId = WorkerId::MAX;
/// The owner of [`Engine::wake_fd`] in a wait.
const WAKE: WorkerId = WorkerId::MAX - 1;

/// What a slot has been through (for `supervisor status`).
#[derive(Default)]
pub(super) struct SlotHistory {
    pub started: bool,
    pub restarts: u64,
    pub last_exit: Option<String>,
}

/// Why a run could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("--workers must be at least 1")]
    NoWorkers,
    #[error(transparent)]
    TooManyWorkers(#[from] crate::limits::TooManyWorkers),
    #[error("cannot set up the supervisor: {0}")]
    Setup(String),
    /// `fork` was asked for in a process with other threads.
    #[error(
        "the fork start method was asked for, but this process has {threads} threads: a forked \
         worker could wait forever on a lock one of them held; use the forkserver start method \
         (the default) or spawn, or allow_threads(true) if no other thread can hold a lock at a fork"
    )]
    ThreadsPresent { threads: usize },
    /// The journal could not be opened or read, or is another job's.
    #[error(transparent)]
    Journal(crate::journal::JournalError),
}

/// IPC totals.
#[derive(Default)]
struct Traffic {
    sent: u64,
    received: u64,
    bytes_sent: u64,
    bytes_received: u64,
}

/// One run of the loop: the fleet, the ledger and the job's work. The
/// [`Supervisor`](crate::Supervisor) runs it to the end; a
/// [`Pool`](crate::pool::Pool) turns it whenever its caller waits.
pub(crate) struct Engine {
    options: RunOptions,
    work: Box<dyn Work>,
    launch: Box<dyn Launch>,
    /// A pool's run: it goes on with no task left, until told to finish.
    open_ended: bool,
    method: StartMethod,
    ledger: Ledger,
    signals: Option<SelfPipe>,
    slots: Vec<Slot>,
    /// Crashes in a row per slot without a finished task (for backoff).
    crashes_in_a_row: Vec<u32>,
    /// Workers that could not start since a task last finished (run-wide).
    start_failures_in_a_row: u32,
    /// Per slot: its workers after the first, and how the last one ended.
    history: Vec<SlotHistory>,
    /// The control socket (`supervisor status`, `scale`, ...), if any.
    control: Option<crate::control::server::ControlServer>,
    /// The Prometheus endpoint (`--metrics ADDR`), if any.
    metrics: Option<crate::metrics_http::MetricsServer>,
    /// One more descriptor whose readiness ends a wait: a pool's thread
    /// is woken through it when its handles submit or command.
    wake_fd: Option<std::os::fd::RawFd>,
    /// systemd's notify socket, if the run was asked to use one and has one.
    notifier: Option<crate::notify::Notifier>,
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
    /// Ring size of each worker's task and result rings.
    ring_bytes: usize,
    /// Workers in this run (after capping to the task count).
    workers: u64,
    /// The most workers alive at once.
    workers_peak: u64,
    /// Workers the fleet is meant to have now (TTIN adds, TTOU retires).
    fleet_size: u64,
    /// The most workers the machine holds (SIGTTIN stops there).
    max_workers: usize,
    /// Things the user should know about how the run was set up.
    notes: Vec<String>,
    /// When heartbeats were last judged.
    heartbeats_judged: Instant,
    /// When workers' memory was last read (--max-worker-memory).
    memory_checked: Instant,
    /// Worker processes started, replacements included.
    workers_started: u64,
    /// `Ready` messages received, and when the first `workers` of them had come.
    readies: u64,
    all_ready_after: Option<Duration>,
    rng: u64,
    buf: Vec<u8>,
    /// Where task batches are encoded, reused.
    batch: outlast_worker::protocol::TaskBatch,
    /// The loop is over: every worker is gone.
    over: bool,
    /// systemd was told `STOPPING=1`.
    told_stopping: bool,
    /// Where settled tasks are kept (`RunOptions::journal`), if anywhere.
    journal: Option<journal::RunJournal>,
}

impl Engine {
    pub(crate) fn new(
        options: RunOptions,
        job: AnyJob,
        open_ended: bool,
    ) -> Result<Self, RunError> {
        let asked = u64::from(options.worker_count());
        if asked == 0 {
            return Err(RunError::NoWorkers);
        }
        // Every fork would be refused: say so once, now, rather than
        // through a restart loop of workers that cannot start.
        refuse_fork_with_threads(&options)?;
        let AnyJob {
            mut work,
            launch,
            spec,
        } = job;
        let total = work.task_count();
        let input_len = work.input_size_hint();
        let ring_bytes = ring_bytes_for(input_len);
        let mut notes = Vec::new();
        let mut workers = asked;
        if !open_ended && workers > total.max(1) {
            workers = total.max(1);
            notes.push(format!(
                "{} asked for {}: starting {workers}",
                plural(asked, "worker"),
                plural(total, "task")
            ));
        }
        let mut ledger = Ledger::new(total, options.max_attempts);
        let journal = match &options.journal {
            Some(journal_options) => {
                let resumed =
                    journal::open(journal_options, spec.as_ref(), work.as_mut(), &mut ledger)?;
                notes.extend(resumed.notes);
                Some(resumed.journal)
            }
            None => None,
        };
        let capacity = crate::limits::capacity(ring_bytes);
        capacity.check(workers)?;
        let signals = if options.handle_signals {
            Some(crate::signals::install().map_err(|e| RunError::Setup(e.to_string()))?)
        } else {
            None
        };
        let adaptive = (MAX_BATCH_BYTES / (input_len + 16)).clamp(1, MAX_WINDOW);
        let max_window = options
            .max_window
            .or(work.tasks_per_worker())
            .map_or(adaptive, |w| w.clamp(1, MAX_WINDOW));
        let noun = if open_ended { "items" } else { "tasks" };
        let control = crate::control::server::ControlServer::bind(&options.control)
            .map_err(|e| RunError::Setup(e.to_string()))?;
        let metrics = match options.metrics {
            None => None,
            #[cfg(not(feature = "metrics"))]
            Some(addr) => {
                return Err(RunError::Setup(format!(
                "cannot serve metrics at {addr}: outlast was built without its `metrics` feature"
            )))
            }
            #[cfg(feature = "metrics")]
            Some(addr) => Some(
                crate::metrics_http::MetricsServer::bind(addr)
                    .map_err(|e| RunError::Setup(format!("cannot serve metrics at {addr}: {e}")))?,
            ),
        };
        let mut engine = Engine {
            method: options.start_method,
            ledger,
            signals,
            slots: Vec::new(),
            crashes_in_a_row: Vec::new(),
            start_failures_in_a_row: 0,
            history: Vec::new(),
            control,
            metrics,
            wake_fd: None,
            notifier: options
                .systemd_notify
                .then(crate::notify::Notifier::from_env)
                .flatten(),
            policy: RestartPolicy::new(options.max_restarts, options.restart_window),
            phase: Phase::Running,
            next_worker_id: 1,
            traffic: Traffic::default(),
            restarts: Restarts::default(),
            replacement_ms: Vec::new(),
            reload_queue: VecDeque::new(),
            reloading: None,
            interrupted: false,
            stop: None,
            progress: Progress::new(total, options.quiet, noun),
            started: Instant::now(),
            wall: Duration::ZERO,
            max_window,
            ring_bytes,
            workers,
            workers_peak: 0,
            fleet_size: workers,
            max_workers: usize::try_from(capacity.max_workers).unwrap_or(usize::MAX),
            notes,
            heartbeats_judged: Instant::now(),
            memory_checked: Instant::now(),
            workers_started: 0,
            readies: 0,
            all_ready_after: None,
            rng: seed(),
            buf: Vec::new(),
            batch: outlast_worker::protocol::TaskBatch::default(),
            over: false,
            told_stopping: false,
            journal,
            options,
            work,
            launch,
            open_ended,
        };
        for note in engine.notes.clone() {
            engine.progress.event(&format!("note: {note}"));
        }
        if !open_ended {
            engine.progress.event(&format!(
                "{}: {} ({})",
                engine.work.describe(),
                plural(workers, "worker"),
                engine.method.name()
            ));
        }
        // Started by the loop, a batch per turn, so that a signal is heard
        // however many there are.
        for _ in 0..workers {
            engine.slots.push(Slot::Pending);
            engine.crashes_in_a_row.push(0);
            engine.history.push(SlotHistory::default());
        }
        Ok(engine)
    }

    /// Turns the loop until every worker is gone.
    pub(crate) fn run_to_end(&mut self) {
        while !self.turn(None) {}
    }

    /// One turn of the loop, waiting at most `max_wait` (and never past
    /// the loop's own deadlines) for something to happen. True once the
    /// run is over.
    pub(crate) fn turn(&mut self, max_wait: Option<Duration>) -> bool {
        if self.over {
            return true;
        }
        if self.phase == Phase::Running && !self.open_ended && self.ledger.is_finished() {
            self.begin_finish();
        }
        if self.phase != Phase::Running && self.live_count() == 0 {
            self.end();
            return true;
        }
        if self.phase == Phase::Running && self.live_count() == 0 && !self.any_waiting() {
            // Every slot closed (cannot happen unless all were retired): stop.
            self.stop_with(Outcome::Failed, "no workers left".into());
            self.end();
            return true;
        }
        // Tasks made since the last turn (a pool's submissions) go out
        // before the wait, not after it.
        self.hand_out();
        let wakeups = self.wait(max_wait);
        let child_exited = self.handle_signals();
        let clients_waiting = self.control.as_ref().is_some_and(|c| c.has_peers())
            || self.metrics.as_ref().is_some_and(|m| m.has_peers());
        if wakeups.control || clients_waiting {
            self.serve_control();
        }
        self.start_pending();
        self.read_channels(&wakeups.channels);
        self.see_exits(&wakeups.exited, child_exited);
        if self.phase == Phase::Running && !self.open_ended {
            if let Some(halt) = self.work.halt() {
                self.on_halt(halt);
            }
        }
        if self.heartbeats_judged.elapsed() >= HEARTBEAT_EVERY {
            self.heartbeats_judged = Instant::now();
            self.check_heartbeats();
        }
        if self.memory_checked.elapsed() >= MEMORY_EVERY {
            self.memory_checked = Instant::now();
            self.check_memory();
        }
        self.restart_due();
        self.hand_out();
        if self.phase == Phase::Running {
            self.step_reload();
        }
        self.journal_end_turn();
        self.resend_stops();
        self.advance_shutdown();
        self.workers_peak = self.workers_peak.max(self.live_count() as u64);
        let mut gauges = self.gauges();
        let total = match self.work.progress() {
            Some((done, total)) => {
                gauges.done = done;
                total
            }
            None => self.ledger.total(),
        };
        self.progress.set_length(total);
        self.notify(&gauges, total);
        self.progress.update(gauges);
        false
    }

    /// systemd: ready once every worker is, then the progress; the drain.
    fn notify(&mut self, gauges: &Gauges, total: u64) {
        let Some(notifier) = self.notifier.as_mut() else {
            return;
        };
        // Most turns have nothing to tell: no line is built for them.
        let news = (self.phase != Phase::Running && !self.told_stopping)
            || (self.all_ready_after.is_some() && notifier.status_due());
        if !news {
            return;
        }
        let status = format!(
            "{}/{total} tasks done, {} workers alive",
            gauges.done, gauges.workers_alive
        );
        if self.phase != Phase::Running {
            if !self.told_stopping {
                self.told_stopping = true;
                notifier.stopping(&status);
            }
        } else if self.all_ready_after.is_some() {
            notifier.ready(&status);
            notifier.status(&status);
        }
    }

    /// Ends each wait as soon as `fd` is readable (its owner drains it).
    pub(crate) fn wake_on(&mut self, fd: std::os::fd::RawFd) {
        self.wake_fd = Some(fd);
    }

    /// Says `line` as an event of the run (what a caller driving the
    /// engine, such as the broker's loop, saw).
    #[cfg(feature = "broker")]
    pub(crate) fn event(&self, line: &str) {
        self.progress.event(line);
    }

    /// Whether every worker is gone and the loop is over.
    pub(crate) fn is_over(&self) -> bool {
        self.over
    }

    /// Why the run stopped early, if it did.
    pub(crate) fn stop_reason(&self) -> Option<String> {
        self.stop.as_ref().map(|(_, reason)| reason.clone())
    }

    /// Asks every worker to finish what it holds and exit.
    pub(crate) fn finish(&mut self) {
        if self.phase == Phase::Running {
            self.begin_finish();
        }
    }

    /// Kills every worker now.
    pub(crate) fn terminate(&mut self) {
        if !self.over {
            self.halt(crate::kill::KillCause::Terminated);
        }
    }

    /// The pids of the workers alive now.
    pub(crate) fn worker_pids(&self) -> Vec<u32> {
        self.slots
            .iter()
            .filter_map(|s| match s {
                Slot::Live(w) => Some(w.pid),
                _ => None,
            })
            .collect()
    }

    /// Worker processes started so far, replacements included.
    pub(crate) fn workers_started(&self) -> u64 {
        self.workers_started
    }

    /// New tasks from the work, then tasks to workers with room.
    fn hand_out(&mut self) {
        if self.phase != Phase::Running {
            return;
        }
        let first = self.ledger.total();
        let made = self.work.top_up(first);
        if made > 0 {
            self.ledger.extend(made);
            for id in first..first + made {
                self.ledger
                    .set_prior_failures(id, self.work.prior_failures(id));
            }
        }
        self.dispatch();
    }

    fn end(&mut self) {
        self.journal_finish();
        self.over = true;
        self.wall = self.started.elapsed();
        self.progress.finish();
    }

    /// Polls until something happens or a deadline comes.
    fn wait(&mut self, max_wait: Option<Duration>) -> Wakeups {
        // Without a signal pipe, -1: poll skips it.
        let mut fds = vec![libc::pollfd {
            fd: self.signals.as_ref().map_or(-1, SelfPipe::fd),
            events: libc::POLLIN,
            revents: 0,
        }];
        // Who each descriptor belongs to, and whether it is a pidfd.
        let mut owners = vec![(0, false)];
        for slot in &self.slots {
            if let Slot::Live(w) = slot {
                // A parked link's rings wait until it is open: so does its bell.
                if !w.channel_closed && w.killed_because.is_none() && w.link.is_open() {
                    fds.push(libc::pollfd {
                        fd: w.link.doorbell.fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    });
                    owners.push((w.id, false));
                }
                if let Some(fd) = w.process.exit_fd() {
                    fds.push(libc::pollfd {
                        fd: fd.as_raw_fd(),
                        events: libc::POLLIN,
                        revents: 0,
                    });
                    owners.push((w.id, true));
                }
            }
        }
        if let Some(fd) = self.wake_fd {
            fds.push(libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            });
            owners.push((WAKE, false));
        }
        let control_fds = self.control.as_ref().map(|c| c.fds()).unwrap_or_default();
        let metrics_fds = self.metrics.as_ref().map(|m| m.fds()).unwrap_or_default();
        {
            for fd in control_fds.into_iter().chain(metrics_fds) {
                fds.push(libc::pollfd {
                    fd,
                    events: libc::POLLIN,
                    revents: 0,
                });
                owners.push((CONTROL, false));
            }
        }
        let backlog = self
            .slots
            .iter()
            .any(|s| matches!(s, Slot::Live(w) if w.backlog) || matches!(s, Slot::Pending));
        let timeout = if backlog {
            Duration::ZERO
        } else {
            self.next_deadline()
                .saturating_duration_since(Instant::now())
                .min(max_wait.unwrap_or(Duration::MAX))
        };
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        let mut wakeups = Wakeups::default();
        match outlast_ipc::os::poll::poll_once(&mut fds, millis) {
            Ok(n) if n > 0 => {}
            // Timeout, or EINTR from a signal whose byte is in the pipe now.
            _ => return wakeups,
        }
        for (p, (id, is_pidfd)) in fds.iter().zip(owners).skip(1) {
            if p.revents == 0 {
                continue;
            }
            if id == WAKE {
                // Its reader drains it; this wait only had to end.
            } else if id == CONTROL {
                wakeups.control = true;
            } else if is_pidfd {
                wakeups.exited.push(id);
            } else {
                wakeups.channels.push(id);
                if p.revents & (libc::POLLHUP | libc::POLLERR) != 0 {
                    // A closed doorbell usually means an exit: check for it.
                    wakeups.exited.push(id);
                }
            }
        }
        wakeups
    }

    fn resend_stops(&mut self) {
        for slot in &mut self.slots {
            if let Slot::Live(w) = slot {
                if w.killed_because.is_none() {
                    resend_stop(w);
                }
            }
        }
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut next = now
            + TICK
                .min(self.options.worker_timeout / 4)
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

    fn live_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| matches!(s, Slot::Live(_)))
            .count()
    }

    fn any_waiting(&self) -> bool {
        self.slots
            .iter()
            .any(|s| matches!(s, Slot::Waiting { .. } | Slot::Pending))
    }

    fn open_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| match s {
                Slot::Live(w) => w.stopping.is_none(),
                Slot::Waiting { .. } | Slot::Pending => true,
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

    pub(crate) fn report(&mut self) -> RunReport {
        let complete = self.ledger.done() == self.ledger.total();
        let outcome = match &self.stop {
            Some((outcome, _)) => *outcome,
            None if self.interrupted && !self.ledger.is_finished() => Outcome::Interrupted,
            None if !self.ledger.dead_letters().is_empty() => Outcome::DeadLetters,
            None if complete => Outcome::Success,
            None => Outcome::Interrupted,
        };
        let job_outcome = self.work.outcome(complete);
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
            job: self.work.name(),
            description: self.work.describe(),
            result: job_outcome.value,
            summary: job_outcome.summary,
            verified: job_outcome.verified,
            complete,
            workers: self.workers as u32,
            workers_at_end: self.fleet_size,
            workers_peak: self.workers_peak,
            workers_started: self.workers_started,
            startup_seconds: self.all_ready_after.map(|d| d.as_secs_f64()),
            notes: self.notes.clone(),
            start_method: self.method.name().into(),
            wall_seconds: secs,
            tasks: TaskCounts {
                total: self.ledger.total(),
                done: self.ledger.done(),
                dead: self.ledger.dead_letters().len() as u64,
                remaining: self.ledger.remaining(),
                requeued: self.ledger.requeued(),
                resumed: self.ledger.resumed(),
            },
            // This run's own: what the journal gave back took no time.
            tasks_per_second: (self.ledger.done() - self.ledger.done_resumed()) as f64 / secs,
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
            broker: None,
        }
    }
}

fn send_stop(w: &mut Worker, reason: StopReason) {
    if w.stopping.is_some() {
        return;
    }
    w.stopping = Some(reason);
    w.stop_unsent = true;
    resend_stop(w);
}

/// Sends a `Stop` that could not go yet (the worker's ring was full).
fn resend_stop(w: &mut Worker) {
    if !w.stop_unsent {
        return;
    }
    let Ok(bytes) = postcard::to_allocvec(&ToWorker::Stop) else {
        return;
    };
    use outlast_ipc::spsc::{SpscError, TrySendError};
    match w.link.tasks.try_send(&bytes) {
        Ok(()) => w.stop_unsent = false,
        // Full, or not open yet: next turn. Broken: its heartbeat or exit
        // settles it.
        Err(TrySendError::Full | TrySendError::Failed(SpscError::Parked)) => {}
        Err(_) => w.stop_unsent = false,
    }
}

/// Queue rings big enough for a full batch of tasks (or of results, which
/// are about as large for the echo job) several times over, and for any one
/// task: 1 MiB for small tasks, more for big payloads.
/// `fork` asked for in a process with other threads, not allowed: the
/// typed error, at once (checked on the thread that asked).
pub(crate) fn refuse_fork_with_threads(options: &RunOptions) -> Result<(), RunError> {
    if options.start_method == StartMethod::Fork && !options.allow_threads {
        let threads = outlast_ipc::os::procfs::thread_count().unwrap_or(1);
        if threads > 1 {
            return Err(RunError::ThreadsPresent { threads });
        }
    }
    Ok(())
}

fn ring_bytes_for(input_len: usize) -> usize {
    let one = input_len + 4096;
    (MAX_BATCH_BYTES * 4).max(one * 4).min(1 << 30)
}

fn seed() -> u64 {
    (monotonic_ns() ^ u64::from(std::process::id()).rotate_left(32)) | 1
}
