//! One authenticated client as the server sees it: its socket, its fast
//! lane if it asked for one, and how its requests are read and its replies
//! sent without ever waiting on it.

use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::super::lane::{self, ServerLane};
use super::super::protocol::{Op, Reply, Request};
use super::super::sealed::{self, SealedValue, SEALED_FROM};
use super::super::Payload;
use super::hub::{Hub, Presence};
use super::state::Handled;
use super::step::ClientId;
use crate::codec::EncodeError;
use crate::pipe::{Connection, RecvError, SendError, SendTimeoutError, TryRecvError};
use crate::spsc::spill::SpillError;
use crate::spsc::{SpscError, TrySendError};

/// Why a client is dropped.
pub(super) enum Leaving {
    /// It closed its end (or its process died): normal, not logged.
    Left,
    Garbage,
    NotReading,
    /// Its lane's rings hold impossible positions or records.
    Corrupted(String),
}

pub(super) struct Client {
    pub conn: Connection,
    pub peer: String,
    /// When it was last heard (also told to the other threads: `presence`).
    pub last_heard: Instant,
    presence: Arc<Presence>,
    /// Since when a reply has been waiting to go out whole.
    pub stuck_since: Option<Instant>,
    pub lane: Option<ServerLane>,
    /// Whether a lane may be opened (a local client on a Unix socket).
    may_open_lane: bool,
    /// Its process, if local (from the socket's credentials).
    pid: Option<u32>,
    /// Where its last request came from: its reply, even one owed later
    /// to a parked request, goes back the same way.
    via_lane: bool,
    buf: Vec<u8>,
    /// A reply encoded for the lane (kept for the next while small).
    out: Vec<u8>,
    /// It is gone, and how many more of its last requests are read;
    /// replies go nowhere (see [`Client::last_words`]).
    last_words: Option<u32>,
}

/// The most requests read from a gone client: what a dying client left
/// is a few; a peer that closed its doorbell and floods its socket, with
/// no reply to slow it down, does not keep this thread.
const LAST_WORDS: u32 = 1024;

/// The most bytes `Client::out` keeps between replies.
const OUT_KEPT: usize = 1 << 20;

impl Client {
    pub fn new(
        conn: Connection,
        peer: String,
        presence: Arc<Presence>,
        now: Instant,
        may_open_lane: bool,
    ) -> Self {
        let pid = crate::os::fd::peer_credentials(conn.as_raw_fd())
            .ok()
            .and_then(|c| u32::try_from(c.pid).ok());
        Client {
            pid,
            conn,
            peer,
            last_heard: now,
            presence,
            stuck_since: None,
            lane: None,
            may_open_lane,
            via_lane: false,
            buf: Vec::new(),
            out: Vec::new(),
            last_words: None,
        }
    }

    /// `served`, unless it says the client left: then what the client
    /// sent before it went, still in its socket or its lane, is answered
    /// first (see [`last_words`](Self::last_words)), and why it leaves.
    pub fn unless_gone(
        &mut self,
        hub: &Hub,
        id: ClientId,
        served: Result<(), Leaving>,
    ) -> Result<(), Leaving> {
        match served {
            Err(Leaving::Left) => Err(self.last_words(hub, id)),
            served => served,
        }
    }

    /// The client is gone (a channel closed, or a reply found it gone):
    /// the requests it sent before it went, already in its socket or its
    /// lane, are answered into the void, so that a release sent just before
    /// a close counts (a closed doorbell read before the socket lost a
    /// semaphore's unit). Those that would hand it something (an item, a
    /// unit, a lock) are not: it could not take them. Only what is there
    /// already is read: a peer cannot keep us here.
    pub fn last_words(&mut self, hub: &Hub, id: ClientId) -> Leaving {
        self.last_words.get_or_insert(LAST_WORDS);
        let socket = self.serve_socket(hub, id);
        let lane = self.serve_lane(hub, id);
        match (socket, lane) {
            (Err(why @ (Leaving::Garbage | Leaving::Corrupted(_))), _)
            | (_, Err(why @ (Leaving::Garbage | Leaving::Corrupted(_)))) => why,
            _ => Leaving::Left,
        }
    }

