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

use std::sync::{Condvar, Mutex, PoisonError};
use std::time::Duration;

use super::awaited::{keep_idle, take_waiting_idle, with_pool, Channel, Kept, Undo};
use super::client::{lane_error, recv_error, send_error};
use super::lane::LaneError;
use super::protocol::{Op, Reply, Request};
use super::ManagerError;
use crate::off_thread::block_on_for;

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
}

static JANITOR: Mutex<Janitor> = Mutex::new(Janitor {
    pid: 0,
    running: false,
    marked: false,
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
        MARKED.notify_one();
        return;
    }
    let started = std::thread::Builder::new()
        .name("outlast-cancel".into())
        .spawn(run);
    janitor.running = started.is_ok();
}

/// The thread: reads every marked connection, until none has come for
/// [`IDLE_EXIT`].
fn run() {
    loop {
        let marked = take_waiting_idle(|k| k.cancelled.is_some());
        if marked.is_empty() {
            let mut janitor = JANITOR.lock().unwrap_or_else(PoisonError::into_inner);
            if !janitor.marked {
                janitor = MARKED
                    .wait_timeout(janitor, IDLE_EXIT)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                if !janitor.marked {
                    janitor.running = false;
                    return;
                }
            }
            janitor.marked = false;
            continue;
        }
        // All at once: each waits a round trip or so, and a consumer
        // dropping a get at every turn marks one each time.
        let settling = marked.into_iter().map(|(link, kept)| async move {
            // Unread in time, or out of step: closed.
            if let Some(kept) = settle(kept).await {
                with_pool(&link, |pool| keep_idle(pool, kept));
            }
        });
        block_on_for(join_all(settling.collect()), PATIENCE);
    }
}

/// Runs `futures` to their ends together.
async fn join_all<F: std::future::Future<Output = ()>>(futures: Vec<F>) {
    let mut futures: Vec<_> = futures.into_iter().map(Box::pin).map(Some).collect();
    std::future::poll_fn(|cx| {
        let mut left = false;
        for slot in &mut futures {
            if let Some(future) = slot {
                match future.as_mut().poll(cx) {
                    std::task::Poll::Ready(()) => *slot = None,
                    std::task::Poll::Pending => left = true,
                }
            }
        }
        match left {
            true => std::task::Poll::Pending,
            false => std::task::Poll::Ready(()),
        }
    })
    .await
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
    /// be closed). On the socket first, so that a close which may follow
    /// (a pool with enough idle connections) reaches the manager after it.
    pub(super) fn send_now(&mut self, request: &Request) -> Option<Channel> {
        let bytes = postcard::to_allocvec(request).ok()?;
        if self.conn.send_bytes_timeout(&bytes, Duration::ZERO).is_ok() {
            return Some(Channel::Socket);
        }
        let lane = self.lane.as_mut()?;
        lane.send(&bytes).ok().map(|()| Channel::Lane)
    }

    /// The next reply that comes the way `channel` says (on the lane, one
    /// too large for it comes on the socket).
    async fn next_reply(&mut self, channel: Channel) -> Result<Reply, ManagerError> {
        if let (Channel::Lane, Some(lane)) = (channel, &mut self.lane) {
            let mut out = Vec::new();
            lane.reply(&mut out).await?;
            match postcard::from_bytes::<Reply>(&out) {
                Ok(Reply::OnSocket) => {}
                Ok(reply) => return Ok(reply),
                Err(e) => return Err(ManagerError::Protocol(e.to_string())),
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
