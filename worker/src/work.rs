//! The supervisor side of a job, as bytes: [`Work`] makes each task's input
//! and takes each output. [`AnyJob`] pairs it with how to start workers for
//! it, so the supervisor's loop needs to know no job's types.

use serde::Serialize;

use crate::job::{BadOutput, Job, JobOutcome};
use crate::launch::{Launch, Launcher};
use crate::runner::Typed;

/// A task given up on, as the supervisor tells its work about it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GaveUp {
    pub failures: u32,
    /// What happened the last time, e.g. `worker killed by SIGSEGV`.
    pub last_cause: String,
    /// Exit code of the last worker it killed, Python style (-11 for SIGSEGV).
    pub exit_code: Option<i32>,
    /// Set when it was given up because its input or output is over the
    /// link's cap (after one attempt: another would end the same way).
    pub oversize: Option<Oversize>,
}

/// A message over the cap: its size and the cap, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Oversize {
    pub len: u64,
    pub max: u64,
}

/// An output the supervisor side refused: the attempt failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refused {
    /// In the failure's words (`bad output: ...`, `task error: ...`).
    pub cause: String,
    /// Whether another attempt may follow (else a dead letter at once).
    pub retry: bool,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.cause)
    }
}

impl From<String> for Refused {
    /// A refusal that leaves the task its other attempts.
    fn from(cause: String) -> Self {
        Refused { cause, retry: true }
    }
}

impl From<&str> for Refused {
    fn from(cause: &str) -> Self {
        Refused::from(cause.to_string())
    }
}

impl From<BadOutput> for Refused {
    fn from(bad: BadOutput) -> Self {
        Refused {
            cause: bad.cause(),
            retry: bad.may_retry(),
        }
    }
}

/// The supervisor's side of a job.
pub trait Work {
    /// A short name for reports.
    fn name(&self) -> String;
    fn describe(&self) -> String;
    /// Tasks known now (a pool adds more as they are submitted).
    fn task_count(&self) -> u64;
    /// Appends the encoded input of task `id` to `out`.
    fn input(&mut self, id: u64, out: &mut Vec<u8>) -> Result<(), String>;
    /// How many bytes [`input`](Work::input) would append for task `id`,
    /// if that is known without encoding it (`None`: not known). A batch
    /// of tasks stops before an input that would take it past a worker's
    /// ring, rather than copying the input in and out again.
    fn input_len(&mut self, _id: u64) -> Option<usize> {
        None
    }
    /// Writes what [`input`](Work::input) appends for task `id` to `out`:
    /// an input too large for a worker's ring, whose length
    /// [`input_len`](Work::input_len) gave, goes straight into the memfd
    /// that carries it. By default it is encoded into a buffer first.
    fn write_input(&mut self, id: u64, out: &mut dyn std::io::Write) -> Result<(), String> {
        let mut input = Vec::new();
        self.input(id, &mut input)?;
        out.write_all(&input).map_err(|e| e.to_string())
    }
    /// Roughly how many bytes an input takes (sizes the rings).
    fn input_size_hint(&mut self) -> usize;
    /// The output of task `id`, once per id; `Err` fails the attempt,
    /// with its cause (`bad output: ...`).
    fn accept(&mut self, id: u64, output: &[u8]) -> Result<(), Refused>;
    /// [`accept`](Work::accept), given the output to keep (a run with no
    /// journal needs it no more): a work that keeps outputs takes them
    /// without a copy.
    fn accept_owned(&mut self, id: u64, output: Vec<u8>) -> Result<(), Refused> {
        self.accept(id, &output)
    }
    /// The output of task `id` read back from a journal, once per id,
    /// before any task runs (default: [`accept`](Work::accept)).
    fn resume(&mut self, id: u64, output: &[u8]) -> Result<(), Refused> {
        self.accept(id, output)
    }
    /// What task `id` is, for a dead letter (`None`: its id says it).
    fn describe_task(&self, _id: u64) -> Option<String> {
        None
    }
    /// Task `id` will not be retried.
    fn gave_up(&mut self, _id: u64, _why: &GaveUp) {}
    /// The answer so far.
    fn outcome(&self, complete: bool) -> JobOutcome;
    /// The most tasks a worker should hold at once (`None`: the run's
    /// adaptive window). `RunOptions::max_window` overrides it.
    fn tasks_per_worker(&self) -> Option<usize> {
        None
    }
    /// Stop the run early (asked after each turn; default: never).
    fn halt(&self) -> Option<crate::job::Halt> {
        None
    }
    /// Tasks made on the way (a pool's chunks, cut as workers free up):
    /// called each turn before tasks are handed out; returns how many new
    /// tasks, with ids `first..first + n`.
    fn top_up(&mut self, _first: u64) -> u64 {
        0
    }
    /// Times task `id` already failed before it came here (a broker's
    /// re-delivery after a host died); its attempts go on from there.
    fn prior_failures(&self, _id: u64) -> u32 {
        0
    }
    /// (done, total) in the units the user counts, when tasks are not
    /// them (a pool's tasks are chunks of items).
    fn progress(&self) -> Option<(u64, u64)> {
        None
    }
}

