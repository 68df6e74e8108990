//! Error types for sending on and receiving from a [`Connection`](super::Connection),
//! one per call family, in the style of crossbeam-channel.

use crate::codec::{DecodeError, EncodeError};
use std::io;

/// Why a `send` failed. Nothing of the message was written.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The receiving end is closed: its process exited, was killed, or dropped it.
    #[error("the other end of the connection is closed")]
    Disconnected,
    /// The message could not be framed (too large, or not serializable).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// This end was made read-only (`Pipe::simplex`'s receiving end).
    #[error("this end of the pipe is not writable")]
    NotWritable,
    /// Any other OS error.
    #[error("pipe write failed: {0}")]
    Io(#[source] io::Error),
}

/// Why a `send_timeout` failed.
#[derive(Debug, thiserror::Error)]
pub enum SendTimeoutError {
    /// The deadline passed before any byte of the message was written.
    #[error("timed out before the message could be written")]
    Timeout,
    #[error(transparent)]
    Send(#[from] SendError),
}

/// Why a `recv` failed.
#[derive(Debug, thiserror::Error)]
pub enum RecvError {
    /// The sending end is closed (exited, killed, dropped) and every complete
    /// message has been received. A half-sent frame from a killed peer ends here too.
    #[error("the other end of the connection is closed")]
    Disconnected,
    /// The peer sent bytes that are not a valid frame: a length above the
    /// maximum frame size (the connection is unusable after this), or a payload
    /// that does not decode as the requested type (that frame is skipped).
    #[error(transparent)]
    Frame(#[from] DecodeError),
    /// This end was made write-only (`Pipe::simplex`'s sending end).
    #[error("this end of the pipe is not readable")]
    NotReadable,
    /// On an authenticated (TCP) connection, a frame whose tag does not
    /// match: injected, replayed, reordered or altered on the way. The
    /// frame is dropped; the connection is not to be trusted any more.
    #[error("a frame failed its authentication (injected, replayed or altered on the way)")]
    Forged,
    /// Any other OS error.
    #[error("pipe read failed: {0}")]
    Io(#[source] io::Error),
}

/// Why a `recv_bytes_into` (Python's, into a slice at an offset) failed.
#[derive(Debug, thiserror::Error)]
pub enum RecvIntoError {
    /// The message is longer than the room after `offset`: it was taken
    /// off the connection, and is here whole (Python's `BufferTooShort`,
    /// whose `args[0]` is the message).
    #[error("the buffer is too short for the message of {} bytes", .0.len())]
    BufferTooShort(Vec<u8>),
    /// `offset` is past the end of the buffer (Python's `ValueError`);
    /// nothing was received.
    #[error("offset {offset} is past the end of a buffer of {len} bytes")]
    OffsetOutOfBounds { offset: usize, len: usize },
    /// The deadline passed before a whole message came (the timeout form).
    #[error("timed out waiting for a message")]
    Timeout,
    #[error(transparent)]
    Recv(#[from] RecvError),
}

/// Why a `try_recv` returned no message.
#[derive(Debug, thiserror::Error)]
pub enum TryRecvError {
    /// No complete message is available right now.
    #[error("no message available")]
    Empty,
    #[error(transparent)]
    Recv(#[from] RecvError),
}

/// Why a `recv_timeout` returned no message.
#[derive(Debug, thiserror::Error)]
pub enum RecvTimeoutError {
    /// No complete message arrived before the deadline.
    #[error("timed out waiting for a message")]
    Timeout,
    #[error(transparent)]
    Recv(#[from] RecvError),
}

impl TryRecvError {
    pub fn is_disconnected(&self) -> bool {
        matches!(self, TryRecvError::Recv(RecvError::Disconnected))
    }
}

impl RecvTimeoutError {
    pub fn is_disconnected(&self) -> bool {
        matches!(self, RecvTimeoutError::Recv(RecvError::Disconnected))
    }
    pub fn is_timeout(&self) -> bool {
        matches!(self, RecvTimeoutError::Timeout)
    }
}

impl SendTimeoutError {
    pub fn is_disconnected(&self) -> bool {
        matches!(self, SendTimeoutError::Send(SendError::Disconnected))
    }
}
