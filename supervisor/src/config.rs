//! The options of a run (`supervisor --workers N --job NAME ...`), as parsed
//! from the command line, and the job spec they make.

use std::time::Duration;

use clap::Args;
use ipc::StartMethod;
use worker::job::{FaultSpec, JobSpec};
use worker::numbers::parse_count;

/// How to start workers, as written on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum StartMethodArg {
    Fork,
    Spawn,
}

impl From<StartMethodArg> for StartMethod {
    fn from(arg: StartMethodArg) -> Self {
        match arg {
            StartMethodArg::Fork => StartMethod::Fork,
            StartMethodArg::Spawn => StartMethod::Spawn,
        }
    }
}

fn count(text: &str) -> Result<u64, String> {
    parse_count(text).map_err(|e| e.to_string())
}

fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .trim_end_matches('s')
        .parse()
        .map_err(|_| format!("`{text}` is not a number of seconds"))?;
    if !(0.0..=1e9).contains(&secs) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err(format!("`{text}` is not a rate between 0 and 1")),
    }
}

/// Everything a run is told.
#[derive(Clone, Debug, Args)]
pub struct RunConfig {
    /// Worker processes to keep alive [default: the number of CPUs].
    #[arg(short, long)]
    pub workers: Option<u32>,
    /// The job: primes, sleep, echo or fault.
    #[arg(short, long, default_value = "primes")]
    pub job: String,
    /// How workers start.
    #[arg(long, value_enum, default_value = "fork")]
    pub start_method: StartMethodArg,

    /// primes: count the primes below this (1e9, 10^9 and 1_000_000_000 all work).
    #[arg(long, default_value = "1e9", value_parser = count, help_heading = "Job")]
    pub limit: u64,
    /// primes: numbers per task [default: about limit/256, at least 1e6].
    #[arg(long, value_parser = count, help_heading = "Job")]
    pub chunk: Option<u64>,
    /// sleep, echo, fault: how many tasks.
    #[arg(long, default_value = "1000", value_parser = count, help_heading = "Job")]
    pub tasks: u64,
    /// sleep, fault: milliseconds each task takes.
    #[arg(long, default_value = "10", value_parser = count, help_heading = "Job")]
    pub task_ms: u64,
    /// echo: bytes sent to a worker and back per task.
    #[arg(long, default_value = "64", value_parser = count, help_heading = "Job")]
    pub payload_bytes: u64,

    /// fault: chance that an attempt aborts its worker (SIGABRT).
    #[arg(long, default_value = "0", value_parser = rate, help_heading = "Fault injection")]
    pub abort_rate: f64,
    /// fault: chance that an attempt segfaults its worker.
    #[arg(long, default_value = "0", value_parser = rate, help_heading = "Fault injection")]
    pub segv_rate: f64,
    /// fault: chance that an attempt exits its worker (code 13).
    #[arg(long, default_value = "0", value_parser = rate, help_heading = "Fault injection")]
    pub exit_rate: f64,
    /// fault: chance that an attempt hangs without beating.
    #[arg(long, default_value = "0", value_parser = rate, help_heading = "Fault injection")]
    pub hang_rate: f64,
    /// fault: chance that an attempt returns an error.
    #[arg(long, default_value = "0", value_parser = rate, help_heading = "Fault injection")]
    pub error_rate: f64,
    /// fault: chance that an attempt writes garbage on its channel.
    #[arg(long, default_value = "0", value_parser = rate, help_heading = "Fault injection")]
    pub garbage_rate: f64,
    /// fault: this task crashes its worker on every attempt.
    #[arg(long, value_parser = count, help_heading = "Fault injection")]
    pub crash_task: Option<u64>,
    /// fault: seed for which attempts fail.
    #[arg(long, default_value = "1", value_parser = count, help_heading = "Fault injection")]
    pub seed: u64,

    /// A task that has failed this many times (its worker died or hung while
    /// running it, or it returned an error) is a dead letter, not retried.
    #[arg(long, default_value = "3", help_heading = "Recovery")]
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
    /// Adds 0..=this many tasks to each worker's --max-tasks-per-child, so
    /// workers do not all recycle at once.
    #[arg(long, default_value = "0", value_parser = count, help_heading = "Recovery")]
    pub max_tasks_jitter: u64,

    /// Print the final report as one JSON object on stdout.
    #[arg(long, help_heading = "Output")]
    pub json: bool,
    /// No progress bar and no event lines (the report is still printed).
    #[arg(short, long, help_heading = "Output")]
    pub quiet: bool,
}

/// Wraps [`RunConfig`] so it can be parsed on its own.
#[derive(clap::Parser)]
struct RunOnly {
    #[command(flatten)]
    run: RunConfig,
}

impl RunConfig {
    /// Options as they would be written after `supervisor` on a command line.
    ///
    /// ```
    /// let config = supervisor::config::RunConfig::from_args(&["--job", "sleep", "--tasks", "1e3"]).unwrap();
    /// assert_eq!(config.tasks, 1000);
    /// ```
    pub fn from_args(args: &[&str]) -> Result<Self, clap::Error> {
        use clap::Parser;
        let argv = std::iter::once("supervisor").chain(args.iter().copied());
        RunOnly::try_parse_from(argv).map(|r| r.run)
    }

    /// The number of workers, defaulting to the CPUs this process may use.
    pub fn worker_count(&self) -> u32 {
        self.workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get() as u32))
    }

    pub fn job_spec(&self) -> JobSpec {
        JobSpec {
            name: self.job.clone(),
            limit: self.limit,
            chunk: self.chunk.unwrap_or(0),
            tasks: self.tasks,
            task_ms: self.task_ms,
            payload_bytes: usize::try_from(self.payload_bytes).unwrap_or(usize::MAX),
            faults: FaultSpec {
                abort: self.abort_rate,
                segv: self.segv_rate,
                exit: self.exit_rate,
                hang: self.hang_rate,
                error: self.error_rate,
                garbage: self.garbage_rate,
                crash_task: self.crash_task,
                seed: self.seed,
            },
        }
    }
}
