//! The other end of the control socket: finding this user's running
//! supervisors and sending one of them a command.

use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::protocol::{Command, Reply, Request};
use super::{frame, MAX_FRAME, VERSION};

/// How long a command waits for its reply.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// Why a command got no reply.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("no supervisor answers at {0}")]
    NotThere(PathBuf),
    #[error("no supervisor of this user is running")]
    NoneRunning,
    #[error("{0} supervisors are running; say which (its pid): {1}")]
    Several(usize, String),
    #[error("the supervisor's reply did not come: {0}")]
    Io(#[from] std::io::Error),
    #[error("the supervisor did not answer within {} s", .0.as_secs())]
    TimedOut(Duration),
    /// The socket is another user's: the supervisor there refuses us (by
    /// our credentials), so nothing is sent.
    #[error(
        "refused: the socket {path} belongs to another user (uid {owner}); run this as that user"
    )]
    AnotherUser { path: PathBuf, owner: u32 },
    #[error(
        "the supervisor closed the connection without a reply (is the socket another user's?)"
    )]
    Closed,
    #[error("the supervisor's reply is not understood: {0}")]
    Reply(String),
    #[error(transparent)]
    Dir(#[from] super::DirError),
}

/// The pids and sockets of this user's supervisors that answer. Sockets
/// nobody answers at (their supervisor was SIGKILLed) are removed: only
/// sockets of this user, in a directory [`ours`](super::ours) accepts.
pub fn running() -> Result<Vec<(u32, PathBuf)>, ClientError> {
    let dir = super::socket_dir();
    if !dir.exists() && std::fs::symlink_metadata(&dir).is_err() {
        return Ok(Vec::new());
    }
    super::ours(&dir)?;
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    let mut found: Vec<(u32, PathBuf)> = entries
        .flatten()
        .filter_map(|e| {
            let path = e.path();
            let pid = path.file_stem()?.to_str()?.parse::<u32>().ok()?;
            (path.extension()? == "sock").then_some((pid, path))
        })
        .filter(|(_, path)| {
            let alive = UnixStream::connect(path).is_ok();
            let stale_socket_of_ours = std::fs::symlink_metadata(path)
                .is_ok_and(|m| m.file_type().is_socket() && m.uid() == uid);
            if !alive && stale_socket_of_ours {
                let _ = std::fs::remove_file(path);
            }
            alive
        })
        .collect();
    found.sort();
    Ok(found)
}

/// The socket of supervisor `pid`, or of the only one running.
pub fn socket_of(pid: Option<u32>) -> Result<PathBuf, ClientError> {
    if let Some(pid) = pid {
        super::ours(&super::socket_dir())?;
        return Ok(super::default_path(pid));
    }
    let mut all = running()?;
    match all.len() {
        0 => Err(ClientError::NoneRunning),
        1 => Ok(all.remove(0).1),
        n => Err(ClientError::Several(
            n,
            all.iter()
                .map(|(pid, _)| pid.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        )),
    }
}

/// Sends `command` to the supervisor at `path`; its reply.
pub fn send(path: &Path, command: Command) -> Result<Reply, ClientError> {
    let mut stream = request(path, command)?;
    read_reply(&mut stream)
}

/// Statuses from the supervisor at `path`, one every `every` (at least
/// 100 ms), until it ends (the iterator's last item is then an error).
pub fn subscribe(
    path: &Path,
    every: Duration,
) -> Result<impl Iterator<Item = Result<Reply, ClientError>>, ClientError> {
    let every_ms = u64::try_from(every.as_millis()).unwrap_or(u64::MAX);
    let mut stream = request(path, Command::Subscribe { every_ms })?;
    stream.set_read_timeout(Some(TIMEOUT + every))?;
    let mut ended = false;
    Ok(std::iter::from_fn(move || {
        if ended {
            return None;
        }
        let reply = read_reply(&mut stream);
        ended = reply.is_err();
        Some(reply)
    }))
}

/// An I/O error of a request, in words: a timeout as one, a peer that
/// hung up as one.
fn said(e: std::io::Error, waited: Duration) -> ClientError {
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            ClientError::TimedOut(waited)
        }
        std::io::ErrorKind::BrokenPipe
        | std::io::ErrorKind::ConnectionReset
        | std::io::ErrorKind::UnexpectedEof => ClientError::Closed,
        _ => ClientError::Io(e),
    }
}

/// Connects to `path` and sends one request.
fn request(path: &Path, command: Command) -> Result<UnixStream, ClientError> {
    // SAFETY: getuid cannot fail and touches no memory.
    let uid = unsafe { libc::getuid() };
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        // Root may talk to anyone's (the supervisor lets root in).
        if meta.uid() != uid && uid != 0 {
            return Err(ClientError::AnotherUser {
                path: path.to_path_buf(),
                owner: meta.uid(),
            });
        }
    }
    let mut stream =
        UnixStream::connect(path).map_err(|_| ClientError::NotThere(path.to_path_buf()))?;
    stream.set_read_timeout(Some(TIMEOUT))?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    let request = Request {
        version: VERSION,
        command,
    };
    let json = serde_json::to_vec(&request).map_err(|e| ClientError::Reply(e.to_string()))?;
    stream
        .write_all(&frame(&json))
        .map_err(|e| said(e, TIMEOUT))?;
    Ok(stream)
}

/// One reply frame.
fn read_reply(stream: &mut UnixStream) -> Result<Reply, ClientError> {
    let waited = stream.read_timeout().ok().flatten().unwrap_or(TIMEOUT);
    let mut header = [0u8; 4];
    stream
        .read_exact(&mut header)
        .map_err(|e| said(e, waited))?;
    let len = u32::from_le_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(ClientError::Reply(format!("a reply of {len} bytes")));
    }
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).map_err(|e| said(e, waited))?;
    serde_json::from_slice(&body).map_err(|e| ClientError::Reply(e.to_string()))
}
