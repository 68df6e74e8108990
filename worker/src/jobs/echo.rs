//! `echo`: each task carries a payload to a worker, which sends it back; the
//! supervisor checks every byte. The IPC-throughput job.

use crate::job::{Job, JobOutcome, JobSpec, TaskContext};
use crate::numbers::group_thousands;

/// Payloads above this would not fit a frame with room to spare.
const MAX_PAYLOAD: usize = 32 * 1024 * 1024;

pub struct Echo {
    tasks: u64,
    payload_bytes: usize,
    intact: u64,
}

impl Echo {
    pub fn new(spec: &JobSpec) -> Result<Self, String> {
        if spec.payload_bytes > MAX_PAYLOAD {
            return Err(format!("--payload-bytes is at most {MAX_PAYLOAD}"));
        }
        Ok(Echo {
            tasks: spec.tasks,
            payload_bytes: spec.payload_bytes,
            intact: 0,
        })
    }

    /// Byte `i` of task `id`'s payload: differs between tasks and positions.
    fn byte(id: u64, i: usize) -> u8 {
        (id as u8).wrapping_mul(31).wrapping_add(i as u8)
    }
}

impl Job for Echo {
    fn describe(&self) -> String {
        format!(
            "{} payloads of {} bytes to a worker and back",
            group_thousands(self.tasks),
            group_thousands(self.payload_bytes as u64)
        )
    }

    fn task_count(&self) -> u64 {
        self.tasks
    }

    fn task_input(&self, id: u64) -> Vec<u8> {
        (0..self.payload_bytes).map(|i| Self::byte(id, i)).collect()
    }

    fn run(&self, input: &[u8], _ctx: &mut TaskContext<'_>) -> Result<Vec<u8>, String> {
        Ok(input.to_vec())
    }

    fn combine(&mut self, id: u64, output: &[u8]) -> Result<(), String> {
        // Every byte checked, with no early exit so the loop vectorizes.
        let base = Self::byte(id, 0);
        let differs = output
            .iter()
            .enumerate()
            .fold(0u8, |acc, (i, &b)| acc | (b ^ base.wrapping_add(i as u8)));
        let intact = output.len() == self.payload_bytes && differs == 0;
        if !intact {
            return Err(format!("the payload of task {id} came back altered"));
        }
        self.intact += 1;
        Ok(())
    }

    fn outcome(&self, complete: bool) -> JobOutcome {
        JobOutcome {
            value: self.intact.to_string(),
            summary: format!(
                "{} of {} payloads came back intact",
                group_thousands(self.intact),
                group_thousands(self.tasks)
            ),
            verified: complete.then_some(self.intact == self.tasks),
        }
    }
}
