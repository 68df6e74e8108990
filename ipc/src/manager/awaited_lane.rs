//! The fast lane of a connection kept for awaited calls: a request goes in
//! its shared-memory ring as a blocking call's does, and its reply is
//! awaited on the replies ring, watched by a watcher thread of this
//! process (the reply's futex, not the executor's reactor).
//!
//! Over the socket alone, an awaited `get` took 64-83 us on an idle VM
//! against 1 us for the blocking call: the manager, which spins on lanes
//! while they are busy, slept in `poll` for the socket, and each wake-up
//! of an idle CPU costs tens of microseconds here. On the lane, the
//! server answers within a microsecond or two while it is awake, so the
//! poll that sent the request looks for the reply for a moment (as long
//! as recent replies came that quickly, and not while the CPUs are
//! oversubscribed) before it leaves its waker.

use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use super::client::{lane_error, sealed_reply, sealed_whole_reply};
use super::lane::{ClientLane, LaneError};
use super::protocol::Reply;
use super::{ManagerError, Payload};
use crate::spin::SpinBudget;
use crate::spsc::spill::SpillError;
use crate::watch::{Registration, Watch};

/// The longest the poll that sent a request looks for its reply before it
/// leaves its waker: what a blocking lane call spins, short enough for an
/// executor's thread (tokio asks for no more than 10-100 us between
/// awaits).
const SPIN: Duration = Duration::from_micros(20);

/// A lane kept with an awaited calls' connection.
pub(super) struct AwaitedLane {
    lane: ClientLane,
    /// The replies ring's watch, stopped with the lane.
    watch: Arc<Watch>,
    /// How long recent replies took to come.
    budget: SpinBudget,
}

impl AwaitedLane {
    pub fn new(lane: ClientLane) -> Result<AwaitedLane, ManagerError> {
        let watched = lane.reply_watch().map_err(lane_error)?;
        Ok(AwaitedLane {
            watch: Watch::new(Arc::new(watched), "manager-reply"),
            lane,
            budget: SpinBudget::default(),
        })
    }

    /// Hands a large value over beside the lane (see [`ClientLane::send_sealed`]).
    pub fn send_sealed(&self, value: &Payload) -> Result<(), SpillError> {
        self.lane.send_sealed(value)
    }

    /// Publishes a request (one that fits: else `TooLarge`, for the socket).
    pub fn send(&mut self, bytes: &[u8]) -> Result<(), LaneError> {
        self.lane.try_send(bytes)
    }

    /// The reply read into `out`: `OnSocket` as it is (it follows on the
    /// socket), a sealed value taken from beside the lane (at most `max`
    /// bytes) and given as `Value`, a sealed reply taken and decoded.
    pub fn decode(&self, out: &[u8], max: usize) -> Result<Reply, ManagerError> {
        match postcard::from_bytes::<Reply>(out) {
            Ok(Reply::SealedValue(len)) => sealed_reply(&self.lane, len, max),
            Ok(Reply::SealedReply(len)) => sealed_whole_reply(&self.lane, len, max),
            Ok(reply) => Ok(reply),
            Err(e) => Err(ManagerError::Protocol(e.to_string())),
        }
    }

    /// The next reply, into `out`. Cancel-safe: dropped, it has taken
    /// nothing (the reply is still owed).
    pub async fn reply(&mut self, out: &mut Vec<u8>) -> Result<(), ManagerError> {
        let started = Instant::now();
        let mut registration: Option<Registration> = None;
        let mut first = true;
        std::future::poll_fn(|cx| {
            let spin = match first {
                true => self.budget.limit(SPIN),
                false => Duration::ZERO,
            };
            let seen = loop {
                let seen = self.lane.reply_epoch();
                if self.lane.try_receive(out).map_err(lane_error)? {
                    self.budget.record(started.elapsed());
                    return Poll::Ready(Ok(()));
                }
                if started.elapsed() >= spin {
                    break seen;
                }
                std::hint::spin_loop();
            };
            // Woken with nothing come: the watch's look found the
            // manager gone (or the wake was another's).
            if !first && self.lane.server_gone() {
                return Poll::Ready(Err(ManagerError::Disconnected));
            }
            first = false;
            registration
                .get_or_insert_with(|| Registration::new(self.watch.clone()))
                .wait(seen, cx.waker())
                .map_err(ManagerError::Local)?;
            // A wait: the executor has its thread back (see `crate::coop`).
            crate::coop::waited();
            Poll::Pending
        })
        .await
    }
}

impl Drop for AwaitedLane {
    fn drop(&mut self) {
        // The watcher lets go of the ring's mapping now.
        self.watch.stop();
    }
}
