//! # worker: what runs inside a supervised worker process
//!
//! * [`job`]: the [`Job`](job::Job) trait, typed: split into tasks, run one
//!   task, combine results;
//! * [`runner`], [`work`], [`launch`]: a job with its types erased, for the
//!   worker ([`Runner`](runner::Runner), bytes in and out), for the
//!   supervisor ([`Work`](work::Work)) and for starting workers;
//! * [`jobs`]: the built-in jobs `primes`, `sleep`, `echo`, `fault`, `exec`
//!   and their registry;
//! * [`runtime`]: the worker loop ([`worker_main`](runtime::worker_main));
//! * [`protocol`]: the messages between supervisor and worker, which travel
//!   over a [`link`] (two shared-memory rings and a doorbell);
//! * [`heartbeat`]: heartbeat slots in shared memory;
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

pub mod heartbeat;
pub mod job;
pub mod jobs;
pub mod launch;
pub mod link;
pub mod numbers;
pub mod protocol;
pub mod runner;
pub mod runtime;
pub mod sieve;
pub mod work;
