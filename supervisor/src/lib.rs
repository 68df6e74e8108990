//! # supervisor: keeps worker processes alive for a job
//!
//! The library behind the `supervisor` binary, for any [`Job`] of yours:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use supervisor::{BadOutput, Job, JobOutcome, Supervisor, TaskContext};
//!
//! /// Sums the squares of 0..n, one task per number.
//! #[derive(Clone, Serialize, Deserialize)]
//! struct Squares { n: u64, #[serde(skip)] sum: u64 }
//!
//! impl Job for Squares {
//!     type Input = u64;
//!     type Output = u64;
//!     type Error = String;
//!     fn describe(&self) -> String { format!("squares below {}", self.n) }
//!     fn task_count(&self) -> u64 { self.n }
//!     fn input(&self, id: u64) -> u64 { id }
//!     fn run(&self, x: u64, _: &mut TaskContext<'_>) -> Result<u64, String> { Ok(x * x) }
//!     fn combine(&mut self, _id: u64, y: u64) -> Result<(), BadOutput> { self.sum += y; Ok(()) }
//!     fn outcome(&self, _complete: bool) -> JobOutcome { JobOutcome::value(self.sum) }
//! }
//!
//! ipc::init(); // first line of main: workers may be spawned from this binary
//! let report = Supervisor::new(Squares { n: 1000, sum: 0 }).workers(2).quiet(true).run().unwrap();
//! assert_eq!(report.result, "332833500");
//! ```
//!
//! * [`Supervisor`]: runs a job with [`RunOptions`]; [`pool::Pool`]: Python's
//!   `Pool` for plain functions, on the same engine;
//! * [`run`]: the event loop; [`ledger`]: who holds which task, re-queues,
//!   dead letters; [`fleet`]: the worker table; [`restart`]: the restart policy;
//! * [`kill`]: why the supervisor killed a worker; [`limits`]: how many
//!   workers the machine can hold; [`signals`]: signals into the loop;
//! * [`progress`], [`report`]: what the user sees during and after a run;
//! * [`broker`]: one job over many supervisors (and machines) through Redis Streams;
//! * [`cli`], [`config`]: the command line; [`bench`](mod@bench): `supervisor bench ...`.
//!
//! Exit codes of a run: 0 success, 1 failed to run, 2 usage error,
//! 3 finished with dead letters, 4 restart limit reached, 130 interrupted.

pub mod bench;
pub mod broker;
pub mod cli;
pub mod config;
pub mod control;
pub mod fleet;
pub mod kill;
pub mod ledger;
pub mod limits;
pub mod manager_serve;
pub mod metrics_http;
pub mod notify;
pub mod options;
pub mod pool;
pub mod progress;
pub mod report;
pub mod restart;
pub mod run;
pub mod settled;
pub mod signals;
pub mod steer;
mod supervise;
pub mod top;

/// The README's code is compiled and run as doctests (here, where both
/// `ipc` and `supervisor` are in reach), so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

pub use options::RunOptions;
pub use supervise::Supervisor;
pub use worker::job::{BadOutput, Job, JobOutcome, TaskContext};
pub use worker::work::AnyJob;
