//! The worker table: one entry per worker slot, each a live worker process
//! with its link (two SPSC rings, its heartbeat, a doorbell), a slot
//! waiting out a restart backoff, or a closed slot.
//! Starting a worker and reading its exit live here; what to do about an
//! exit is the run loop's business.

use std::time::{Duration, Instant};

use outlast_ipc::{JoinError, JoinTimeoutError, StartMethod};
use outlast_worker::launch::{Launch, WorkerProcess};
use outlast_worker::link::{self, LinkError, SupervisorLink};

use crate::kill::KillCause;
use crate::ledger::WorkerId;

/// Tasks a new worker is sent at first; the window doubles while the worker
/// runs dry between batches (see the run loop).
pub const FIRST_WINDOW: usize = 2;

/// Why the supervisor asked a worker to stop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// It reached its --max-tasks-per-child.
    Recycle,
    /// Its memory passed --max-worker-memory.
    Memory,
    /// SIGHUP: replaced one by one.
    Reload,
    /// SIGTTOU: one worker fewer.
    Retire,
    /// The run is ending.
    Shutdown,
}

/// What to say, and measure, once a replacement is ready.
#[derive(Clone, Debug)]
pub struct Replacing {
    /// The start of the event line, e.g. `worker 3 (pid 42) killed by SIGKILL; 2 tasks re-queued`.
    pub what_happened: String,
    pub exit_seen: Instant,
    pub backoff: Duration,
    /// A crash (measured for the report), not a recycle or reload.
    pub crash: bool,
    /// A worker added (TTIN), not one replacing another.
    pub added: bool,
}

pub struct Worker {
    pub id: WorkerId,
    pub slot: usize,
    pub process: Box<dyn WorkerProcess>,
    pub pid: u32,
    /// Its rings, heartbeat and doorbell.
    pub link: SupervisorLink,
    /// It sent `Ready`.
    pub ready: bool,
    /// The supervisor sent it `Stop`, and why.
    pub stopping: Option<StopReason>,
    /// `Stop` is decided but its ring was full: sent again each turn.
    pub stop_unsent: bool,
    /// The supervisor killed it, and why.
    pub killed_because: Option<KillCause>,
    /// Records were left in its results ring at the end of a turn (each
    /// turn takes a bounded number): read it again without waiting.
    pub backlog: bool,
    /// The last heartbeat claim found good (a claim is judged once).
    pub last_claim: Option<outlast_worker::heartbeat::Claim>,
    /// The task its heartbeat says it runs, and since when it has said so.
    pub busy_since: Option<(u64, Instant)>,
    /// Programs it has said it started again (`restarts.programs`), as
    /// counted so far.
    pub programs_replaced: u64,
    /// Its doorbell reached end of file; only its exit is left to see.
    pub channel_closed: bool,
    /// Tasks it may run before being recycled.
    pub quota: Option<u64>,
    pub completed: u64,
    /// Tasks to keep in its hands.
    pub window: usize,
    pub replacing: Option<Replacing>,
}

/// A place in the fleet.
pub enum Slot {
    Live(Box<Worker>),
    /// Restarts at `at` (backoff after repeated crashes).
    Waiting {
        at: Instant,
        replacing: Replacing,
    },
    /// Not started yet: the loop starts a batch of these per turn.
    Pending,
    /// Retired by SIGTTOU or the end of the run.
    Closed,
}

/// Why a worker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum StartWorkerError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error(transparent)]
    Start(#[from] outlast_ipc::StartError),
}

/// Starts a worker in `slot` through `launch`, with rings of `ring_bytes`
/// and messages of at most `max_message` bytes.
pub fn start_worker(
    id: WorkerId,
    slot: usize,
    launch: &dyn Launch,
    method: StartMethod,
    allow_threads: bool,
    ring_bytes: usize,
    max_message: u64,
) -> Result<Worker, StartWorkerError> {
    let (link, theirs) = link::pair(ring_bytes, max_message)?;
    let process = launch.start(slot as u32 + 1, theirs, method, allow_threads)?;
    let pid = process.pid().unwrap_or(0);
    Ok(Worker {
        id,
        slot,
        process,
        pid,
        link,
        ready: false,
        stopping: None,
        stop_unsent: false,
        killed_because: None,
        backlog: false,
        last_claim: None,
        busy_since: None,
        programs_replaced: 0,
        channel_closed: false,
        quota: None,
        completed: 0,
        window: FIRST_WINDOW,
        replacing: None,
    })
}

/// How a worker ended, for the ledger and the report.
#[derive(Clone, Debug)]
pub struct Ending {
    /// `exited with code 0`, `killed by SIGKILL (perhaps out of memory?)`, ...
    pub description: String,
    /// Python-style exit code: -9 for SIGKILL.
    pub exit_code: Option<i32>,
    /// It exited with code 0 after returning from its loop.
    pub clean: bool,
}

impl Worker {
    /// The worker's ending, if it has exited (and is now reaped).
    pub fn try_ending(&mut self) -> Option<Ending> {
        match self.process.join_timeout(Duration::ZERO) {
            Err(JoinTimeoutError::Timeout) => None,
            Ok(exit) => Some(Ending {
                description: format!("exited ({}) after {} tasks", exit.reason, exit.tasks_run),
                exit_code: Some(0),
                clean: true,
            }),
            Err(JoinTimeoutError::Join(e)) => Some(ending_of(&e)),
        }
    }

    /// SIGKILL, remembering why (the first reason counts).
    pub fn kill(&mut self, because: KillCause) {
        if self.killed_because.is_none() {
            self.killed_because = Some(because);
        }
        let _ = self.process.kill();
    }

    /// `worker 3 (pid 4242)`.
    pub fn label(&self) -> String {
        format!("worker {} (pid {})", self.slot + 1, self.pid)
    }
}

fn ending_of(e: &JoinError) -> Ending {
    if let JoinError::Panicked { message } = e {
        return Ending {
            description: format!("panicked: {message}"),
            exit_code: Some(1),
            clean: false,
        };
    }
    match e.exit_status() {
        Some(status) if status.code() == outlast_worker::runtime::EXIT_START_FAILED => Ending {
            description: format!(
                "{status}: it could not start (why: its `cannot start` line on stderr)"
            ),
            exit_code: Some(status.code()),
            clean: false,
        },
        Some(status) => Ending {
            description: status.to_string(),
            exit_code: Some(status.code()),
            clean: false,
        },
        None => Ending {
            description: e.to_string(),
            exit_code: None,
            clean: false,
        },
    }
}
