//! The messages between the supervisor and a worker, over one duplex
//! [`Connection`](ipc::Connection) per worker. Task inputs and outputs are
//! job-defined bytes, so the supervisor stays independent of any job.
//!
//! Tasks travel in batches and results come back in batches: that is how
//! no-op tasks reach millions per second without the user choosing a chunk
//! size. The supervisor's ledger still knows each task by id.

use serde::{Deserialize, Serialize};

/// Sent in [`FromWorker::Ready`]; the supervisor refuses a worker speaking another version.
pub const PROTOCOL_VERSION: u32 = 1;

/// One unit of work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Index of the task in its job, `0..task_count`.
    pub id: u64,
    /// 1 on the first dispatch, one more each time it is re-queued.
    pub attempt: u32,
    /// Job-defined input (for `primes`, the range). Encoded as one byte
    /// string (a copy), not byte by byte.
    #[serde(with = "serde_bytes")]
    pub input: Vec<u8>,
}

/// Supervisor to worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Run these, in order, after any held already.
    Tasks(Vec<Task>),
    /// Finish every task held, report, and exit with code 0.
    Stop,
}

/// What became of one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    pub id: u64,
    pub output: TaskOutput,
}

/// Job-defined output, or the error the task returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskOutput {
    Done(#[serde(with = "serde_bytes")] Vec<u8>),
    Failed(String),
}

impl From<Result<Vec<u8>, String>> for TaskOutput {
    fn from(result: Result<Vec<u8>, String>) -> Self {
        match result {
            Ok(bytes) => TaskOutput::Done(bytes),
            Err(e) => TaskOutput::Failed(e),
        }
    }
}

impl From<TaskOutput> for Result<Vec<u8>, String> {
    fn from(output: TaskOutput) -> Self {
        match output {
            TaskOutput::Done(bytes) => Ok(bytes),
            TaskOutput::Failed(e) => Err(e),
        }
    }
}

/// Worker to supervisor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The worker built its job and waits for tasks.
    Ready { protocol: u32, pid: u32 },
    /// Results in the order the tasks ran.
    Results(Vec<TaskResult>),
}
