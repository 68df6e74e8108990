//! The `spawn` start method: the child is a fresh exec of this binary
//! (`/proc/self/exe`). Its plan (entry, arguments, handle descriptors, where to
//! report) travels in a memfd whose number is in the `IPC_SPAWN_BOOTSTRAP`
//! environment variable; exactly the handle descriptors, the memfd and the
//! report pipe survive the exec. `outlast_ipc::init()` at the top of the child's `main`
//! reads the plan and runs it.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};

use super::entry::{ChildReport, PortableEntry};
use super::error::StartError;
use super::{child, ChildPlan, Launched, EXIT_CHILD_FAILED, EXIT_INIT_MISSING};
use crate::{codec, os};

/// Names the descriptor of the bootstrap memfd in a spawned child.
pub(crate) const BOOTSTRAP_ENV: &str = "IPC_SPAWN_BOOTSTRAP";

/// Bumped whenever `Bootstrap` changes shape.
const PROTOCOL_VERSION: u32 = 3;

/// The plan a spawned child runs.
#[derive(Serialize, Deserialize)]
struct Bootstrap {
    protocol: u32,
    /// (device, inode) of the parent's executable.
    exe: (u64, u64),
    entry: PortableEntry,
    handle_fds: Vec<RawFd>,
    report_fd: RawFd,
}

pub(crate) fn start(plan: ChildPlan<'_>) -> Result<Launched, StartError> {
    let bootstrap = Bootstrap {
        protocol: PROTOCOL_VERSION,
        exe: os::process::exe_identity()?,
        entry: PortableEntry::of(&plan),
        handle_fds: plan.handle_fds.to_vec(),
        report_fd: plan.report,
    };
    let frame =
        codec::encode_frame(&bootstrap, usize::MAX).map_err(|e| StartError::Args(e.to_string()))?;
    let memfd = os::memory::sealed_memfd_with(c"ipc-spawn-bootstrap", &frame)?;

    let mut inherit: Vec<RawFd> = plan.handle_fds.to_vec();
    inherit.push(plan.report);
    inherit.push(memfd.as_raw_fd());
    let parent = std::process::id() as i32;
    let starter = crate::os::thread_id::thread_id() as i32;
    let die_with_parent = plan.die_with_parent;

    let mut command = Command::new("/proc/self/exe");
    if let Some(argv0) = std::env::args_os().next() {
        command.arg0(argv0);
    }
    command
        .env(BOOTSTRAP_ENV, memfd.as_raw_fd().to_string())
        .stdin(Stdio::null());
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe calls (close_range or fcntl, prctl, getppid, _exit); it
    // allocates nothing.
    unsafe {
        command.pre_exec(move || {
            // Exactly the handed descriptors survive the exec: everything
            // else this process has open is marked close-on-exec (CPython
            // closes all but the ones it passes, too).
            os::fd::cloexec_fds_except(&inherit);
            for &fd in &inherit {
                os::fd::set_cloexec(fd, false)?;
            }
            if die_with_parent {
                os::process::set_parent_death_signal(libc::SIGKILL)?;
                if os::process::parent_pid() != parent {
                    libc::_exit(1);
                }
                // Or only the thread that forks us, which the signal
                // follows: SIGKILL, as it would have sent.
                if !os::process::starter_alive(parent, starter) {
                    libc::raise(libc::SIGKILL);
                }
            }
            Ok(())
        });
    }
    let spawned = command.spawn()?;
    let pid = spawned.id() as i32;
    // Dropping std's Child neither waits nor kills: `Process` reaps this pid itself.
    drop(spawned);
    drop(memfd);
    Ok(Launched { pid, relay: None })
}

/// In a process that may be a spawned child: run the plan and exit, or return
/// at once if this process was not spawned by `ipc`.
pub(crate) fn run_if_spawned() {
    let Some(fd) = child::descriptor_from_env(BOOTSTRAP_ENV, "a child of ipc") else {
        return;
    };
    // Perhaps before Rust's main (see `take_over_before_main`): ignore
    // SIGPIPE as that main would, so a write to a closed pipe is an error.
    os::signals::ignore_default_sigpipe();
    // Exec'd as `/proc/self/exe`, the kernel named it `exe`.
    if let Some(name) = os::process::program_name() {
        os::process::set_name(&name);
    }
    // SAFETY: the parent left exactly this descriptor open for us, and nothing
    // else in this fresh process refers to it.
    let memfd = unsafe { std::fs::File::from_raw_fd(fd) };
    let bootstrap = match read_bootstrap(memfd) {
        Ok(b) => b,
        Err(message) => {
            crate::os::stderr::line(format_args!("ipc: spawned child cannot start: {message}"));
            child::exit_now(EXIT_CHILD_FAILED);
        }
    };
    // Inherited, and never closed here: the child exits with it open.
    let report = bootstrap.report_fd;
    let fds: Vec<OwnedFd> = bootstrap
        .handle_fds
        .iter()
        // SAFETY: as above.
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    for fd in [bootstrap.report_fd].iter().chain(&bootstrap.handle_fds) {
        let _ = os::fd::set_cloexec(*fd, true);
    }
    match os::process::exe_identity() {
        Ok(id) if id == bootstrap.exe => {}
        _ => child::exit_with_report(
            report,
            &ChildReport::Failed("the child is not running its parent's executable".into()),
        ),
    }
    bootstrap.entry.run(report, fds)
}

fn read_bootstrap(mut memfd: std::fs::File) -> Result<Bootstrap, String> {
    let mut frame = Vec::new();
    memfd
        .read_to_end(&mut frame)
        .map_err(|e| format!("cannot read the bootstrap: {e}"))?;
    let (bootstrap, _) = codec::decode_frame::<Bootstrap>(&frame, usize::MAX)
        .map_err(|e| format!("undecodable bootstrap: {e}"))?;
    if bootstrap.protocol != PROTOCOL_VERSION {
        return Err(format!(
            "bootstrap protocol {} from the parent, {} here",
            bootstrap.protocol, PROTOCOL_VERSION
        ));
    }
    Ok(bootstrap)
}

/// Called by every `start`: a spawned child whose `main` did not call
/// `outlast_ipc::init()` would otherwise go on to spawn children of its own, forever.
pub(crate) fn refuse_if_uninitialized_child() {
    let server = super::forkserver::SERVER_ENV;
    if std::env::var_os(BOOTSTRAP_ENV).is_some() || std::env::var_os(server).is_some() {
        crate::os::stderr::line(format_args!(
            "ipc: this process was started by ipc's spawn or forkserver start method, but \
             its main() did not call outlast_ipc::init() first. Add `outlast_ipc::init();` as the first line of main; \
             exiting with code {EXIT_INIT_MISSING} instead of starting processes recursively."
        ));
        child::exit_now(EXIT_INIT_MISSING);
    }
}