    /// Whether it is gone (its last requests being read).
    fn gone(&self) -> bool {
        self.last_words.is_some()
    }

    /// Whether one more request may be read: always while it is here; a
    /// gone client's, up to [`LAST_WORDS`].
    fn may_read_on(&mut self) -> bool {
        match &mut self.last_words {
            None => true,
            Some(0) => false,
            Some(left) => {
                *left -= 1;
                true
            }
        }
    }

    /// The answer to `request`, if it has one now; a gone client's request
    /// that would hand it something is dropped unanswered.
    fn answer(&self, hub: &Hub, id: ClientId, request: Request) -> Option<Reply> {
        if self.gone() && hands_over(&request) {
            return None;
        }
        answer(hub, id, request)
    }

    /// It was just heard from.
    pub fn hear(&mut self, hub: &Hub, now: Instant) {
        self.last_heard = now;
        self.presence.heard(hub, now);
    }

    /// Whether its lane holds a request (a look at shared memory, no call).
    pub fn lane_pending(&self) -> bool {
        self.lane.as_ref().is_some_and(|l| l.requests.has_pending())
    }

    /// Answers every whole request on its socket.
    pub fn serve_socket(&mut self, hub: &Hub, id: ClientId) -> Result<(), Leaving> {
        loop {
            if !self.may_read_on() {
                return Err(Leaving::Left);
            }
            match self.conn.try_recv::<Request>() {
                // Gone: nothing to open, nobody to own.
                Ok(Request::OpenLane | Request::Owner(_)) if self.gone() => {}
                Ok(Request::OpenLane) => self.open_lane()?,
                Ok(Request::Owner(token)) => {
                    self.via_lane = false;
                    // Told back: the largest request this connection takes,
                    // so that the client refuses a larger one itself.
                    let reply = match hub.state().announce(id, token, self.pid) {
                        Reply::Done => Reply::Len(self.conn.max_frame_size() as u64),
                        refused => refused,
                    };
                    self.reply(&reply)?;
                }
                Ok(request) => {
                    self.via_lane = false;
                    if let Some(reply) = self.answer(hub, id, request) {
                        self.reply(&reply)?;
                        if !self.gone() && self.conn.has_unsent() {
                            // Read no more until it has taken this one.
                            return Ok(());
                        }
                    }
                }
                Err(TryRecvError::Empty) => return Ok(()),
                Err(TryRecvError::Recv(RecvError::Disconnected)) => return Err(Leaving::Left),
                Err(_) => return Err(Leaving::Garbage),
            }
        }
    }

    /// Answers every request waiting in its lane.
    pub fn serve_lane(&mut self, hub: &Hub, id: ClientId) -> Result<(), Leaving> {
        loop {
            if !self.may_read_on() {
                return Err(Leaving::Left);
            }
            let Some(lane) = self.lane.as_mut() else {
                return Ok(());
            };
            match lane.requests.try_recv_into(&mut self.buf) {
                Ok(true) => {}
                Ok(false) => return Ok(()),
                Err(SpscError::Disconnected) => return Err(Leaving::Left),
                Err(e) => return Err(Leaving::Corrupted(e.to_string())),
            }
            let request: Request = postcard::from_bytes(&self.buf).map_err(|_| Leaving::Garbage)?;
            if matches!(request, Request::OpenLane) {
                return Err(Leaving::Garbage);
            }
            self.via_lane = true;
            let request = match request {
                Request::OnSealed { id, op, len } => match self.with_sealed_value(op, len) {
                    Ok(op) => Request::On { id, op },
                    Err(why) => {
                        self.reply(&Reply::Error(why))?;
                        continue;
                    }
                },
                request => request,
            };
            if let Some(reply) = self.answer(hub, id, request) {
                self.reply(&reply)?;
            }
        }
    }

    /// The bell rang: read it (false: the client is gone).
    pub fn heard(&self) -> bool {
        self.lane.as_ref().is_none_or(|l| l.heard())
    }

