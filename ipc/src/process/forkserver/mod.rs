//! The `forkserver` start method: a small single-threaded server process,
//! started once, forks every child. A program with threads (a logger, a
//! runtime, rayon) cannot fork safely, since other threads' locks would be
//! copied held, and `spawn` execs the whole binary for each child; the
//! server is an exec of this binary that ran nothing but `outlast_ipc::init()`, so
//! its forks are safe whatever this process does, and cheap.
//!
//! ```
//! use outlast_ipc::{Process, StartMethod};
//!
//! fn double(x: u64) -> u64 {
//!     x * 2
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! outlast_ipc::init(); // first line of main: in the server it serves, and never returns
//! outlast_ipc::forkserver::start()?; // optional: early, before threads exist
//! let busy = std::thread::spawn(|| std::thread::sleep(std::time::Duration::from_millis(50)));
//! let mut p = Process::new(double, 21).start_method(StartMethod::ForkServer);
//! p.start()?; // fork would refuse here: another thread runs
//! assert_eq!(p.join()?, 42);
//! # busy.join().ok();
//! # Ok(())
//! # }
//! ```
//!
//! * **Who may use it.** The server listens on one end of a socketpair that
//!   only the process that started it holds (close-on-exec, and closed in
//!   every child ipc starts). It has no address: no other process, of this
//!   user or another, can connect to it and ask for a fork.
//! * **What travels.** The entry (as a code offset, as for spawn), the
//!   arguments, and every handle in them (pipe ends, queue and shared-memory
//!   descriptors) go to the server with `SCM_RIGHTS`, with the caller's
//!   stdout and stderr, working directory, environment, umask, resource
//!   limits, CPU affinity, nice value, user and groups, and ignored signals
//!   as they are at that moment (as a forked or spawned child gets them;
//!   only what changed since the server started travels). Arguments past
//!   256 KiB go in a sealed memfd of their own, which the server maps and
//!   its child reads in place: written once, never copied again.
//! * **Parenthood.** The child is the server's. Its exit status comes back on
//!   a pipe of its own and its pidfd with the reply, so `join`, `exit_code`,
//!   `is_alive`, `terminate`, `kill` and [`wait`](crate::wait) work as for
//!   fork and spawn.
//! * **Nothing outlives the creator.** Each child dies with the server
//!   (`PR_SET_PDEATHSIG`), and the server, seeing end of file from its
//!   creator (which exited, or was SIGKILLed), kills its children, reaps
//!   them and exits. A server that was killed is noticed at the next start
//!   and replaced.

mod attributes;
mod client;
mod protocol;
mod server;
mod surroundings;

pub(crate) use client::start_child;
pub use client::{pid, start, stop};
pub(crate) use server::{run_if_server, SERVER_ENV};

use crate::process::exit::ExitStatus;

/// Why the fork server could not start a child.
#[derive(Debug, thiserror::Error)]
pub enum ForkServerError {
    /// The server exited before it answered: its `main` does not call
    /// `outlast_ipc::init()` first, so it ran the program instead of serving.
    #[error(
        "the fork server exited before it was ready ({}); does main() call outlast_ipc::init() first?",
        status.map_or_else(|| "status unknown".to_string(), |s| s.to_string())
    )]
    NoInit { status: Option<ExitStatus> },
    /// The server cannot serve (threads were started before `outlast_ipc::init()`).
    #[error("the fork server refused to serve: {0}")]
    Refused(String),
    /// The server died while it was starting this child. The next start
    /// starts a new server.
    #[error(
        "the fork server died while starting the child ({}); the next start starts a new one",
        status.map_or_else(|| "status unknown".to_string(), |s| s.to_string())
    )]
    Lost { status: Option<ExitStatus> },
    /// The server did not answer in time; it was killed.
    #[error("the fork server did not answer within 10 s; it was killed")]
    Unresponsive,
    /// The server could not fork (out of processes or memory).
    #[error("the fork server could not start the child: {0}")]
    Failed(String),
    /// More handles than one message can carry.
    #[error("{handles} handles in the arguments; the fork server takes at most {most}")]
    TooManyHandles { handles: usize, most: usize },
    #[error("the fork server spoke nonsense: {0}")]
    Protocol(String),
    #[error("cannot start the fork server: {0}")]
    Os(#[from] std::io::Error),
}
