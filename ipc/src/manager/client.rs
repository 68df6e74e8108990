//! A process's connections to the managers it uses: one per manager (and
//! key) per thread, opened on first use (a forked child never uses its
//! parent's, whose descriptor it did not keep), dropped on any error so
//! that the next call starts afresh. A connection to a local manager gets
//! a fast lane (see [`super::lane`]) and sends requests through it.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::lane::{ClientLane, LaneError};
use super::protocol::{Op, Reply, Request, MAX_BATCH};
use super::ManagerError;
use super::Payload;
use crate::net::{self, Address, NetError};
use crate::pipe::{Connection, RecvError, RecvTimeoutError, SendError, SendTimeoutError};
use crate::spin::SpinBudget;
use crate::spsc::spill::SpillError;

/// How a proxy reaches its manager: plain data, so a proxy can travel
/// into a child as any `Process` argument (the key is the manager's secret,
/// shared with the processes it is handed to, as Python's `authkey`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Link {
    pub address: String,
    pub key: Vec<u8>,
}

/// An open connection to a manager, with its fast lane if it has one.
struct Open {
    /// The manager (and key) it is to.
    link: Link,
    /// The process that opened it (a forked child must not use it).
    pid: u32,
    conn: Connection,
    lane: Option<ClientLane>,
    /// How long replies on the socket took lately.
    budget: SpinBudget,
    /// A request's encoding and a reply's bytes on the lane, kept from
    /// call to call (each was an allocation per call).
    request_bytes: Vec<u8>,
    reply_bytes: Vec<u8>,
}

/// The most bytes a connection's buffers keep between calls.
const BUFFER_KEPT: usize = 64 << 10;

thread_local! {
    /// Open connections, one per manager address and key (a connection
    /// proved one key: another key must prove itself afresh). A list,
    /// looked through by equality: a thread uses few managers, and a call
    /// hashed its link twice and cloned it once before (a tenth of a
    /// client's time with four clients on two CPUs).
    static CONNECTIONS: RefCell<Vec<Open>> = const { RefCell::new(Vec::new()) };
}

/// This thread's kept connection to `link`, taken out.
fn take_kept(link: &Link) -> Option<Open> {
    CONNECTIONS.with(|c| {
        let mut connections = c.borrow_mut();
        let at = connections.iter().position(|open| open.link == *link)?;
        Some(connections.swap_remove(at))
    })
}

/// How long a client has to get its lane.
const LANE_TIMEOUT: Duration = Duration::from_secs(5);

/// Proxies dropped in this process whose manager is still to be told
/// (pid, manager, object): told with the next call to that manager, in the
/// same round trip.
static DROPPED: Mutex<Vec<(u32, Link, u64)>> = Mutex::new(Vec::new());

/// The most dropped proxies kept untold (past it, a reference goes with
/// the process instead).
const MAX_DROPPED: usize = 1 << 16;

/// A proxy to object `id` of `link` was dropped: its manager is told with
/// this process's next call to it. Never blocks (a lock another thread
/// held across a fork is skipped: the reference then goes with the
/// process).
pub(super) fn dropped(link: &Link, id: u64) {
    if let Ok(mut dropped) = DROPPED.try_lock() {
        if dropped.len() < MAX_DROPPED {
            dropped.push((crate::os::thread_id::process_id(), link.clone(), id));
        }
    }
}

/// Forgets this thread's connection to `link` and the drops untold to it:
/// its manager has ended (the handle that started it stopped it), and what
/// was kept for it would only hold descriptors and rings.
pub(super) fn forget(link: &Link) {
    let pid = crate::os::thread_id::process_id();
    if let Some(open) = take_kept(link) {
        release(open, pid);
    }
    super::awaited::forget(link);
    forget_dropped(|gone| gone == link);
}

