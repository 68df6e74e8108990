//! The creator's side: starting the server (an exec of this binary, on a
//! socketpair only this process holds), asking it for a child, and noticing
//! when it has died so that the next start gets a new one.

use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use super::attributes;
use super::protocol::{
    Hello, RequestFrame, StartReply, StartRequest, ARGS_APART_MIN, FIXED_FDS, INLINE_REQUEST_MAX,
    PROTOCOL_VERSION,
};
use super::server::SERVER_ENV;
use super::surroundings::Surroundings;
use super::ForkServerError;
use crate::os::{self, Deadline};
use crate::pipe::{Connection, RecvTimeoutError, SendError, SendTimeoutError};
use crate::process::entry::PortableEntry;
use crate::process::error::StartError;
use crate::process::exit::ExitStatus;
use crate::process::{ChildPlan, Launched, Relayed};

/// How long a new server may take to say it is ready.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request and its reply may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);

/// This process's server, once started.
static SERVER: Mutex<Option<ServerLink>> = Mutex::new(None);

struct ServerLink {
    /// The process that started the server: only it may use the link. A
    /// raw `fork` of that process copies this value, not the right to use it.
    owner: u32,
    pid: i32,
    pidfd: Option<OwnedFd>,
    conn: Connection,
}

fn lock() -> MutexGuard<'static, Option<ServerLink>> {
    SERVER.lock().unwrap_or_else(|p| p.into_inner())
}

/// Starts this process's server unless one runs; returns its pid.
pub fn start() -> Result<u32, ForkServerError> {
    let mut guard = lock();
    Ok(running(&mut guard)?.pid as u32)
}

/// The pid of this process's server, if one runs.
pub fn pid() -> Option<u32> {
    let mut guard = lock();
    forget_if_inherited(&mut guard);
    guard.as_ref().map(|link| link.pid as u32)
}

/// Stops this process's server: it kills the children it forked for us
/// (those that were to die with their parent), reaps them, and exits; it
/// is reaped here. The next forkserver start starts a new one.
pub fn stop() {
    let mut guard = lock();
    forget_if_inherited(&mut guard);
    if let Some(link) = guard.take() {
        let ServerLink { pid, conn, .. } = link;
        // End of file is the server's signal to finish.
        drop(conn);
        let _ = os::process::reap(pid, true);
    }
}

/// Asks the server for a child running `plan`.
pub(crate) fn start_child(plan: &ChildPlan<'_>) -> Result<Launched, StartError> {
    // (One descriptor more may carry the request itself, and one the
    // arguments.)
    let args_apart = plan.args.len() >= ARGS_APART_MIN;
    let most = os::rights::MAX_FDS - FIXED_FDS - 1 - usize::from(args_apart);
    if plan.handle_fds.len() > most {
        return Err(ForkServerError::TooManyHandles {
            handles: plan.handle_fds.len(),
            most,
        }
        .into());
    }
    let request = StartRequest {
        entry: if args_apart {
            PortableEntry::without_args(plan)
        } else {
            PortableEntry::of(plan)
        },
        args_apart: args_apart.then_some(plan.args.len() as u64),
        die_with_parent: plan.die_with_parent,
        surroundings: Surroundings::changed_since_launch(),
        attributes: attributes::changes_since_launch(),
    };
    let args_memfd = match args_apart {
        true => Some(os::memory::sealed_memfd_with(
            c"ipc-forkserver-args",
            plan.args,
        )?),
        false => None,
    };
    let encode = |frame: &RequestFrame| {
        postcard::to_allocvec(frame).map_err(|e| StartError::Args(e.to_string()))
    };
    let whole = postcard::to_allocvec(&request).map_err(|e| StartError::Args(e.to_string()))?;
    let (bytes, memfd) = if whole.len() > INLINE_REQUEST_MAX {
        let memfd = os::memory::sealed_memfd_with(c"ipc-forkserver-request", &whole)?;
        (encode(&RequestFrame::InMemfd)?, Some(memfd))
    } else {
        drop(whole);
        (encode(&RequestFrame::Inline(Box::new(request)))?, None)
    };
    let stdout = stdio_or_devnull(1)?;
    let stderr = stdio_or_devnull(2)?;
    let mut guard = lock();
    // A server that died since the last start is replaced before the
    // request; one that dies with the request unread is replaced and the
    // request sent again (it never reached a server, so no child ran).
    for attempt in 0..2 {
        let link = running(&mut guard)?;
        let (status_rx, status_tx) = os::fd::pipe_cloexec()?;
        let mut fds: Vec<RawFd> = vec![
            plan.report,
            status_tx.as_raw_fd(),
            stdout.as_raw(),
            stderr.as_raw(),
        ];
        fds.extend_from_slice(plan.handle_fds);
        fds.extend(args_memfd.as_ref().map(|fd| fd.as_raw_fd()));
        fds.extend(memfd.as_ref().map(|fd| fd.as_raw_fd()));
        match link
            .conn
            .send_bytes_with_fds(&bytes, &fds, EXCHANGE_TIMEOUT)
        {
            Ok(()) => {}
            Err(SendTimeoutError::Send(SendError::Disconnected)) if attempt == 0 => {
                discard(&mut guard);
                continue;
            }
            Err(SendTimeoutError::Timeout) => {
                discard(&mut guard);
                return Err(ForkServerError::Unresponsive.into());
            }
            Err(_) => {
                let status = discard(&mut guard);
                return Err(ForkServerError::Lost { status }.into());
            }
        }
        drop(status_tx);
        let (reply, mut attached) = match link.conn.recv_bytes_with_fds(EXCHANGE_TIMEOUT) {
            Ok(got) => got,
            Err(RecvTimeoutError::Timeout) => {
                discard(&mut guard);
                return Err(ForkServerError::Unresponsive.into());
            }
            Err(_) => {
                let status = discard(&mut guard);
                return Err(ForkServerError::Lost { status }.into());
            }
        };
        return match crate::codec::decode_payload::<StartReply>(&reply) {
            Ok(StartReply::Started { pid }) => {
                os::fd::set_nonblocking(status_rx.as_raw_fd(), true)?;
                Ok(Launched {
                    pid,
                    relay: Some(Relayed {
                        status_rx,
                        pidfd: attached.pop(),
                    }),
                })
            }
            Ok(StartReply::Failed(why)) => Err(ForkServerError::Failed(why).into()),
            Err(e) => {
                discard(&mut guard);
                Err(ForkServerError::Protocol(e.to_string()).into())
            }
        };
    }
    let status = discard(&mut guard);
    Err(ForkServerError::Lost { status }.into())
}

