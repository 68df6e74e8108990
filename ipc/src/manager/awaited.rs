//! Awaited calls to a manager (`Dict::get_async`, `List::append_async`,
//! ...): a request and its reply as a `std::future::Future`, for any
//! executor, so a proxy's call does not hold an executor's thread for a
//! round trip (over TCP, a network's).
//!
//! A blocking call uses its thread's connection; a future may move
//! between threads, so awaited calls have connections of their own, kept
//! for the whole process and lent to one call at a time. A local
//! manager's have a fast lane (see [`super::awaited_lane`]), which
//! carries what fits it; the socket carries the rest, and a TCP
//! manager's everything. They carry only requests that do not wait on the
//! server (no queue's get, no lock's acquire), so such a connection never
//! holds a lock or a waiting request. A new one is opened (authenticated,
//! announced, its lane received) on a thread of ours, not the executor's.
//!
//! Cancel-safe: a call dropped before it sent anything has done nothing;
//! dropped once its request is out, the request is carried out and its
//! reply is read and dropped by the connection's next call (the manager
//! answers in order); dropped in the middle of sending, its connection is
//! closed (the manager frees nothing: a connection of these holds
//! nothing).
//!
//! Calls that wait on the server (a manager queue's `get_async` and
//! `put_async`, a joinable queue's `join_async`, an event's, a barrier's
//! and a condition's waits, an acquire) have connections of their own,
//! one per call waiting at the manager (the capped ones stay free for the
//! calls that would end those waits). Acquires, untimed gets and untimed
//! puts wait at the manager at most eight at a time per object, the rest in line
//! here (see [`super::awaited_gate`]): a thousand tasks waiting for one
//! queue's items hold eight connections, not a thousand. A process's waits
//! on one event, and its joins of one joinable queue, share one wait (see
//! [`super::awaited_round`]). Such
//! a call dropped while it waits tells the manager at once (`Cancel`, on
//! the way its request went, never waiting to send it); a thread of ours
//! then reads both replies, and an item the manager had already sent
//! goes back to the front of its queue (`Unget`): a dropped get loses no
//! item.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::awaited_lane::AwaitedLane;
use super::client::{
    batchable, decrefs, lane_error, large_value, last_of_batch, recv_error, sealed_request,
    send_error, split_large_value, Link,
};
use super::lane::LaneError;
use super::protocol::{Op, Reply, Request};
use super::{ManagerError, Payload};
use crate::off_thread::OffThread;
use crate::pipe::Connection;

/// The most connections one process keeps open to one manager for
/// awaited calls: a call past it waits for one to be free (a thousand
/// tasks each awaiting a `get` make sixteen connections, not a thousand).
const MAX_OPEN: usize = 16;

/// The most connections one process opens to one manager at once for
/// awaited calls: a hundred waiting gets started together opened a
/// hundred, and the manager, which keeps 64 handshakes under way at most,
/// dropped the oldest.
const MAX_OPENING: usize = 8;

/// What a waiting call's reply, come after the call was dropped, undoes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Undo {
    /// Nothing: what was done stays done (a put that went in).
    Nothing,
    /// An item taken from queue `id` goes back to its front.
    Unget(u64),
    /// Lock, semaphore or condition `id`, which the call's connection
    /// holds afterwards (it took it, took it back, or kept holding it),
    /// is released; not when the reply says it was not taken.
    Release(u64),
    /// Condition `id`'s lock, which the connection's dropped wait took
    /// back, is released, and a notify that wait received goes on to the
    /// next waiter first (nobody saw it: as in Python's asyncio).
    PassOnAndRelease(u64),
}

/// The way a request went, and its reply comes.
#[derive(Clone, Copy, Debug)]
pub(super) enum Channel {
    Lane,
    Socket,
}

/// An idle connection for awaited calls.
pub(super) struct Kept {
    pub conn: Connection,
    pub lane: Option<AwaitedLane>,
    /// Replies still to come for requests whose calls were dropped, on
    /// the lane and on the socket. (Any order between the two will do:
    /// each is read and dropped.)
    pub owed_on_lane: u32,
    pub owed_on_socket: u32,
    /// The waiting call it carried was dropped and the manager told: its
    /// reply and the cancel's are still to be read, the way the call's
    /// request went, and what the reply did undone (see `awaited_cancel`).
    pub cancelled: Option<(Channel, Undo)>,
}

