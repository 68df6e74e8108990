//! Many supervisors, one job, through Redis Streams.
//!
//! The job's spec and its tasks go into a stream once per job id; every
//! supervisor reads tasks through one consumer group into its own ledger
//! and workers, stores each result once per task id and acks it. The
//! stream's pending-entries list is the cluster's ledger: the entries of a
//! supervisor that died (SIGKILL, a lost host) sit there unacked, and the
//! others take them over once they have been idle past the lease
//! (`XAUTOCLAIM`). A task delivered more than `--max-attempts` times, or
//! that failed that often in one place, is a dead letter with its reasons.
//! Delivery is at least once; results are stored once: each task counts
//! once in the answer (`supervisor result JOB`).
//!
//! Any job can run this way, a user's too: every supervisor runs the same
//! job value, and [`result`] makes it again from the stored spec.
//!
//! ```no_run
//! use std::time::Duration;
//! use serde::{Deserialize, Serialize};
//! use outlast::broker::{self, BrokerOptions};
//! use outlast::{AnyJob, BadOutput, Job, JobOutcome, RunOptions, TaskContext};
//!
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
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! outlast_ipc::init();
//! let options = BrokerOptions {
//!     url: "redis://127.0.0.1:6379/0".into(),
//!     job_id: "squares".into(),
//!     lease: Duration::from_secs(5),
//!     consumer: None,
//! };
//! // On every host: this supervisor's part of the job.
//! let mine = broker::run(RunOptions::default(), AnyJob::new(Squares { n: 1000, sum: 0 }), &options)?;
//! // Anywhere: the whole job's answer.
//! let all = broker::result(&options.url, "squares", Duration::from_secs(60), &broker::typed_work::<Squares>)?;
//! assert_eq!(all.result, "332833500");
//! # let _ = mine;
//! # Ok(())
//! # }
//! ```

mod job;
mod keys;
mod link;
// A redis-server of our own on loopback, for the tests and `supervisor bench
// broker`: not part of the API (hidden, no semver promise).
#[doc(hidden)]
pub mod local_server;
mod result;
mod run;
mod work;

pub use link::{redacted, LinkError, PASSWORD_ENV};
pub use result::{result, status, ClusterDeadLetter, ClusterReport, ConsumerStatus, HostCounts};
pub use run::run;

use std::time::Duration;

/// Where the job is and how this supervisor takes part in it.
#[derive(Clone, Debug)]
pub struct BrokerOptions {
    /// `redis://[:PASSWORD@]HOST:PORT/DB`.
    pub url: String,
    /// The job every supervisor given this id works on.
    pub job_id: String,
    /// Entries idle this long belong to a consumer that stopped: taken over.
    pub lease: Duration,
    /// This supervisor's name in the consumer group (default `host:pid`).
    pub consumer: Option<String>,
}

/// Why a broker run could not go on.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error(transparent)]
    Link(#[from] LinkError),
    #[error("job {job_id} exists at the broker as a different job ({stored}, {total} tasks); use another --job-id")]
    DifferentJob {
        job_id: String,
        stored: String,
        total: u64,
    },
    #[error("no job {0} at the broker")]
    NoJob(String),
    #[error("this job cannot be described to other supervisors (it has no spec)")]
    NoSpec,
    #[error("the broker's job `{0}` is not one this supervisor knows")]
    UnknownJob(String),
    #[error("job {job_id} is not complete after the timeout: {done} of {total} tasks settled")]
    Timeout {
        job_id: String,
        done: u64,
        total: u64,
    },
    #[error("{0}")]
    Broker(String),
    #[error("a broker run keeps no local journal: the broker's Redis is the journal (a supervisor that dies leaves its tasks there for the others, and a new one joins the same job); drop --journal")]
    JournalWithBroker,
    #[error(transparent)]
    Run(#[from] crate::run::RunError),
}

pub use crate::report::BrokerReport;

/// A job id from the job's spec: the same command on every host names the same job.
pub fn default_job_id(spec: &outlast_worker::work::JobSpec, total: u64) -> String {
    // FNV-1a: stable across builds and hosts.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in spec
        .name
        .bytes()
        .chain(spec.bytes.iter().copied())
        .chain(total.to_le_bytes())
    {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{}-{hash:016x}", spec.name)
}

/// Makes job `J`'s work again from a spec's bytes: the `from_spec` of
/// [`result`] for a job type of your own.
pub fn typed_work<J: crate::Job + Clone>(
    _name: &str,
    bytes: &[u8],
) -> Result<Box<dyn outlast_worker::work::Work>, String> {
    let (job, _): (J, _) =
        outlast_ipc::codec::take_payload(bytes).map_err(|e| format!("undecodable job: {e}"))?;
    Ok(outlast_worker::work::AnyJob::new(job).work)
}
