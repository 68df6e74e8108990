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
//! outlast_ipc::init(); // first line of main: in a spawned child, runs the child instead
//! let mut p = outlast_ipc::Process::new(square, 12).named("squarer");
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
//!   lives as long as they should. A child whose thread ended, even before
//!   the child asked for the signal, is killed every time, and joins as
//!   [`ExitStatus::KilledWithStartingThread`], in words.
//!   `die_with_parent(false)` turns this off. The default start method,
//!   forkserver, is not concerned: its server starts every child.

mod child;
mod code_ref;
mod current;
mod entry;
mod error;
mod exit;
mod family;
mod fork;
pub mod forkserver;
mod join_future;
mod report;
mod spawn;
mod start_method;

pub use code_ref::CodeRef;
pub use current::{current_process, ProcessInfo};
pub use entry::panic_message;
pub use error::{JoinError, JoinTimeoutError, StartError};
pub use exit::{signal_name, ExitStatus};
pub use family::{active_children, parent_process, ChildInfo, ParentProcess};
pub use join_future::JoinFuture;
pub use start_method::{
    force_start_method, get_all_start_methods, get_start_method, set_start_method, StartMethod,
    StartMethodAlreadySet, UnknownStartMethod,
};

pub(crate) use entry::{code_address, code_offset};
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

/// Exit code of a spawned child whose `main` lacks `outlast_ipc::init()`.
pub const EXIT_INIT_MISSING: i32 = 86;
/// Exit code of a child that could not decode its arguments, encode its result,
/// or read its bootstrap.
pub const EXIT_CHILD_FAILED: i32 = 87;

/// How long a dropped fork-server child's status may take to be relayed.
const RELAY_GRACE: Duration = Duration::from_secs(5);

/// A child process running `fn(A) -> R`.
pub struct Process<A, R> {
    entry: fn(A) -> R,
    args: Option<A>,
    name: String,
    /// `None`: the program's default ([`get_start_method`]) when it starts.
    method: Option<StartMethod>,
    allow_threads: bool,
    die_with_parent: bool,
    max_result_size: usize,
    child: Option<Child>,
    /// What the arguments lent the child (manager references), kept until
    /// the child is joined or this is dropped.
    lent: Vec<crate::lend::Lent>,
    /// The thread that waits for `join_async` (see `join_future`).
    exit_watch: join_future::ExitWatch,
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
    /// The report file the child writes its outcome in (see `report`).
    pub report: std::os::fd::RawFd,
    pub die_with_parent: bool,
    /// This process's name, for the child's `parent_process()`.
    pub parent_name: String,
}

/// What a start method hands back: the child's pid, and how to follow it.
pub(crate) struct Launched {
    pub pid: i32,
    /// For a child of the fork server, which reaps it: how we learn its end.
    pub relay: Option<Relayed>,
}

/// How a child that is not ours to reap (the fork server's) is followed.
pub(crate) struct Relayed {
    /// The server writes the child's wait status here once it has reaped it.
    pub status_rx: OwnedFd,
    /// The child's pidfd, opened by the server before anyone could reap it.
    pub pidfd: Option<OwnedFd>,
}