impl Kept {
    /// Whether replies of dropped calls are still to come.
    fn owes(&self) -> bool {
        self.owed_on_lane > 0 || self.owed_on_socket > 0
    }

    /// Reads and drops the replies owed on the lane for dropped calls; one
    /// that did not fit the lane says so there, and is owed on the socket.
    /// Cancel-safe: a reply is taken whole, and counted at once.
    async fn settle_lane(&mut self) -> Result<(), ManagerError> {
        let mut out = Vec::new();
        let max = self.conn.max_frame_size();
        while self.owed_on_lane > 0 {
            let lane = self.lane.as_mut().ok_or(ManagerError::Disconnected)?;
            lane.reply(&mut out).await?;
            self.owed_on_lane -= 1;
            // (A sealed value is taken from beside the lane, and dropped.)
            if lane.decode(&out, max)? == Reply::OnSocket {
                self.owed_on_socket += 1;
            }
        }
        Ok(())
    }

    /// Reads and drops the replies owed on the socket (dropped meanwhile,
    /// the connection is closed: a frame may be half read).
    async fn settle_socket(&mut self) -> Result<(), ManagerError> {
        while self.owed_on_socket > 0 {
            self.conn.recv_bytes_async().await.map_err(recv_error)?;
            self.owed_on_socket -= 1;
        }
        Ok(())
    }
}

/// A manager's connections for awaited calls in this process.
#[derive(Default)]
pub(super) struct Pool {
    /// The process these belong to (a forked child starts afresh).
    pid: u32,
    idle: Vec<Kept>,
    /// Idle connections for calls that wait on the server (uncapped),
    /// cancelled ones among them until `awaited_cancel` has read them.
    pub waiting_idle: Vec<Kept>,
    /// Connections open or being opened, idle or lent: at most `MAX_OPEN`.
    open: usize,
    /// Connections being opened now: at most `MAX_OPENING`.
    opening: usize,
    /// Calls waiting for a connection to be free, or for their turn to
    /// open one.
    waiting: Vec<Waker>,
    /// Waiting calls in line for their turn at an object.
    pub gates: super::awaited_gate::Gates,
    /// The awaited waits on each event, and on each joinable queue's
    /// join (see `awaited_round`).
    pub rounds: HashMap<
        (u64, super::awaited_round::Until),
        std::sync::Arc<super::awaited_round::RoundWaits>,
    >,
}

impl Pool {
    /// Wakes the calls waiting: one of them may have a connection now
    /// (all, so that a dropped waiter cannot keep one from the others).
    fn wake_waiting(&mut self) {
        for waker in self.waiting.drain(..) {
            waker.wake();
        }
    }
}

/// The pools by manager.
static POOLS: Mutex<Option<HashMap<Link, Pool>>> = Mutex::new(None);

/// Keeps `k`, a waiting call's connection, idle for the next one; closes
/// it if [`MAX_OPEN`] are idle already (waits that many at once may come
/// again; more are opened as they come).
pub(super) fn keep_idle(pool: &mut Pool, k: Kept) {
    if pool.waiting_idle.len() < MAX_OPEN {
        pool.waiting_idle.push(k);
        pool.wake_waiting();
    }
}

/// Takes, from every manager's pool of this process, the connections
/// `pick` picks out of `waiting_idle`.
pub(super) fn take_waiting_idle(pick: impl Fn(&Kept) -> bool) -> Vec<(Link, Kept)> {
    let mut pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    let pid = crate::os::thread_id::process_id();
    let mut taken = Vec::new();
    for (link, pool) in pools.iter_mut().flat_map(|p| p.iter_mut()) {
        if pool.pid != pid {
            continue;
        }
        let mut at = 0;
        while let Some(k) = pool.waiting_idle.get(at) {
            match pick(k) {
                true => taken.push((link.clone(), pool.waiting_idle.swap_remove(at))),
                false => at += 1,
            }
        }
    }
    taken
}