/// A typed [`Job`] as [`Work`].
pub struct JobWork<J>(pub J);

impl<J: Job> Work for JobWork<J> {
    fn name(&self) -> String {
        self.0.name()
    }

    fn describe(&self) -> String {
        self.0.describe()
    }

    fn task_count(&self) -> u64 {
        self.0.task_count()
    }

    fn input(&mut self, id: u64, out: &mut Vec<u8>) -> Result<(), String> {
        encode_into(&self.0.input(id), out)
    }

    fn input_size_hint(&mut self) -> usize {
        if self.0.task_count() == 0 {
            return 0;
        }
        postcard::to_allocvec(&self.0.input(0)).map_or(0, |b| b.len())
    }

    fn accept(&mut self, id: u64, output: &[u8]) -> Result<(), Refused> {
        let output = decode_output::<J>(output)?;
        self.0.combine(id, output).map_err(Refused::from)
    }

    fn resume(&mut self, id: u64, output: &[u8]) -> Result<(), Refused> {
        let output = decode_output::<J>(output)?;
        self.0.resume(id, output).map_err(Refused::from)
    }

    fn gave_up(&mut self, id: u64, why: &GaveUp) {
        self.0.gave_up(id, why);
    }

    fn describe_task(&self, id: u64) -> Option<String> {
        self.0.describe_task(id)
    }

    fn outcome(&self, complete: bool) -> JobOutcome {
        self.0.outcome(complete)
    }

    fn halt(&self) -> Option<crate::job::Halt> {
        self.0.halt()
    }

    fn tasks_per_worker(&self) -> Option<usize> {
        self.0.tasks_per_worker()
    }
}

/// Appends the postcard bytes of `value` to `out`.
/// A task's output as a worker (or the journal) sent it: through the
/// codec, which copies byte vectors whole and refuses a value nested
/// deeper than this thread's stack can decode.
fn decode_output<J: Job>(output: &[u8]) -> Result<J::Output, String> {
    outlast_ipc::codec::take_payload(output)
        .map(|(output, _)| output)
        .map_err(|e| format!("bad output: undecodable output: {e}"))
}

pub fn encode_into<T: Serialize>(value: &T, out: &mut Vec<u8>) -> Result<(), String> {
    outlast_ipc::codec::encode_append(value, out)
        .map_err(|e| format!("cannot encode a task's input: {e}"))
}

/// A job as data: its name and its serde (postcard) bytes, enough for a
/// process that knows the type to make the same job again (the broker
/// stores it once per job id, and `supervisor result` rebuilds it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobSpec {
    pub name: String,
    pub bytes: Vec<u8>,
}

/// A job with its types erased: what the supervisor's loop runs.
pub struct AnyJob {
    pub work: Box<dyn Work>,
    pub launch: Box<dyn Launch>,
    /// The job as data, when it is one (a pool's work is not).
    pub spec: Option<JobSpec>,
}

impl AnyJob {
    /// The job `job`: the supervisor keeps it, each worker gets a copy.
    pub fn new<J: Job + Clone>(job: J) -> Self {
        let spec = postcard::to_allocvec(&job).ok().map(|bytes| JobSpec {
            name: job.name(),
            bytes,
        });
        AnyJob {
            launch: Box::new(Launcher::new(Typed(job.clone()))),
            work: Box::new(JobWork(job)),
            spec,
        }
    }

    /// Work and a launcher made separately (a pool's).
    pub fn from_parts(work: Box<dyn Work>, launch: Box<dyn Launch>) -> Self {
        AnyJob {
            work,
            launch,
            spec: None,
        }
    }
}