    /// `op` with its value filled in: the sealed memfd of `len` bytes the
    /// client handed over beside its lane (checked: sealed, that size, no
    /// larger than a request may be). Past the descriptors this process
    /// keeps, the value is copied into memory.
    fn with_sealed_value(&mut self, mut op: Op, len: u64) -> Result<Op, String> {
        let max = self.conn.max_frame_size() as u64;
        let lane = self.lane.as_ref().ok_or("no lane")?;
        let value = SealedValue::taken(&lane.spill, len, max)
            .map_err(|e| format!("the value handed over: {e}"))?;
        let slot = op
            .value_mut()
            .ok_or("a sealed value came with an operation that stores none")?;
        *slot = if SealedValue::at_limit() {
            Payload::from(value.to_vec())
        } else {
            Payload::Sealed(Arc::new(value))
        };
        Ok(op)
    }

    /// Hands a large value over beside the lane and announces it there:
    /// `Ok(false)` if it could not be made into a memfd (it goes on the
    /// socket instead).
    fn reply_sealed(&mut self, value: &Payload) -> Result<bool, Leaving> {
        let Some(lane) = self.lane.as_mut() else {
            return Ok(false);
        };
        let handed = match value {
            Payload::Sealed(sealed) => sealed.try_hand_over(&lane.spill),
            bytes => match crate::os::memory::sealed_memfd_with(sealed::MEMFD_NAME, bytes) {
                Ok(memfd) => lane.spill.try_hand_over(&memfd),
                Err(_) => return Ok(false),
            },
        };
        match handed {
            Ok(()) => {}
            Err(SpillError::Disconnected) => return Err(Leaving::Left),
            Err(_) => return Err(Leaving::NotReading),
        }
        let marker = postcard::to_allocvec(&Reply::SealedValue(value.len() as u64))
            .map_err(|_| Leaving::Garbage)?;
        match lane.replies.try_send(&marker) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full) => Err(Leaving::NotReading),
            Err(_) => Err(Leaving::Left),
        }
    }

    /// Sends a reply the way its request came, without waiting: what does
    /// not fit the lane goes on the socket, announced on the lane; a large
    /// value goes beside the lane, sealed.
    pub fn reply(&mut self, reply: &Reply) -> Result<(), Leaving> {
        if self.gone() {
            return Ok(());
        }
        if self.via_lane {
            if let Reply::Value(Some(value)) = reply {
                if value.len() >= SEALED_FROM && self.reply_sealed(value)? {
                    return Ok(());
                }
            }
            if let Some(lane) = self.lane.as_mut() {
                // Sized first: one too large for the ring is encoded once,
                // for the socket (a 100 MB value was encoded twice).
                let len =
                    postcard::experimental::serialized_size(reply).map_err(|_| Leaving::Garbage)?;
                let sent = if len <= lane::MAX_ON_LANE {
                    self.out.clear();
                    self.out.resize(len, 0);
                    postcard::to_slice(reply, &mut self.out).map_err(|_| Leaving::Garbage)?;
                    let sent = lane.replies.try_send(&self.out);
                    if self.out.capacity() > OUT_KEPT {
                        self.out = Vec::new();
                    }
                    sent
                } else {
                    Err(TrySendError::TooLarge {
                        len,
                        max: lane::MAX_ON_LANE,
                    })
                };
                match sent {
                    Ok(()) => return Ok(()),
                    // Large (a page of `items()`, a list's `to_vec()`):
                    // the whole reply beside the lane, sealed.
                    Err(TrySendError::TooLarge { .. })
                        if (SEALED_FROM..=self.conn.max_frame_size()).contains(&len)
                            && reply_sealed_whole(lane, reply, len)? =>
                    {
                        return Ok(())
                    }
                    Err(TrySendError::TooLarge { .. }) => {
                        let marker = postcard::to_allocvec(&Reply::OnSocket)
                            .map_err(|_| Leaving::Garbage)?;
                        lane.replies
                            .try_send(&marker)
                            .map_err(|_| Leaving::NotReading)?;
                    }
                    // One reply per request: a full ring is a client not reading.
                    Err(TrySendError::Full) => return Err(Leaving::NotReading),
                    Err(_) => return Err(Leaving::Left),
                }
            }
        }
        match self.conn.send_timeout(reply, Duration::ZERO) {
            Ok(()) => Ok(()),
            // Too large to frame: the client is told so, and stays.
            Err(SendTimeoutError::Send(SendError::Encode(EncodeError::TooLarge { len, max }))) => {
                let why = Reply::Error(format!(
                    "the reply of {len} bytes is over the connection's largest frame ({max} bytes)"
                ));
                self.conn
                    .send_timeout(&why, Duration::ZERO)
                    .map_err(|_| Leaving::NotReading)
            }
            Err(SendTimeoutError::Send(SendError::Disconnected)) => Err(Leaving::Left),
            Err(_) => Err(Leaving::NotReading),
        }
    }

    /// Makes its lane and hands it over with the rings' descriptors.
    fn open_lane(&mut self) -> Result<(), Leaving> {
        if !self.may_open_lane || self.lane.is_some() {
            return self.refuse_lane("no lane on this connection");
        }
        let (ours, theirs) = match lane::pair() {
            Ok(pair) => pair,
            Err(why) => return self.refuse_lane(&why),
        };
        let (encoded, fds) = crate::handle::collecting_handles(|| postcard::to_allocvec(&theirs));
        let Ok(encoded) = encoded else {
            return self.refuse_lane("cannot encode the lane");
        };
        let Ok(reply) = postcard::to_allocvec(&Reply::Lane(encoded)) else {
            return self.refuse_lane("cannot encode the lane");
        };
        self.conn
            .send_bytes_with_fds(&reply, &fds, Duration::ZERO)
            .map_err(|_| Leaving::NotReading)?;
        // Our copies of its ends close here; the client holds them now.
        drop(theirs);
        self.lane = Some(ours);
        Ok(())
    }

    fn refuse_lane(&mut self, why: &str) -> Result<(), Leaving> {
        self.via_lane = false;
        self.reply(&Reply::Error(why.to_string()))
    }
}