/// Closes this thread's kept connections whose manager has closed its end
/// (it ended, was killed, or let an idle connection go). Run before a new
/// connection is opened: a thread that uses managers one after another
/// (each a new address) keeps nothing of those that ended. Before, each
/// kept its socket, lane rings and pipe, and the 254th manager of a
/// process limited to 1,024 descriptors could not be reached. (Untold
/// drops stay: a manager that let an idle connection go still holds this
/// process's references.)
fn close_stale_connections() {
    let pid = crate::os::thread_id::process_id();
    let stale: Vec<Open> = CONNECTIONS.with(|c| {
        let mut connections = c.borrow_mut();
        let mut stale = Vec::new();
        let mut at = 0;
        while let Some(open) = connections.get_mut(at) {
            // A kept connection has nothing to read: anything readable is
            // its end of file (or bytes nobody asked for).
            let closed = open.pid == pid && !matches!(open.conn.poll(Duration::ZERO), Ok(false));
            match closed {
                true => stale.push(connections.swap_remove(at)),
                false => at += 1,
            }
        }
        stale
    });
    for open in stale {
        release(open, pid);
    }
}

/// Drops `open`, or, if it was inherited through fork, leaves it alone:
/// its descriptor is the parent's to use, and its lane's rings are not
/// mapped here (kept out of forks).
fn release(open: Open, pid: u32) {
    if open.pid != pid {
        std::mem::forget(open);
    }
}

/// Forgets the untold drops of this process for the managers `gone` picks.
fn forget_dropped(gone: impl Fn(&Link) -> bool) {
    if let Ok(mut dropped) = DROPPED.try_lock() {
        dropped.retain(|(_, link, _)| !gone(link));
    }
}

/// This process's name at its managers (see `Request::Owner`): random,
/// and made again in a forked child.
fn process_token() -> u64 {
    static PID: AtomicU32 = AtomicU32::new(0);
    static TOKEN: AtomicU64 = AtomicU64::new(0);
    let pid = crate::os::thread_id::process_id();
    if PID.load(Ordering::Acquire) != pid {
        let mut bytes = [0u8; 8];
        let _ = crate::os::random::fill(&mut bytes);
        TOKEN.store(u64::from_le_bytes(bytes) | 1, Ordering::Release);
        PID.store(pid, Ordering::Release);
    }
    TOKEN.load(Ordering::Acquire)
}

/// The requests that tell a manager of proxies dropped (objects `gone`).
pub(super) fn decrefs(gone: Vec<u64>) -> Vec<Request> {
    gone.into_iter()
        .map(|id| Request::On { id, op: Op::DecRef })
        .collect()
}

/// The reply to a request sent last in a batch behind the drops told.
pub(super) fn last_of_batch(reply: Reply) -> Result<Reply, ManagerError> {
    match reply {
        Reply::Batch(mut replies) => match replies.pop() {
            Some(Reply::Error(why)) => Err(ManagerError::Server(why)),
            Some(Reply::OverBudget(why)) => Err(ManagerError::OverBudget(why)),
            Some(reply) => Ok(reply),
            None => Err(ManagerError::Protocol("an empty batch reply".into())),
        },
        other => Err(ManagerError::Protocol(format!("{other:?}"))),
    }
}

/// Whether `request` may ride in a batch (one that cannot wait, and no
/// registered type's call, which would run under the objects' lock).
pub(super) fn batchable(request: &Request) -> bool {
    match request {
        Request::Create(_) | Request::Open { .. } => true,
        Request::On { op, .. } => !op.may_wait() && !matches!(op, Op::Call(_)),
        _ => false,
    }
}

impl Link {
    /// Whether the manager is on this machine, at a Unix socket (as the
    /// address is written: `unix:`, a path, `@name`, `\0name`; else TCP).
    pub(super) fn is_local(&self) -> bool {
        net::names_unix_socket(&self.address)
    }

    /// Sends `request` and waits for its reply, at most `timeout` (`None`:
    /// as long as the manager lives; its death is `Disconnected` at once).
    /// Proxies of this manager dropped since the last call are told first,
    /// in the same round trip when `request` may ride in a batch.
    pub fn call(
        &self,
        request: &Request,
        timeout: Option<Duration>,
    ) -> Result<Reply, ManagerError> {
        let gone = self.take_dropped();
        if gone.is_empty() {
            return self.call_alone(request, timeout);
        }
        let mut batch = decrefs(gone);
        if !batchable(request) {
            let _ = self.call_alone(&Request::Batch(batch), timeout);
            return self.call_alone(request, timeout);
        }
        batch.push(request.clone());
        last_of_batch(self.call_alone(&Request::Batch(batch), timeout)?)
    }

