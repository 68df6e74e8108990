//! # outlast: worker processes that outlast `kill -9`
//!
//! Python's `multiprocessing.Pool` and an Erlang-style supervisor for Rust:
//! your function or your job runs in real worker processes; a worker that
//! dies (a segfault, an OOM kill, a `kill -9`) is replaced, the tasks it
//! held go back to the queue, and every result is counted once.
//!
//! ## Where to start
//!
//! * [`pool::Pool`]: Python's `Pool` and `ProcessPoolExecutor` for a plain
//!   `fn(T) -> R` (`map`, `imap`, `starmap`, `apply_async`, `submit`, ...).
//! * [`Supervisor`]: runs a [`Job`] of yours (typed inputs and outputs,
//!   split into tasks, combined into one answer) with [`RunOptions`].
//! * [`ipc`] (the `outlast-ipc` crate, re-exported): `Process`, `Pipe`,
//!   `Queue`, shared memory, locks and the `Manager`, for when you want
//!   the processes yourself.
//!
//! No setup line is needed: the default start method (forkserver) works in
//! a program with threads, under `#[tokio::main]` and inside `#[test]`,
//! because a spawned child or the fork server is taken over before `main`.
//!
//! ```
//! use outlast::pool::Pool;
//!
//! fn square(x: u64) -> u64 { x * x }
//!
//! let pool = Pool::new(2).unwrap();
//! assert_eq!(pool.map(square, 1..=3u64).unwrap(), vec![1, 4, 9]);
//! ```
//!
//! A job of your own:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use outlast::{BadOutput, Job, JobOutcome, Supervisor, TaskContext};
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
//! let report = Supervisor::new(Squares { n: 1000, sum: 0 }).workers(2).quiet(true).run().unwrap();
//! assert_eq!(report.result, "332833500");
//! ```
//!
//! ## Features
//!
//! None is on by default; a program that uses only `Pool` or `Supervisor`
//! compiles no terminal, HTTP, Redis or JSON code.
//!
//! | feature | what it adds |
//! |---|---|
//! | `progress` | a progress bar on a terminal while a run goes (indicatif) |
//! | `metrics` | [`RunOptions::metrics`]: a Prometheus endpoint served by the run loop |
//! | `broker` | `broker`: one job shared by many supervisors through Redis Streams (Rust 1.88, for redis) |
//! | `control` | [`RunOptions::control`] and `control::client`: the control socket, JSON (serde_json) |
//! | `worker-cmd` | the `worker-cmd` job: long-lived workers in any language, JSON lines (serde_json) |
//!
//! Without the two JSON features no serde_json is compiled, so adding
//! outlast leaves the type inference of your own code as it was (serde_json's
//! `impl PartialEq<Value> for u64` makes `assert_eq!(n, v.iter().sum())`
//! ambiguous).
//!
//! The `supervisor` command (crate `outlast-cli`) is this library with every
//! feature on.
//!
//! ## Modules
//!
//! * [`pool`]: `Pool` and its futures; [`report`]: what a run returns;
//! * [`control`]: the control socket (`supervisor status`, `scale`, ...)
//!   and its client; [`limits`]: how many workers the machine can hold;
//! * [`journal`]: a run's settled tasks kept on disk, and resuming from
//!   them (`RunOptions::journal`);
//! * [`run`]: the errors a run can end with.
//!
//! Exit codes of a run: 0 success, 1 failed to run, 2 usage error,
//! 3 finished with dead letters, 4 restart limit reached, 130 interrupted.

#[cfg(feature = "broker")]
pub mod broker;
pub mod control;
mod fleet;
mod holdings;
mod id_hash;
pub mod journal;
mod kill;
mod ledger;
pub mod limits;
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
mod metrics_format;
#[cfg_attr(not(feature = "metrics"), allow(dead_code))]
mod metrics_http;
mod notify;
mod options;
pub mod pool;
mod progress;
pub mod report;
mod restart;
pub mod run;
mod settled;
mod signals;
mod supervise;

/// The README's code is compiled and run as doctests (here, where both
/// `outlast_ipc` and `outlast` are in reach), so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

pub use options::{RunOptions, DEFAULT_MAX_MESSAGE_BYTES};
pub use outlast_ipc as ipc;
pub use outlast_worker as worker;
pub use outlast_worker::job::{BadOutput, Job, JobOutcome, TaskContext};
pub use outlast_worker::work::AnyJob;
/// Python's `multiprocessing.Pool`, at the top as there.
pub use pool::Pool;
pub use supervise::Supervisor;
