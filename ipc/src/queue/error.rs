//! Errors of queue calls, one per call family (crossbeam style): each hands
//! the failure's cause back, never a panic.

use crate::codec::DecodeError;
use crate::spsc::spill::SpillError;

impl From<SpillError> for GetError {
    fn from(e: SpillError) -> Self {
        match e {
            SpillError::TooLarge { len, max } => GetError::TooLarge { len, max },
            other => GetError::Spilled(other),
        }
    }
}

/// Why a `put` failed; nothing of the message is in the queue.
#[derive(Debug, thiserror::Error)]
pub enum PutError {
    /// The encoded message is larger than this handle's cap
    /// (`set_max_message_bytes`).
    #[error("a message of {len} bytes is over this queue handle's cap of {max} bytes")]
    TooLarge { len: usize, max: usize },
    /// This handle was closed.
    #[error("this queue handle was closed")]
    Closed,
    /// The queue was shut down (Python 3.13's `ShutDown`).
    #[error("the queue was shut down")]
    ShutDown,
    #[error("cannot encode the message: {0}")]
    Encode(String),
    /// The ring's positions are impossible (written outside this library):
    /// nothing was written.
    #[error("the queue's shared memory is corrupted: {0}")]
    Corrupted(String),
    #[error("queue lock failed: {0}")]
    Os(std::io::Error),
}

/// Why a `try_put` / `put_timeout` failed.
#[derive(Debug, thiserror::Error)]
pub enum PutTimeoutError {
    /// No room (by count or by bytes) before the deadline.
    #[error("the queue is full")]
    Full,
    #[error(transparent)]
    Put(#[from] PutError),
}

/// Why a `get` failed.
#[derive(Debug, thiserror::Error)]
pub enum GetError {
    /// Every producer closed its handle or died, and the queue is drained.
    #[error("every producer is gone and the queue is empty")]
    Disconnected,
    /// The queue was shut down and is empty (Python 3.13's `ShutDown`).
    #[error("the queue was shut down and is empty")]
    ShutDown,
    /// A message was taken but does not decode as the requested type.
    #[error("a message could not be decoded: {0}")]
    Decode(#[from] DecodeError),
    /// A message over this handle's cap (`set_max_message_bytes`) was
    /// taken and thrown away unread.
    #[error("a message of {len} bytes is over this queue handle's cap of {max} bytes")]
    TooLarge { len: u64, max: u64 },
    /// A message too large for the ring was announced, but what came with
    /// it was not a message of the announced size (or it went with a
    /// consumer that died holding it); it was thrown away.
    #[error("a large message could not be taken: {0}")]
    Spilled(SpillError),
    /// The ring holds impossible bytes (written outside this library).
    #[error("the queue's shared memory is corrupted: {0}")]
    Corrupted(String),
    #[error("queue lock failed: {0}")]
    Os(std::io::Error),
}

/// Why a `try_get` / `get_timeout` failed.
#[derive(Debug, thiserror::Error)]
pub enum GetTimeoutError {
    /// Nothing arrived before the deadline.
    #[error("the queue is empty")]
    Empty,
    #[error(transparent)]
    Get(#[from] GetError),
}

impl GetTimeoutError {
    pub fn is_disconnected(&self) -> bool {
        matches!(self, GetTimeoutError::Get(GetError::Disconnected))
    }

    pub fn is_shut_down(&self) -> bool {
        matches!(self, GetTimeoutError::Get(GetError::ShutDown))
    }
}

impl PutTimeoutError {
    pub fn is_shut_down(&self) -> bool {
        matches!(self, PutTimeoutError::Put(PutError::ShutDown))
    }
}

/// Why `task_done` failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TaskDoneError {
    /// More `task_done` calls than items put (Python's `ValueError`).
    #[error("task_done() called more times than there were items")]
    TooManyCalls,
}

impl From<crate::codec::spill_sink::SpillSinkError> for PutError {
    fn from(e: crate::codec::spill_sink::SpillSinkError) -> Self {
        use crate::codec::spill_sink::SpillSinkError;
        match e {
            SpillSinkError::Encode(why) => PutError::Encode(why),
            SpillSinkError::TooLarge { len, max } => PutError::TooLarge { len, max },
            SpillSinkError::Os(e) => PutError::Os(e),
        }
    }
}
