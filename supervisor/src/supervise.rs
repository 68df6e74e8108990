//! [`Supervisor`]: runs any [`Job`] under supervision, from Rust.
//!
//! ```
//! use outlast::Supervisor;
//! use outlast_worker::jobs::primes::Primes;
//!
//! let report = Supervisor::new(Primes::new(1_000_000, None).unwrap())
//!     .workers(2)
//!     .max_attempts(3)
//!     .quiet(true)
//!     .run()
//!     .unwrap();
//! assert_eq!(report.result, "78498");
//! ```

use std::time::Duration;

use outlast_ipc::StartMethod;
use outlast_worker::job::Job;
use outlast_worker::work::AnyJob;

use crate::options::RunOptions;
use crate::report::RunReport;
use crate::run::{Engine, RunError};

/// A job and the options to run it with.
pub struct Supervisor {
    job: AnyJob,
    options: RunOptions,
}

impl Supervisor {
    /// Runs `job` with the default [`RunOptions`]. The supervisor keeps
    /// `job` (to make inputs and combine outputs); each worker gets a copy.
    pub fn new<J: Job + Clone>(job: J) -> Self {
        Supervisor::from_any(AnyJob::new(job))
    }

    /// A job whose types are already erased (the command line's).
    pub fn from_any(job: AnyJob) -> Self {
        Supervisor {
            job,
            options: RunOptions::default(),
        }
    }

    /// Every option at once.
    pub fn options(mut self, options: RunOptions) -> Self {
        self.options = options;
        self
    }

    pub fn workers(mut self, n: u32) -> Self {
        self.options.workers = Some(n);
        self
    }

    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.options.start_method = method;
        self
    }

    /// Lets the fork start method copy a process that has other threads
    /// (see [`RunOptions::allow_threads`]).
    pub fn allow_threads(mut self, allow: bool) -> Self {
        self.options.allow_threads = allow;
        self
    }

    /// The largest task input or output (see [`RunOptions::max_message_bytes`]).
    pub fn max_message_bytes(mut self, bytes: u64) -> Self {
        self.options.max_message_bytes = bytes;
        self
    }

    pub fn max_attempts(mut self, n: u32) -> Self {
        self.options.max_attempts = n;
        self
    }

    pub fn max_restarts(mut self, n: u32, window: Duration) -> Self {
        self.options.max_restarts = n;
        self.options.restart_window = window;
        self
    }

    pub fn worker_timeout(mut self, timeout: Duration) -> Self {
        self.options.worker_timeout = timeout;
        self
    }

    pub fn graceful_timeout(mut self, timeout: Duration) -> Self {
        self.options.graceful_timeout = timeout;
        self
    }

    pub fn max_tasks_per_child(mut self, n: u64) -> Self {
        self.options.max_tasks_per_child = Some(n);
        self
    }

    /// Keeps settled tasks in the journal `journal` and resumes from it
    /// (see [`crate::journal`]).
    pub fn journal(mut self, journal: crate::journal::JournalOptions) -> Self {
        self.options.journal = Some(journal);
        self
    }

    pub fn quiet(mut self, quiet: bool) -> Self {
        self.options.quiet = quiet;
        self
    }

    /// Whether the run acts on TERM, INT, HUP, TTIN and TTOU (default: yes).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.options.handle_signals = on;
        self
    }

    /// Runs the job to its end and reports.
    pub fn run(self) -> Result<RunReport, RunError> {
        let mut engine = Engine::new(self.options, self.job, false)?;
        engine.run_to_end();
        Ok(engine.report())
    }
}
