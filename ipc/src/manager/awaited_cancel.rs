//! What becomes of a waiting awaited call (a manager queue's `get_async`)
//! dropped while it waits: the drop tells the manager at once (`Cancel`,
//! sent without waiting, the way the request went) and leaves its
//! connection idle, marked; one thread of ours, started when the first
//! such connection is left and ended once none has come for a second,
//! reads each marked connection's two replies (the call's, then the
//! cancel's `Done`), gives back an item the manager had already sent
//! (`Unget`, to the front of its queue) or a lock the connection holds
//! (`Release`: one an awaited acquire took as it was dropped, or a
//! condition's lock that a dropped wait took back), and unmarks the
//! connection for the next waiting call.
//!
//! One thread for them all, not one per drop: a consumer that waits for
//! an item in `select!` beside a timer of a few hundred microseconds
//! drops a get at every turn (a probe did 500,000 in a minute), and a
//! thread and a connection per drop flooded the manager with handshakes.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::task::{Context, Waker};
use std::time::{Duration, Instant};

use super::awaited::{keep_idle, take_waiting_idle, with_pool, Channel, Kept, Undo};
use super::client::{lane_error, recv_error, send_error};
use super::lane::LaneError;
use super::protocol::{Op, Reply, Request};
use super::ManagerError;
use crate::off_thread::Unpark;

/// How long our thread waits for the manager to answer one connection's
/// cancel before it closes that connection (which ends the wait too).
const PATIENCE: Duration = Duration::from_secs(30);

/// How long the thread stays with nothing to read before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(1);

/// Whether the thread runs, and whether a connection was marked since it
/// last looked.
struct Janitor {
    /// The process whose thread it runs in (a forked child's copy says
    /// running, of a thread the child does not have).
    pid: u32,
    running: bool,
    marked: bool,
    /// The thread, to unpark while it reads other connections.
    thread: Option<std::thread::Thread>,
}

static JANITOR: Mutex<Janitor> = Mutex::new(Janitor {
    pid: 0,
    running: false,
    marked: false,
    thread: None,
});
static MARKED: Condvar = Condvar::new();

/// A connection was marked cancelled: our thread reads it (started if it
/// does not run). If no thread can start, the connection stays marked,
/// unused, until the next mark starts one.
pub(super) fn wake() {
    let mut janitor = JANITOR.lock().unwrap_or_else(PoisonError::into_inner);
    janitor.marked = true;
    let pid = crate::os::thread_id::process_id();
    if janitor.pid != pid {
        janitor.pid = pid;
        janitor.running = false;
    }
    if janitor.running {
        // Asleep with nothing to read, or parked while it reads others.
        MARKED.notify_one();
        if let Some(thread) = &janitor.thread {
            thread.unpark();
        }
        return;
    }
    let started = std::thread::Builder::new()
        .name("outlast-cancel".into())
        .spawn(run);
    janitor.running = started.is_ok();
    janitor.thread = started.ok().map(|handle| handle.thread().clone());
}

/// A marked connection being read, and when our thread gives up on it.
type Settling = (Instant, Pin<Box<dyn Future<Output = ()>>>);

/// The thread: reads every marked connection, each for at most
/// [`PATIENCE`], taking in connections marked meanwhile (a dropped
/// condition wait may wait long for its lock; the gets dropped after it
/// give back their items at once), until none has come for [`IDLE_EXIT`].
fn run() {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut settling: Vec<Settling> = Vec::new();
    loop {
        let now = Instant::now();
        for (link, kept) in take_waiting_idle(|k| k.cancelled.is_some()) {
            let read = async move {
                // Unread in time, or out of step: closed.
                if let Some(kept) = settle(kept).await {
                    with_pool(&link, |pool| keep_idle(pool, kept));
                }
            };
            settling.push((now + PATIENCE, Box::pin(read)));
        }
        if settling.is_empty() {
            let mut janitor = JANITOR.lock().unwrap_or_else(PoisonError::into_inner);
            if !janitor.marked {
                janitor = MARKED
                    .wait_timeout(janitor, IDLE_EXIT)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                if !janitor.marked {
                    janitor.running = false;
                    janitor.thread = None;
                    return;
                }
            }
            janitor.marked = false;
            continue;
        }
        // Done, or past its time (dropped: its connection closes, which
        // ends the wait on the manager's side too).
        settling
            .retain_mut(|(until, read)| read.as_mut().poll(&mut cx).is_pending() && *until > now);
        if let Some(first) = settling.iter().map(|(until, _)| *until).min() {
            // A wake, or a mark, before the park leaves its token.
            std::thread::park_timeout(first.saturating_duration_since(now));
        }
    }
}

