//! The [`Job`] trait: how work is split into tasks, how one task runs inside
//! a worker, and how results combine in the supervisor. Both sides build the
//! same job from one [`JobSpec`], so a task travels as an id and a few bytes.

use serde::{Deserialize, Serialize};

use crate::jobs;

/// Everything needed to build a job, on the supervisor's side and in every
/// worker. Fields a job does not use are ignored by it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    /// Registry name: `primes`, `sleep`, `echo`, `fault`.
    pub name: String,
    /// primes: count the primes below this.
    pub limit: u64,
    /// primes: numbers per task (0: chosen from the limit).
    pub chunk: u64,
    /// sleep, echo, fault: how many tasks.
    pub tasks: u64,
    /// sleep, fault: how long each task takes.
    pub task_ms: u64,
    /// echo: bytes sent to the worker and back per task.
    pub payload_bytes: usize,
    /// fault: what goes wrong, and how often.
    pub faults: FaultSpec,
}

/// Fault injection for the `fault` job: each rate is the chance (0 to 1) that
/// an attempt of a task does that instead of finishing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FaultSpec {
    pub abort: f64,
    pub segv: f64,
    pub exit: f64,
    pub hang: f64,
    pub error: f64,
    pub garbage: f64,
    /// This task id crashes its worker (abort) on every attempt.
    pub crash_task: Option<u64>,
    /// Seeds the choice of faulty attempts, so a run can be repeated.
    pub seed: u64,
}

impl Default for JobSpec {
    fn default() -> Self {
        JobSpec {
            name: "primes".into(),
            limit: 1_000_000_000,
            chunk: 0,
            tasks: 1000,
            task_ms: 10,
            payload_bytes: 64,
            faults: FaultSpec::default(),
        }
    }
}

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

/// A job: split into tasks (ids `0..task_count`), each run in a worker, the
/// results combined in the supervisor. Inputs and outputs are bytes the job
/// encodes itself, so the supervisor needs no knowledge of any job.
pub trait Job {
    /// One line: what this job computes, e.g. `count the primes below 1e9`.
    fn describe(&self) -> String;
    fn task_count(&self) -> u64;
    /// The input of task `id` (sent to a worker with the task).
    fn task_input(&self, id: u64) -> Vec<u8>;
    /// Runs one task inside a worker.
    fn run(&self, input: &[u8], ctx: &mut TaskContext<'_>) -> Result<Vec<u8>, String>;
    /// Supervisor side: folds in the output of task `id`, counted once per id.
    /// An error means the output is not a valid answer for that task.
    fn combine(&mut self, id: u64, output: &[u8]) -> Result<(), String>;
    /// The answer so far; `complete` says whether every task was combined.
    fn outcome(&self, complete: bool) -> JobOutcome;
}

/// What a running task may do besides computing: beat the heartbeat (long
/// tasks should, at least every few hundred milliseconds) and, for fault
/// injection, write garbage for the supervisor.
pub struct TaskContext<'a> {
    pub(crate) id: u64,
    pub(crate) attempt: u32,
    pub(crate) link: &'a mut crate::link::WorkerLink,
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

    /// Tells the supervisor this worker is alive and working.
    pub fn beat(&self) {
        self.link.heartbeat().touch();
    }

    /// Puts a record that is not part of the protocol on the worker's
    /// results ring: only the `fault` job does this, to test the supervisor.
    pub fn write_garbage(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.link.send_raw(bytes).map_err(|e| e.to_string())
    }
}

/// Why a job could not be built from its spec.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum JobError {
    #[error("unknown job `{0}`; the jobs are: {names}", names = jobs::names().join(", "))]
    Unknown(String),
    #[error("bad parameters for job `{job}`: {reason}")]
    BadSpec { job: String, reason: String },
}

/// Builds the job `spec.name` from the registry.
pub fn build(spec: &JobSpec) -> Result<Box<dyn Job>, JobError> {
    let entry = jobs::REGISTRY
        .iter()
        .find(|e| e.name == spec.name)
        .ok_or_else(|| JobError::Unknown(spec.name.clone()))?;
    (entry.build)(spec).map_err(|reason| JobError::BadSpec {
        job: spec.name.clone(),
        reason,
    })
}