    /// The objects of this manager whose proxies this process dropped.
    pub(super) fn take_dropped(&self) -> Vec<u64> {
        let Ok(mut dropped) = DROPPED.try_lock() else {
            return Vec::new();
        };
        if dropped.is_empty() {
            return Vec::new();
        }
        let pid = crate::os::thread_id::process_id();
        let mut mine = Vec::new();
        dropped.retain(|(p, link, id)| {
            // A parent's drops, inherited through fork, are not ours.
            if *p != pid {
                return false;
            }
            if link == self && mine.len() < MAX_BATCH - 1 {
                mine.push(*id);
                return false;
            }
            true
        });
        mine
    }

    fn call_alone(
        &self,
        request: &Request,
        timeout: Option<Duration>,
    ) -> Result<Reply, ManagerError> {
        let started = Instant::now();
        let left = || timeout.map(|t| t.saturating_sub(started.elapsed()));
        let (open, cached) = self.take_connection(left())?;
        match self.exchange(open, request, left) {
            // A kept connection the manager closed while we were away (its
            // idle timeout) was closed before our request arrived: ask once
            // more on a fresh one. If the manager is gone, that fails too.
            Err(ManagerError::Disconnected) if cached => {
                let open = match self.take_connection(left()) {
                    Ok((open, _)) => open,
                    // A manager being killed may still take the connection
                    // and then close it: gone, as the first try said.
                    Err(ManagerError::Auth(crate::net::AuthError::Disconnected)) => {
                        return Err(ManagerError::Disconnected)
                    }
                    Err(e) => return Err(e),
                };
                self.exchange(open, request, left)
            }
            outcome => outcome,
        }
    }

    fn exchange(
        &self,
        mut open: Open,
        request: &Request,
        left: impl Fn() -> Option<Duration>,
    ) -> Result<Reply, ManagerError> {
        let sealed = match open.lane {
            Some(_) => large_value(request),
            None => None,
        };
        let reply = match (sealed, open.lane.as_mut()) {
            // A large value goes beside the lane in a sealed memfd, which
            // the manager keeps as it is.
            (Some(sealed), Some(lane)) => {
                let max = open.conn.max_frame_size();
                let bytes = sealed_request(sealed, max, |value| lane.send_sealed(value))?;
                lane.send(&bytes, left()).map_err(lane_error)?;
                let out = &mut open.reply_bytes;
                lane.receive(out, left()).map_err(lane_error)?;
                lane_reply(lane, &mut open.conn, out, &open.budget, &left)?
            }
            _ => self.exchange_unsealed(&mut open, request, &left)?,
        };
        // Only a connection whose last reply came back in full is kept.
        self.put_back(open);
        match reply {
            Reply::Error(why) => Err(ManagerError::Server(why)),
            Reply::OverBudget(why) => Err(ManagerError::OverBudget(why)),
            reply => Ok(reply),
        }
    }

    /// A request without a large value, or on a connection without a
    /// lane: its reply.
    fn exchange_unsealed(
        &self,
        open: &mut Open,
        request: &Request,
        left: &impl Fn() -> Option<Duration>,
    ) -> Result<Reply, ManagerError> {
        Ok(match (split_large_value(request), open.lane.as_mut()) {
            // A large value goes on the socket behind its request's first
            // bytes, as it is: not copied into the request's encoding.
            (Some((head, value)), _) => {
                open.conn
                    .send_bytes_in_two(&head, value, left())
                    .map_err(send_timeout_error)?;
                socket_reply(&mut open.conn, &open.budget, &left)?
            }
            (None, Some(lane)) => {
                let mut bytes = std::mem::take(&mut open.request_bytes);
                bytes.clear();
                let bytes = postcard::to_extend(request, bytes)
                    .map_err(|e| ManagerError::Encode(e.to_string()))?;
                match lane.send(&bytes, left()) {
                    Ok(()) => {
                        open.request_bytes = bytes;
                        let out = &mut open.reply_bytes;
                        lane.receive(out, left()).map_err(lane_error)?;
                        lane_reply(lane, &mut open.conn, out, &open.budget, left)?
                    }
                    // Too big for the ring: the socket carries it, as
                    // encoded already (a frame's payload is the request's
                    // postcard bytes either way; no second 100 MB copy).
                    Err(LaneError::TooLarge) => {
                        match left() {
                            None => open.conn.send_bytes(&bytes).map_err(send_error),
                            Some(t) => open
                                .conn
                                .send_bytes_timeout(&bytes, t)
                                .map_err(send_timeout_error),
                        }?;
                        drop(bytes);
                        socket_reply(&mut open.conn, &open.budget, &left)?
                    }
                    Err(e) => return Err(lane_error(e)),
                }
            }
            (None, None) => socket_exchange(&mut open.conn, &open.budget, request, left)?,
        })
    }

