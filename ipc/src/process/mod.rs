//! [`Process`]: Python's `multiprocessing.Process` for a plain `fn(A) -> R`.
//!
//! The arguments and the return value are serde types; handles such as
//! [`Connection`](crate::Connection) are arguments like any other. `join` gives
//! back the child's `R`, or a [`JoinError`] that says how the child ended: an
//! exit code, a signal, or a panic with its message.
//!
//! ```
//! fn square(x: u64) -> u64 {
//!     x * x
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! ipc::init(); // first line of main: in a spawned child, runs the child instead
//! let mut p = ipc::Process::new(square, 12).named("squarer");
//! p.start()?;
//! assert_eq!(p.join()?, 144);
//! assert_eq!(p.exit_code(), Some(0));
//! # Ok(())
//! # }
//! ```
//!
//! # Lifetimes of children
//!
//! * **No zombies.** A child is reaped by `join`, by `is_alive` once it has
//!   exited, and on drop. Dropping a `Process` whose child still runs kills the
//!   child (`SIGKILL`) and reaps it: a child never outlives its handle unseen.
//! * **Children die with their parent.** By default each child asks the kernel
//!   for `SIGKILL` when its parent dies (`PR_SET_PDEATHSIG`). Linux delivers it
//!   when the parent *thread* that started the child exits, not the whole
//!   process: start long-lived children from the main thread or a thread that
//!   lives as long as they should. `die_with_parent(false)` turns this off.

mod child;
mod code_ref;
mod current;
mod entry;
mod error;
mod exit;
mod family;
mod fork;
mod spawn;

pub use code_ref::CodeRef;
pub use current::{current_process, ProcessInfo};
pub use error::{JoinError, JoinTimeoutError, StartError};
pub use exit::{signal_name, ExitStatus};
pub use family::{active_children, parent_process, ChildInfo, ParentProcess};

pub(crate) use entry::{code_address, code_offset, panic_message};
pub(crate) use spawn::run_if_spawned;

use std::marker::PhantomData;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, DEFAULT_MAX_FRAME_SIZE};
use crate::handle;
use crate::os::{self, Deadline};
use entry::ChildReport;

/// Exit code of a spawned child whose `main` lacks `ipc::init()`.
pub const EXIT_INIT_MISSING: i32 = 86;
/// Exit code of a child that could not decode its arguments, encode its result,
/// or read its bootstrap.
pub const EXIT_CHILD_FAILED: i32 = 87;

/// How a child process is created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StartMethod {
    /// A copy of this process calls the entry directly: fastest, but refused
    /// while other threads exist.
    #[default]
    Fork,
    /// A fresh exec of this binary; `ipc::init()` in its `main` runs the entry.
    Spawn,
}

/// A child process running `fn(A) -> R`.
pub struct Process<A, R> {
    entry: fn(A) -> R,
    args: Option<A>,
    name: String,
    method: StartMethod,
    allow_threads: bool,
    die_with_parent: bool,
    max_result_size: usize,
    child: Option<Child>,
    _result: PhantomData<fn() -> R>,
}

/// What a start method needs to start a child.
pub(crate) struct ChildPlan<'a> {
    pub name: &'a str,
    pub trampoline: entry::Trampoline,
    /// Address of the `fn(A) -> R` the trampoline calls.
    pub entry: usize,
    /// postcard bytes of the arguments.
    pub args: &'a [u8],
    /// Descriptors the arguments refer to, in handle-slot order.
    pub handle_fds: &'a [std::os::fd::RawFd],
    pub die_with_parent: bool,
    /// This process's name, for the child's `parent_process()`.
    pub parent_name: String,
}

/// What a start method hands back: the child's pid and our end of its report pipe.
pub(crate) struct Launched {
    pub pid: i32,
    pub report_rx: OwnedFd,
}

/// A started child, until it is reaped and its report read.
struct Child {
    pid: i32,
    /// Readable when the child exits; `None` on kernels without pidfds.
    pidfd: Option<OwnedFd>,
    /// Our end of the report pipe, until end of file.
    report_rx: Option<OwnedFd>,
    report: Vec<u8>,
    /// The child wrote more than `max_result_size`: it is not trusted.
    report_overflow: bool,
    status: Option<ExitStatus>,
    joined: bool,
}

