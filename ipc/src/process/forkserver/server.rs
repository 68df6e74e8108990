//! The fork server's own loop. It is an exec of the program's binary whose
//! `outlast_ipc::init()` found [`SERVER_ENV`]: it never runs the program's `main`.
//! Single-threaded, it waits on its creator's socket and on `SIGCHLD`;
//! forks a child per request; relays each child's wait status on the
//! status pipe that came with the request; and when the creator is gone
//! (end of file on the socket), kills the children that were to die with
//! it, reaps them and exits.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use super::protocol::{Hello, RequestFrame, StartReply, StartRequest, FIXED_FDS, PROTOCOL_VERSION};
use crate::os::{self, Deadline};
use crate::pipe::{Connection, RecvError, RecvTimeoutError};
use crate::process::entry::ChildReport;
use crate::process::{child, EXIT_CHILD_FAILED};
use crate::spsc::spill::Spilled;

/// Names the server's end of the creator's socketpair in a fork server.
pub(crate) const SERVER_ENV: &str = "IPC_FORKSERVER";

/// How long the rest of a request may take once its first bytes arrived.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// A child forked here and not reaped yet.
struct Forked {
    /// Where its wait status goes (the creator holds the read end).
    status_tx: OwnedFd,
    die_with_parent: bool,
}

/// In a process that may be a fork server: serve and exit, or return at once.
pub(crate) fn run_if_server() {
    let Some(fd) = child::descriptor_from_env(SERVER_ENV, "a fork server") else {
        return;
    };
    // Perhaps before Rust's main (see `take_over_before_main`): ignore
    // SIGPIPE as that main would, so a write to a closed pipe is an error.
    os::signals::ignore_default_sigpipe();
    // Exec'd as `/proc/self/exe`, the kernel named it `exe`; its children
    // inherit the name.
    if let Some(name) = os::process::program_name() {
        os::process::set_name(&name);
    }
    let _ = os::fd::set_cloexec(fd, true);
    // SAFETY: the creator left exactly this descriptor open for us, and
    // nothing else in this fresh process refers to it.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let code = match Connection::new(socket, true, true) {
        Ok(conn) => serve(conn),
        Err(e) => {
            crate::os::stderr::line(format_args!("ipc: fork server cannot use its socket: {e}"));
            EXIT_CHILD_FAILED
        }
    };
    child::exit_now(code)
}

fn serve(mut conn: Connection) -> i32 {
    let threads = os::procfs::thread_count().unwrap_or(0);
    if threads != 1 {
        let why = format!(
            "the fork server has {threads} threads: something in main() started threads \
             before outlast_ipc::init(), and forking would copy their locks held"
        );
        let _ = conn.send(&Hello::Refused(why));
        return EXIT_CHILD_FAILED;
    }
    // Ctrl-C goes to the whole process group: the creator decides what it
    // means; the server must not die of it and take every child along.
    let _ = os::signals::ignore(libc::SIGINT);
    // The creator's mask came through exec: one that blocks SIGCHLD (a
    // signalfd user's) would keep the server from hearing its children
    // end, and every join would wait for a relay that never comes.
    let _ = os::signals::unblock_all();
    let sigchld = match os::signals::SelfPipe::install(&[libc::SIGCHLD]) {
        Ok(pipe) => pipe,
        Err(e) => {
            let _ = conn.send(&Hello::Refused(format!("cannot watch its children: {e}")));
            return EXIT_CHILD_FAILED;
        }
    };
    let me = std::process::id() as i32;
    let ready = Hello::Ready {
        protocol: PROTOCOL_VERSION,
        pid: me,
    };
    if conn.send(&ready).is_err() {
        return 0;
    }
    let mut children: HashMap<i32, Forked> = HashMap::new();
    loop {
        let mut fds = [
            libc::pollfd {
                fd: conn.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: sigchld.fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        if os::poll::poll_many(&mut fds, Deadline::never()).is_err() {
            continue;
        }
        if os::poll::ready_of(fds[1].revents).any() {
            sigchld.drain();
            relay_exits(&mut children);
        }
        if os::poll::ready_of(fds[0].revents).any() {
            match conn.recv_bytes_with_fds(REQUEST_TIMEOUT) {
                Ok((bytes, fds)) => {
                    let reply = start_child(&bytes, fds, me, &mut children);
                    let (message, pidfd) = match reply {
                        Ok((pid, pidfd)) => (StartReply::Started { pid }, pidfd),
                        Err(why) => (StartReply::Failed(why), None),
                    };
                    let encoded = postcard::to_allocvec(&message).unwrap_or_default();
                    let attached: Vec<RawFd> = pidfd.iter().map(|fd| fd.as_raw_fd()).collect();
                    if conn
                        .send_bytes_with_fds(&encoded, &attached, REQUEST_TIMEOUT)
                        .is_err()
                    {
                        break;
                    }
                }
                // The creator is gone (or spoke nonsense): nobody to serve.
                Err(RecvTimeoutError::Recv(RecvError::Disconnected)) => break,
                Err(RecvTimeoutError::Timeout) => continue,
                Err(_) => break,
            }
        }
    }
    finish(children);
    0
}

/// Reaps every exited child and writes its wait status to its creator.
fn relay_exits(children: &mut HashMap<i32, Forked>) {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid out-pointer; WNOHANG never blocks.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        if let Some(forked) = children.remove(&pid) {
            // The creator may be gone, or not read it: nothing to do then.
            let bytes = status.to_le_bytes();
            let _ = os::fd::write_some(forked.status_tx.as_raw_fd(), &[&bytes], false, true);
        }
    }
}

/// The creator has gone: its children go too (unless told not to), and are
/// reaped before the server leaves.
fn finish(children: HashMap<i32, Forked>) {
    for (&pid, forked) in &children {
        if forked.die_with_parent {
            let _ = os::process::send_signal(pid, libc::SIGKILL);
        }
    }
    for (&pid, forked) in &children {
        if forked.die_with_parent {
            let _ = os::process::reap(pid, true);
        }
    }
}

/// Forks the child a request describes. Ok: its pid and pidfd.
fn start_child(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
    me: i32,
    children: &mut HashMap<i32, Forked>,
) -> Result<(i32, Option<OwnedFd>), String> {
    let mut fds = fds;
    let frame: RequestFrame =
        crate::codec::decode_payload(bytes).map_err(|e| format!("undecodable request: {e}"))?;
    let request = match frame {
        RequestFrame::Inline(request) => *request,
        RequestFrame::InMemfd => {
            let memfd = fds.pop().ok_or("a request in a memfd came without it")?;
            read_request(memfd)?
        }
    };
    let args = match request.args_apart {
        Some(len) => {
            let memfd = fds
                .pop()
                .ok_or("arguments apart came without their memfd")?;
            let mapped = crate::spsc::spill::checked_message(1, vec![memfd], len, u64::MAX)
                .map_err(|e| format!("the arguments' memfd: {e}"))?;
            Some(mapped)
        }
        None => None,
    };
    if fds.len() < FIXED_FDS {
        return Err(format!(
            "a request carries {} descriptors, fewer than {FIXED_FDS}",
            fds.len()
        ));
    }
    // SAFETY: this process is single-threaded (checked at start), so the
    // child inherits no lock held by another thread.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(format!("fork failed: {}", std::io::Error::last_os_error()));
    }
    if pid == 0 {
        run_child(request, args, fds, me);
    }
    let pidfd = os::process::pidfd_open(pid).unwrap_or(None);
    let mut fds = fds.into_iter();
    let _report_tx = fds.next();
    if let Some(status_tx) = fds.next() {
        children.insert(
            pid,
            Forked {
                status_tx,
                die_with_parent: request.die_with_parent,
            },
        );
    }
    // The rest (stdio, handles) are the child's now; ours close here.
    Ok((pid, pidfd))
}