    /// A connection, and whether it was kept from an earlier call.
    fn take_connection(&self, timeout: Option<Duration>) -> Result<(Open, bool), ManagerError> {
        let pid = crate::os::thread_id::process_id();
        if let Some(open) = take_kept(self) {
            if open.pid == pid {
                return Ok((open, true));
            }
            release(open, pid);
        }
        close_stale_connections();
        let (conn, lane) = self.open(timeout)?;
        Ok((
            Open {
                link: self.clone(),
                pid,
                conn,
                lane,
                budget: SpinBudget::default(),
                request_bytes: Vec::new(),
                reply_bytes: Vec::new(),
            },
            false,
        ))
    }

    /// A new connection to the manager (see [`connect`](Self::connect)),
    /// with a fast lane when the manager is on this machine.
    pub(super) fn open(
        &self,
        timeout: Option<Duration>,
    ) -> Result<(Connection, Option<ClientLane>), ManagerError> {
        let (address, mut conn) = self.connect(timeout)?;
        let lane = match address {
            Address::Unix(_) | Address::Abstract(_) => open_lane(&mut conn)?,
            Address::Tcp(_) => None,
        };
        Ok((conn, lane))
    }

    /// A new connection to the manager, authenticated and announced as
    /// this process's, within `timeout` (`None`: the handshake's own).
    pub(super) fn connect(
        &self,
        timeout: Option<Duration>,
    ) -> Result<(Address, Connection), ManagerError> {
        let address: Address = self
            .address
            .parse()
            .map_err(|e: net::BadAddress| ManagerError::Server(e.to_string()))?;
        let timeout = timeout.unwrap_or(net::HANDSHAKE_TIMEOUT);
        let mut conn = net::connect_timeout(&address, &self.key, timeout).map_err(|e| match e {
            // A manager that does not answer (stopped, or swamped) is late,
            // not a stranger: the same error as a call that waits too long.
            NetError::Timeout(_) | NetError::Auth(net::AuthError::Timeout(_)) => {
                ManagerError::Timeout
            }
            NetError::Auth(auth) => ManagerError::Auth(auth),
            NetError::Io(e) if out_of_descriptors(&e) => ManagerError::Local(e),
            // No socket, or nobody behind it: the manager is gone.
            NetError::Io(_) => ManagerError::Disconnected,
        })?;
        announce(&mut conn)?;
        Ok((address, conn))
    }

    fn put_back(&self, mut open: Open) {
        for buffer in [&mut open.request_bytes, &mut open.reply_bytes] {
            if buffer.capacity() > BUFFER_KEPT {
                *buffer = Vec::new();
            }
        }
        CONNECTIONS.with(|c| c.borrow_mut().push(open));
    }
}

/// Values at least this large travel apart from their request's first
/// bytes (far more than a lane carries: they go on the socket anyway).
const LARGE_VALUE: usize = 1 << 20;

/// A request that brings a large value to store (a set, an append, an
/// insert, a set at an index, a queue's put): its object, its op with the
/// value left out, and the value.
pub(super) fn large_value(request: &Request) -> Option<(u64, Op, &Payload)> {
    let Request::On { id, op } = request else {
        return None;
    };
    let value = op.value()?;
    // (Looked at first: a small value's call made no shell, no copy of
    // its key.)
    if value.len() < LARGE_VALUE {
        return None;
    }
    Some((*id, op.without_value()?, value))
}

/// A request that ends with a large value (a set, an append, an insert,
/// a set at an index): its encoding up to the value, the value's length
/// included, and the value. The two together are exactly the request's
/// encoding (postcard writes a value last as its length then its bytes).
pub(super) fn split_large_value(request: &Request) -> Option<(Vec<u8>, &[u8])> {
    let (id, shell, value) = large_value(request)?;
    // A put's value is not last: it is encoded with its request.
    if matches!(shell, Op::Put(..)) {
        return None;
    }
    let mut head = postcard::to_allocvec(&Request::On { id, op: shell }).ok()?;
    // The empty value was written last: its length, a single zero.
    if head.pop() != Some(0) {
        return None;
    }
    crate::codec::write_varint(value.len() as u64, &mut head);
    Some((head, value))
}

