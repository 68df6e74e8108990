//! `Pipe`: two connected [`Connection`]s, Python's `multiprocessing.Pipe`.
//!
//! `Pipe::duplex()` is a Unix stream socket pair (both ends send and receive);
//! `Pipe::simplex()` is a kernel pipe (one receiving end, one sending end),
//! which is the faster of the two for one-way traffic. Both ends are
//! close-on-exec: a child only gets an end it is handed as a `Process` argument.
//!
//! ```
//! let (mut a, mut b) = outlast_ipc::Pipe::duplex()?;
//! a.send(&("hello", 42u32))?;
//! let (word, n): (String, u32) = b.recv()?;
//! assert_eq!((word.as_str(), n), ("hello", 42));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod connection;
mod error;
mod future;
mod inbox;
pub(crate) mod mac;
mod send_in_two;

pub use connection::Connection;
pub use error::{
    RecvError, RecvIntoError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
};
pub use future::{RecvBytesFuture, RecvFuture, SendFuture};

use std::io;

use crate::os;

/// Kernel buffer asked for each simplex pipe. A 64 KiB default pipe holds
/// only 16 pages, so a frame of 4 KiB plus its header, which spans two pages,
/// fills it after 8 messages; a larger buffer means fewer sleeps and wake-ups.
/// Unprivileged processes get at most `/proc/sys/fs/pipe-max-size` (1 MiB by
/// default); asking for more, or past the per-user limit, keeps the default.
pub const PIPE_CAPACITY: usize = 256 << 10;

/// Constructors for connected pairs of [`Connection`]s.
pub struct Pipe;

impl Pipe {
    /// Two ends that both send and receive (Python's `Pipe()`).
    pub fn duplex() -> io::Result<(Connection, Connection)> {
        let (a, b) = os::fd::socketpair_cloexec()?;
        Ok((
            Connection::new(a, true, true)?,
            Connection::new(b, true, true)?,
        ))
    }

    /// A receiving end and a sending end, in that order (Python's `Pipe(duplex=False)`).
    pub fn simplex() -> io::Result<(Connection, Connection)> {
        let (r, w) = os::fd::pipe_cloexec()?;
        os::fd::grow_pipe(&w, PIPE_CAPACITY);
        Ok((
            Connection::new(r, true, false)?,
            Connection::new(w, false, true)?,
        ))
    }
}
