//! The child's side of every start method, once it knows what to run: call the
//! entry through its trampoline, write the report frame, and leave with `_exit`
//! (no destructors or atexit handlers of the parent's state run twice).
//!
//! Under `panic = "abort"` a panic never reaches the trampoline's
//! `catch_unwind`: the process aborts right after the panic hook. So in such
//! a build the child's hook writes the report itself (the panic's message),
//! and `join` says `Panicked` as it does in an unwinding build, rather than
//! "killed by SIGABRT".

use std::io::Write;
use std::os::fd::{OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

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
    // A child starts with no signal blocked, as `std::process::Command`'s
    // do. The mask survives fork and exec: a parent that blocks SIGTERM (to
    // read it from a signalfd, or on a runtime's signal thread) left a
    // child that `terminate()` could not end.
    let _ = crate::os::signals::unblock_all();
    if cfg!(panic = "abort") {
        report_panics_before_abort(report);
    }
    let outcome = trampoline(entry, args, fds);
    exit_with_report(report, &outcome)
}

/// The report file, for the panic hook of an aborting build.
static REPORT_FD: AtomicI32 = AtomicI32::new(-1);
/// Set by whoever writes the report first: the entry's end or a panic
/// hook. Two writers would interleave their frames in one file.
static REPORTED: AtomicBool = AtomicBool::new(false);

/// Puts a panic hook in front of the one in place (which still runs: the
/// default prints the panic on stderr, as in an unwinding build) that
/// writes the first panic, on any thread, as this child's report.
fn report_panics_before_abort(report: RawFd) {
    REPORT_FD.store(report, Ordering::Relaxed);
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let report = ChildReport::Panicked(super::entry::panic_message(info.payload()));
        let _ = write_report_once(REPORT_FD.load(Ordering::Relaxed), &report);
        previous(info);
    }));
}

/// Writes `outcome` as the report, unless one was written already
/// (`None`). One too large for the parent gives way to a `Failed` saying
/// so. The exit code that goes with what was written.
fn write_report_once(report: RawFd, outcome: &ChildReport) -> Option<i32> {
    if report < 0 || REPORTED.swap(true, Ordering::AcqRel) {
        return None;
    }
    let written = match outcome {
        ChildReport::Returned(value) => {
            let prefix = ChildReport::returned_prefix(value.len());
            super::report::write(report, &[&prefix, value])
        }
        other => match encoded(other) {
            Some(payload) => super::report::write(report, &[&payload]),
            None => Ok(()),
        },
    };
    if let Err(e) = written {
        let failed = ChildReport::Failed(e.to_string());
        if let Some(payload) = encoded(&failed) {
            let _ = super::report::write(report, &[&payload]);
        }
        return Some(exit_code_of(&failed));
    }
    Some(exit_code_of(outcome))
}

/// A report's payload (a panic's message, a failure's words).
fn encoded(report: &ChildReport) -> Option<Vec<u8>> {
    let mut payload = Vec::new();
    codec::encode_append(report, &mut payload).ok()?;
    Some(payload)
}

/// Writes `outcome` in the report file and exits with the matching code:
/// 0 for a return, 1 for a panic (Python's code for an uncaught exception).
/// If a panic on another thread wrote the report first, the process is
/// aborting, and leaves with 1.
pub(crate) fn exit_with_report(report: RawFd, outcome: &ChildReport) -> ! {
    exit_now(write_report_once(report, outcome).unwrap_or(1))
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