/// Tells the manager which process this connection belongs to.
fn announce(conn: &mut Connection) -> Result<(), ManagerError> {
    conn.send_timeout(&Request::Owner(process_token()), LANE_TIMEOUT)
        .map_err(send_timeout_error)?;
    match conn
        .recv_timeout::<Reply>(LANE_TIMEOUT)
        .map_err(recv_timeout_error)?
    {
        // A request over the server's largest frame is refused here, in
        // words, instead of dropping the connection there. Never above this
        // end's own cap: the same number bounds the replies it takes, and
        // a server may not raise what a client holds for it by announcing.
        Reply::Len(max_frame) => {
            let theirs = usize::try_from(max_frame).unwrap_or(usize::MAX);
            conn.set_max_frame_size(theirs.min(conn.max_frame_size()));
            Ok(())
        }
        Reply::Error(why) => Err(ManagerError::Server(why)),
        other => Err(ManagerError::Protocol(format!("{other:?}"))),
    }
}

/// Asks a local manager for a fast lane; `None` if it has none to give.
fn open_lane(conn: &mut Connection) -> Result<Option<ClientLane>, ManagerError> {
    conn.send_timeout(&Request::OpenLane, LANE_TIMEOUT)
        .map_err(send_timeout_error)?;
    let (bytes, fds) = conn
        .recv_bytes_with_fds(LANE_TIMEOUT)
        .map_err(recv_timeout_error)?;
    match postcard::from_bytes::<Reply>(&bytes) {
        Ok(Reply::Lane(encoded)) => {
            let lane = crate::handle::providing_handles(fds, || {
                postcard::from_bytes::<ClientLane>(&encoded)
            });
            lane.map(|lane| Some(lane.for_client()))
                .map_err(|e| ManagerError::Protocol(format!("a lane that does not decode: {e}")))
        }
        Ok(_) => Ok(None),
        Err(e) => Err(ManagerError::Protocol(e.to_string())),
    }
}

/// One request and its reply over the socket.
fn socket_exchange(
    conn: &mut Connection,
    budget: &SpinBudget,
    request: &Request,
    left: &impl Fn() -> Option<Duration>,
) -> Result<Reply, ManagerError> {
    match left() {
        None => conn.send(request).map_err(send_error),
        Some(t) => conn.send_timeout(request, t).map_err(send_timeout_error),
    }?;
    socket_reply(conn, budget, left)
}

/// The reply on the socket: looked for a moment, then waited for.
fn socket_reply(
    conn: &mut Connection,
    budget: &SpinBudget,
    left: &impl Fn() -> Option<Duration>,
) -> Result<Reply, ManagerError> {
    match spin_for_reply(conn, budget)? {
        Some(reply) => Ok(reply),
        None => match left() {
            None => conn.recv::<Reply>().map_err(recv_error),
            Some(t) => conn.recv_timeout::<Reply>(t).map_err(recv_timeout_error),
        },
    }
}

/// A large value handed over beside a lane (by `hand_over`), and the
/// request that announces it (`OnSealed`), encoded; a value over the
/// manager's largest frame `max` is refused first, with nothing sent.
pub(super) fn sealed_request(
    (id, op, value): (u64, Op, &Payload),
    max: usize,
    hand_over: impl FnOnce(&Payload) -> Result<(), SpillError>,
) -> Result<Vec<u8>, ManagerError> {
    if value.len() > max {
        return Err(ManagerError::TooLarge {
            len: value.len(),
            max,
        });
    }
    hand_over(value).map_err(sealed_error)?;
    let len = value.len() as u64;
    postcard::to_allocvec(&Request::OnSealed { id, op, len })
        .map_err(|e| ManagerError::Encode(e.to_string()))
}

/// A reply read off the lane: one that did not fit follows on the
/// socket, a large value comes sealed beside the lane.
fn lane_reply(
    lane: &ClientLane,
    conn: &mut Connection,
    out: &[u8],
    budget: &SpinBudget,
    left: &impl Fn() -> Option<Duration>,
) -> Result<Reply, ManagerError> {
    match postcard::from_bytes::<Reply>(out) {
        Ok(Reply::OnSocket) => socket_reply(conn, budget, left),
        Ok(Reply::SealedValue(len)) => sealed_reply(lane, len, conn.max_frame_size()),
        Ok(Reply::SealedReply(len)) => sealed_whole_reply(lane, len, conn.max_frame_size()),
        Ok(reply) => Ok(reply),
        Err(e) => Err(ManagerError::Protocol(e.to_string())),
    }
}

