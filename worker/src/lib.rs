//! # worker: what runs inside a supervised worker process
//!
//! * [`job`]: the [`Job`](job::Job) trait (split into tasks, run one task,
//!   combine results) and [`build`](job::build), the registry lookup;
//! * [`jobs`]: the built-in jobs `primes`, `sleep`, `echo`, `fault`;
//! * [`runtime`]: the worker loop ([`worker_main`](runtime::worker_main));
//! * [`protocol`]: the messages between supervisor and worker, which travel
//!   over a [`link`] (two shared-memory queues and a doorbell);
//! * [`heartbeat`]: heartbeat slots in shared memory;
//! * [`sieve`]: the segmented prime sieve; [`numbers`]: `1e9` in, `1,000` out.
//!
//! A job computed without any process, to show the trait:
//!
//! ```
//! use worker::job::{build, JobSpec};
//!
//! let spec = JobSpec { name: "primes".into(), limit: 1_000_000, chunk: 100_000, ..JobSpec::default() };
//! let mut job = build(&spec).unwrap();
//! assert_eq!(job.task_count(), 10);
//! for id in 0..job.task_count() {
//!     let (lo, hi) = (id * 100_000, (id + 1) * 100_000);
//!     let count = worker::sieve::count_primes(lo, hi);
//!     job.combine(id, &count.to_le_bytes()).unwrap();
//! }
//! assert_eq!(job.outcome(true).value, "78498");
//! assert_eq!(job.outcome(true).verified, Some(true));
//! ```

pub mod heartbeat;
pub mod job;
pub mod jobs;
pub mod link;
pub mod numbers;
pub mod protocol;
pub mod runtime;
pub mod sieve;
