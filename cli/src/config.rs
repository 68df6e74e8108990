//! The options of a run as written on the command line (`supervisor
//! --workers N --job NAME ...`), converted into [`RunOptions`]. Each job's
//! own options are its own (see `outlast_worker::jobs`); [`crate::cli`] puts the two together.

use std::time::Duration;

use crate::jobs::args::{count, seconds};
use clap::Args;
use outlast_ipc::StartMethod;

use outlast::control::ControlAt;
use outlast::journal::{JournalOptions, SyncPolicy};
use outlast::RunOptions;

fn workers(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("`{text}` is not a number of workers")),
    }
}

/// How to start workers, as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StartMethodArg {
    Fork,
    Spawn,
    Forkserver,
}

impl From<StartMethodArg> for StartMethod {
    fn from(arg: StartMethodArg) -> Self {
        match arg {
            StartMethodArg::Fork => StartMethod::Fork,
            StartMethodArg::Spawn => StartMethod::Spawn,
            StartMethodArg::Forkserver => StartMethod::ForkServer,
        }
    }
}

/// `--journal-sync`, as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum JournalSyncArg {
    Always,
    Batch,
    Never,
}

impl From<JournalSyncArg> for SyncPolicy {
    fn from(arg: JournalSyncArg) -> Self {
        match arg {
            JournalSyncArg::Always => SyncPolicy::Always,
            JournalSyncArg::Batch => SyncPolicy::Batch,
            JournalSyncArg::Never => SyncPolicy::Never,
        }
    }
}

/// Everything a run is told.
#[derive(Clone, Debug, Args)]
pub struct RunConfig {
    /// Worker processes to keep alive [default: the number of CPUs].
    #[arg(short, long, value_parser = workers)]
    pub workers: Option<u32>,
    /// The job (`supervisor jobs` lists them; `--job NAME --help` shows its
    /// options). `--exec COMMAND` runs a command per input line instead.
    #[arg(short, long, default_value = "primes")]
    pub job: String,
    /// How workers start.
    #[arg(long, value_enum, default_value = "fork")]
    pub start_method: StartMethodArg,

    /// A task that has failed this many times (its worker died or hung while
    /// running it, or it returned an error) is a dead letter, not retried.
    #[arg(long, default_value = "3", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Recovery")]
    pub max_attempts: u32,
    /// More crashes than this within --restart-window stop the run.
    #[arg(long, default_value = "20", help_heading = "Recovery")]
    pub max_restarts: u32,
    /// Seconds over which --max-restarts counts.
    #[arg(long, default_value = "10", value_parser = seconds, help_heading = "Recovery")]
    pub restart_window: Duration,
    /// Seconds without a heartbeat after which a worker is killed and replaced.
    #[arg(long, default_value = "30", value_parser = seconds, help_heading = "Recovery")]
    pub worker_timeout: Duration,
    /// Seconds that in-flight tasks get to finish after SIGTERM/SIGINT.
    #[arg(long, default_value = "30", value_parser = seconds, help_heading = "Recovery")]
    pub graceful_timeout: Duration,
    /// Replace a worker after it has run this many tasks (0: never).
    #[arg(long, default_value = "0", value_parser = count, help_heading = "Recovery")]
    pub max_tasks_per_child: u64,
    /// Replace a worker whose resident memory passes SIZE (`512M`, `2G`),
    /// once it has finished the tasks it holds.
    #[arg(long, value_name = "SIZE", value_parser = crate::jobs::args::bytes, help_heading = "Recovery")]
    pub max_worker_memory: Option<u64>,
    /// The largest task input or output (`64M`, `2G`); one over it fails
    /// alone, at once, without a retry.
    #[arg(long, value_name = "SIZE", default_value = "1G", value_parser = crate::jobs::args::bytes, help_heading = "Recovery")]
    pub max_message_bytes: u64,
    /// Adds 0..=this many tasks to each worker's --max-tasks-per-child, so
    /// workers do not all recycle at once.
    #[arg(long, default_value = "0", value_parser = count, help_heading = "Recovery")]
    pub max_tasks_jitter: u64,