/// The reply a `Reply::SealedReply(len)` announced: its encoding taken
/// from beside the lane (checked: sealed, that size, at most `max`) and
/// decoded where it lies.
pub(super) fn sealed_whole_reply(
    lane: &ClientLane,
    len: u64,
    max: usize,
) -> Result<Reply, ManagerError> {
    let sealed = lane
        .take_sealed(len, max as u64)
        .map_err(|e| ManagerError::Protocol(format!("a sealed reply: {e}")))?;
    match postcard::from_bytes::<Reply>(&sealed) {
        Ok(Reply::OnSocket | Reply::SealedValue(_) | Reply::SealedReply(_)) => Err(
            ManagerError::Protocol("a sealed reply that points elsewhere".into()),
        ),
        Ok(reply) => Ok(reply),
        Err(e) => Err(ManagerError::Protocol(format!("a sealed reply: {e}"))),
    }
}

/// The value a `Reply::SealedValue(len)` announced: taken from beside the
/// lane (checked: sealed, that size, at most `max`) and mapped.
pub(super) fn sealed_reply(lane: &ClientLane, len: u64, max: usize) -> Result<Reply, ManagerError> {
    let value = lane
        .take_sealed(len, max as u64)
        .map_err(|e| ManagerError::Protocol(format!("a sealed value: {e}")))?;
    Ok(Reply::Value(Some(Payload::Sealed(Arc::new(value)))))
}

/// Why a large value could not be handed over sealed.
pub(super) fn sealed_error(e: SpillError) -> ManagerError {
    match e {
        SpillError::Disconnected => ManagerError::Disconnected,
        SpillError::Io(e) => ManagerError::Local(e),
        other => ManagerError::Protocol(other.to_string()),
    }
}

pub(super) fn lane_error(e: LaneError) -> ManagerError {
    match e {
        LaneError::Timeout => ManagerError::Timeout,
        LaneError::Gone => ManagerError::Disconnected,
        LaneError::TooLarge => ManagerError::Encode("too large for the lane".into()),
        LaneError::Broken(why) => ManagerError::Protocol(why),
    }
}

/// The longest a caller looks for its reply on the socket before it
/// sleeps: a sleeping process takes tens of microseconds to wake on a busy
/// VM, while the manager usually answers in a few. Each look yields the
/// CPU, so with more clients than cores the waiting ones let the server
/// (and the clients it answered) run: 4 clients went from 0.45x one
/// client's rate with a pure spin to 1.2x. Within it, as long as recent
/// replies say pays; not at all while the CPUs are oversubscribed.
const SPIN: Duration = Duration::from_micros(200);

/// The reply, if it comes within what `budget` allows of [`SPIN`].
fn spin_for_reply(
    conn: &mut Connection,
    budget: &SpinBudget,
) -> Result<Option<Reply>, ManagerError> {
    let started = Instant::now();
    let spin = budget.limit(SPIN);
    loop {
        match conn.try_recv::<Reply>() {
            Ok(reply) => {
                budget.record(started.elapsed());
                return Ok(Some(reply));
            }
            Err(crate::pipe::TryRecvError::Empty) if started.elapsed() < spin => {
                std::thread::yield_now()
            }
            Err(crate::pipe::TryRecvError::Empty) => {
                // Counted as a long wait: the sleep that follows is.
                budget.record(SPIN * 2);
                return Ok(None);
            }
            Err(crate::pipe::TryRecvError::Recv(e)) => return Err(recv_error(e)),
        }
    }
}

pub(super) fn send_error(e: SendError) -> ManagerError {
    match e {
        SendError::Disconnected => ManagerError::Disconnected,
        SendError::Encode(crate::codec::EncodeError::TooLarge { len, max }) => {
            ManagerError::TooLarge { len, max }
        }
        other => ManagerError::Encode(other.to_string()),
    }
}

fn send_timeout_error(e: SendTimeoutError) -> ManagerError {
    match e {
        SendTimeoutError::Timeout => ManagerError::Timeout,
        SendTimeoutError::Send(e) => send_error(e),
    }
}

