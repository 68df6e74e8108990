//! Python's `multiprocessing.connection.Listener` and `Client(address,
//! authkey)`: a [`Connection`] between processes that need not be related,
//! over a Unix socket or TCP, opened only after both sides proved they
//! hold the same key (see [`auth`]). What follows is the same typed
//! `send`/`recv` with the same frame limits as any `Connection`.
//!
//! ```
//! use outlast_ipc::net::{connect, Address, Listener};
//!
//! fn client(addr: String) -> String {
//!     let mut conn = connect(&addr.parse::<Address>().unwrap(), b"secret").unwrap();
//!     conn.send("hello").unwrap();
//!     conn.recv().unwrap()
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! outlast_ipc::init();
//! let listener = Listener::bind(&"127.0.0.1:0".parse()?, b"secret")?;
//! let mut child = outlast_ipc::Process::new(client, listener.address().to_string());
//! child.start()?;
//! let mut conn = listener.accept()?;
//! let greeting: String = conn.recv()?;
//! conn.send(&format!("{greeting}, back"))?;
//! assert_eq!(child.join()?, "hello, back");
//! # Ok(())
//! # }
//! ```

pub mod auth;

use std::fmt;
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::os::fd::OwnedFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

pub use auth::{AuthError, PROTOCOL_VERSION};

use crate::pipe::mac::FrameMac;
use crate::pipe::Connection;

/// How long a new connection has to finish its handshake by default.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Where a listener listens: a Unix socket path, a name in Linux's
/// abstract socket namespace, or a TCP address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    /// A Unix socket with no file (Python's `'\0name'`): nothing to clean
    /// up, but no file permissions either: any process in this network
    /// namespace may connect, and only the key keeps it out. Written
    /// `unix:@name` or `@name`.
    Abstract(Vec<u8>),
    Tcp(SocketAddr),
}

impl Address {
    /// Whether it is on this machine (a Unix socket, with a file or not).
    pub fn is_local(&self) -> bool {
        !matches!(self, Address::Tcp(_))
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix:{}", path.display()),
            Address::Abstract(name) => write!(f, "unix:@{}", String::from_utf8_lossy(name)),
            Address::Tcp(addr) => write!(f, "{addr}"),
        }
    }
}

/// Why a text is no address.
#[derive(Debug, thiserror::Error)]
#[error("`{0}` is neither unix:PATH, a path, unix:@NAME, @NAME, nor HOST:PORT")]
pub struct BadAddress(String);

/// The longest abstract name (`sun_path` less its leading NUL).
const MAX_ABSTRACT: usize = 107;

impl FromStr for Address {
    type Err = BadAddress;

    /// `unix:/run/x.sock` or `/run/x.sock`: a Unix socket; `unix:@name`,
    /// `@name` or `\0name` (Python's spelling): an abstract one;
    /// `host:port`: TCP.
    fn from_str(text: &str) -> Result<Self, BadAddress> {
        let unix = text.strip_prefix("unix:");
        let abstract_name = unix
            .unwrap_or(text)
            .strip_prefix('@')
            .or_else(|| unix.unwrap_or(text).strip_prefix('\0'));
        if let Some(name) = abstract_name {
            if name.is_empty() || name.len() > MAX_ABSTRACT {
                return Err(BadAddress(text.to_string()));
            }
            return Ok(Address::Abstract(name.as_bytes().to_vec()));
        }
        if let Some(path) = unix {
            return Ok(Address::Unix(path.into()));
        }
        if text.starts_with('/') || text.starts_with('.') {
            return Ok(Address::Unix(text.into()));
        }
        text.to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .map(Address::Tcp)
            .ok_or_else(|| BadAddress(text.to_string()))
    }
}

/// Whether `text` names a Unix socket (a path or an abstract name) rather
/// than a TCP address, as [`Address::from_str`] reads it, without parsing
/// or resolving it (a manager's client asks this on every store).
pub(crate) fn names_unix_socket(text: &str) -> bool {
    text.starts_with("unix:") || text.starts_with(['/', '.', '@', '\0'])
}

/// Why a connection was not made or not accepted.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error("authentication failed: {0}")]
    Auth(#[from] AuthError),
    #[error("no connection came within {0:?}")]
    Timeout(Duration),
}

enum Socket {
    Unix(UnixListener),
    Tcp(TcpListener),
}

/// Accepts authenticated connections (Python's `Listener(address, authkey=...)`).
pub struct Listener {
    socket: Socket,
    address: Address,
    key: Vec<u8>,
    handshake_timeout: Duration,
}

