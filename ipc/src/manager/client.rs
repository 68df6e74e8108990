//! A process's connections to the managers it uses: one per manager per
//! process, opened on first use (a forked child never uses its parent's,
//! whose descriptor it did not keep), dropped on any error so that the
//! next call starts afresh.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::protocol::{Reply, Request};
use super::ManagerError;
use crate::net::{self, Address, NetError};
use crate::pipe::{Connection, RecvError, RecvTimeoutError, SendError, SendTimeoutError};

/// How a proxy reaches its manager: plain data, so a proxy can travel
/// into a child as any `Process` argument (the key is the manager's secret,
/// shared with the processes it is handed to, as Python's `authkey`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Link {
    pub address: String,
    pub key: Vec<u8>,
}

thread_local! {
    /// Open connections by manager address and key (a connection proved
    /// one key: another key must prove itself afresh), with the pid that
    /// opened each.
    static CONNECTIONS: RefCell<HashMap<Link, (u32, Connection)>> = RefCell::new(HashMap::new());
}

impl Link {
    /// Sends `request` and waits for its reply, at most `timeout` (`None`:
    /// as long as the manager lives; its death is `Disconnected` at once).
    pub fn call(
        &self,
        request: &Request,
        timeout: Option<Duration>,
    ) -> Result<Reply, ManagerError> {
        let started = Instant::now();
        let left = || timeout.map(|t| t.saturating_sub(started.elapsed()));
        let (conn, cached) = self.take_connection(left())?;
        match self.exchange(conn, request, left) {
            // A kept connection the manager closed while we were away (its
            // idle timeout) was closed before our request arrived: ask once
            // more on a fresh one. If the manager is gone, that fails too.
            Err(ManagerError::Disconnected) if cached => {
                let (conn, _) = self.take_connection(left())?;
                self.exchange(conn, request, left)
            }
            outcome => outcome,
        }
    }

    fn exchange(
        &self,
        mut conn: Connection,
        request: &Request,
        left: impl Fn() -> Option<Duration>,
    ) -> Result<Reply, ManagerError> {
        let sent = match left() {
            None => conn.send(request).map_err(send_error),
            Some(t) => conn.send_timeout(request, t).map_err(send_timeout_error),
        };
        sent?;
        let reply = match spin_for_reply(&mut conn)? {
            Some(reply) => reply,
            None => match left() {
                None => conn.recv::<Reply>().map_err(recv_error),
                Some(t) => conn.recv_timeout::<Reply>(t).map_err(recv_timeout_error),
            }?,
        };
        // Only a connection whose last reply came back in full is kept.
        self.put_back(conn);
        match reply {
            Reply::Error(why) => Err(ManagerError::Server(why)),
            reply => Ok(reply),
        }
    }

    /// A connection, and whether it was kept from an earlier call.
    fn take_connection(
        &self,
        timeout: Option<Duration>,
    ) -> Result<(Connection, bool), ManagerError> {
        let pid = std::process::id();
        let cached = CONNECTIONS.with(|c| c.borrow_mut().remove(self));
        if let Some((opener, conn)) = cached {
            if opener == pid {
                return Ok((conn, true));
            }
            // Inherited through fork: its descriptor is not ours to use.
            std::mem::forget(conn);
        }
        let address: Address = self
            .address
            .parse()
            .map_err(|e: net::BadAddress| ManagerError::Server(e.to_string()))?;
        let timeout = timeout.unwrap_or(net::HANDSHAKE_TIMEOUT);
        let conn = net::connect_timeout(&address, &self.key, timeout).map_err(|e| match e {
            NetError::Auth(auth) => ManagerError::Auth(auth),
            NetError::Timeout(_) => ManagerError::Timeout,
            // No socket, or nobody behind it: the manager is gone.
            NetError::Io(_) => ManagerError::Disconnected,
        })?;
        Ok((conn, false))
    }

    fn put_back(&self, conn: Connection) {
        let pid = std::process::id();
        CONNECTIONS.with(|c| c.borrow_mut().insert(self.clone(), (pid, conn)));
    }
}

/// How long a caller looks for its reply before it sleeps: a sleeping
/// process takes tens of microseconds to wake on a busy VM, while the
/// manager usually answers in a few. Each look yields the CPU, so with
/// more clients than cores the waiting ones let the server (and the
/// clients it answered) run: 4 clients went from 0.45x one client's rate
/// with a pure spin to 1.2x.
const SPIN: Duration = Duration::from_micros(200);

/// The reply, if it comes within [`SPIN`].
fn spin_for_reply(conn: &mut Connection) -> Result<Option<Reply>, ManagerError> {
    let started = Instant::now();
    while started.elapsed() < SPIN {
        match conn.try_recv::<Reply>() {
            Ok(reply) => return Ok(Some(reply)),
            Err(crate::pipe::TryRecvError::Empty) => std::thread::yield_now(),
            Err(crate::pipe::TryRecvError::Recv(e)) => return Err(recv_error(e)),
        }
    }
    Ok(None)
}

fn send_error(e: SendError) -> ManagerError {
    match e {
        SendError::Disconnected => ManagerError::Disconnected,
        other => ManagerError::Encode(other.to_string()),
    }
}

fn send_timeout_error(e: SendTimeoutError) -> ManagerError {
    match e {
        SendTimeoutError::Timeout => ManagerError::Timeout,
        SendTimeoutError::Send(e) => send_error(e),
    }
}

fn recv_error(e: RecvError) -> ManagerError {
    match e {
        RecvError::Disconnected => ManagerError::Disconnected,
        other => ManagerError::Protocol(other.to_string()),
    }
}

fn recv_timeout_error(e: RecvTimeoutError) -> ManagerError {
    match e {
        RecvTimeoutError::Timeout => ManagerError::Timeout,
        RecvTimeoutError::Recv(e) => recv_error(e),
    }
}
