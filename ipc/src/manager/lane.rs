//! The fast lane of a local client: two shared-memory rings (requests one
//! way, replies the other, [`crate::spsc`]) and a doorbell, handed by the
//! server to a client on its Unix socket (`SCM_RIGHTS`), so a round trip
//! costs no system call while both sides are awake. The socket stays: it
//! carries what does not fit a ring, and its end of file says the client
//! is gone.
//!
//! The server trusts nothing in the lane: the rings check every position
//! the client publishes and copy each record out before it is decoded; a
//! corrupted lane drops that client alone.
//!
//! The bell word (the requests ring's one aux word) keeps rings rare: a
//! client rings only when it turns the word from 0 to 1; the server
//! clears it before it sleeps and then looks at the ring once more, so a
//! request published meanwhile is seen either way.

use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spsc::doorbell::{self, Heard, Listener, Ringer};
use crate::spsc::{self, Receiver, Sender, SpscError, TrySendError};

/// Each ring's size: a reply larger than fits goes over the socket.
const RING_BYTES: usize = 256 << 10;

/// The server's end of a lane.
pub(super) struct ServerLane {
    pub requests: Receiver,
    pub replies: Sender,
    pub doorbell: Listener,
}

/// The client's end, as it travels over the socket.
#[derive(Serialize, Deserialize)]
pub(super) struct ClientLane {
    requests: Sender,
    replies: Receiver,
    doorbell: Ringer,
}

/// Why a lane could not be made.
pub(super) fn pair() -> Result<(ServerLane, ClientLane), String> {
    let (req_tx, req_rx) = spsc::channel(RING_BYTES, 1).map_err(|e| e.to_string())?;
    let (rep_tx, rep_rx) = spsc::channel(RING_BYTES, 0).map_err(|e| e.to_string())?;
    let (ringer, listener) = doorbell::doorbell().map_err(|e| e.to_string())?;
    Ok((
        ServerLane {
            requests: req_rx,
            replies: rep_tx,
            doorbell: listener,
        },
        ClientLane {
            requests: req_tx,
            replies: rep_rx,
            doorbell: ringer,
        },
    ))
}

impl ServerLane {
    /// After a ring: reads the doorbell and clears the bell word (before
    /// the ring is drained). False when the client is gone.
    pub fn heard(&self) -> bool {
        let heard = self.doorbell.drain();
        self.clear_bell();
        heard != Heard::Closed
    }

    /// Before sleeping: the next request must ring.
    pub fn clear_bell(&self) {
        if let Some(bell) = self.requests.aux().first() {
            bell.store(0, Ordering::SeqCst);
        }
        fence(Ordering::SeqCst);
    }
}

/// Why a lane call failed.
pub(super) enum LaneError {
    /// The message does not fit the ring: use the socket.
    TooLarge,
    Timeout,
    Gone,
    Broken(String),
}

impl From<SpscError> for LaneError {
    fn from(e: SpscError) -> Self {
        match e {
            SpscError::Disconnected => LaneError::Gone,
            other => LaneError::Broken(other.to_string()),
        }
    }
}

impl ClientLane {
    /// Publishes a request, waiting at most `timeout` (`None`: as long as
    /// the server lives) for room, and rings if the server may sleep.
    pub fn send(&mut self, bytes: &[u8], timeout: Option<Duration>) -> Result<(), LaneError> {
        if bytes.len() > self.requests.max_message() {
            return Err(LaneError::TooLarge);
        }
        let sent = match self.requests.try_send(bytes) {
            Err(TrySendError::Full) => {
                // Slices of a second: the server's death shows between them.
                let mut left = timeout;
                loop {
                    let slice =
                        left.map_or(Duration::from_secs(1), |l| l.min(Duration::from_secs(1)));
                    match self.requests.send_timeout(bytes, slice) {
                        Err(TrySendError::Full) => match left {
                            Some(l) if l <= slice => break Err(TrySendError::Full),
                            Some(l) => left = Some(l - slice),
                            None => {}
                        },
                        other => break other,
                    }
                }
            }
            other => other,
        };
        match sent {
            Ok(()) => {}
            Err(TrySendError::Full) => return Err(LaneError::Timeout),
            Err(TrySendError::TooLarge { .. }) => return Err(LaneError::TooLarge),
            Err(TrySendError::Failed(e)) => return Err(e.into()),
            Err(other) => return Err(LaneError::Broken(other.to_string())),
        }
        fence(Ordering::SeqCst);
        if let Some(bell) = self.requests.aux().first() {
            if bell
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                self.doorbell.ring();
            }
        }
        Ok(())
    }

    /// The next reply, looked for `spin` (yielding the CPU between looks),
    /// then waited for at most `timeout` (`None`: as long as the server lives).
    pub fn receive(
        &mut self,
        out: &mut Vec<u8>,
        spin: Duration,
        timeout: Option<Duration>,
    ) -> Result<(), LaneError> {
        let started = std::time::Instant::now();
        while started.elapsed() < spin {
            if self.replies.try_recv_into(out)? {
                return Ok(());
            }
            std::thread::yield_now();
        }
        loop {
            let left = match timeout {
                None => Duration::from_secs(1),
                Some(t) => t.saturating_sub(started.elapsed()),
            };
            if self.replies.recv_timeout_into(out, left)? {
                return Ok(());
            }
            if timeout.is_some() {
                return Err(LaneError::Timeout);
            }
        }
    }
}