/// Writes `reply` (`len` bytes encoded) into a sealed memfd, hands it
/// over beside `lane` and announces it there (`Reply::SealedReply`):
/// `Ok(false)` if no memfd could be made (it goes on the socket instead).
fn reply_sealed_whole(lane: &mut ServerLane, reply: &Reply, len: usize) -> Result<bool, Leaving> {
    use crate::codec::spill_sink::{Encoded, SpillSink};
    use std::sync::atomic::AtomicUsize;
    static NO_CAP: AtomicUsize = AtomicUsize::new(usize::MAX);
    // Nothing stays in the buffer: every byte goes to the memfd.
    let mut sink = SpillSink::new(Vec::new(), 0, &NO_CAP, sealed::MEMFD_NAME);
    let encoded = crate::codec::encode_to(reply, &mut sink);
    let memfd = match sink.finish(encoded) {
        Ok(Encoded::Spilled {
            memfd,
            len: written,
        }) if written == len => memfd,
        _ => return Ok(false),
    };
    match lane.spill.try_hand_over(&memfd) {
        Ok(()) => {}
        Err(SpillError::Disconnected) => return Err(Leaving::Left),
        Err(_) => return Err(Leaving::NotReading),
    }
    let marker =
        postcard::to_allocvec(&Reply::SealedReply(len as u64)).map_err(|_| Leaving::Garbage)?;
    match lane.replies.try_send(&marker) {
        Ok(()) => Ok(true),
        Err(TrySendError::Full) => Err(Leaving::NotReading),
        Err(_) => Err(Leaving::Left),
    }
}

/// Whether `request`'s answer (any in a batch) would hand its client
/// something that is then its own (see `Op::hands_over`).
fn hands_over(request: &Request) -> bool {
    match request {
        Request::On { op, .. } | Request::OnSealed { op, .. } => op.hands_over(),
        Request::Batch(requests) => requests.iter().any(hands_over),
        _ => false,
    }
}

/// The reply to `request`, or `None` if it is parked: the objects' lock is
/// held for the operation alone, and let go before a registered type's
/// call (which may take long) is made.
fn answer(hub: &Hub, id: ClientId, request: Request) -> Option<Reply> {
    let handled = hub.state().take(id, request);
    match handled {
        Handled::Reply(reply) => Some(reply),
        Handled::Parked => None,
        Handled::Call(call) => Some(call.run()),
    }
}