impl<A, R> Process<A, R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    /// A process that will run `entry(args)`. Nothing starts until [`start`](Self::start).
    pub fn new(entry: fn(A) -> R, args: A) -> Self {
        Process {
            entry,
            args: Some(args),
            name: current::default_child_name(),
            method: StartMethod::default(),
            allow_threads: false,
            die_with_parent: true,
            max_result_size: DEFAULT_MAX_FRAME_SIZE,
            child: None,
            _result: PhantomData,
        }
    }

    /// Sets the name the child sees in `ipc::current_process().name`.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Chooses fork (default) or spawn.
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = method;
        self
    }

    /// Lets `fork` go ahead although other threads exist. Only sound if none of
    /// them can hold a lock the child will need (the allocator's, stdout's, ...).
    pub fn allow_threads(mut self, allow: bool) -> Self {
        self.allow_threads = allow;
        self
    }

    /// Whether the child gets `SIGKILL` when its parent thread exits (default: yes).
    pub fn die_with_parent(mut self, die: bool) -> Self {
        self.die_with_parent = die;
        self
    }

    /// The largest result the parent accepts from the child (default 64 MiB).
    pub fn max_result_size(mut self, bytes: usize) -> Self {
        self.max_result_size = bytes;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn method(&self) -> StartMethod {
        self.method
    }

    /// Starts the child. The arguments (and the handles in them) are given to
    /// the child; this process's copies are closed once the child has them.
    pub fn start(&mut self) -> Result<(), StartError> {
        spawn::refuse_if_uninitialized_child();
        if self.child.is_some() {
            return Err(StartError::AlreadyStarted);
        }
        let Some(args) = self.args.as_ref() else {
            return Err(StartError::AlreadyStarted);
        };
        let (encoded, handle_fds) = handle::collecting_handles(|| postcard::to_allocvec(args));
        let encoded = encoded.map_err(|e| StartError::Args(e.to_string()))?;
        let plan = ChildPlan {
            name: &self.name,
            trampoline: entry::trampoline::<A, R>,
            entry: self.entry as usize,
            args: &encoded,
            handle_fds: &handle_fds,
            die_with_parent: self.die_with_parent,
            parent_name: current::current_process().name,
        };
        let launched = match self.method {
            StartMethod::Fork => fork::start(plan, self.allow_threads)?,
            StartMethod::Spawn => spawn::start(plan)?,
        };
        // The child has its copies of the handles now; ours must close, or a
        // reader would never see end of file from a dead writer.
        self.args = None;
        let pidfd = os::process::pidfd_open(launched.pid).unwrap_or(None);
        family::started(launched.pid, &self.name);
        self.child = Some(Child {
            pid: launched.pid,
            pidfd,
            report_rx: Some(launched.report_rx),
            report: Vec::new(),
            report_overflow: false,
            status: None,
            joined: false,
        });
        Ok(())
    }

    /// Waits for the child to end and returns what its entry returned.
    pub fn join(&mut self) -> Result<R, JoinError> {
        self.join_deadline(Deadline::never()).map_err(|e| match e {
            JoinTimeoutError::Join(e) => e,
            JoinTimeoutError::Timeout => JoinError::Io(std::io::ErrorKind::TimedOut.into()),
        })
    }

    /// Like [`join`](Self::join), but gives up after `timeout` (the child keeps running).
    pub fn join_timeout(&mut self, timeout: Duration) -> Result<R, JoinTimeoutError> {
        self.join_deadline(Deadline::after(timeout))
    }

    fn join_deadline(&mut self, deadline: Deadline) -> Result<R, JoinTimeoutError> {
        let max = self.max_result_size;
        let child = self.child.as_mut().ok_or(JoinError::NotStarted)?;
        if let (true, Some(status)) = (child.joined, child.status) {
            return Err(JoinError::AlreadyJoined(status).into());
        }
        if !child.wait(deadline, max).map_err(JoinError::Io)? {
            return Err(JoinTimeoutError::Timeout);
        }
        child.joined = true;
        Ok(child.outcome::<R>(max)?)
    }

    /// A descriptor that becomes readable (`POLLIN`) when the child exits: its
    /// pidfd, for event loops that watch many children. `None` before start,
    /// after the child was reaped, or on kernels without pidfds (use `SIGCHLD`).
    pub fn exit_fd(&self) -> Option<std::os::fd::BorrowedFd<'_>> {
        use std::os::fd::AsFd;
        let child = self.child.as_ref()?;
        if child.status.is_some() {
            return None;
        }
        child.pidfd.as_ref().map(|fd| fd.as_fd())
    }

    /// The child's pid, once started.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid as u32)
    }

    /// True from `start` until the child has exited.
    pub fn is_alive(&mut self) -> bool {
        let max = self.max_result_size;
        match self.child.as_mut() {
            None => false,
            Some(child) => {
                child.status.is_none() && !matches!(child.wait(Deadline::now(), max), Ok(true))
            }
        }
    }

    /// Python's `exitcode`: `None` while running (or before start), the exit
    /// code once ended, minus the signal number if a signal ended it (-9: SIGKILL).
    pub fn exit_code(&mut self) -> Option<i32> {
        self.exit_status().map(|s| s.code())
    }

    /// How the child ended, once it has.
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        self.is_alive();
        self.child.as_ref().and_then(|c| c.status)
    }

    /// Sends `SIGTERM` (Python's `terminate()`). No effect once the child has ended.
    pub fn terminate(&mut self) -> std::io::Result<()> {
        self.signal(libc::SIGTERM)
    }

    /// Sends `SIGKILL` (Python's `kill()`). No effect once the child has ended.
    pub fn kill(&mut self) -> std::io::Result<()> {
        self.signal(libc::SIGKILL)
    }

    /// Sends any signal to a child that has not been reaped yet.
    pub fn signal(&mut self, signal: i32) -> std::io::Result<()> {
        match &self.child {
            Some(child) if child.status.is_none() => os::process::send_signal(child.pid, signal),
            _ => Ok(()),
        }
    }
}

