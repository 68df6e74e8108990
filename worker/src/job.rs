//! The [`Job`] trait: how work is split into tasks, how one task runs inside
//! a worker, and how results combine in the supervisor.
//!
//! A job is an ordinary serde type of its author's crate. The supervisor
//! keeps one value of it (to make inputs and combine outputs) and hands a
//! copy to every worker as a process argument (to run tasks), so fields the
//! workers do not need can be `#[serde(skip)]`. Inputs, outputs and errors
//! are typed; the bytes between them are this crate's business.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use outlast_worker::job::{BadOutput, Job, JobOutcome, TaskContext};
//!
//! /// Sums the squares of 0..n, one task per number.
//! #[derive(Serialize, Deserialize)]
//! struct Squares { n: u64, #[serde(skip)] sum: u64 }
//!
//! impl Job for Squares {
//!     type Input = u64;
//!     type Output = u64;
//!     type Error = String;
//!     fn describe(&self) -> String { format!("sum of the squares below {}", self.n) }
//!     fn task_count(&self) -> u64 { self.n }
//!     fn input(&self, id: u64) -> u64 { id }
//!     fn run(&self, x: u64, _ctx: &mut TaskContext<'_>) -> Result<u64, String> { Ok(x * x) }
//!     fn combine(&mut self, _id: u64, square: u64) -> Result<(), BadOutput> {
//!         self.sum += square;
//!         Ok(())
//!     }
//!     fn outcome(&self, _complete: bool) -> JobOutcome { JobOutcome::value(self.sum) }
//! }
//!
//! let mut job = Squares { n: 4, sum: 0 };
//! for id in 0..job.task_count() {
//!     job.combine(id, id * id).unwrap();
//! }
//! assert_eq!(job.outcome(true).value, "14");
//! ```

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// What a finished (or stopped) job says about itself.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    /// The answer alone, e.g. `50847534`.
    pub value: String,
    /// One line for people, e.g. `pi(1e9) = 50,847,534, the known value`.
    pub summary: String,
    /// Whether the answer was checked against a known one, and matched.
    /// `None` when there is nothing to check against.
    pub verified: Option<bool>,
}

impl JobOutcome {
    /// An answer with nothing to check it against; its summary is the value.
    pub fn value(value: impl std::fmt::Display) -> Self {
        let value = value.to_string();
        JobOutcome {
            summary: value.clone(),
            value,
            verified: None,
        }
    }
}

/// A job's wish to stop its run before every task is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Halt {
    /// Kill the tasks running now (`false`: start no new one, let them finish).
    pub now: bool,
    /// Stopped for failures: the run's outcome says dead letters (exit
    /// code 3); else it is a success (0), with the tasks not run remaining.
    pub failed: bool,
    /// Why, for the report: `--halt soon,fail=1: 1 command failed`.
    pub why: String,
}

/// An output the supervisor cannot use for its task: the attempt counts
/// as failed (retried, then a dead letter).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{why}")]
pub struct BadOutput {
    why: String,
    task_failed: bool,
    retry: bool,
}

impl BadOutput {
    /// An output that is wrong: said as `bad output: WHY`.
    pub fn new(why: impl Into<String>) -> Self {
        BadOutput {
            why: why.into(),
            task_failed: false,
            retry: true,
        }
    }

    /// The output says the task itself failed (a command's exit status,
    /// which only the supervisor side judges): said as `task error: WHY`,
    /// as an error returned by `run` is.
    pub fn task_failed(why: impl Into<String>) -> Self {
        BadOutput {
            why: why.into(),
            task_failed: true,
            retry: true,
        }
    }

    /// No other attempt: the task is a dead letter at once, whatever
    /// attempts it has left (a command that exited non-zero, run once as
    /// GNU parallel runs it unless `--retries` asks for more).
    pub fn no_retry(mut self) -> Self {
        self.retry = false;
        self
    }

    /// Whether the task may be attempted again.
    pub fn may_retry(&self) -> bool {
        self.retry
    }

    /// Why, in the job's words.
    pub fn why(&self) -> &str {
        &self.why
    }

    /// What the attempt's failure is called in events and dead letters.
    pub fn cause(&self) -> String {
        if self.task_failed {
            format!("task error: {}", self.why)
        } else {
            format!("bad output: {}", self.why)
        }
    }
}

impl From<String> for BadOutput {
    fn from(why: String) -> Self {
        BadOutput::new(why)
    }
}

impl From<&str> for BadOutput {
    fn from(why: &str) -> Self {
        BadOutput::new(why)
    }
}

