//! What a worker process runs, in bytes: a [`Runner`] takes a task's input
//! bytes and gives its output bytes. A typed [`Job`] becomes one through
//! [`Typed`]; a `Pool` has a runner of its own that calls any function.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::job::{Job, TaskContext};

/// The worker side of a job, as bytes in and bytes out. The value travels
/// to each worker as a process argument.
pub trait Runner: Serialize + DeserializeOwned + Clone + 'static {
    /// Runs once in the worker before its first task; an error ends the
    /// worker with [`EXIT_START_FAILED`](crate::runtime::EXIT_START_FAILED).
    fn start(&mut self) -> Result<(), String> {
        Ok(())
    }
    /// Runs one task. `Err` is a failed attempt (retried, then a dead letter).
    fn run_task(&self, input: &[u8], ctx: &mut TaskContext<'_>) -> Result<Vec<u8>, String>;
    /// A short name for the worker process (`ps -o comm`, `top`).
    fn name(&self) -> String {
        "job".into()
    }
    /// Whether each task's result goes to the supervisor as soon as it is
    /// made, instead of with the next ones (default: batched, which is
    /// what carries millions of tiny tasks a second). A runner whose tasks
    /// are already batches (a pool's chunks) says yes, so a result never
    /// waits behind a long task that follows it.
    fn report_each_task(&self) -> bool {
        false
    }
}

/// A typed [`Job`] as a [`Runner`]: decodes the input, runs, encodes the
/// output; the job's error travels as its text.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Typed<J>(pub J);

impl<J: Job + Clone> Runner for Typed<J> {
    fn start(&mut self) -> Result<(), String> {
        self.0.start_worker()
    }

    fn name(&self) -> String {
        self.0.name()
    }

    fn run_task(&self, input: &[u8], ctx: &mut TaskContext<'_>) -> Result<Vec<u8>, String> {
        let (input, _): (J::Input, _) = outlast_ipc::codec::take_payload(input)
            .map_err(|e| format!("cannot decode the task's input: {e}"))?;
        let output = self.0.run(input, ctx).map_err(|e| e.to_string())?;
        let mut encoded = Vec::new();
        outlast_ipc::codec::encode_append(&output, &mut encoded)
            .map_err(|e| format!("cannot encode the task's output: {e}"))?;
        Ok(encoded)
    }
}