impl<A, R> Drop for Process<A, R> {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            if child.status.is_none() {
                let _ = os::process::send_signal(child.pid, libc::SIGKILL);
                child.status = os::process::reap(child.pid, true).ok().flatten();
                family::reaped(child.pid);
            }
        }
    }
}

impl Child {
    /// Waits until the child has exited and been reaped and its report read.
    /// `Ok(false)` if the deadline passed first.
    fn wait(&mut self, deadline: Deadline, max_report: usize) -> std::io::Result<bool> {
        loop {
            if self.status.is_none() {
                self.status = os::process::reap(self.pid, false)?;
                if self.status.is_some() {
                    family::reaped(self.pid);
                }
            }
            if self.status.is_some() {
                // Dead: whatever it wrote is in the pipe now; take it without waiting.
                while self.report_rx.is_some() && self.read_report(max_report)? {}
                self.report_rx = None;
                return Ok(true);
            }
            let mut fds = Vec::with_capacity(2);
            // Without a pidfd, wake up every few milliseconds to check on the child.
            let (pid_events, step) = match &self.pidfd {
                Some(fd) => ((fd.as_raw_fd(), libc::POLLIN), deadline),
                None => ((-1, 0), deadline.or_sooner(Duration::from_millis(5))),
            };
            fds.push(libc::pollfd {
                fd: pid_events.0,
                events: pid_events.1,
                revents: 0,
            });
            if let Some(rx) = &self.report_rx {
                fds.push(libc::pollfd {
                    fd: rx.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let ready = os::poll::poll_many(&mut fds, step)?;
            if ready == 0 && deadline.passed() {
                return Ok(false);
            }
            if fds
                .get(1)
                .is_some_and(|p| os::poll::ready_of(p.revents).any())
            {
                self.read_report(max_report)?;
            }
        }
    }

    /// Reads what is available of the report. Returns false at end of file or
    /// when nothing more is available right now.
    fn read_report(&mut self, max_report: usize) -> std::io::Result<bool> {
        let Some(rx) = &self.report_rx else {
            return Ok(false);
        };
        let mut chunk = [0u8; 16 * 1024];
        match os::fd::read_some(rx.as_raw_fd(), &mut chunk) {
            Ok(0) => {
                self.report_rx = None;
                Ok(false)
            }
            Ok(n) => {
                if self.report.len() + n > max_report + codec::HEADER_LEN + 16 {
                    self.report_overflow = true;
                } else {
                    self.report.extend_from_slice(&chunk[..n]);
                }
                Ok(true)
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Turns the exit status and the report into the join result.
    fn outcome<R: DeserializeOwned>(&mut self, max_report: usize) -> Result<R, JoinError> {
        let Some(status) = self.status else {
            return Err(JoinError::NotStarted);
        };
        if self.report_overflow {
            return Err(JoinError::BadReport(format!(
                "the child's result exceeds {max_report} bytes"
            )));
        }
        if self.report.is_empty() {
            return Err(match status {
                ExitStatus::Exited(EXIT_INIT_MISSING) => JoinError::InitMissing,
                ExitStatus::Exited(code) => JoinError::Exited { code },
                signaled => JoinError::Signaled(signaled),
            });
        }
        let report = std::mem::take(&mut self.report);
        let decoded = codec::decode_frame::<ChildReport>(&report, max_report + 16);
        match decoded {
            Ok((ChildReport::Returned(bytes), _)) => {
                codec::decode_payload(&bytes).map_err(|e| JoinError::BadReport(e.to_string()))
            }
            Ok((ChildReport::Panicked(message), _)) => Err(JoinError::Panicked { message }),
            Ok((ChildReport::Failed(message), _)) => Err(JoinError::ChildFailed { message }),
            // A report cut short by a signal says nothing; the signal does.
            Err(_) if !matches!(status, ExitStatus::Exited(0)) => Err(match status {
                ExitStatus::Exited(code) => JoinError::Exited { code },
                signaled => JoinError::Signaled(signaled),
            }),
            Err(e) => Err(JoinError::BadReport(e.to_string())),
        }
    }
}

impl<A, R> crate::wait::Waitable for Process<A, R> {
    fn ready_fd(&self) -> Option<std::os::fd::RawFd> {
        let child = self.child.as_ref()?;
        if child.status.is_some() {
            return None;
        }
        child.pidfd.as_ref().map(|fd| fd.as_raw_fd())
    }
    fn ready_now(&self) -> bool {
        match &self.child {
            Some(child) => child.status.is_some() || os::process::has_exited(child.pid),
            None => false,
        }
    }
}

impl crate::wait::Waitable for ParentProcess {
    fn ready_fd(&self) -> Option<std::os::fd::RawFd> {
        self.sentinel()
    }
    fn ready_now(&self) -> bool {
        self.sentinel().is_none() && !self.is_alive()
    }
}