    /// Print the final report as one JSON object.
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// Write the report to this file [default: stdout; stderr for --exec,
    /// whose stdout is the commands' output].
    #[arg(long, value_name = "FILE", help_heading = "Output")]
    pub report: Option<std::path::PathBuf>,
    /// No progress bar and no event lines (the report is still printed).
    #[arg(short, long, help_heading = "Output")]
    pub quiet: bool,
    /// Listen for `supervisor status`, `scale`, `kill`, ... at PATH
    /// (default: a socket named after this run's pid, listed by `supervisor list`).
    #[arg(long, value_name = "PATH", help_heading = "Control")]
    pub control: Option<std::path::PathBuf>,
    /// No control socket.
    #[arg(long, conflicts_with = "control", help_heading = "Control")]
    pub no_control: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (e.g. 127.0.0.1:9464).
    #[arg(long, value_name = "ADDR", help_heading = "Control")]
    pub metrics: Option<std::net::SocketAddr>,

    /// Keep each settled task in the journal FILE, and resume from it: the
    /// same command run again (after a kill, a reboot) runs only the tasks
    /// not settled yet. Not with --broker, whose Redis is the journal.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "broker",
        help_heading = "Durability"
    )]
    pub journal: Option<std::path::PathBuf>,
    /// When the journal is synced to disk: at the end of every turn that
    /// settled a task (always), at most every 50 ms (batch), or by the
    /// kernel (never; a killed supervisor still loses nothing).
    #[arg(
        long,
        value_enum,
        default_value = "batch",
        requires = "journal",
        help_heading = "Durability"
    )]
    pub journal_sync: JournalSyncArg,
    /// Run the journal's dead letters again (their attempts start over).
    #[arg(long, requires = "journal", help_heading = "Durability")]
    pub resume_failed: bool,

    /// Share the job with other supervisors through Redis Streams at URL
    /// (`redis://[:PASSWORD@]HOST:PORT/DB`; or the password in
    /// SUPERVISOR_BROKER_PASSWORD).
    #[arg(long, value_name = "URL", help_heading = "Across machines")]
    pub broker: Option<String>,
    /// The shared job's id [default: made from the job and its options, so
    /// the same command on every host joins the same job].
    #[arg(
        long,
        value_name = "ID",
        requires = "broker",
        help_heading = "Across machines"
    )]
    pub job_id: Option<String>,
    /// Seconds a task may stay with a silent supervisor before another
    /// takes it over.
    #[arg(long, default_value = "5", value_parser = seconds, help_heading = "Across machines")]
    pub lease: Duration,
}

impl RunConfig {
    /// The library's options for these arguments.
    pub fn options(&self) -> RunOptions {
        RunOptions {
            workers: self.workers,
            start_method: self.start_method.into(),
            // The binary has no thread of its own: nothing to allow.
            allow_threads: false,
            max_attempts: self.max_attempts,
            max_restarts: self.max_restarts,
            restart_window: self.restart_window,
            worker_timeout: self.worker_timeout,
            // gunicorn's timeout: a task silent past it is a hang.
            long_tasks_allowed: false,
            graceful_timeout: self.graceful_timeout,
            max_tasks_per_child: (self.max_tasks_per_child > 0).then_some(self.max_tasks_per_child),
            max_worker_memory: self.max_worker_memory,
            max_tasks_jitter: self.max_tasks_jitter,
            max_window: None,
            quiet: self.quiet,
            handle_signals: true,
            control: match (&self.control, self.no_control) {
                (_, true) => ControlAt::Off,
                (Some(path), false) => ControlAt::Path(path.clone()),
                (None, false) => ControlAt::Default,
            },
            systemd_notify: true,
            metrics: self.metrics,
            max_message_bytes: self.max_message_bytes,
            journal: self.journal.as_ref().map(|path| {
                JournalOptions::new(path)
                    .sync(self.journal_sync.into())
                    .resume_failed(self.resume_failed)
            }),
        }
    }
}
