//! Errors of starting and joining a [`Process`](super::Process).

use std::fmt;
use std::io;

use super::exit::ExitStatus;
use crate::codec::debug::Why;

/// Why `start` failed. No child is running afterwards. Its `Debug` says
/// what the error means too.
#[derive(thiserror::Error)]
pub enum StartError {
    #[error("the process was already started")]
    AlreadyStarted,
    /// `fork` with other threads alive could copy a lock (the allocator's, stdout's)
    /// held by a thread that does not exist in the child, which then deadlocks.
    /// (The threads that wait for this crate's futures do not count: they
    /// are kept out of any code of yours at the instant of the fork.)
    #[error(
        "refusing to fork: this process has {threads} threads, and a forked child \
         could deadlock on a lock held by one of them (the allocator's, stdout's); \
         use StartMethod::ForkServer or StartMethod::Spawn, or allow_threads(true) if you \
         know every thread is idle"
    )]
    ThreadsPresent { threads: usize },
    /// The arguments could not be serialized (for example an unsupported handle).
    #[error("cannot serialize the process arguments: {0}")]
    Args(String),
    /// The fork server could not start the child (see its error).
    #[error(transparent)]
    ForkServer(#[from] super::forkserver::ForkServerError),
    #[error("cannot start the process: {0}")]
    Os(#[from] io::Error),
}

/// The variant, and for `ThreadsPresent` what to do instead.
impl fmt::Debug for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::AlreadyStarted => f.write_str("AlreadyStarted"),
            StartError::ThreadsPresent { threads } => f
                .debug_struct("ThreadsPresent")
                .field("threads", threads)
                .field("why", &Why(self))
                .finish(),
            StartError::Args(words) => f.debug_tuple("Args").field(words).finish(),
            StartError::ForkServer(e) => f.debug_tuple("ForkServer").field(e).finish(),
            StartError::Os(e) => f.debug_tuple("Os").field(e).finish(),
        }
    }
}

/// Why `join` did not produce the child's return value.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("the process was never started")]
    NotStarted,
    #[error("the process was already joined; it {0}")]
    AlreadyJoined(ExitStatus),
    /// The child ended through `exit` without returning from its entry.
    #[error("the process exited with code {code} without returning a result")]
    Exited { code: i32 },
    /// A signal ended the child.
    #[error("the process was {0}")]
    Signaled(ExitStatus),
    /// The entry function panicked; the child exited with code 1.
    #[error("the process panicked: {message}")]
    Panicked { message: String },
    /// A spawned child's `main` does not call `outlast_ipc::init()` first.
    #[error(
        "the spawned child's main() does not call outlast_ipc::init() first, so it could not run \
         its entry (exit code {})",
        super::EXIT_INIT_MISSING
    )]
    InitMissing,
    /// The child could not decode its arguments or encode its result.
    #[error("the child could not run its entry: {message}")]
    ChildFailed { message: String },
    /// The child's report could not be decoded (it wrote garbage in its report file).
    #[error("the child's report is garbage: {0}")]
    BadReport(String),
    #[error("waiting for the process failed: {0}")]
    Io(#[from] io::Error),
}

/// Why `join_timeout` did not produce the child's return value.
#[derive(Debug, thiserror::Error)]
pub enum JoinTimeoutError {
    /// The child is still running; join again later, or terminate it.
    #[error("the process is still running")]
    Timeout,
    #[error(transparent)]
    Join(#[from] JoinError),
}

impl JoinError {
    /// How the child ended, where that is what the error is about.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        match self {
            JoinError::Exited { code } => Some(ExitStatus::Exited(*code)),
            JoinError::Signaled(status) | JoinError::AlreadyJoined(status) => Some(*status),
            JoinError::Panicked { .. } => Some(ExitStatus::Exited(1)),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `unwrap()` prints on a refused fork says what to use instead.
    #[test]
    fn a_refused_fork_says_what_to_use_in_debug_too() {
        let start = format!("{:?}", StartError::ThreadsPresent { threads: 2 });
        assert!(
            start.starts_with(
                "ThreadsPresent { threads: 2, why: \"refusing to fork: this process has 2 threads"
            ),
            "{start}"
        );
        assert!(start.contains("use StartMethod::ForkServer"), "{start}");
    }
}
