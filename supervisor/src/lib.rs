//! # supervisor: keeps worker processes alive for a job
//!
//! The library behind the `supervisor` binary:
//!
//! * [`run`]: the event loop ([`run::run`] runs a job and returns its report);
//! * [`dispatch`]: the task ledger (who holds what; re-queue; dead letters);
//! * [`fleet`]: the worker table, starting workers and reading their exits;
//! * [`kill`]: why the supervisor killed a worker; [`limits`]: how many
//!   workers the machine can hold;
//! * [`restart`]: the restart policy (backoff, restart limit);
//! * [`signals`]: signals into the loop through a self-pipe;
//! * [`progress`], [`report`]: what the user sees during and after a run;
//! * [`config`]: the options of a run; [`bench`]: `supervisor bench ...`.
//!
//! Running a job from Rust, as the binary does:
//!
//! ```
//! use supervisor::config::RunConfig;
//! use supervisor::report::Outcome;
//!
//! ipc::init(); // workers may be spawned from this binary
//! let config = RunConfig::from_args(&["--workers", "2", "--job", "primes", "--limit", "1e6", "--quiet"]).unwrap();
//! let report = supervisor::run::run(&config).unwrap();
//! assert_eq!(report.outcome, Outcome::Success);
//! assert_eq!(report.result, "78498");
//! assert_eq!(report.verified, Some(true));
//! ```
//!
//! Exit codes of a run: 0 success, 1 failed to run, 2 usage error,
//! 3 finished with dead letters, 4 restart limit reached, 130 interrupted.

pub mod bench;
pub mod config;
pub mod dispatch;
pub mod fleet;
pub mod kill;
pub mod limits;
pub mod progress;
pub mod report;
pub mod restart;
pub mod run;
pub mod settled;
pub mod signals;