/// `link`'s pool, under the pools' lock, made afresh in a new process.
pub(super) fn with_pool<R>(link: &Link, f: impl FnOnce(&mut Pool) -> R) -> R {
    // (Nothing is left half-done under this lock: a poisoned one is fine.)
    let mut pools = POOLS.lock().unwrap_or_else(PoisonError::into_inner);
    let pools = pools.get_or_insert_with(HashMap::new);
    // Looked up before it is made: a clone of the link (two allocations)
    // at every look was a good part of an awaited call's bookkeeping.
    let pool = match pools.get_mut(link) {
        Some(pool) => pool,
        None => pools.entry(link.clone()).or_default(),
    };
    let pid = crate::os::thread_id::process_id();
    if pool.pid != pid {
        // A parent's, inherited through fork: its descriptors are the
        // parent's to use.
        for k in pool.idle.drain(..).chain(pool.waiting_idle.drain(..)) {
            std::mem::forget(k);
        }
        *pool = Pool {
            pid,
            ..Pool::default()
        };
    }
    f(pool)
}

/// Lets go of the connections kept for `link`: its manager has ended.
pub(super) fn forget(link: &Link) {
    let gone = POOLS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .as_mut()
        .and_then(|pools| pools.remove(link));
    if let Some(mut pool) = gone {
        pool.wake_waiting();
        pool.gates.wake_all();
        if pool.pid != crate::os::thread_id::process_id() {
            for k in pool.idle.drain(..).chain(pool.waiting_idle.drain(..)) {
                std::mem::forget(k);
            }
        }
    }
}

/// One of a manager's open connections, counted until dropped (unless
/// its connection went back idle, still counted).
pub(super) struct Place<'a> {
    /// Borrowed from the proxy that made the call; owned by a guard that
    /// outlives its proxy (see `HeldAsync::into_owned`).
    pub link: std::borrow::Cow<'a, Link>,
    counted: bool,
}

impl Drop for Place<'_> {
    fn drop(&mut self) {
        if self.counted {
            with_pool(&self.link, |pool| {
                pool.open = pool.open.saturating_sub(1);
                pool.wake_waiting();
            });
        }
    }
}

/// How far a lent connection's call went: what its drop does with it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Progress {
    /// Nothing sent: kept as it was.
    Idle,
    /// A request in the middle of going out: closed.
    Sending,
    /// The request is out: kept, owing its reply on the lane.
    SentOnLane,
    /// The request is out (or its reply comes on the socket): kept, owing
    /// its reply on the socket.
    SentOnSocket,
    /// The connection failed: closed.
    Broken,
}

/// Where a request goes.
enum Route {
    /// Published on the lane.
    Lane,
    /// On the socket, encoded already (too large for the lane).
    Encoded(Vec<u8>),
    /// On the socket.
    Socket,
}

/// A connection lent to one awaited call, given back (or closed) when
/// the call ends or is dropped.
pub(super) struct Lease<'a> {
    pub place: Place<'a>,
    pub kept: Option<Kept>,
    pub progress: Progress,
    /// Kept from an earlier call (the manager may have closed it meanwhile).
    reused: bool,
    /// A call that may wait on the server, and what its reply undoes if
    /// the call is dropped: its connection is one of `waiting_idle`.
    pub waiting: Option<Undo>,
}

impl<'a> Lease<'a> {
    /// A lease of no connection: for a call that ended before it needed
    /// one (a timed wait whose time ran out in line). Dropped, it does
    /// nothing.
    pub fn none(link: &'a Link) -> Self {
        Lease {
            place: Place {
                link: std::borrow::Cow::Borrowed(link),
                counted: false,
            },
            kept: None,
            progress: Progress::Idle,
            reused: false,
            waiting: None,
        }
    }