impl Listener {
    /// Listens at `address` (a TCP port 0 picks a free port). A Unix
    /// socket is readable and writable by this user only; a stale socket
    /// file left by a dead listener is replaced.
    pub fn bind(address: &Address, key: &[u8]) -> Result<Listener, NetError> {
        if key.is_empty() {
            return Err(AuthError::EmptyKey.into());
        }
        let (socket, address) = match address {
            Address::Unix(path) => {
                if UnixStream::connect(path).is_err() {
                    let _ = std::fs::remove_file(path);
                }
                let listener = UnixListener::bind(path)?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
                (Socket::Unix(listener), Address::Unix(path.clone()))
            }
            Address::Abstract(name) => {
                let at = abstract_address(name)?;
                let listener = UnixListener::bind_addr(&at)?;
                (Socket::Unix(listener), Address::Abstract(name.clone()))
            }
            Address::Tcp(addr) => {
                let listener = TcpListener::bind(addr)?;
                let bound = listener.local_addr()?;
                (Socket::Tcp(listener), Address::Tcp(bound))
            }
        };
        Ok(Listener {
            socket,
            address,
            key: key.to_vec(),
            handshake_timeout: HANDSHAKE_TIMEOUT,
        })
    }

    /// Where it listens (with the port a TCP port 0 became).
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// How long each new connection has to authenticate (default 5 s).
    pub fn set_handshake_timeout(&mut self, timeout: Duration) {
        self.handshake_timeout = timeout;
    }

    /// Waits for a connection and authenticates it. A peer without the key,
    /// or silent past the handshake timeout, is an error (and dropped);
    /// call again for the next one.
    pub fn accept(&self) -> Result<Connection, NetError> {
        let fd = self.accept_fd(None)?;
        self.authenticate(fd)
    }

    /// [`accept`](Self::accept), waiting at most `timeout` for a
    /// connection to arrive (the handshake has its own timeout).
    pub fn accept_timeout(&self, timeout: Duration) -> Result<Connection, NetError> {
        let fd = self.accept_fd(Some(timeout))?;
        self.authenticate(fd)
    }

    /// Accepts a waiting connection without waiting for its handshake: the
    /// challenge is sent, and [`Pending::advance`] finishes it once the
    /// peer answers, so a server can hold many handshakes and let a silent
    /// peer stall none (Python's `Listener` authenticates one at a time).
    /// `Timeout` when no connection is waiting.
    pub fn accept_pending(&self) -> Result<Pending, NetError> {
        let (fd, peer) = self.accept_fd_from(Some(Duration::ZERO))?;
        let mut conn = Connection::new(fd, true, true)?;
        let challenge = auth::Challenge::send(&mut conn, &self.key, Duration::ZERO)?;
        Ok(Pending {
            conn,
            challenge,
            peer,
            started: std::time::Instant::now(),
            tcp: matches!(self.socket, Socket::Tcp(_)),
        })
    }

    fn accept_fd(&self, timeout: Option<Duration>) -> Result<OwnedFd, NetError> {
        self.accept_fd_from(timeout).map(|(fd, _)| fd)
    }

    /// A connection and who it is from (TCP: the peer's address; a Unix
    /// socket: the peer's pid, from its credentials).
    fn accept_fd_from(&self, timeout: Option<Duration>) -> Result<(OwnedFd, String), NetError> {
        if let Some(timeout) = timeout {
            let deadline = crate::os::Deadline::after(timeout);
            let ready = crate::os::poll::poll_one(self.raw_fd(), libc::POLLIN, deadline)?;
            if !ready.any() {
                return Err(NetError::Timeout(timeout));
            }
        }
        Ok(match &self.socket {
            Socket::Unix(l) => {
                let stream = l.accept()?.0;
                let peer = peer_pid(&stream).map_or("a local process".to_string(), |pid| {
                    format!("local pid {pid}")
                });
                (stream.into(), peer)
            }
            Socket::Tcp(l) => {
                let (stream, from) = l.accept()?;
                let _ = stream.set_nodelay(true);
                (stream.into(), from.to_string())
            }
        })
    }

    fn authenticate(&self, fd: OwnedFd) -> Result<Connection, NetError> {
        let mut conn = Connection::new(fd, true, true)?;
        let keys = auth::serve(&mut conn, &self.key, self.handshake_timeout)?;
        if matches!(self.socket, Socket::Tcp(_)) {
            seal_as_server(&mut conn, &keys);
        }
        Ok(conn)
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        use std::os::fd::AsRawFd;
        match &self.socket {
            Socket::Unix(l) => l.as_raw_fd(),
            Socket::Tcp(l) => l.as_raw_fd(),
        }
    }
}