/// A started child, until it is reaped and its report read.
struct Child {
    pid: i32,
    /// Readable when the child exits; `None` on kernels without pidfds.
    pidfd: Option<OwnedFd>,
    /// For a fork-server child: its wait status, relayed by the server.
    status_rx: Option<OwnedFd>,
    /// The report file the child writes its outcome in; read once it exited.
    report: OwnedFd,
    status: Option<ExitStatus>,
    joined: bool,
    /// The thread that forked it, when its parent-death signal follows
    /// that thread (fork and spawn): a SIGKILL after it ended is named.
    starter: Option<u32>,
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
            method: None,
            allow_threads: false,
            die_with_parent: true,
            max_result_size: DEFAULT_MAX_FRAME_SIZE,
            child: None,
            lent: Vec::new(),
            exit_watch: Default::default(),
            _result: PhantomData,
        }
    }

    /// Sets the name the child sees in `outlast_ipc::current_process().name`.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Chooses fork, spawn or forkserver (default: [`get_start_method`]).
    pub fn start_method(mut self, method: StartMethod) -> Self {
        self.method = Some(method);
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

    /// The largest result the parent accepts from the child (default 1 GiB;
    /// the report file that carries it only takes the pages it is written).
    pub fn max_result_size(mut self, bytes: usize) -> Self {
        self.max_result_size = bytes;
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The start method this process uses (or will use).
    pub fn method(&self) -> StartMethod {
        self.method.unwrap_or_else(get_start_method)
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
        let ((encoded, handle_fds), lent) = crate::lend::collecting(|| {
            handle::collecting_handles(|| {
                let mut bytes = Vec::new();
                codec::encode_append(args, &mut bytes).map(|()| bytes)
            })
        });
        self.lent = lent;
        let encoded = encoded.map_err(|e| StartError::Args(e.to_string()))?;
        let report = report::create(self.max_result_size)?;
        let plan = ChildPlan {
            name: &self.name,
            trampoline: entry::trampoline::<A, R>,
            entry: self.entry as usize,
            args: &encoded,
            handle_fds: &handle_fds,
            report: report.as_raw_fd(),
            die_with_parent: self.die_with_parent,
            parent_name: current::current_process().name,
        };
        let method = self.method();
        self.method = Some(method);
        let launched = match method {
            StartMethod::Fork => fork::start(plan, self.allow_threads)?,
            StartMethod::Spawn => spawn::start(plan)?,
            StartMethod::ForkServer => forkserver::start_child(&plan)?,
        };
        // The child has its copies of the handles now; ours must close, or a
        // reader would never see end of file from a dead writer.
        self.args = None;
        let (pidfd, status_rx) = match launched.relay {
            Some(relay) => (relay.pidfd, Some(relay.status_rx)),
            None => (os::process::pidfd_open(launched.pid).unwrap_or(None), None),
        };
        family::started(launched.pid, &self.name);
        let starter = (self.die_with_parent && method != StartMethod::ForkServer)
            .then(crate::os::thread_id::thread_id);
        self.child = Some(Child {
            pid: launched.pid,
            pidfd,
            status_rx,
            report,
            status: None,
            joined: false,
            starter,
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
        // Queues' stuck gets can tell a consumer waiting for this join's
        // end marker (see `queue::joining`).
        let joining = child.status.is_none().then(crate::queue::Joining::start);
        let ended = child.wait(deadline).map_err(JoinError::Io)?;
        drop(joining);
        if !ended {
            return Err(JoinTimeoutError::Timeout);
        }
        child.joined = true;
        self.lent.clear();
        Ok(child.outcome::<R>(max)?)
    }

    /// How the child ended and a duplicate of its report, if it has ended,
    /// is not joined yet, and wrote a report of [`OFF_THREAD_REPORT`] bytes
    /// or more: [`join_async`](Self::join_async) reads that one off the
    /// executor's thread.
    fn ended_with_large_report(&mut self) -> std::io::Result<Option<(ExitStatus, OwnedFd)>> {
        let Some(child) = self.child.as_mut() else {
            return Ok(None);
        };
        if child.joined || !child.wait(Deadline::now())? {
            return Ok(None);
        }
        let Some(status) = child.status else {
            return Ok(None);
        };
        if report::announced_len(&child.report) < OFF_THREAD_REPORT {
            return Ok(None);
        }
        Ok(Some((status, child.report.try_clone()?)))
    }

    /// Its join's result was worked out from its report elsewhere (see
    /// [`ended_with_large_report`](Self::ended_with_large_report)) and given.
    fn joined_elsewhere(&mut self) {
        if let Some(child) = self.child.as_mut() {
            child.joined = true;
        }
        self.lent.clear();
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
        child.exit_watch().map(|fd| fd.as_fd())
    }

    /// The child's pid, once started.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.pid as u32)
    }

    /// True from `start` until the child has exited.
    pub fn is_alive(&mut self) -> bool {
        match self.child.as_mut() {
            None => false,
            Some(child) => {
                child.status.is_none() && !matches!(child.wait(Deadline::now()), Ok(true))
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
            Some(child) if child.status.is_none() => child.signal(signal),
            _ => Ok(()),
        }
    }
}

impl<A, R> Drop for Process<A, R> {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            if child.status.is_none() {
                let _ = child.signal(libc::SIGKILL);
                child.status = child.collect_status(true).ok().flatten();
                family::reaped(child.pid);
            }
        }
    }
}

impl Child {
    /// What becomes readable when the child's end is known: for a fork
    /// server's child the status pipe (the server has reaped it), else the pidfd.
    fn exit_watch(&self) -> Option<&OwnedFd> {
        self.status_rx.as_ref().or(self.pidfd.as_ref())
    }

    /// Sends `signal` to a child not known to have ended. A fork server's
    /// child is not ours to reap, so its pid could be reused once the server
    /// reaps it: it is signalled through its pidfd when there is one.
    fn signal(&self, signal: i32) -> std::io::Result<()> {
        match (&self.status_rx, &self.pidfd) {
            (Some(_), Some(pidfd)) => os::process::pidfd_send_signal(pidfd.as_raw_fd(), signal),
            _ => os::process::send_signal(self.pid, signal),
        }
    }

    /// The child's exit status if it has ended (`block`: wait for it).
    fn collect_status(&mut self, block: bool) -> std::io::Result<Option<ExitStatus>> {
        let Some(rx) = &self.status_rx else {
            return match os::process::reap(self.pid, block) {
                Ok(status) => Ok(status.map(|s| self.named(s))),
                // Reaped by the kernel as it ended (SIGCHLD ignored here):
                // ended, and how is lost, but its report still stands.
                Err(e)
                    if e.raw_os_error() == Some(libc::ECHILD)
                        && os::signals::children_reaped_by_kernel() =>
                {
                    Ok(self.has_gone().then_some(ExitStatus::ReapedUnseen))
                }
                Err(e) => Err(e),
            };
        };
        let deadline = if block {
            Deadline::after(RELAY_GRACE)
        } else {
            Deadline::now()
        };
        let mut raw = [0u8; 4];
        loop {
            match os::fd::read_some(rx.as_raw_fd(), &mut raw) {
                Ok(4) => return Ok(Some(ExitStatus::from_wait_status(i32::from_le_bytes(raw)))),
                // The server died before it could say: the child dies with
                // it (its parent-death signal is SIGKILL). The server's end
                // of the relay closes before the kernel sends that signal,
                // so wait for the child's pidfd: join returns once the
                // child is gone, not while it still runs.
                Ok(_) => {
                    if let Some(pidfd) = &self.pidfd {
                        os::poll::poll_one(
                            pidfd.as_raw_fd(),
                            libc::POLLIN,
                            Deadline::after(RELAY_GRACE),
                        )?;
                    }
                    return Ok(Some(ExitStatus::KilledWithForkServer));
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if deadline.passed() {
                        return Ok(None);
                    }
                    os::poll::poll_one(rx.as_raw_fd(), libc::POLLIN, deadline)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// A SIGKILL that came after the thread that started the child ended
    /// is most likely that thread's parent-death signal: said so, instead
    /// of "perhaps out of memory".
    fn named(&self, status: ExitStatus) -> ExitStatus {
        let sigkill =
            matches!(status, ExitStatus::Signaled { signal, .. } if signal == libc::SIGKILL);
        match self.starter {
            Some(tid) if sigkill && !os::procfs::thread_exists(tid) => {
                ExitStatus::KilledWithStartingThread
            }
            _ => status,
        }
    }

    /// Whether a child nobody can wait for any more has ended: its pidfd
    /// says so (its pid may be another process's by now), or without one,
    /// nothing answers at its pid.
    fn has_gone(&self) -> bool {
        match &self.pidfd {
            Some(pidfd) => os::poll::poll_one(pidfd.as_raw_fd(), libc::POLLIN, Deadline::now())
                .map_or(true, |ready| ready.any()),
            None => os::process::has_exited(self.pid),
        }
    }

    /// Whether the child has ended, without reaping or reading anything.
    fn has_ended(&self) -> bool {
        if self.status.is_some() {
            return true;
        }
        match &self.status_rx {
            Some(rx) => {
                os::poll::poll_one(rx.as_raw_fd(), libc::POLLIN, Deadline::now())
                    .map(|ready| ready.any())
                    .unwrap_or(true)
                    || self.ended_unrelayed().unwrap_or(false)
            }
            None => os::process::has_exited(self.pid),
        }
    }

    /// Waits until the child has exited and been reaped. `Ok(false)` if the
    /// deadline passed first. A fork server's child is watched twice: the
    /// server's relay says how it ended, and its pidfd that it ended, so a
    /// stopped server (which cannot relay) does not stop the wait.
    fn wait(&mut self, deadline: Deadline) -> std::io::Result<bool> {
        loop {
            if self.status.is_none() {
                self.status = self.collect_status(false)?;
                if self.status.is_some() {
                    family::reaped(self.pid);
                }
            }
            if self.status.is_some() {
                return Ok(true);
            }
            if self.ended_unrelayed()? {
                // Ended: the server has a little longer to say how.
                self.status = Some(self.collect_status(true)?.unwrap_or(ExitStatus::NotRelayed));
                family::reaped(self.pid);
                return Ok(true);
            }
            // Without a pidfd, wake up every few milliseconds to check on the child.
            let mut fds = Vec::with_capacity(2);
            for fd in [self.exit_watch(), self.relayed_pidfd()]
                .into_iter()
                .flatten()
            {
                fds.push(libc::pollfd {
                    fd: fd.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let step = match fds.is_empty() {
                true => deadline.or_sooner(Duration::from_millis(5)),
                false => deadline,
            };
            let ready = if fds.is_empty() {
                os::poll::poll_one(-1, libc::POLLIN, step)?.any()
            } else {
                os::poll::poll_many(&mut fds, step)? > 0
            };
            if !ready && deadline.passed() {
                return Ok(false);
            }
        }
    }

    /// A fork server's child's pidfd (readable once it ended, whether or
    /// not its server has reaped it).
    fn relayed_pidfd(&self) -> Option<&OwnedFd> {
        self.status_rx.as_ref().and(self.pidfd.as_ref())
    }

    /// Whether a fork server's child has ended by its pidfd, with nothing
    /// relayed yet.
    fn ended_unrelayed(&self) -> std::io::Result<bool> {
        match self.relayed_pidfd() {
            Some(pidfd) => {
                Ok(os::poll::poll_one(pidfd.as_raw_fd(), libc::POLLIN, Deadline::now())?.any())
            }
            None => Ok(false),
        }
    }

    /// Turns the exit status and the report into the join result.
    fn outcome<R: DeserializeOwned>(&mut self, max_report: usize) -> Result<R, JoinError> {
        let Some(status) = self.status else {
            return Err(JoinError::NotStarted);
        };
        outcome_of(status, &self.report, max_report)
    }
}

/// An awaited join reads a report this long or longer (a megabyte: under
/// a millisecond) on a thread of its own.
const OFF_THREAD_REPORT: usize = 1 << 20;

/// A child that ended with `status` and wrote `report`: the join result.
fn outcome_of<R: DeserializeOwned>(
    status: ExitStatus,
    report: &OwnedFd,
    max_report: usize,
) -> Result<R, JoinError> {
    let payload = match report::read(report, max_report) {
        Ok(report::Report::Returned(value)) => {
            return codec::take_owned_exact::<R>(value)
                .map_err(|e| JoinError::BadReport(e.to_string()));
        }
        Ok(report::Report::Other(payload)) => payload,
        Ok(report::Report::Nothing) => {
            return Err(match status {
                ExitStatus::Exited(EXIT_INIT_MISSING) => JoinError::InitMissing,
                ExitStatus::Exited(code) => JoinError::Exited { code },
                signaled => JoinError::Signaled(signaled),
            })
        }
        Err(why) => return Err(JoinError::BadReport(why)),
    };
    match codec::decode_payload::<ChildReport>(&payload) {
        Ok(ChildReport::Returned(bytes)) => {
            codec::decode_payload(&bytes).map_err(|e| JoinError::BadReport(e.to_string()))
        }
        Ok(ChildReport::Panicked(message)) => Err(JoinError::Panicked { message }),
        Ok(ChildReport::Failed(message)) => Err(JoinError::ChildFailed { message }),
        // A report cut short by a signal says nothing; the signal does.
        Err(_) if !matches!(status, ExitStatus::Exited(0)) => Err(match status {
            ExitStatus::Exited(code) => JoinError::Exited { code },
            signaled => JoinError::Signaled(signaled),
        }),
        Err(e) => Err(JoinError::BadReport(e.to_string())),
    }
}

impl<A, R> crate::wait::Waitable for Process<A, R> {
    fn ready_fd(&self) -> Option<std::os::fd::RawFd> {
        let child = self.child.as_ref()?;
        if child.status.is_some() {
            return None;
        }
        child.exit_watch().map(|fd| fd.as_raw_fd())
    }
    fn ready_now(&self) -> bool {
        self.child.as_ref().is_some_and(Child::has_ended)
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
