//! The `fork` start method: the child is a copy of the parent that calls the
//! entry directly. It refuses when other threads exist (their locks would be
//! copied held), and the child closes every descriptor it was not handed.

use std::io::Write;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

use super::error::StartError;
use super::{child, current, ChildPlan, Launched};
use crate::os;

/// Threads of ours that end by themselves once their one piece of work
/// is done (a large result decoded or read, a large buffer copied or
/// freed, a connection opened): a fork waits a little for them rather
/// than refusing. One that had just woken its future and not yet ended
/// made a fork right after an awaited large join fail with
/// `ThreadsPresent` now and then.
const PASSING: [&str; 5] = [
    "outlast-join",
    "outlast-decode",
    "outlast-free",
    "outlast-spill",
    "outlast-connect",
];

/// How long a fork waits for [`PASSING`] threads to end.
const WAIT_FOR_PASSING: std::time::Duration = std::time::Duration::from_millis(200);

/// This process's threads, those that wait for our futures left out, once
/// the passing ones among them have ended (or [`WAIT_FOR_PASSING`] has
/// passed: then they count too).
fn threads_but_passing_ones() -> std::io::Result<usize> {
    let deadline = std::time::Instant::now() + WAIT_FOR_PASSING;
    loop {
        let (mut threads, mut passing) = (0, 0);
        os::procfs::each_thread_name(|name| {
            threads += usize::from(!name.starts_with(crate::watch::THREAD_PREFIX));
            passing += usize::from(PASSING.contains(&name));
        })?;
        let others = threads.saturating_sub(passing);
        if threads <= 1 || others > 1 || std::time::Instant::now() >= deadline {
            return Ok(threads);
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

pub(crate) fn start(plan: ChildPlan<'_>, allow_threads: bool) -> Result<Launched, StartError> {
    // The threads that wait for our futures hold nothing a child needs
    // once they are kept out of wakers: they do not count.
    let watch_threads_quiet = crate::watch::quiet_for_fork();
    if !allow_threads {
        let threads = threads_but_passing_ones()?;
        if threads > 1 {
            return Err(StartError::ThreadsPresent { threads });
        }
    }
    // Buffered output would otherwise be printed twice, once by each process.
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let parent = std::process::id() as i32;
    let starter = os::thread_id::thread_id() as i32;

    // SAFETY: fork is safe here because this process is single-threaded (checked
    // above) unless the caller explicitly took responsibility with allow_threads.
    let pid = unsafe { libc::fork() };
    // (In the child too: its copy of the gate is this thread's to release.)
    drop(watch_threads_quiet);
    if pid < 0 {
        return Err(StartError::Os(std::io::Error::last_os_error()));
    }
    if pid == 0 {
        run_child(plan, parent, starter);
    }
    Ok(Launched { pid, relay: None })
}

/// In the forked child: never returns.
fn run_child(plan: ChildPlan<'_>, parent: i32, starter: i32) -> ! {
    if plan.die_with_parent {
        let _ = os::process::set_parent_death_signal(libc::SIGKILL);
        // The parent may have died before the line above took effect.
        if os::process::parent_pid() != parent {
            child::exit_now(1);
        }
        // Or only the thread that forked us, which the signal follows: as
        // it would have, SIGKILL (so the child never outlives it by luck).
        if !os::process::starter_alive(parent, starter) {
            // SAFETY: raise is async-signal-safe; SIGKILL ends this process.
            unsafe { libc::raise(libc::SIGKILL) };
        }
    }
    os::fd::stdin_from_devnull();
    // Only the handles given to this child: their descriptors (below) and
    // their mappings, which decoding the arguments maps afresh.
    crate::shm::forget_parent_mappings();
    let mut keep: Vec<RawFd> = plan.handle_fds.to_vec();
    keep.push(plan.report);
    os::fd::close_fds_except(&keep);
    super::family::become_child(parent, plan.parent_name.clone());
    current::set_current_name(plan.name);
    // SAFETY: these descriptors were inherited from the parent's handles and are
    // owned by nothing in this process (the parent's objects are never dropped here).
    let fds = plan
        .handle_fds
        .iter()
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    child::run_entry_and_exit(plan.report, plan.trampoline, plan.entry, plan.args, fds)
}