    /// Sends `request` and awaits its reply, after the replies owed.
    pub async fn exchange(&mut self, request: &Request) -> Result<Reply, ManagerError> {
        let kept = self.kept.as_mut().ok_or(ManagerError::Disconnected)?;
        self.progress = Progress::Idle;
        if let Err(e) = kept.settle_lane().await {
            self.progress = Progress::Broken;
            return Err(e);
        }
        self.progress = Progress::Broken;
        kept.settle_socket().await?;
        self.progress = Progress::Idle;
        // What fits the lane goes there, a large value beside it, sealed;
        // the rest on the socket, a large value as it is, from where it
        // lies (a blocking call's choice).
        let large = split_large_value(request);
        let route = match (&mut kept.lane, large_value(request)) {
            (Some(lane), Some(sealed)) => match send_sealed(lane, sealed, &kept.conn) {
                Ok(()) => Route::Lane,
                Err(e) => {
                    self.progress = Progress::Broken;
                    return Err(e);
                }
            },
            (Some(lane), None) if large.is_none() => {
                let bytes = postcard::to_allocvec(request)
                    .map_err(|e| ManagerError::Encode(e.to_string()))?;
                match lane.send(&bytes) {
                    Ok(()) => Route::Lane,
                    Err(LaneError::TooLarge) => Route::Encoded(bytes),
                    Err(e) => {
                        self.progress = Progress::Broken;
                        return Err(lane_error(e));
                    }
                }
            }
            _ => Route::Socket,
        };
        let sent = match (route, &mut kept.lane) {
            (Route::Lane, Some(lane)) => {
                self.progress = Progress::SentOnLane;
                let mut out = Vec::new();
                if let Err(e) = lane.reply(&mut out).await {
                    self.progress = Progress::Broken;
                    return Err(e);
                }
                match lane.decode(&out, kept.conn.max_frame_size()) {
                    // Too large for the ring: it comes on the socket.
                    Ok(Reply::OnSocket) => Ok(()),
                    Ok(reply) => {
                        self.progress = Progress::Idle;
                        return Ok(reply);
                    }
                    Err(e) => {
                        self.progress = Progress::Broken;
                        return Err(e);
                    }
                }
            }
            (Route::Encoded(bytes), _) => {
                self.progress = Progress::Sending;
                kept.conn.send_bytes_async(&bytes).await.map_err(send_error)
            }
            _ => {
                self.progress = Progress::Sending;
                match &large {
                    Some((head, value)) => kept.conn.send_bytes_in_two_async(head, value).await,
                    None => kept.conn.send_async(request).await,
                }
                .map_err(send_error)
            }
        };
        if let Err(e) = sent {
            self.progress = Progress::Broken;
            return Err(e);
        }
        self.progress = Progress::SentOnSocket;
        let reply = kept.conn.recv_async::<Reply>().await;
        match reply {
            Ok(reply) => {
                self.progress = Progress::Idle;
                Ok(reply)
            }
            Err(e) => {
                self.progress = Progress::Broken;
                Err(recv_error(e))
            }
        }
    }
}

impl Lease<'_> {
    /// This lease, owning its manager's link rather than borrowing it
    /// from a proxy; this one is left empty (its drop does nothing).
    pub fn detach(&mut self) -> Lease<'static> {
        Lease {
            place: Place {
                link: std::borrow::Cow::Owned(self.place.link.clone().into_owned()),
                counted: std::mem::replace(&mut self.place.counted, false),
            },
            kept: self.kept.take(),
            progress: self.progress,
            reused: self.reused,
            waiting: self.waiting,
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(mut k) = self.kept.take() else {
            return;
        };
        if let Some(undo) = self.waiting {
            let channel = match self.progress {
                Progress::Idle => {
                    with_pool(&self.place.link, |pool| keep_idle(pool, k));
                    return;
                }
                // Closed: the manager lets go of the wait with it.
                Progress::Sending | Progress::Broken => return,
                Progress::SentOnLane => Channel::Lane,
                Progress::SentOnSocket => Channel::Socket,
            };
            // Told now, read by a thread of ours (or dropped: closed).
            if k.send_cancel(channel) {
                k.cancelled = Some((channel, undo));
                with_pool(&self.place.link, |pool| pool.waiting_idle.push(k));
                super::awaited_cancel::wake();
            }
            return;
        }
        match self.progress {
            // Closed: its place goes when `place` is dropped.
            Progress::Sending | Progress::Broken => return,
            Progress::SentOnLane => k.owed_on_lane += 1,
            Progress::SentOnSocket => k.owed_on_socket += 1,
            Progress::Idle => {}
        }
        with_pool(&self.place.link, |pool| {
            pool.idle.push(k);
            pool.wake_waiting();
        });
        self.place.counted = false;
    }
}

