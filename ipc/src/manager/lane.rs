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
//! A value of a megabyte or more goes beside the rings, as a sealed memfd
//! on the lane's spill port (see [`super::sealed`]), announced in the ring.
//!
//! The bell word (the requests ring's first aux word) keeps rings rare: a
//! client rings only when it turns the word from 0 to 1; the server
//! clears it before it sleeps and then looks at the ring once more, so a
//! request published meanwhile is seen either way.

use std::sync::atomic::{fence, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::spin::{yield_pays, YIELDS};
use crate::spsc::doorbell::{self, Heard, Listener, Ringer};
use crate::spsc::spill::{self, SpillError, SpillPort};
use crate::spsc::{self, Receiver, Sender, SpscError, TrySendError};

use super::sealed::{self, SealedValue};
use super::Payload;

/// Each ring's size.
const RING_BYTES: usize = 256 << 10;

/// The largest request or reply a lane carries; a larger one goes over
/// the socket. Half the ring (less a record's header and padding): a
/// record must start a new lap when it does not fit before the ring's
/// end, and one this size always fits at the start of an empty ring. So a
/// lone message never waits for room, and the server, which cannot wait,
/// finds room for every reply while its client reads them.
pub(super) const MAX_ON_LANE: usize = RING_BYTES / 2 - 16;

/// How long a blocking call spins for its reply before it sleeps. The
/// ring's own 20 us is less than the server takes for a batch (64 sets:
/// 20-40 us), so such a caller slept on every call, and the wake-up (20-45
/// us on an idle VM) made each round trip about twice as long: batches of
/// 64 sets and 64 gets ran at 1.2-1.3 M operations/s, and at 2.4-2.5 M
/// with 100 us. Past the wake-up's cost, spinning no longer pays.
const REPLY_SPIN: Duration = Duration::from_micros(100);

/// The requests ring's aux words: the bell (the client sets it, the server
/// clears it), and how many threads are busy with the manager (the server
/// sets it, the client reads it to choose between yielding and parking).
const BELL_WORD: usize = 0;
const PEERS_WORD: usize = 1;
const MAX_PEERS: u64 = 1 << 16;

/// The server's end of a lane.
pub(super) struct ServerLane {
    pub requests: Receiver,
    pub replies: Sender,
    pub doorbell: Listener,
    /// Where large values come and go as sealed memfds.
    pub spill: SpillPort,
}

/// The client's end, as it travels over the socket.
#[derive(Serialize, Deserialize)]
pub(super) struct ClientLane {
    requests: Sender,
    replies: Receiver,
    doorbell: Ringer,
    spill: SpillPort,
}

/// Why a lane could not be made.
pub(super) fn pair() -> Result<(ServerLane, ClientLane), String> {
    let (req_tx, req_rx) = spsc::channel(RING_BYTES, 2).map_err(|e| e.to_string())?;
    let (rep_tx, rep_rx) = spsc::channel(RING_BYTES, 0).map_err(|e| e.to_string())?;
    let (ringer, listener) = doorbell::doorbell().map_err(|e| e.to_string())?;
    let (server_spill, client_spill) = spill::ports().map_err(|e| e.to_string())?;
    Ok((
        ServerLane {
            requests: req_rx,
            replies: rep_tx,
            doorbell: listener,
            spill: server_spill,
        },
        ClientLane {
            requests: req_tx,
            replies: rep_rx,
            doorbell: ringer,
            spill: client_spill,
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

    /// Tells the client how many threads are busy with the manager lately.
    pub fn set_peers(&self, peers: usize) {
        if let Some(word) = self.requests.aux().get(PEERS_WORD) {
            word.store(peers as u64, Ordering::Relaxed);
        }
    }

    /// Before sleeping: the next request must ring.
    pub fn clear_bell(&self) {
        if let Some(bell) = self.requests.aux().get(BELL_WORD) {
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
    /// The lane as a client uses it: a blocking call's wait for its reply
    /// ([`receive`](Self::receive)) spins up to [`REPLY_SPIN`]. (An
    /// awaited call looks for its reply itself, then waits through a
    /// watch: this changes nothing for it.)
    pub fn for_client(mut self) -> Self {
        self.replies.set_spin_bound(REPLY_SPIN);
        self
    }

    /// Hands a large value over in a sealed memfd (its own, if it was
    /// encoded into one), before the request that announces it
    /// (`Request::OnSealed`) is published.
    pub fn send_sealed(&self, value: &Payload) -> Result<(), SpillError> {
        match value {
            Payload::Sealed(sealed) => sealed.hand_over(&self.spill),
            bytes => {
                let memfd = crate::os::memory::sealed_memfd_with(sealed::MEMFD_NAME, bytes)?;
                self.spill.hand_over(&memfd)
            }
        }
    }

    /// The sealed value a `Reply::SealedValue(len)` announced, checked
    /// against `max`.
    pub fn take_sealed(&self, len: u64, max: u64) -> Result<SealedValue, SpillError> {
        SealedValue::taken(&self.spill, len, max)
    }

    /// Publishes a request, waiting at most `timeout` (`None`: as long as
    /// the server lives) for room, and rings if the server may sleep.
    pub fn send(&mut self, bytes: &[u8], timeout: Option<Duration>) -> Result<(), LaneError> {
        if bytes.len() > MAX_ON_LANE {
            return Err(LaneError::TooLarge);
        }
        let sent = match self.requests.try_send(bytes) {
            Err(TrySendError::Full) => {
                // The server must take what is there to make room: it may
                // sleep with nothing rung (a lap's end skipped alone).
                self.ring_bell();
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
        self.ring_bell();
        Ok(())
    }

    /// Publishes a request without waiting: an awaited call's, made when
    /// every earlier request of its connection has been answered (so
    /// read by the server), which leaves the ring room unless it broke.
    pub fn try_send(&mut self, bytes: &[u8]) -> Result<(), LaneError> {
        if bytes.len() > MAX_ON_LANE {
            return Err(LaneError::TooLarge);
        }
        match self.requests.try_send(bytes) {
            Ok(()) => {}
            Err(TrySendError::Full) => {
                return Err(LaneError::Broken(
                    "the lane's requests ring is full with no request out".into(),
                ))
            }
            Err(TrySendError::TooLarge { .. }) => return Err(LaneError::TooLarge),
            Err(TrySendError::Failed(e)) => return Err(e.into()),
            Err(other) => return Err(LaneError::Broken(other.to_string())),
        }
        self.ring_bell();
        Ok(())
    }

    /// The next reply into `out` if it is there (false: not yet); `Gone`
    /// once the server closed its end with nothing left in the ring.
    pub fn try_receive(&mut self, out: &mut Vec<u8>) -> Result<bool, LaneError> {
        if self.replies.try_recv_into(out)? {
            return Ok(true);
        }
        if self.replies.sender_gone(false) {
            // Anything published before it closed is taken first.
            return match self.replies.try_recv_into(out)? {
                true => Ok(true),
                false => Err(LaneError::Gone),
            };
        }
        Ok(false)
    }

    /// Whether the server's process is gone (reads `/proc`: after a wait
    /// that saw nothing, not on a quick look).
    pub fn server_gone(&self) -> bool {
        self.replies.sender_gone(true)
    }

    /// Moves with every reply published (see [`crate::watch::Watched::epoch`]).
    pub fn reply_epoch(&self) -> u64 {
        self.replies.tail_epoch()
    }

    /// The replies ring, for a watcher thread to sleep on.
    pub fn reply_watch(&self) -> Result<crate::spsc::TailWatch, LaneError> {
        Ok(self.replies.tail_watch()?)
    }

    /// Rings unless a ring is pending: the server looks at the ring.
    fn ring_bell(&mut self) {
        fence(Ordering::SeqCst);
        if let Some(bell) = self.requests.aux().get(BELL_WORD) {
            if bell
                .compare_exchange(0, 1, Ordering::SeqCst, Ordering::Relaxed)
                .is_ok()
            {
                self.doorbell.ring();
            }
        }
    }

    /// How many threads the server says are busy with the manager lately
    /// (its own and its active clients'): a hint for how to wait, clamped,
    /// so a wrong value only changes whether a wait yields.
    fn peers(&self) -> usize {
        self.requests
            .aux()
            .get(PEERS_WORD)
            .map_or(0, |w| w.load(Ordering::Relaxed).min(MAX_PEERS) as usize)
    }

    /// The next reply, waited for at most `timeout` (`None`: as long as the
    /// server lives). The ring's receiver spins first while replies come
    /// quickly and the CPUs are not oversubscribed, then sleeps. When they
    /// are oversubscribed, a few yields come first if the threads runnable
    /// are no more than the manager's busy peers (the server, its active
    /// clients; measured on two idle cores, four clients and the server:
    /// 1.0x one client's rate with yields, 0.45x parking at once).
    pub fn receive(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Option<Duration>,
    ) -> Result<(), LaneError> {
        let started = std::time::Instant::now();
        if yield_pays(self.peers()) {
            for _ in 0..YIELDS {
                if self.replies.try_recv_into(out)? {
                    return Ok(());
                }
                std::thread::yield_now();
            }
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