/// Whether `e` is this process (or the system) out of descriptors.
fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

pub(super) fn recv_error(e: RecvError) -> ManagerError {
    match e {
        RecvError::Disconnected => ManagerError::Disconnected,
        RecvError::Io(e) if out_of_descriptors(&e) => ManagerError::Local(e),
        other => ManagerError::Protocol(other.to_string()),
    }
}

fn recv_timeout_error(e: RecvTimeoutError) -> ManagerError {
    match e {
        RecvTimeoutError::Timeout => ManagerError::Timeout,
        RecvTimeoutError::Recv(e) => recv_error(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server that knows the key but announces the largest frame there is,
    /// then answers with a header of 1.5 GiB: the client holds it to its own
    /// cap and refuses the header at once, typed. It used to take the
    /// server's word, and waited to read all 1.5 GiB.
    #[test]
    fn a_server_cannot_announce_a_client_past_its_own_cap() {
        use std::os::fd::AsRawFd;
        const KEY: &[u8] = b"hostile";
        let listener = net::Listener::bind(&"127.0.0.1:0".parse().expect("an address"), KEY)
            .expect("a listener");
        let address = listener.address().to_string();
        let server = std::thread::spawn(move || {
            let mut conn = listener.accept().expect("the client");
            let answer = |conn: &mut Connection, reply: &Reply| {
                let _request: Request = conn.recv_timeout(LANE_TIMEOUT).expect("a request");
                conn.send_timeout(reply, LANE_TIMEOUT).expect("the reply");
            };
            answer(&mut conn, &Reply::Len(u64::MAX));
            answer(&mut conn, &Reply::Batch(Vec::new()));
            let _request: Request = conn.recv_timeout(LANE_TIMEOUT).expect("a request");
            let header = (3u32 << 29).to_le_bytes();
            // SAFETY: writes 4 bytes from a live array to a socket we own.
            let written = unsafe { libc::write(conn.as_raw_fd(), header.as_ptr().cast(), 4) };
            assert_eq!(written, 4);
            // Long enough that a client reading the frame waits for it; then
            // the client's end closes, and so does this one.
            let mut rest = [0u8; 64];
            // SAFETY: reads into a live buffer from a socket we own.
            unsafe { libc::read(conn.as_raw_fd(), rest.as_mut_ptr().cast(), rest.len()) };
        });
        let link = Link {
            address,
            key: KEY.to_vec(),
        };
        match link.call(&Request::Batch(Vec::new()), Some(LANE_TIMEOUT)) {
            Ok(Reply::Batch(_)) => {}
            other => panic!("the handshake's batch: {other:?}"),
        }
        let outcome = link.call(&Request::Objects, Some(Duration::from_secs(10)));
        forget(&link);
        server.join().expect("the server");
        match outcome {
            Err(ManagerError::Protocol(why)) => {
                assert!(
                    why.contains("above the maximum frame size of 1073741824"),
                    "{why}"
                )
            }
            other => panic!("a 1.5 GiB header gave {other:?}"),
        }
    }

    #[test]
    fn a_large_value_split_off_its_request_is_the_requests_encoding() {
        let value: Vec<u8> = (0..(3 << 20)).map(|i: u32| (i % 251) as u8).collect();
        let ops = [
            Op::Set(b"key".to_vec(), value.clone().into()),
            Op::Append(value.clone().into()),
            Op::Insert(u64::MAX, value.clone().into()),
            Op::SetAt(300, value.clone().into()),
        ];
        for op in ops {
            let request = Request::On { id: 1 << 40, op };
            let (head, tail) = split_large_value(&request).expect("split");
            assert_eq!(
                [head.as_slice(), tail].concat(),
                postcard::to_allocvec(&request).unwrap(),
                "{:?}",
                &head
            );
        }
        // Small values, and other requests, go whole.
        let small = Request::On {
            id: 1,
            op: Op::Append(vec![1; 1000].into()),
        };
        assert!(split_large_value(&small).is_none());
        // A put's value is not last: it is encoded with its request.
        let put = Request::On {
            id: 1,
            op: Op::Put(value.into(), None),
        };
        assert!(split_large_value(&put).is_none());
        assert!(large_value(&put).is_some());
        assert!(split_large_value(&Request::Objects).is_none());
    }
}
