//! The messages between the supervisor and a worker, over one duplex
//! [`Connection`](outlast_ipc::Connection) per worker. Task inputs and outputs are
//! job-defined bytes, so the supervisor stays independent of any job.
//!
//! Tasks travel in batches and results come back in batches: that is how
//! no-op tasks reach millions per second without the user choosing a chunk
//! size. The supervisor's ledger still knows each task by id.

use serde::{Deserialize, Serialize};

/// Sent in [`FromWorker::Ready`]; the supervisor refuses a worker speaking another version.
pub const PROTOCOL_VERSION: u32 = 2;

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
    /// The next message is on the link's spill port, `len` bytes long
    /// (it was too large for the ring).
    Spilled { len: u64 },
}

/// Writes a `ToWorker::Tasks` batch into a reused buffer, byte for byte
/// as postcard would encode it, with each input written in place by its
/// job: no `Task` and no input `Vec` per task.
#[derive(Default)]
pub struct TaskBatch {
    body: Vec<u8>,
    scratch: Vec<u8>,
    count: usize,
}

impl TaskBatch {
    pub fn clear(&mut self) {
        self.body.clear();
        self.count = 0;
    }

    /// Adds task `id`, whose input `write` appends to the buffer it is given.
    pub fn push<E>(
        &mut self,
        id: u64,
        attempt: u32,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        self.scratch.clear();
        write(&mut self.scratch)?;
        varint(id, &mut self.body);
        varint(u64::from(attempt), &mut self.body);
        varint(self.scratch.len() as u64, &mut self.body);
        self.body.extend_from_slice(&self.scratch);
        self.count += 1;
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The whole message, written over `out`.
    pub fn finish_into(&self, out: &mut Vec<u8>) {
        out.clear();
        varint(0, out); // ToWorker::Tasks
        varint(self.count as u64, out);
        out.extend_from_slice(&self.body);
    }
}

/// LEB128, as postcard writes integers and lengths.
fn varint(mut n: u64, out: &mut Vec<u8>) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
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
    /// The output had `len` bytes, over the link's cap of `max`: running
    /// it again would end the same way, so the task is not retried.
    TooLarge {
        len: u64,
        max: u64,
    },
}

impl From<Result<Vec<u8>, String>> for TaskOutput {
    fn from(result: Result<Vec<u8>, String>) -> Self {
        match result {
            Ok(bytes) => TaskOutput::Done(bytes),
            Err(e) => TaskOutput::Failed(e),
        }
    }
}

/// The most bytes a spilled message may have on a link whose cap is
/// `max_message`: one task's input or output, and the framing around it.
pub fn spilled_limit(max_message: u64) -> u64 {
    max_message.saturating_add(SPILL_FRAMING)
}

/// Ids, lengths and tags around one input or output in a message.
const SPILL_FRAMING: u64 = 256;

/// Worker to supervisor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The worker built its job and waits for tasks.
    Ready { protocol: u32, pid: u32 },
    /// Results in the order the tasks ran.
    Results(Vec<TaskResult>),
    /// The next message is on the link's spill port, `len` bytes long.
    Spilled { len: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_task_batch_is_what_postcard_writes() {
        let tasks = vec![
            Task {
                id: 0,
                attempt: 1,
                input: vec![],
            },
            Task {
                id: 300,
                attempt: 2,
                input: vec![7; 200],
            },
            Task {
                id: u64::MAX,
                attempt: u32::MAX,
                input: b"abc".to_vec(),
            },
        ];
        let mut batch = TaskBatch::default();
        for t in &tasks {
            batch
                .push::<()>(t.id, t.attempt, |out| {
                    out.extend_from_slice(&t.input);
                    Ok(())
                })
                .unwrap();
        }
        let mut ours = Vec::new();
        batch.finish_into(&mut ours);
        let theirs = postcard::to_allocvec(&ToWorker::Tasks(tasks.clone())).unwrap();
        assert_eq!(ours, theirs);
        assert_eq!(
            postcard::from_bytes::<ToWorker>(&ours).unwrap(),
            ToWorker::Tasks(tasks)
        );
    }
}
