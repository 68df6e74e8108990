//! `echo`: each task carries a payload to a worker, which sends it back; the
//! supervisor checks every byte. The IPC-throughput job.

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::BuiltinJob;
use crate::job::{BadOutput, Job, JobOutcome, TaskContext};
use crate::numbers::{group_thousands, plural};

/// Payloads above this would not fit a frame with room to spare.
const MAX_PAYLOAD: u64 = 32 * 1024 * 1024;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Echo {
    tasks: u64,
    payload_bytes: usize,
    #[serde(skip)]
    intact: u64,
}

impl Echo {
    pub fn new(tasks: u64, payload_bytes: u64) -> Result<Self, String> {
        if payload_bytes > MAX_PAYLOAD {
            return Err(format!("--payload-bytes is at most {MAX_PAYLOAD}"));
        }
        Ok(Echo {
            tasks,
            payload_bytes: payload_bytes as usize,
            intact: 0,
        })
    }

    /// Byte `i` of task `id`'s payload: differs between tasks and positions.
    fn byte(id: u64, i: usize) -> u8 {
        (id as u8).wrapping_mul(31).wrapping_add(i as u8)
    }
}

impl BuiltinJob for Echo {
    const NAME: &'static str = "echo";
    const ABOUT: &'static str = "--tasks payloads of --payload-bytes sent to a worker and back";
}

impl Job for Echo {
    type Input = ByteBuf;
    type Output = ByteBuf;
    type Error = std::convert::Infallible;

    fn name(&self) -> String {
        Self::NAME.into()
    }

    fn describe(&self) -> String {
        format!(
            "{} of {} to a worker and back",
            plural(self.tasks, "payload"),
            plural(self.payload_bytes as u64, "byte")
        )
    }

    fn task_count(&self) -> u64 {
        self.tasks
    }

    fn input(&self, id: u64) -> ByteBuf {
        ByteBuf::from(
            (0..self.payload_bytes)
                .map(|i| Self::byte(id, i))
                .collect::<Vec<u8>>(),
        )
    }

    fn run(
        &self,
        input: ByteBuf,
        _ctx: &mut TaskContext<'_>,
    ) -> Result<ByteBuf, std::convert::Infallible> {
        Ok(input)
    }

    fn combine(&mut self, id: u64, output: ByteBuf) -> Result<(), BadOutput> {
        // Every byte checked, with no early exit so the loop vectorizes.
        let base = Self::byte(id, 0);
        let differs = output
            .iter()
            .enumerate()
            .fold(0u8, |acc, (i, &b)| acc | (b ^ base.wrapping_add(i as u8)));
        let intact = output.len() == self.payload_bytes && differs == 0;
        if !intact {
            return Err(format!("the payload of task {id} came back altered").into());
        }
        self.intact += 1;
        Ok(())
    }

    fn outcome(&self, complete: bool) -> JobOutcome {
        JobOutcome {
            value: self.intact.to_string(),
            summary: format!(
                "{} of {} came back intact",
                group_thousands(self.intact),
                plural(self.tasks, "payload")
            ),
            verified: complete.then_some(self.intact == self.tasks),
        }
    }
}