/// What a call found in the pool (moved once, at once: its size costs
/// nothing that a box would not).
#[allow(clippy::large_enum_variant)]
enum Found {
    Idle(Kept),
    /// A place for a new connection.
    Room,
    Full,
}

/// A connection for one awaited call: an idle one, or a new one opened on
/// a thread of ours, once fewer than [`MAX_OPEN`] are open.
async fn lease(link: &Link) -> Result<Lease<'_>, ManagerError> {
    loop {
        // The latest kept that owes nothing, else the latest.
        let found = with_pool(link, |pool| match pool.idle.pop() {
            Some(k) if k.owes() => {
                let clear = pool.idle.iter().rposition(|k| !k.owes());
                match clear {
                    Some(at) => {
                        let clear = pool.idle.swap_remove(at);
                        pool.idle.push(k);
                        Found::Idle(clear)
                    }
                    None => Found::Idle(k),
                }
            }
            Some(k) => Found::Idle(k),
            None if pool.open < MAX_OPEN => {
                pool.open += 1;
                Found::Room
            }
            None => Found::Full,
        });
        match found {
            Found::Idle(k) => {
                return Ok(Lease {
                    place: Place {
                        link: std::borrow::Cow::Borrowed(link),
                        counted: true,
                    },
                    kept: Some(k),
                    progress: Progress::Idle,
                    reused: true,
                    waiting: None,
                })
            }
            Found::Room => break,
            Found::Full => {
                std::future::poll_fn(|cx| {
                    with_pool(link, |pool| {
                        if !pool.idle.is_empty() || pool.open < MAX_OPEN {
                            return Poll::Ready(());
                        }
                        if !pool.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                            pool.waiting.push(cx.waker().clone());
                        }
                        Poll::Pending
                    })
                })
                .await
            }
        }
    }
    open(Place {
        link: std::borrow::Cow::Borrowed(link),
        counted: true,
    })
    .await
}

/// One connection being opened, counted until dropped (by the thread
/// that opens it: a future dropped meanwhile frees no turn).
struct Opening(Link);

impl Drop for Opening {
    fn drop(&mut self) {
        with_pool(&self.0, |pool| {
            pool.opening = pool.opening.saturating_sub(1);
            pool.wake_waiting();
        });
    }
}

/// A connection opened by a thread of ours: the call's that asked for it,
/// or, if that call was dropped meanwhile, the pool's (so a call dropped
/// at every turn while its connection opens, a `select!` beside a short
/// timer, does not open one a turn).
struct Opened {
    link: Link,
    kept: Option<Kept>,
    /// For a waiting call (else for the capped ones).
    waiting: bool,
}

impl Drop for Opened {
    fn drop(&mut self) {
        let Some(k) = self.kept.take() else {
            return;
        };
        with_pool(&self.link, |pool| {
            if self.waiting {
                keep_idle(pool, k);
                return;
            } else if pool.open < MAX_OPEN {
                pool.open += 1;
                pool.idle.push(k);
            } else {
                return;
            }
            pool.wake_waiting();
        });
    }
}

