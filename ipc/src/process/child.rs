//! The child's side of every start method, once it knows what to run: call the
//! entry through its trampoline, write the report frame, and leave with `_exit`
//! (no destructors or atexit handlers of the parent's state run twice).

use std::io::Write;
use std::os::fd::{OwnedFd, RawFd};

use super::entry::{ChildReport, Trampoline};
use super::EXIT_CHILD_FAILED;
use crate::codec;

pub(crate) fn run_entry_and_exit(
    report: RawFd,
    trampoline: Trampoline,
    entry: usize,
    args: &[u8],
    fds: Vec<OwnedFd>,
) -> ! {
    let outcome = trampoline(entry, args, fds);
    exit_with_report(report, &outcome)
}

/// Writes `outcome` in the report file and exits with the matching code:
/// 0 for a return, 1 for a panic (Python's code for an uncaught exception).
pub(crate) fn exit_with_report(report: RawFd, outcome: &ChildReport) -> ! {
    if let Ok(frame) = codec::encode_frame(outcome, usize::MAX) {
        if let Err(e) = super::report::write(report, &frame) {
            // Too large for the parent: say so instead, if that fits.
            let failed = ChildReport::Failed(e.to_string());
            if let Ok(frame) = codec::encode_frame(&failed, usize::MAX) {
                let _ = super::report::write(report, &frame);
            }
            exit_now(exit_code_of(&failed));
        }
    }
    exit_now(exit_code_of(outcome))
}

fn exit_code_of(outcome: &ChildReport) -> i32 {
    match outcome {
        ChildReport::Returned(_) => 0,
        ChildReport::Panicked(_) => 1,
        ChildReport::Failed(message) => {
            crate::os::stderr::line(format_args!(
                "ipc: child process could not run its entry: {message}"
            ));
            EXIT_CHILD_FAILED
        }
    }
}

/// Flushes Rust's stdout buffer and leaves immediately.
pub(crate) fn exit_now(code: i32) -> ! {
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: _exit ends the process at once; nothing after it runs.
    unsafe { libc::_exit(code) }
}

/// The descriptor named by the environment variable `var`, which ipc set
/// for this process before exec; the variable is removed so that this
/// process's own children do not take it for theirs. `None` if unset; a
/// value that names no descriptor ends the process (`what` says whose).
pub(crate) fn descriptor_from_env(var: &str, what: &str) -> Option<RawFd> {
    let value = std::env::var_os(var)?;
    std::env::remove_var(var);
    match value
        .to_str()
        .and_then(|s| s.parse::<RawFd>().ok())
        .filter(|&fd| fd > 2)
    {
        Some(fd) => Some(fd),
        None => {
            crate::os::stderr::line(format_args!(
                "ipc: {var} does not name a descriptor; not {what}"
            ));
            exit_now(EXIT_CHILD_FAILED);
        }
    }
}
