//! Errors of the SPSC channel's calls.

/// Why a receive (or a send) failed for good.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpscError {
    /// The peer's words or records are impossible: it corrupted the
    /// channel. The endpoint refuses every call from now on.
    #[error("the peer corrupted the channel: {0}")]
    Corrupted(String),
    /// The sender closed or died, and every record it sent has been taken
    /// (receivers), or the receiver did (senders).
    #[error("the other end is gone")]
    Disconnected,
    /// The end is parked (not mapped in this process): `open` it first.
    #[error("the channel end is parked: open it first")]
    Parked,
}

/// Why a send did not happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrySendError {
    /// No room now (or before the deadline).
    #[error("the channel is full")]
    Full,
    /// The message can never fit this ring.
    #[error("a message of {len} bytes exceeds this channel's largest ({max} bytes)")]
    TooLarge { len: usize, max: usize },
    #[error("cannot encode the message: {0}")]
    Encode(String),
    #[error(transparent)]
    Failed(#[from] SpscError),
}