/// A new connection in `place`, opened on a thread of ours once fewer
/// than [`MAX_OPENING`] are being opened.
async fn open(place: Place<'_>) -> Result<Lease<'_>, ManagerError> {
    let link: &Link = &place.link;
    std::future::poll_fn(|cx| {
        with_pool(link, |pool| {
            if pool.opening < MAX_OPENING {
                pool.opening += 1;
                return Poll::Ready(());
            }
            if !pool.waiting.iter().any(|w| w.will_wake(cx.waker())) {
                pool.waiting.push(cx.waker().clone());
            }
            Poll::Pending
        })
    })
    .await;
    let opening = Opening(link.clone());
    // The waker of the first poll: the thread wakes the latest one.
    let waker = std::future::poll_fn(|cx| Poll::Ready(cx.waker().clone())).await;
    let waiting = !place.counted;
    let work = move || -> Result<Opened, ManagerError> {
        let (conn, lane) = opening.0.open(None)?;
        let lane = lane.map(AwaitedLane::new).transpose()?;
        Ok(Opened {
            link: opening.0.clone(),
            kept: Some(Kept {
                conn,
                lane,
                owed_on_lane: 0,
                owed_on_socket: 0,
                cancelled: None,
            }),
            waiting,
        })
    };
    let connecting =
        OffThread::spawn("outlast-connect", work, &waker).map_err(ManagerError::Local)?;
    let opened = std::future::poll_fn(|cx| connecting.poll(cx.waker())).await;
    let kept = opened
        .unwrap_or_else(|_| {
            Err(ManagerError::Protocol(
                "opening a connection panicked".into(),
            ))
        })?
        .kept
        .take();
    Ok(Lease {
        place,
        kept,
        progress: Progress::Idle,
        reused: false,
        waiting: None,
    })
}

impl Link {
    /// Sends `request` (one that does not wait on the server) and awaits
    /// its reply; proxies dropped since the last call go with it, as with
    /// [`call`](Self::call).
    pub(super) async fn call_async(&self, request: Request) -> Result<Reply, ManagerError> {
        let gone = self.take_dropped();
        if gone.is_empty() {
            return self.call_alone_async(&request).await;
        }
        let mut batch = decrefs(gone);
        if !batchable(&request) {
            let _ = self.call_alone_async(&Request::Batch(batch)).await;
            return self.call_alone_async(&request).await;
        }
        batch.push(request);
        last_of_batch(self.call_alone_async(&Request::Batch(batch)).await?)
    }

    async fn call_alone_async(&self, request: &Request) -> Result<Reply, ManagerError> {
        let_others_run().await;
        let mut lease = lease(self).await?;
        let reply = match lease.exchange(request).await {
            // A kept connection the manager closed while it was idle (its
            // idle timeout): once more on a fresh one. If the manager is
            // gone, that fails too.
            Err(ManagerError::Disconnected) if lease.reused => {
                drop(lease);
                lease = fresh(self).await.map_err(gone_again)?;
                lease.exchange(request).await
            }
            outcome => outcome,
        }?;
        refused_as_error(reply)
    }
}

/// A fresh connection's failure after a kept one found the manager gone:
/// a manager being killed may still take the connection and then close
/// it, gone as the first try said.
fn gone_again(e: ManagerError) -> ManagerError {
    match e {
        ManagerError::Auth(crate::net::AuthError::Disconnected) => ManagerError::Disconnected,
        e => e,
    }
}

/// A reply that refuses the call, as the error it is.
pub(super) fn refused_as_error(reply: Reply) -> Result<Reply, ManagerError> {
    match reply {
        Reply::Error(why) => Err(ManagerError::Server(why)),
        Reply::OverBudget(why) => Err(ManagerError::OverBudget(why)),
        reply => Ok(reply),
    }
}

impl Link {
    /// Sends `request`, one that may wait on the server, and awaits its
    /// reply on a connection of its own; dropped while it waits, the
    /// manager is told, and what its reply did is undone as `undo` says.
    pub(super) async fn call_waiting_async(
        &self,
        request: Request,
        undo: Undo,
    ) -> Result<Reply, ManagerError> {
        self.call_waiting_leased(request, undo)
            .await
            .map(|(reply, _)| reply)
    }

    /// [`call_waiting_async`](Self::call_waiting_async), with the
    /// connection it went on, for a call whose reply leaves that
    /// connection holding something (see `awaited_hold`).
    pub(super) async fn call_waiting_leased(
        &self,
        mut request: Request,
        undo: Undo,
    ) -> Result<(Reply, Lease<'_>), ManagerError> {
        use super::awaited_gate::{gated, timed_out, turn, with_time_left, Passage};
        let deadline = match &request {
            Request::On { op, .. } => given_up_at(op),
            _ => None,
        };
        let gone = self.take_dropped();
        if !gone.is_empty() {
            let _ = self.call_alone_async(&Request::Batch(decrefs(gone))).await;
        }
        // Held until the wait at the manager ends (not with a lock taken).
        let mut _turn = None;
        if let Some(gated) = gated(&request) {
            match turn(self, gated).await {
                Passage::Turn(t) => _turn = Some(t),
                // No connection: it holds nothing.
                Passage::TimedOut => return Ok((timed_out(), Lease::none(self))),
                Passage::Unlined => {}
            }
            if let Some(until) = gated.until {
                with_time_left(&mut request, until);
            }
        }
        let call = async {
            let_others_run().await;
            let mut lease = lease_waiting(self, undo).await?;
            let reply = match lease.exchange(&request).await {
                // As in `call_alone_async`: a kept connection closed meanwhile.
                Err(ManagerError::Disconnected) if lease.reused => {
                    drop(std::mem::replace(&mut lease, Lease::none(self)));
                    // The clean ones (a cancelled one holds what our thread
                    // is still to read and give back).
                    let idle = with_pool(self, |pool| {
                        let (cancelled, clean) = std::mem::take(&mut pool.waiting_idle)
                            .into_iter()
                            .partition(|k| k.cancelled.is_some());
                        pool.waiting_idle = cancelled;
                        clean
                    });
                    drop::<Vec<Kept>>(idle);
                    lease = lease_waiting(self, undo).await.map_err(gone_again)?;
                    lease.exchange(&request).await
                }
                outcome => outcome,
            }?;
            Ok((refused_as_error(reply)?, lease))
        };
        // Past the deadline the call is dropped as any awaited call is: the
        // manager is told, and what its reply held is undone.
        crate::watch::within(deadline, call)
            .await
            .unwrap_or(Err(ManagerError::Timeout))
    }
}

/// When an awaited timed wait stops waiting for the manager's answer: a
/// timed wait the manager keeps ends here too, its slack after (as a
/// blocking one does), since a manager that stopped (SIGSTOP) never
/// answers. `None` for a wait without end, or no wait.
pub(super) fn given_up_at(op: &Op) -> Option<Instant> {
    let ms = op.wait_of()??;
    Instant::now()
        .checked_add(Duration::from_millis(ms))?
        .checked_add(super::proxy::WAIT_SLACK)
}

/// Hands a large value over beside the lane, then publishes the request
/// that announces it (`OnSealed`): the value's memfd (its own, if it was
/// encoded into one) goes as it is, no copy of it on the executor's thread.
fn send_sealed(
    lane: &mut AwaitedLane,
    sealed: (u64, Op, &Payload),
    conn: &Connection,
) -> Result<(), ManagerError> {
    let bytes = sealed_request(sealed, conn.max_frame_size(), |value| {
        lane.send_sealed(value)
    })?;
    lane.send(&bytes).map_err(lane_error)
}

/// Before a call, nothing sent yet: gives the executor its thread back
/// once if this thread's futures have been ready for a while (see
/// [`crate::coop`]). A loop of awaited calls answered at once (a reply
/// within the lane's spin) held a current-thread runtime for 16 ms.
async fn let_others_run() {
    std::future::poll_fn(|cx| match crate::coop::yield_now_costly(cx) {
        true => Poll::Pending,
        false => Poll::Ready(()),
    })
    .await
}

/// A connection for one waiting call: an idle one of those, or a new one.
async fn lease_waiting(link: &Link, undo: Undo) -> Result<Lease<'_>, ManagerError> {
    let place = Place {
        link: std::borrow::Cow::Borrowed(link),
        counted: false,
    };
    // One not cancelled (a cancelled one is being read by our thread).
    let idle = with_pool(link, |pool| {
        let at = pool
            .waiting_idle
            .iter()
            .rposition(|k| k.cancelled.is_none())?;
        Some(pool.waiting_idle.swap_remove(at))
    });
    let mut lease = match idle {
        Some(k) => Lease {
            place,
            kept: Some(k),
            progress: Progress::Idle,
            reused: true,
            waiting: None,
        },
        None => open(place).await?,
    };
    lease.waiting = Some(undo);
    Ok(lease)
}

/// A new connection, never an idle one (those may all be closed by now).
async fn fresh(link: &Link) -> Result<Lease<'_>, ManagerError> {
    let idle = with_pool(link, |pool| {
        pool.open = pool.open.saturating_sub(pool.idle.len());
        std::mem::take(&mut pool.idle)
    });
    drop(idle);
    lease(link).await
}
