//! The options of a run, as a plain struct with defaults: what the library
//! takes ([`Supervisor`](crate::Supervisor) sets them through a builder)
//! and what the command line's arguments are converted into.

use std::time::Duration;

use outlast_ipc::StartMethod;

/// How a run treats its workers.
#[derive(Clone, Debug, PartialEq)]
pub struct RunOptions {
    /// Worker processes to keep alive (`None`: the CPUs this process may use).
    pub workers: Option<u32>,
    /// How workers start (default: [`outlast_ipc::get_start_method`],
    /// forkserver unless the program chose another).
    pub start_method: StartMethod,
    /// Let `fork` copy a process that has other threads (default: no, and
    /// a run asked to fork then fails at once with
    /// [`RunError::ThreadsPresent`](crate::run::RunError::ThreadsPresent)).
    /// Only for a program whose other threads hold no lock at any fork:
    /// a forked child that needs a lock one of them held waits forever.
    pub allow_threads: bool,
    /// A task that failed this many times (its worker died or hung while
    /// running it, or it returned an error) is a dead letter.
    pub max_attempts: u32,
    /// More crashes than this within `restart_window` stop the run.
    pub max_restarts: u32,
    pub restart_window: Duration,
    /// A worker silent this long is killed and replaced.
    pub worker_timeout: Duration,
    /// A worker silent past `worker_timeout` while it runs a task is left
    /// to run (a long task, as a Python `Pool`'s item may be) unless its
    /// process is stopped (`SIGSTOP`): a `Pool`'s default.
    /// Off, the supervisor's: such a worker is hung (gunicorn's timeout).
    pub long_tasks_allowed: bool,
    /// After TERM/INT, how long in-flight tasks get to finish.
    pub graceful_timeout: Duration,
    /// Replace a worker after it has run this many tasks (`None`: never).
    pub max_tasks_per_child: Option<u64>,
    /// Replace a worker whose resident memory (with the processes it
    /// started: its whole tree) passes this many bytes, once it has
    /// finished the tasks it holds (`None`: never).
    pub max_worker_memory: Option<u64>,
    /// Adds 0..=this to each worker's `max_tasks_per_child`, so workers do
    /// not all recycle at once.
    pub max_tasks_jitter: u64,
    /// The most tasks a worker holds at once (`None`: adaptive, from 2,
    /// doubling while it runs dry, up to 16,384 and to 256 KiB of inputs). A pool's `chunksize`.
    pub max_window: Option<usize>,
    /// No progress bar and no event lines.
    pub quiet: bool,
    /// TERM/INT drain, HUP reloads, TTIN/TTOU resize (the binary's
    /// behaviour). Off, the run leaves the process's signals alone.
    pub handle_signals: bool,
    /// Where the run listens for `supervisor status`, `scale`, ... (off
    /// by default in the library; the command line's default is on).
    /// Needs the crate's `control` feature; without it a run asked for a
    /// socket fails at its start with [`RunError::Setup`](crate::run::RunError::Setup).
    pub control: crate::control::ControlAt,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (`None`: no).
    /// Needs the crate's `metrics` feature; without it a run asked to
    /// serve metrics fails at its start with [`RunError::Setup`](crate::run::RunError::Setup).
    pub metrics: Option<std::net::SocketAddr>,
    /// Tell systemd (`NOTIFY_SOCKET`) when workers are up, the progress,
    /// and a drain (the binary's behaviour).
    pub systemd_notify: bool,
    /// The largest task input or output, in bytes (default
    /// [`DEFAULT_MAX_MESSAGE_BYTES`], 1 GiB). One over it fails alone, at
    /// once and without a retry, with an error that names its size and
    /// this cap. Anything larger than a worker's ring (about 1 MiB) travels
    /// in a sealed memfd instead, checked against this cap on arrival.
    pub max_message_bytes: u64,
    /// Keep each settled task in a journal on disk, and resume from it:
    /// a run killed at any instant, started again with the same job and
    /// journal, runs only what was not settled (see [`crate::journal`]).
    /// Not with a broker, whose Redis is the journal.
    pub journal: Option<crate::journal::JournalOptions>,
}

/// The default cap on one task's input or output: 1 GiB.
pub const DEFAULT_MAX_MESSAGE_BYTES: u64 = 1 << 30;

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            workers: None,
            start_method: outlast_ipc::get_start_method(),
            allow_threads: false,
            max_attempts: 3,
            max_restarts: 20,
            restart_window: Duration::from_secs(10),
            worker_timeout: Duration::from_secs(30),
            long_tasks_allowed: false,
            graceful_timeout: Duration::from_secs(30),
            max_tasks_per_child: None,
            max_worker_memory: None,
            max_tasks_jitter: 0,
            max_window: None,
            quiet: false,
            handle_signals: true,
            control: crate::control::ControlAt::Off,
            systemd_notify: false,
            metrics: None,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            journal: None,
        }
    }
}

impl RunOptions {
    /// The number of workers, defaulting to the CPUs this process may use.
    pub fn worker_count(&self) -> u32 {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
    }
}