/// Reads a cancelled call's reply and its cancel's, and gives back what
/// the reply had taken; the connection, unmarked, if still in step.
async fn settle(mut kept: Kept) -> Option<Kept> {
    let (channel, undo) = kept.cancelled?;
    let first = kept.next_reply(channel).await.ok()?;
    if kept.next_reply(channel).await.ok()? != Reply::Done {
        return None;
    }
    // (A reply other than `Done` closes the connection, which gives back
    // what it holds, as a dead holder's.)
    match (undo, first) {
        (Undo::Unget(id), Reply::Value(Some(item))) => {
            kept.on(id, Op::Unget(item.into_vec())).await?;
        }
        (Undo::Release(id), Reply::Acquired { .. } | Reply::Notified { .. } | Reply::Done) => {
            kept.release(id).await?
        }
        (Undo::PassOnAndRelease(id), Reply::Notified { notified, .. }) => {
            if notified {
                kept.on(id, Op::Notify(1)).await?;
            }
            kept.release(id).await?;
        }
        _ => {}
    }
    kept.cancelled = None;
    Some(kept)
}

impl Kept {
    /// Tells the manager that the call waiting on this connection was
    /// dropped, the way its request went, without waiting; false if it
    /// could not (the connection is to be closed, which ends the wait too).
    pub(super) fn send_cancel(&mut self, channel: Channel) -> bool {
        match (channel, &mut self.lane) {
            (Channel::Lane, Some(lane)) => {
                postcard::to_allocvec(&Request::Cancel).is_ok_and(|bytes| lane.send(&bytes).is_ok())
            }
            _ => self
                .conn
                .send_timeout(&Request::Cancel, Duration::ZERO)
                .is_ok(),
        }
    }

    /// Sends `request`, a small one, without waiting (from a drop): the
    /// way it went, or `None` if it could not go (the connection is to
    /// be closed). On the lane first: its reply is read whole or not at
    /// all, so a next call dropped while it reads that reply keeps the
    /// connection (one dropped mid-frame on the socket closes it). A close
    /// that may follow (a pool with enough idle connections) loses nothing:
    /// the manager answers what a gone client sent before it went.
    pub(super) fn send_now(&mut self, request: &Request) -> Option<Channel> {
        let bytes = postcard::to_allocvec(request).ok()?;
        if let Some(lane) = self.lane.as_mut() {
            if lane.send(&bytes).is_ok() {
                return Some(Channel::Lane);
            }
        }
        self.conn
            .send_bytes_timeout(&bytes, Duration::ZERO)
            .ok()
            .map(|()| Channel::Socket)
    }

    /// The next reply that comes the way `channel` says (on the lane, one
    /// too large for it comes on the socket).
    async fn next_reply(&mut self, channel: Channel) -> Result<Reply, ManagerError> {
        if let (Channel::Lane, Some(lane)) = (channel, &mut self.lane) {
            let mut out = Vec::new();
            lane.reply(&mut out).await?;
            match lane.decode(&out, self.conn.max_frame_size())? {
                Reply::OnSocket => {}
                reply => return Ok(reply),
            }
        }
        self.conn.recv_async::<Reply>().await.map_err(recv_error)
    }

    /// `op` on object `id` (an `Unget` of an item this connection took,
    /// a `Notify` or `Release` by the holder); `None` unless `Done`.
    async fn on(&mut self, id: u64, op: Op) -> Option<()> {
        let reply = self.exchange_now(&Request::On { id, op }).await;
        (reply.ok()? == Reply::Done).then_some(())
    }

    /// Gives back lock, semaphore unit or condition `id`, which this
    /// connection holds.
    async fn release(&mut self, id: u64) -> Option<()> {
        self.on(id, Op::Release).await
    }

    /// Sends `request` and awaits its reply.
    async fn exchange_now(&mut self, request: &Request) -> Result<Reply, ManagerError> {
        let bytes =
            postcard::to_allocvec(request).map_err(|e| ManagerError::Encode(e.to_string()))?;
        let channel = match self.lane.as_mut().map(|lane| lane.send(&bytes)) {
            Some(Ok(())) => Channel::Lane,
            Some(Err(LaneError::TooLarge)) | None => {
                self.conn
                    .send_bytes_async(&bytes)
                    .await
                    .map_err(send_error)?;
                Channel::Socket
            }
            Some(Err(e)) => return Err(lane_error(e)),
        };
        self.next_reply(channel).await
    }
}
