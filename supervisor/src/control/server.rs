//! The supervisor's end of the control socket: a non-blocking listener
//! and its clients, read and answered from the run loop's own turns (their
//! descriptors are in its `poll`). A client of another uid is refused; a
//! frame past [`super::MAX_FRAME`], bytes that are not a
//! request, or a client silent past [`PATIENCE`] get an error reply or a
//! closed connection. The socket file goes when the server is dropped.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use super::protocol::{Command, Reply, Request};
use super::{frame, ControlAt, MAX_FRAME, VERSION};

/// How long a client has to send its request and take its reply.
pub const PATIENCE: Duration = Duration::from_secs(2);
/// Clients served at once; more wait in the listen backlog.
const MAX_CLIENTS: usize = 32;
/// Connections taken per turn at most (the rest wait in the backlog).
const ACCEPTS_PER_TURN: usize = 64;

/// Why the control socket could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error(transparent)]
    Dir(#[from] super::DirError),
    #[error("another supervisor answers at {0}")]
    InUse(PathBuf),
    #[error("cannot listen at {0}: {1}")]
    Bind(PathBuf, std::io::Error),
}

struct Peer {
    stream: UnixStream,
    inbox: Vec<u8>,
    outbox: Vec<u8>,
    since: Instant,
    /// Its request was answered: it goes once the reply is out.
    answered: bool,
    /// A subscriber: statuses every so often, and when the last went.
    subscription: Option<(Duration, Instant)>,
}

/// The shortest interval between two statuses to a subscriber.
const MIN_EVERY: Duration = Duration::from_millis(100);

pub struct ControlServer {
    listener: UnixListener,
    path: PathBuf,
    peers: Vec<Peer>,
    uid: u32,
}

impl ControlServer {
    /// Listens where `at` says (`None` for [`ControlAt::Off`]). A socket
    /// file nobody answers at (left by a SIGKILLed supervisor) is replaced.
    pub fn bind(at: &ControlAt) -> Result<Option<ControlServer>, ControlError> {
        let path = match at {
            ControlAt::Off => return Ok(None),
            ControlAt::Default => {
                super::ours(&super::socket_dir())?;
                super::default_path(std::process::id())
            }
            ControlAt::Path(path) => path.clone(),
        };
        if path.exists() {
            if UnixStream::connect(&path).is_ok() {
                return Err(ControlError::InUse(path));
            }
            let _ = std::fs::remove_file(&path);
        }
        let listener =
            UnixListener::bind(&path).map_err(|e| ControlError::Bind(path.clone(), e))?;
        let owner_only = std::fs::Permissions::from_mode(0o600);
        std::fs::set_permissions(&path, owner_only)
            .and_then(|()| listener.set_nonblocking(true))
            .map_err(|e| ControlError::Bind(path.clone(), e))?;
        Ok(Some(ControlServer {
            listener,
            path,
            peers: Vec::new(),
            // SAFETY: getuid cannot fail and touches no memory.
            uid: unsafe { libc::getuid() },
        }))
    }

    /// Whether a client is connected (it is then served every turn).
    pub fn has_peers(&self) -> bool {
        !self.peers.is_empty()
    }

    /// The descriptors to poll for reading: the listener's and each client's.
    pub fn fds(&self) -> Vec<RawFd> {
        std::iter::once(self.listener.as_raw_fd())
            .chain(self.peers.iter().map(|p| p.stream.as_raw_fd()))
            .collect()
    }

    /// Accepts, reads what clients sent, answers whole requests with
    /// `handle`, writes what replies it can, and lets go of clients done or
    /// out of time. Never waits.
    pub fn serve(&mut self, mut handle: impl FnMut(Command) -> Reply) {
        self.accept();
        for peer in &mut self.peers {
            if !peer.answered {
                if let Some(reply) = read_request(peer).map(|request| match request {
                    Ok(request) if request.version != VERSION => Reply::error(format!(
                        "protocol version {} is not {VERSION}",
                        request.version
                    )),
                    Ok(Request {
                        command: Command::Subscribe { every_ms },
                        ..
                    }) => {
                        let every = Duration::from_millis(every_ms).max(MIN_EVERY);
                        peer.subscription = Some((every, Instant::now()));
                        handle(Command::Status)
                    }
                    Ok(request) => handle(request.command),
                    Err(why) => Reply::error(why),
                }) {
                    let json = serde_json::to_vec(&reply).unwrap_or_default();
                    peer.outbox = frame(&json);
                    peer.answered = true;
                }
            }
            if let Some((every, last)) = peer.subscription {
                if peer.outbox.is_empty() && last.elapsed() >= every {
                    peer.subscription = Some((every, Instant::now()));
                    peer.since = Instant::now();
                    let json = serde_json::to_vec(&handle(Command::Status)).unwrap_or_default();
                    peer.outbox = frame(&json);
                }
            }
            if !peer.outbox.is_empty() {
                match peer.stream.write(&peer.outbox) {
                    Ok(n) => {
                        peer.outbox.drain(..n);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        peer.outbox.clear();
                        peer.subscription = None;
                    }
                }
            }
        }
        // A subscriber stays while it takes its statuses (one that stops
        // taking them is late like anyone); the others go once answered.
        self.peers.retain(|p| {
            let done = p.answered && p.outbox.is_empty() && p.subscription.is_none();
            let waiting_its_turn = p.subscription.is_some() && p.outbox.is_empty();
            let late = p.since.elapsed() > PATIENCE && !waiting_its_turn;
            !(done || late)
        });
    }

    /// Takes new clients. When every place is taken, a new client takes
    /// the place of the one that has waited longest without sending a
    /// whole request (subscribers keep theirs): silent or slow peers cannot
    /// keep an honest `status` out.
    fn accept(&mut self) {
        for _ in 0..ACCEPTS_PER_TURN {
            let Ok((stream, _)) = self.listener.accept() else {
                return;
            };
            // Another user's process is refused, root aside.
            let allowed = outlast_ipc::os::fd::peer_credentials(stream.as_raw_fd())
                .is_ok_and(|c| c.uid == self.uid || c.uid == 0);
            if !allowed || stream.set_nonblocking(true).is_err() {
                continue;
            }
            if self.peers.len() >= MAX_CLIENTS {
                let slowest = self
                    .peers
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| !p.answered && p.subscription.is_none())
                    .min_by_key(|(_, p)| p.since)
                    .map(|(i, _)| i);
                match slowest {
                    Some(i) => drop(self.peers.swap_remove(i)),
                    None => continue,
                }
            }
            self.peers.push(Peer {
                stream,
                inbox: Vec::new(),
                outbox: Vec::new(),
                since: Instant::now(),
                answered: false,
                subscription: None,
            });
        }
    }
}

/// Reads what the peer has sent: its request once whole (or why it is
/// none), `None` while more is to come.
fn read_request(peer: &mut Peer) -> Option<Result<Request, String>> {
    let mut buf = [0u8; 4096];
    loop {
        match peer.stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                peer.inbox.extend_from_slice(&buf[..n]);
                if peer.inbox.len() > 4 + MAX_FRAME {
                    break;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(_) => return Some(Err("cannot read the request".into())),
        }
    }
    let header = peer.inbox.first_chunk::<4>()?;
    let len = u32::from_le_bytes(*header) as usize;
    if len > MAX_FRAME {
        return Some(Err(format!(
            "a request of {len} bytes; at most {MAX_FRAME}"
        )));
    }
    let body = peer.inbox.get(4..4 + len)?;
    Some(serde_json::from_slice::<Request>(body).map_err(|e| format!("not a request: {e}")))
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
