//! The control socket: how a running supervisor is inspected and steered
//! from another process (`supervisor status`, `scale`, `kill`, `reload`,
//! `stop`, `list`). A Unix socket of mode 0600, by default named after the
//! supervisor's pid in a directory only its user can enter; a peer of
//! another uid is refused by its credentials (root aside).
//!
//! The protocol is versioned JSON, one request and one reply per
//! connection, each a frame: a `u32` little-endian length, then the JSON
//! text (at most [`MAX_FRAME`] bytes). A request the supervisor cannot
//! read gets an error reply, or, past the size limit or a deadline, a
//! closed connection; nothing a client sends can stall or crash the run.

#[cfg(feature = "control")]
pub mod client;
mod dir;
mod protocol;
#[cfg(feature = "control")]
pub(crate) mod server;
#[cfg(not(feature = "control"))]
#[path = "server_off.rs"]
pub(crate) mod server;

pub use dir::{ours, DirError};

pub use protocol::{Command, IpcStatus, Reply, Status, TaskStatus, WorkerRef, WorkerStatus};

use std::path::PathBuf;

/// Changes when requests or replies change incompatibly.
pub const VERSION: u32 = 1;
/// The largest frame either side accepts.
pub const MAX_FRAME: usize = 1 << 20;

/// Where a run's control socket goes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ControlAt {
    /// None (the library's default: a `Pool` or an embedded run).
    #[default]
    Off,
    /// `<dir>/<pid>.sock` in [`socket_dir`] (the command line's default).
    Default,
    /// A path of the caller's choosing (`--control PATH`).
    Path(PathBuf),
}

/// The directory of this user's supervisors' sockets:
/// `$XDG_RUNTIME_DIR/supervisor`, else `/tmp/supervisor-<uid>`. Nothing is
/// bound, listed or removed there before [`ours`] has checked it.
pub fn socket_dir() -> PathBuf {
    match std::env::var_os("XDG_RUNTIME_DIR").map(PathBuf::from) {
        Some(dir) if dir.is_dir() => dir.join("supervisor"),
        // SAFETY: getuid cannot fail and touches no memory.
        _ => std::env::temp_dir().join(format!("supervisor-{}", unsafe { libc::getuid() })),
    }
}

/// The default socket of the supervisor with `pid`.
pub fn default_path(pid: u32) -> PathBuf {
    socket_dir().join(format!("{pid}.sock"))
}

/// A frame: the length, then the bytes.
#[cfg(feature = "control")]
fn frame(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + bytes.len());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
    out
}