/// A job: split into tasks (ids `0..task_count`), each run in a worker, the
/// results combined in the supervisor, each task id exactly once.
pub trait Job: Serialize + DeserializeOwned + 'static {
    /// What task `id` is given (sent to a worker with the task).
    type Input: Serialize + DeserializeOwned;
    /// What a task gives back.
    type Output: Serialize + DeserializeOwned;
    /// Why a task failed; the attempt is retried up to `max_attempts`.
    type Error: std::fmt::Display;

    /// One line: what this job computes, e.g. `count the primes below 1e9`.
    fn describe(&self) -> String;
    /// How many tasks (ids `0..task_count`).
    fn task_count(&self) -> u64;
    /// The input of task `id`.
    fn input(&self, id: u64) -> Self::Input;
    /// Runs one task inside a worker. A task that may run longer than the
    /// worker timeout (30 s by default) calls [`TaskContext::beat`] now and
    /// then, as the built-in `primes` job does after each segment: a worker
    /// silent that long is taken for hung, killed and replaced (gunicorn's
    /// timeout).
    fn run(
        &self,
        input: Self::Input,
        ctx: &mut TaskContext<'_>,
    ) -> Result<Self::Output, Self::Error>;
    /// Supervisor side: folds in the output of task `id`, once per id.
    fn combine(&mut self, id: u64, output: Self::Output) -> Result<(), BadOutput>;
    /// Supervisor side: folds in the output of task `id` read back from a
    /// journal (a resumed run), once per id, before any task runs. The
    /// default is [`combine`](Job::combine); a job whose `combine` has a
    /// side effect that happened already (printing, writing a file)
    /// overrides it to count without doing it again. An error runs the
    /// task again.
    fn resume(&mut self, id: u64, output: Self::Output) -> Result<(), BadOutput> {
        self.combine(id, output)
    }
    /// The answer so far; `complete` says whether every task was combined.
    fn outcome(&self, complete: bool) -> JobOutcome;
    /// A short name for reports (default: the type's name).
    fn name(&self) -> String {
        let full = std::any::type_name::<Self>();
        full.rsplit("::").next().unwrap_or(full).to_lowercase()
    }
    /// What task `id` is, for a dead letter's line (`None`: its id says it).
    fn describe_task(&self, _id: u64) -> Option<String> {
        None
    }
    /// Supervisor side: task `id` failed `max_attempts` times and is a dead
    /// letter; it will never be combined.
    fn gave_up(&mut self, _id: u64, _why: &crate::work::GaveUp) {}
    /// Supervisor side, asked after each turn: stop the run early (GNU
    /// parallel's `--halt`). `None`, the default, runs every task.
    fn halt(&self) -> Option<Halt> {
        None
    }
    /// The most tasks a worker holds at once (`None`, the default: an
    /// adaptive window, from 2, doubling while workers run dry). A job of
    /// long, uneven tasks says 1: no task waits behind a slow one while
    /// another worker idles.
    fn tasks_per_worker(&self) -> Option<usize> {
        None
    }
    /// Runs once in each worker before its first task (replacements
    /// included): open files, warm caches. An error ends that worker.
    fn start_worker(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// What a running task may do besides computing: beat the heartbeat (long
/// tasks should, at least every few hundred milliseconds).
pub struct TaskContext<'a> {
    pub(crate) id: u64,
    pub(crate) attempt: u32,
    pub(crate) worker: u32,
    pub(crate) link: &'a std::cell::RefCell<crate::link::WorkerLink>,
    /// Set by a built-in job whose output was over a cap before it was
    /// whole (a worker program's frame): `(bytes seen, the cap)`.
    pub(crate) too_large: Option<(u64, u64)>,
}

impl TaskContext<'_> {
    /// The task's id.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// 1 on the first attempt.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The worker's slot in the fleet, from 1 (GNU parallel's `{%}`): a
    /// replacement takes the slot of the worker it replaces, so no two
    /// tasks running at once have the same.
    pub fn worker(&self) -> u32 {
        self.worker
    }

    /// The most bytes this task's encoded output may take (the run's
    /// `max_message_bytes`): an output over it is refused, at once and
    /// for good, so a task that gathers output (a command's) can stop
    /// reading there instead of holding more.
    pub fn max_output(&self) -> u64 {
        self.link.borrow().max_message
    }

    /// Tells the supervisor this worker is alive and working.
    pub fn beat(&self) {
        self.link.borrow().heartbeat().touch();
    }

    /// Tells the supervisor that a program this worker runs for its tasks
    /// died or was killed, and is to be started again (as `--worker-cmd`
    /// does): the run's report counts these under `restarts.programs`,
    /// beside the workers replaced.
    pub fn count_program_restart(&self) {
        self.link.borrow().heartbeat().add_program_replaced();
    }

    /// The task's output passed `max` bytes (`len` seen) before it was
    /// whole: the task fails as too large, for good, as an output over
    /// [`max_output`](Self::max_output) does. (Only a streamed output,
    /// the `worker-cmd` job's, can be refused before it is whole.)
    #[cfg(feature = "worker-cmd")]
    pub(crate) fn refuse_as_too_large(&mut self, len: u64, max: u64) {
        self.too_large = Some((len, max));
    }

    /// Puts a record that is not part of the protocol on the worker's
    /// results ring: only the built-in `fault` job does this, to test the
    /// supervisor, so it is not public.
    pub(crate) fn write_garbage(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.link
            .borrow_mut()
            .send_raw(bytes)
            .map_err(|e| e.to_string())
    }
}
