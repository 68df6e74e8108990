//! A job of your own under the supervisor: every guarantee of the
//! `supervisor` binary (re-queue on a worker's death, retries, dead
//! letters, the report) for a type of this crate.
//!
//! `cargo run --example custom_job [fork|spawn]`

use outlast::{BadOutput, Job, JobOutcome, Supervisor, TaskContext};
use outlast_ipc::StartMethod;
use serde::{Deserialize, Serialize};

/// The sum of the squares of 0..n, one task per 1000 numbers.
#[derive(Clone, Serialize, Deserialize)]
struct SumOfSquares {
    n: u64,
    #[serde(skip)]
    sum: u128,
}

impl Job for SumOfSquares {
    type Input = (u64, u64);
    type Output = u128;
    type Error = String;
    fn describe(&self) -> String {
        format!("the sum of the squares below {}", self.n)
    }
    fn task_count(&self) -> u64 {
        self.n.div_ceil(1000)
    }
    fn input(&self, id: u64) -> (u64, u64) {
        (id * 1000, ((id + 1) * 1000).min(self.n))
    }
    fn run(&self, (lo, hi): (u64, u64), _: &mut TaskContext<'_>) -> Result<u128, String> {
        Ok((lo..hi).map(|x| u128::from(x) * u128::from(x)).sum())
    }
    fn combine(&mut self, _id: u64, part: u128) -> Result<(), BadOutput> {
        self.sum += part;
        Ok(())
    }
    fn outcome(&self, _complete: bool) -> JobOutcome {
        JobOutcome::value(self.sum)
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    outlast_ipc::init();
    // fork (the default), spawn or forkserver, from the command line.
    let method: StartMethod = std::env::args()
        .nth(1)
        .and_then(|m| m.parse().ok())
        .unwrap_or_default();
    let job = SumOfSquares {
        n: 1_000_000,
        sum: 0,
    };
    let report = Supervisor::new(job)
        .workers(2)
        .start_method(method)
        .quiet(true)
        .run()?;
    println!("sum of squares below 1e6: {}", report.result);
    Ok(())
}
