//! A manager lock, semaphore unit or condition's lock taken by an awaited
//! call: held by the connection that took it (the manager knows holders
//! by connection), so that connection stays with the guard until it is
//! released. A future may move between threads, so a thread's blocking
//! connection cannot be the holder; each awaited acquire leases one of
//! the waiting calls' connections (see [`super::awaited`]).
//!
//! Dropped, the guard releases without waiting: the release goes out at
//! once and its reply is read by the next call on that connection.
//! Dropped while a call on it is under way (an acquire being granted, a
//! condition's wait), the manager is told at once (`Cancel`) and our
//! thread reads the replies and releases what the connection holds by
//! then (see [`super::awaited_cancel`]): a dropped future leaves nothing
//! held.

use super::awaited::{keep_idle, with_pool, Channel, Lease, Progress, Undo};
use super::protocol::{Op, Reply, Request};
use super::ManagerError;

/// A connection holding object `id` (a lock, a semaphore's unit, or a
/// condition's lock), until [`release`](Self::release)d or dropped.
pub(super) struct Holding<'a> {
    lease: Lease<'a>,
    id: u64,
    /// Released already by a call (its reply read): nothing to give back.
    released: bool,
}

impl<'a> Holding<'a> {
    /// `lease`'s connection, which has just taken `id`.
    pub fn new(lease: Lease<'a>, id: u64) -> Self {
        Holding {
            lease,
            id,
            released: false,
        }
    }

    /// The call that was to take it did not (a `try` that found it
    /// taken): the connection holds nothing, and goes back as it is.
    pub fn holds_nothing(mut self) {
        self.released = true;
    }

    /// This hold, owning its manager's link (not borrowing its proxy's);
    /// this one is left holding nothing.
    pub fn into_owned(mut self) -> Holding<'static> {
        let lease = self.lease.detach();
        self.released = true;
        Holding {
            lease,
            id: self.id,
            released: false,
        }
    }

    /// The object it holds.
    pub fn id(&self) -> u64 {
        self.id
    }

    /// The manager it holds something of.
    pub fn link(&self) -> &super::client::Link {
        &self.lease.place.link
    }

    /// `op` on the object it holds, on the holding connection (a notify).
    /// Dropped once its request is out, the manager is told and what the
    /// connection holds afterwards is released by our thread.
    pub async fn call(&mut self, op: Op) -> Result<Reply, ManagerError> {
        self.call_undoing(op, Undo::Release(self.id)).await
    }

    /// A condition's `wait` on the holding connection: dropped once it is
    /// out, the lock is taken back and then released by our thread, and a
    /// notify it received meanwhile goes on to the next waiter.
    pub async fn wait(&mut self, op: Op) -> Result<Reply, ManagerError> {
        // Past its slack, dropped as a wait dropped by its caller is.
        let deadline = super::awaited::given_up_at(&op);
        let call = self.call_undoing(op, Undo::PassOnAndRelease(self.id));
        crate::watch::within(deadline, call)
            .await
            .unwrap_or(Err(ManagerError::Timeout))
    }

    /// `op` on the holding connection; `undo`: what our thread does if the
    /// call is dropped once its request is out.
    async fn call_undoing(&mut self, op: Op, undo: Undo) -> Result<Reply, ManagerError> {
        let kept = self.lease.kept.as_mut().ok_or(ManagerError::Disconnected)?;
        match self.lease.progress {
            Progress::Idle => {}
            // An earlier call on this guard was dropped after its request
            // went (only calls that do not wait borrow a guard; a wait
            // takes it whole): its reply is read and dropped first.
            Progress::SentOnLane => kept.owed_on_lane += 1,
            Progress::SentOnSocket => kept.owed_on_socket += 1,
            // Half sent, or failed: the connection is to be closed.
            Progress::Sending | Progress::Broken => return Err(ManagerError::Disconnected),
        }
        self.lease.progress = Progress::Idle;
        self.lease.waiting = Some(undo);
        let request = Request::On { id: self.id, op };
        let reply = self.lease.exchange(&request).await?;
        super::awaited::refused_as_error(reply)
    }

    /// Releases what it holds and awaits the manager's answer; the
    /// connection goes back for the next waiting call.
    pub async fn release(mut self) -> Result<(), ManagerError> {
        // Dropped once it is out, our thread only reads its reply: a
        // semaphore's unit must not be given back twice.
        let reply = self.call_undoing(Op::Release, Undo::Nothing).await;
        self.released = true;
        match reply? {
            Reply::Done => Ok(()),
            other => Err(super::proxy::unexpected(other)),
        }
    }
}

impl Drop for Holding<'_> {
    fn drop(&mut self) {
        // A call under way: the lease's drop tells the manager, and our
        // thread releases (`Undo::Release`). Released: the lease's drop
        // keeps the connection for the next waiting call.
        if self.released || self.lease.progress != Progress::Idle {
            return;
        }
        let Some(mut kept) = self.lease.kept.take() else {
            return;
        };
        let release = Request::On {
            id: self.id,
            op: Op::Release,
        };
        // Released now, its reply read by the next call on this
        // connection; if it cannot go, the connection closes, and the
        // manager gives back what it held (as a dead holder's).
        match kept.send_now(&release) {
            Some(Channel::Lane) => kept.owed_on_lane += 1,
            Some(Channel::Socket) => kept.owed_on_socket += 1,
            None => return,
        }
        with_pool(&self.lease.place.link, |pool| keep_idle(pool, kept));
    }
}
