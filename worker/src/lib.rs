//! # outlast-worker: what runs inside a supervised worker process
//!
//! Part of [outlast](https://docs.rs/outlast), which re-exports what a user
//! needs from here ([`Job`](job::Job), [`TaskContext`](job::TaskContext),
//! [`BadOutput`](job::BadOutput), [`JobOutcome`](job::JobOutcome)): start
//! with the [`job`] module if you write a job, or with `outlast` itself.
//! The modules marked *internal* below are shared by the supervisor and
//! its workers; they are public because the two are separate crates, and
//! hidden from these docs because they are no promise.
//!
//! * [`job`]: the [`Job`](job::Job) trait, typed: split into tasks, run one
//!   task, combine results;
//! * [`work`]: a job with its types erased, for the supervisor
//!   ([`AnyJob`](work::AnyJob)); *internal*: `runner` (the same for the
//!   worker, bytes in and out) and `launch` (starting workers);
//! * [`jobs`]: the built-in jobs `primes`, `sleep`, `echo`, `fault`, `exec`
//!   (and `worker-cmd`, with the feature of that name: it brings
//!   serde_json) and their registry;
//! * *internal*: `runtime` (the worker loop), `last_words` (a task's
//!   output sent from a panic hook under `panic = "abort"`), `protocol` (the messages
//!   between supervisor and worker, which travel over a `link`: two
//!   shared-memory rings and a doorbell), `heartbeat` (the slots in shared
//!   memory);
//! * [`sieve`]: the segmented prime sieve; [`numbers`]: `1e9` in, `1,000` out.
//!
//! A job computed without any process, to show the trait:
//!
//! ```
//! use outlast_worker::job::Job;
//! use outlast_worker::jobs::primes::Primes;
//!
//! let mut job = Primes::new(1_000_000, Some(100_000)).unwrap();
//! assert_eq!(job.task_count(), 10);
//! for id in 0..job.task_count() {
//!     let (lo, hi) = job.input(id);
//!     job.combine(id, outlast_worker::sieve::count_primes(lo, hi)).unwrap();
//! }
//! assert_eq!(job.outcome(true).value, "78498");
//! assert_eq!(job.outcome(true).verified, Some(true));
//! ```

#[doc(hidden)]
pub mod heartbeat;
pub mod job;
pub mod jobs;
#[doc(hidden)]
pub mod last_words;
#[doc(hidden)]
pub mod launch;
#[doc(hidden)]
pub mod link;
pub mod numbers;
#[doc(hidden)]
pub mod protocol;
#[doc(hidden)]
pub mod runner;
#[doc(hidden)]
pub mod runtime;
pub mod sieve;
pub mod work;