impl std::os::fd::AsRawFd for Listener {
    /// The listening socket: readable when a connection waits (for `poll`
    /// or [`crate::wait`] with [`crate::Readable`]).
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.raw_fd()
    }
}

/// The socket address of an abstract name.
fn abstract_address(name: &[u8]) -> std::io::Result<std::os::unix::net::SocketAddr> {
    use std::os::linux::net::SocketAddrExt;
    std::os::unix::net::SocketAddr::from_abstract_name(name)
}

/// The pid of a Unix socket's peer, from `SO_PEERCRED`.
fn peer_pid(stream: &UnixStream) -> Option<i32> {
    use std::os::fd::AsRawFd;
    crate::os::fd::peer_credentials(stream.as_raw_fd())
        .ok()
        .map(|c| c.pid)
}

/// An accepted connection whose handshake is under way (see
/// [`Listener::accept_pending`]). Wait for it to be readable (it is a
/// [`crate::Waitable`]), then call [`advance`](Self::advance).
pub struct Pending {
    conn: Connection,
    challenge: auth::Challenge,
    peer: String,
    started: std::time::Instant,
    /// Over TCP: its frames are sealed once it is authenticated.
    tcp: bool,
}

/// What [`Pending::advance`] found.
pub enum Advance {
    /// The peer proved the key and was told ours: the connection is theirs.
    Authenticated(Connection, String),
    /// No whole answer yet.
    NotYet(Pending),
}

impl Pending {
    /// Who connected.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// When it was accepted (for a server's handshake deadline).
    pub fn started(&self) -> std::time::Instant {
        self.started
    }

    /// Finishes the handshake if the peer's answer is here, without waiting.
    /// The error says why the peer was refused (the connection is dropped).
    pub fn advance(mut self) -> Result<Advance, AuthError> {
        match auth::Challenge::poll_answer(&mut self.conn)? {
            None => Ok(Advance::NotYet(self)),
            Some(answer) => {
                let keys = self
                    .challenge
                    .check(&mut self.conn, &answer, Duration::ZERO)?;
                if self.tcp {
                    seal_as_server(&mut self.conn, &keys);
                }
                Ok(Advance::Authenticated(self.conn, self.peer))
            }
        }
    }
}

impl crate::Waitable for Pending {
    fn ready_fd(&self) -> Option<std::os::fd::RawFd> {
        use std::os::fd::AsRawFd;
        Some(self.conn.as_raw_fd())
    }
    fn ready_now(&self) -> bool {
        false
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        if let Address::Unix(path) = &self.address {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Connects to a [`Listener`] and authenticates both ways (Python's
/// `Client(address, authkey=...)`): a listener without the key is refused
/// too.
pub fn connect(address: &Address, key: &[u8]) -> Result<Connection, NetError> {
    connect_timeout(address, key, HANDSHAKE_TIMEOUT)
}

/// [`connect`] with a deadline for connecting and for the handshake.
pub fn connect_timeout(
    address: &Address,
    key: &[u8],
    timeout: Duration,
) -> Result<Connection, NetError> {
    if key.is_empty() {
        return Err(AuthError::EmptyKey.into());
    }
    let fd: OwnedFd = match address {
        Address::Unix(path) => UnixStream::connect(path)?.into(),
        Address::Abstract(name) => UnixStream::connect_addr(&abstract_address(name)?)?.into(),
        Address::Tcp(addr) => {
            let stream = TcpStream::connect_timeout(addr, timeout)?;
            let _ = stream.set_nodelay(true);
            stream.into()
        }
    };
    let mut conn = Connection::new(fd, true, true)?;
    let keys = auth::answer(&mut conn, key, timeout)?;
    // Over TCP, nobody on the path may add or replay a frame: each is
    // sealed. A Unix socket is local and its peer's credentials known.
    if matches!(address, Address::Tcp(_)) {
        conn.set_mac(FrameMac::new(
            &keys.client_to_server,
            &keys.server_to_client,
        ));
    }
    Ok(conn)
}

/// The server's side of a TCP connection's frame keys.
fn seal_as_server(conn: &mut Connection, keys: &auth::FrameKeys) {
    conn.set_mac(FrameMac::new(
        &keys.server_to_client,
        &keys.client_to_server,
    ));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_unix_socket_agrees_with_the_parser() {
        for text in [
            "unix:/run/x.sock",
            "/run/x.sock",
            "./x.sock",
            "unix:@name",
            "@name",
            "\0name",
            "127.0.0.1:9000",
            "[::1]:9000",
            "localhost:9000",
        ] {
            let parsed = text.parse::<Address>().expect("an address");
            let unix = !matches!(parsed, Address::Tcp(_));
            assert_eq!(names_unix_socket(text), unix, "{text:?}");
        }
    }
}