/// A request from the memfd its creator sealed (the creator is this very
/// program, so its size is not bounded here).
fn read_request(memfd: OwnedFd) -> Result<StartRequest, String> {
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut std::fs::File::from(memfd), &mut bytes)
        .map_err(|e| format!("cannot read the request: {e}"))?;
    postcard::from_bytes(&bytes).map_err(|e| format!("undecodable request: {e}"))
}

/// In the forked child: never returns. `args`: the arguments, mapped,
/// when they came apart from the request.
fn run_child(request: StartRequest, args: Option<Spilled>, fds: Vec<OwnedFd>, server: i32) -> ! {
    let mut fds = fds.into_iter();
    let (Some(report), Some(status_tx), Some(stdout), Some(stderr)) =
        (fds.next(), fds.next(), fds.next(), fds.next())
    else {
        child::exit_now(EXIT_CHILD_FAILED);
    };
    // The creator's stdout and stderr as they are now, not as they were
    // when the server started.
    // SAFETY: dup2 onto the standard descriptors; both are open descriptors.
    unsafe {
        libc::dup2(stdout.as_raw_fd(), 1);
        libc::dup2(stderr.as_raw_fd(), 2);
    }
    drop((status_tx, stdout, stderr));
    if let Some(surroundings) = &request.surroundings {
        surroundings.enter();
    }
    if let Err(why) = request.attributes.enter() {
        child::exit_with_report(report.as_raw_fd(), &ChildReport::Failed(why));
    }
    // After the user is set: a change of user clears the parent-death signal.
    if request.die_with_parent {
        // Dies with the server; the server dies with the creator.
        let _ = os::process::set_parent_death_signal(libc::SIGKILL);
        if os::process::parent_pid() != server {
            child::exit_now(1);
        }
    }
    let handles: Vec<OwnedFd> = fds.collect();
    let mut keep: Vec<RawFd> = handles.iter().map(|fd| fd.as_raw_fd()).collect();
    keep.push(report.as_raw_fd());
    // The server's socket, its signal pipe and the other children's status
    // pipes: none of them is this child's. Their owners live in the
    // server's frames above, which this child never returns to.
    os::fd::close_fds_except(&keep);
    // The server is an exec of the creator's `/proc/self/exe`: the
    // creator's offsets are this binary's.
    match args {
        Some(args) => request.entry.run_with(&args, report.as_raw_fd(), handles),
        None => request.entry.run(report.as_raw_fd(), handles),
    }
}
