//! How a child process ended, decoded from its wait status, with Python's
//! exit-code convention (a negative signal number) and readable signal names.

use std::fmt;

/// The way a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ExitStatus {
    /// It called `exit` (or returned from its entry: code 0).
    Exited(i32),
    /// A signal ended it.
    Signaled { signal: i32, core_dumped: bool },
    /// A fork server's child whose server died first: the child was
    /// killed with it (its parent-death signal, SIGKILL).
    KilledWithForkServer,
    /// A `fork` or `spawn` child killed by SIGKILL after the thread that
    /// started it had ended: Linux sends the parent-death signal when that
    /// *thread* exits (a `tokio` blocking thread, a scoped thread).
    KilledWithStartingThread,
    /// A fork server's child that ended while its server could not say
    /// how (the server was stopped): its pidfd showed the end, and its
    /// report, if it wrote one, still gives its result.
    NotRelayed,
    /// A `fork` or `spawn` child of a process that ignores `SIGCHLD` (or
    /// set `SA_NOCLDWAIT`): the kernel reaped it as it ended, so how is not
    /// known; its report, if it wrote one, still gives its result.
    ReapedUnseen,
}

impl ExitStatus {
    /// Decodes a raw `waitpid` status.
    pub fn from_wait_status(status: i32) -> Self {
        if libc::WIFSIGNALED(status) {
            ExitStatus::Signaled {
                signal: libc::WTERMSIG(status),
                core_dumped: libc::WCOREDUMP(status),
            }
        } else {
            ExitStatus::Exited(libc::WEXITSTATUS(status))
        }
    }

    /// Python's `Process.exitcode`: the exit code, or minus the signal number (-9 for SIGKILL).
    pub fn code(&self) -> i32 {
        match *self {
            ExitStatus::Exited(code) => code,
            ExitStatus::Signaled { signal, .. } => -signal,
            ExitStatus::KilledWithForkServer | ExitStatus::KilledWithStartingThread => {
                -libc::SIGKILL
            }
            // Python's `exitcode` would be None; -1 is no signal's number.
            ExitStatus::NotRelayed | ExitStatus::ReapedUnseen => -1,
        }
    }

    pub fn success(&self) -> bool {
        *self == ExitStatus::Exited(0)
    }
}

impl fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ExitStatus::Exited(code) => write!(f, "exited with code {code}"),
            ExitStatus::Signaled {
                signal,
                core_dumped,
            } => {
                write!(f, "killed by {}", signal_name(signal))?;
                if core_dumped {
                    write!(f, " (core dumped)")?;
                }
                if signal == libc::SIGKILL {
                    write!(f, " (perhaps out of memory?)")?;
                }
                Ok(())
            }
            ExitStatus::KilledWithForkServer => {
                write!(f, "killed with its fork server, which died first (SIGKILL)")
            }
            ExitStatus::KilledWithStartingThread => write!(
                f,
                "killed by SIGKILL after the thread that started it ended (a child dies \
                 with that thread: start it from one that outlives it, or use \
                 die_with_parent(false) or the forkserver start method)"
            ),
            ExitStatus::NotRelayed => {
                write!(
                    f,
                    "ended, but its fork server (not answering) did not say how"
                )
            }
            ExitStatus::ReapedUnseen => write!(
                f,
                "ended, but how is not known: this process ignores SIGCHLD, so the \
                 kernel reaped the child at once (leave SIGCHLD at its default, or use \
                 the forkserver start method)"
            ),
        }
    }
}

/// "SIGKILL" for 9, and so on; "signal N" for numbers without a name.
pub fn signal_name(signal: i32) -> String {
    match nix::sys::signal::Signal::try_from(signal) {
        Ok(sig) => sig.as_str().to_string(),
        Err(_) => format!("signal {signal}"),
    }
}
