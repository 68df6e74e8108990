//! # supervisor: keeps worker processes alive for a job
//!
//! The library behind the `supervisor` binary:
//!
//! * [`run`]: the event loop ([`run::run`] runs a job and returns its report);
//! * [`dispatch`]: the task ledger (who holds what; re-queue; dead letters);
//! * [`fleet`]: the worker table, starting workers and reading their exits;
//! * [`restart`]: the restart policy (backoff, restart limit);
//! * [`signals`]: signals into the loop through a self-pipe;
//! * [`progress`], [`report`]: what the user sees during and after a run;
//! * [`config`]: the options of a run; [`bench`]: `supervisor bench ...`.
//!
//! Exit codes of a run: 0 success, 1 failed to run, 2 usage error,
//! 3 finished with dead letters, 4 restart limit reached, 130 interrupted.

pub mod bench;
pub mod config;
pub mod dispatch;
pub mod fleet;
pub mod progress;
pub mod report;
pub mod restart;
pub mod run;
pub mod signals;
