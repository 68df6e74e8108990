//! systemd's readiness protocol (`sd_notify`), in the few lines it takes:
//! when `NOTIFY_SOCKET` names a Unix datagram socket (a path, or `@name`
//! in the abstract namespace), the run sends `READY=1` once its workers
//! are up, `STATUS=` lines with its progress, and `STOPPING=1` when it
//! drains. Without the variable, nothing is sent. A send that fails is
//! dropped: systemd being gone never stops a run.

use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::{Duration, Instant};

/// How often a `STATUS=` line goes out at most.
const STATUS_EVERY: Duration = Duration::from_secs(1);

pub struct Notifier {
    socket: UnixDatagram,
    to: SocketAddr,
    last_status: Option<Instant>,
    ready_sent: bool,
}

impl Notifier {
    /// A notifier for `NOTIFY_SOCKET`, if it is set and usable.
    pub fn from_env() -> Option<Notifier> {
        let name = std::env::var_os("NOTIFY_SOCKET")?;
        let name = name.to_str()?;
        let to = match name.strip_prefix('@') {
            Some(abstract_name) => {
                use std::os::linux::net::SocketAddrExt;
                SocketAddr::from_abstract_name(abstract_name.as_bytes()).ok()?
            }
            None => SocketAddr::from_pathname(name).ok()?,
        };
        let socket = UnixDatagram::unbound().ok()?;
        Some(Notifier {
            socket,
            to,
            last_status: None,
            ready_sent: false,
        })
    }

    fn send(&self, message: &str) {
        let _ = self.socket.send_to_addr(message.as_bytes(), &self.to);
    }

    /// `READY=1` (once), with the status.
    pub fn ready(&mut self, status: &str) {
        if !self.ready_sent {
            self.ready_sent = true;
            self.send(&format!("READY=1\nSTATUS={status}"));
        }
    }

    /// Whether a `STATUS=` line is due (at most one a second).
    pub fn status_due(&self) -> bool {
        self.last_status
            .is_none_or(|at| at.elapsed() >= STATUS_EVERY)
    }

    /// A `STATUS=` line, at most once a second.
    pub fn status(&mut self, status: &str) {
        if !self.status_due() {
            return;
        }
        self.last_status = Some(Instant::now());
        self.send(&format!("STATUS={status}"));
    }

    /// `STOPPING=1`.
    pub fn stopping(&self, status: &str) {
        self.send(&format!("STOPPING=1\nSTATUS={status}"));
    }
}
