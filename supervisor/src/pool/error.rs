//! What can go wrong with one item ([`TaskError`]) and with a pool call
//! ([`PoolError`]).

use std::fmt;

/// Why one item has no result. Every other item is unaffected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TaskError {
    /// The function panicked on this item (not retried).
    Panicked {
        message: String,
        /// `file:line:column`.
        location: Option<String>,
    },
    /// The item killed `attempts` workers in a row (or hung them past the
    /// worker timeout): given up on.
    WorkerDied {
        attempts: u32,
        /// How the last worker ended, e.g. `worker killed by SIGSEGV`.
        cause: String,
        /// Python-style exit code of the last worker (-11 for SIGSEGV).
        exit_code: Option<i32>,
    },
    /// The item's input or its result (with the framing around it) is
    /// `len` bytes, over the pool's cap of `max` bytes
    /// ([`PoolBuilder::max_message_bytes`](super::PoolBuilder::max_message_bytes)).
    /// Not retried: it would end the same way.
    TooLarge { len: u64, max: u64 },
    /// The function returned `Err` (one given to a `try_` method, such as
    /// [`Pool::try_map`](super::Pool::try_map)): its error, as text
    /// (`{:#}`: an `anyhow` error with its chain of causes).
    Returned(String),
    /// The item could not be encoded or decoded, or its result not used.
    Failed(String),
    /// The pool stopped (terminated, or its workers kept dying at start)
    /// before this item finished.
    Lost(String),
    /// [`AsyncResult::cancel`](super::AsyncResult::cancel) took it back
    /// before a worker got it.
    Cancelled,
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TaskError::Panicked {
                message,
                location: Some(at),
            } => write!(f, "panicked at {at}: {message}"),
            TaskError::Panicked { message, .. } => write!(f, "panicked: {message}"),
            TaskError::WorkerDied {
                attempts,
                cause,
                exit_code,
            } => {
                write!(f, "gave up after {attempts} attempts; last: {cause}")?;
                if let Some(code) = exit_code {
                    write!(f, " (exit code {code})")?;
                }
                Ok(())
            }
            TaskError::TooLarge { len, max } => write!(
                f,
                "{len} bytes, over the largest message allowed ({max} bytes; see max_message_bytes)"
            ),
            TaskError::Returned(why) => write!(f, "returned an error: {why}"),
            TaskError::Failed(why) => write!(f, "{why}"),
            TaskError::Lost(why) => write!(f, "lost: {why}"),
            TaskError::Cancelled => write!(f, "cancelled"),
        }
    }
}

impl std::error::Error for TaskError {}

/// Why a pool call did not give its results.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// An item failed; `index` is its place in the input.
    #[error("item {index}: {error}")]
    Task { index: usize, error: TaskError },
    /// `close` or `terminate` was called: no more submissions.
    #[error("the pool is closed")]
    Closed,
    /// `join` before `close` or `terminate` (Python's "Pool is still running").
    #[error("the pool is still running: join comes after close or terminate")]
    StillRunning,
    #[error("timed out")]
    Timeout,
    /// A wait on the pool from its own thread (in a done callback): it
    /// would wait for itself forever.
    #[error(
        "a done callback cannot wait on its pool (it runs on the thread that would settle it)"
    )]
    WouldDeadlock,
    /// The pool could not start.
    #[error("cannot start the pool: {0}")]
    Start(#[from] crate::run::RunError),
    /// The pool's engine stopped (e.g. workers died at start past the restart limit).
    #[error("the pool stopped: {0}")]
    Stopped(String),
    /// An argument could not be encoded.
    #[error("{0}")]
    Encode(String),
    /// A builder option has a value the pool refuses (Python's `ValueError`).
    #[error("invalid pool option: {0}")]
    InvalidOption(String),
}