/// A standard descriptor to hand the child: ours if open, else /dev/null.
enum Stdio2 {
    Ours(RawFd),
    Null(OwnedFd),
}

impl Stdio2 {
    fn as_raw(&self) -> RawFd {
        match self {
            Stdio2::Ours(fd) => *fd,
            Stdio2::Null(fd) => fd.as_raw_fd(),
        }
    }
}

fn stdio_or_devnull(fd: RawFd) -> std::io::Result<Stdio2> {
    // SAFETY: F_GETFD only reads the descriptor's flags.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
        return Ok(Stdio2::Ours(fd));
    }
    let null = std::fs::OpenOptions::new().write(true).open("/dev/null")?;
    Ok(Stdio2::Null(null.into()))
}

/// The link to a live server of this process, started if need be.
fn running(guard: &mut Option<ServerLink>) -> Result<&mut ServerLink, ForkServerError> {
    forget_if_inherited(guard);
    if guard.as_ref().is_some_and(ServerLink::has_exited) {
        discard(guard);
    }
    if guard.is_none() {
        *guard = Some(launch()?);
    }
    guard.as_mut().ok_or(ForkServerError::Unresponsive)
}

/// In a process forked from the creator, the link is a copy whose socket
/// number may now be anything: forget it, never close it.
fn forget_if_inherited(guard: &mut Option<ServerLink>) {
    if guard
        .as_ref()
        .is_some_and(|link| link.owner != std::process::id())
    {
        std::mem::forget(guard.take());
    }
}

/// Drops the link to a server that failed: kills and reaps it. Its exit
/// status, for the error.
fn discard(guard: &mut Option<ServerLink>) -> Option<ExitStatus> {
    let link = guard.take()?;
    let _ = os::process::send_signal(link.pid, libc::SIGKILL);
    os::process::reap(link.pid, true).ok().flatten()
}

impl ServerLink {
    fn has_exited(&self) -> bool {
        match &self.pidfd {
            Some(fd) => os::poll::poll_one(fd.as_raw_fd(), libc::POLLIN, Deadline::now())
                .map(|ready| ready.any())
                .unwrap_or(true),
            None => os::process::has_exited(self.pid),
        }
    }
}

/// Starts a server: this binary again, told by [`SERVER_ENV`] to serve on
/// the one descriptor it inherits.
fn launch() -> Result<ServerLink, ForkServerError> {
    let (ours, theirs) = os::fd::socketpair_cloexec()?;
    let their_fd = theirs.as_raw_fd();
    Surroundings::note_launch();
    attributes::note_launch();
    let mut command = Command::new("/proc/self/exe");
    if let Some(argv0) = std::env::args_os().next() {
        command.arg0(argv0);
    }
    command
        .env(SERVER_ENV, their_fd.to_string())
        .env_remove(crate::process::spawn::BOOTSTRAP_ENV)
        .stdin(Stdio::null());
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe calls (close_range or fcntl); it allocates nothing.
    unsafe {
        command.pre_exec(move || {
            os::fd::cloexec_fds_except(&[their_fd]);
            os::fd::set_cloexec(their_fd, false)
        });
    }
    let spawned = command.spawn()?;
    let pid = spawned.id() as i32;
    // std's Child neither waits nor kills on drop: the link reaps the server.
    drop(spawned);
    drop(theirs);
    let pidfd = os::process::pidfd_open(pid).unwrap_or(None);
    let mut conn = Connection::new(ours, true, true)?;
    let fail = |e: ForkServerError| {
        let _ = os::process::send_signal(pid, libc::SIGKILL);
        let _ = os::process::reap(pid, true);
        e
    };
    match conn.recv_timeout::<Hello>(HELLO_TIMEOUT) {
        Ok(Hello::Ready {
            protocol,
            pid: said,
        }) if protocol == PROTOCOL_VERSION && said == pid => Ok(ServerLink {
            owner: std::process::id(),
            pid,
            pidfd,
            conn,
        }),
        Ok(Hello::Ready { protocol, .. }) => Err(fail(ForkServerError::Protocol(format!(
            "the server speaks protocol {protocol}, this process {PROTOCOL_VERSION}"
        )))),
        Ok(Hello::Refused(why)) => Err(fail(ForkServerError::Refused(why))),
        Err(RecvTimeoutError::Timeout) => Err(fail(ForkServerError::Unresponsive)),
        Err(_) => {
            // It left without a word: most likely main() lacks outlast_ipc::init()
            // and ran to its end (or exited with EXIT_INIT_MISSING).
            let status = os::process::reap(pid, true).ok().flatten();
            Err(ForkServerError::NoInit { status })
        }
    }
}
