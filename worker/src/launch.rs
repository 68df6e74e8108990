//! Starting a worker process for a job whose type only the launcher knows:
//! [`Launcher`] starts `worker_main::<W>` with a copy of the runner `W`;
//! the supervisor holds the result as a [`WorkerProcess`].

use std::os::fd::BorrowedFd;
use std::time::Duration;

use outlast_ipc::{JoinTimeoutError, Process, StartError, StartMethod};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::link::WorkerLink;
use crate::runner::Runner;
use crate::runtime::{worker_main, WorkerArgs, WorkerExit};

/// A started worker process, whatever its arguments' type.
pub trait WorkerProcess {
    fn pid(&self) -> Option<u32>;
    /// Readable once the process exits (its pidfd), if the kernel has them.
    fn exit_fd(&self) -> Option<BorrowedFd<'_>>;
    /// Its exit, reaping it, if it has exited within `timeout`.
    fn join_timeout(&mut self, timeout: Duration) -> Result<WorkerExit, JoinTimeoutError>;
    fn kill(&mut self) -> std::io::Result<()>;
    fn terminate(&mut self) -> std::io::Result<()>;
}

impl<A> WorkerProcess for Process<A, WorkerExit>
where
    A: Serialize + DeserializeOwned,
{
    fn pid(&self) -> Option<u32> {
        Process::pid(self)
    }

    fn exit_fd(&self) -> Option<BorrowedFd<'_>> {
        Process::exit_fd(self)
    }

    fn join_timeout(&mut self, timeout: Duration) -> Result<WorkerExit, JoinTimeoutError> {
        Process::join_timeout(self, timeout)
    }

    fn kill(&mut self) -> std::io::Result<()> {
        Process::kill(self)
    }

    fn terminate(&mut self) -> std::io::Result<()> {
        Process::terminate(self)
    }
}

/// Starts workers for one job.
pub trait Launch {
    /// Starts worker number `worker` (1-based, for its name) on `link`;
    /// `allow_threads` lets `fork` copy a process that has threads.
    fn start(
        &self,
        worker: u32,
        link: WorkerLink,
        method: StartMethod,
        allow_threads: bool,
    ) -> Result<Box<dyn WorkerProcess>, StartError>;
}

/// Starts `worker_main::<W>` with a copy of `runner`.
pub struct Launcher<W> {
    runner: W,
}

impl<W: Runner> Launcher<W> {
    pub fn new(runner: W) -> Self {
        Launcher { runner }
    }
}

impl<W: Runner> Launch for Launcher<W> {
    fn start(
        &self,
        worker: u32,
        link: WorkerLink,
        method: StartMethod,
        allow_threads: bool,
    ) -> Result<Box<dyn WorkerProcess>, StartError> {
        let args = WorkerArgs {
            worker,
            runner: self.runner.clone(),
            link,
        };
        let mut process = Process::new(worker_main::<W>, args)
            .named(format!("worker-{worker}"))
            .start_method(method)
            .allow_threads(allow_threads);
        process.start()?;
        Ok(Box::new(process))
    }
}
