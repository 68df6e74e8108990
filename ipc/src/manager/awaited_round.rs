//! One wait at the manager for all of this process's awaited waits on an
//! event (or for a joinable queue's `join`). A wait at the manager needs a
//! connection of its own, and a shutdown event awaited by every task
//! (`select!` on it beside the task's work) made one per task: 300 tasks
//! held 1,600 descriptors, and 2,000 failed with "too many open files".
//!
//! Such a wait takes nothing and changes nothing, and every waiter wakes
//! at the same set (or the same last `task_done`): so the waiters of a
//! process join a *round*, and the round has one wait at the manager,
//! which any of its waiters drives when polled; its end is every
//! member's. A waiter that joins while a
//! round is under way joins that round: the set that ends it comes after
//! the waiter began to wait, as its own wait's would. The last member
//! dropped drops the round's wait (the manager is told, as for any
//! dropped wait); the next waiter starts the round afresh.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

use super::awaited::{with_pool, Undo};
use super::client::Link;
use super::protocol::{Op, Reply, Request};
use super::ManagerError;

/// The wait at the manager that a round shares.
type Call = Pin<Box<dyn Future<Output = Result<Reply, ManagerError>> + Send>>;

/// How a round ended, as each member gets it.
type Outcome = Result<(), ManagerError>;

/// What a round waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Until {
    /// An event is set.
    Set,
    /// A joinable queue's every item is done.
    Joined,
}

impl Until {
    fn op(self) -> Op {
        match self {
            Until::Set => Op::WaitSet { wait_ms: None },
            Until::Joined => Op::Join(None),
        }
    }

    /// What the manager's answer means for the waiters.
    fn outcome_of(self, reply: Result<Reply, ManagerError>) -> Outcome {
        match (self, reply?) {
            (Until::Set, Reply::Bool(true)) | (Until::Joined, Reply::Done) => Ok(()),
            (_, other) => Err(ManagerError::Protocol(format!("{other:?}"))),
        }
    }
}

/// This process's awaited waits on one object for one thing.
#[derive(Default)]
pub(super) struct RoundWaits {
    rounds: Mutex<Rounds>,
    /// The wakers of the round under way's members, each with how many
    /// members it wakes (two in one task share one), apart from `rounds`
    /// so that the round's wait may wake them while it is polled.
    wakers: Mutex<Vec<(Waker, usize)>>,
}

#[derive(Default)]
struct Rounds {
    /// The round under way: a new waiter joins it.
    round: u64,
    /// Its waiters not yet dropped.
    members: usize,
    /// Its wait at the manager, once a member polled.
    call: Option<Call>,
    /// Ended rounds whose members have not all taken the outcome: the
    /// outcome, and how many are still to take it.
    ended: HashMap<u64, (Outcome, usize)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // (Nothing is left half-done under these locks.)
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A copy of a round's outcome for one more member (an error is not
/// `Clone`: its kind and words are kept).
fn copy(outcome: &Outcome) -> Outcome {
    outcome.as_ref().map(|_| ()).map_err(|e| match e {
        ManagerError::Disconnected => ManagerError::Disconnected,
        ManagerError::Timeout => ManagerError::Timeout,
        ManagerError::Server(why) => ManagerError::Server(why.clone()),
        ManagerError::Local(e) => ManagerError::Local(std::io::Error::new(e.kind(), e.to_string())),
        other => ManagerError::Protocol(other.to_string()),
    })
}

/// Wakes every member of the round under way: the round's wait moved,
/// and whichever member runs first drives it.
struct WakeMembers(Arc<RoundWaits>);

impl Wake for WakeMembers {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        for (waker, _) in lock(&self.0.wakers).iter() {
            waker.wake_by_ref();
        }
    }
}

impl RoundWaits {
    /// Counts `waker` in for a member (a member's task may hand it a new
    /// one: `old`, counted out).
    fn register(&self, waker: &Waker, old: Option<&Waker>) {
        let mut wakers = lock(&self.wakers);
        if let Some(old) = old {
            if old.will_wake(waker) {
                return;
            }
            unregister(&mut wakers, old);
        }
        match wakers.iter_mut().find(|(w, _)| w.will_wake(waker)) {
            Some((_, n)) => *n += 1,
            None => wakers.push((waker.clone(), 1)),
        }
    }
}

/// Counts `waker` out for a member; gone once no member needs it.
fn unregister(wakers: &mut Vec<(Waker, usize)>, waker: &Waker) {
    if let Some(at) = wakers.iter().position(|(w, _)| w.will_wake(waker)) {
        wakers[at].1 -= 1;
        if wakers[at].1 == 0 {
            wakers.swap_remove(at);
        }
    }
}

/// One awaited wait on object `id`, a member of a round.
struct Member {
    waits: Arc<RoundWaits>,
    link: Link,
    id: u64,
    until: Until,
    /// The round it joined, once polled.
    round: Option<u64>,
    /// The waker it counted in for its round.
    waker: Option<Waker>,
    /// Its outcome taken: nothing to leave.
    done: bool,
}

impl Future for Member {
    type Output = Outcome;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        let this = &mut *self;
        let mut rounds = lock(&this.waits.rounds);
        let round = *this.round.get_or_insert_with(|| {
            rounds.members += 1;
            rounds.round
        });
        if let Some((outcome, left)) = rounds.ended.get_mut(&round) {
            let mine = copy(outcome);
            *left -= 1;
            if *left == 0 {
                rounds.ended.remove(&round);
            }
            this.done = true;
            return Poll::Ready(mine);
        }
        this.waits.register(cx.waker(), this.waker.as_ref());
        if this.waker.as_ref().is_none_or(|w| !w.will_wake(cx.waker())) {
            this.waker = Some(cx.waker().clone());
        }
        let call = rounds.call.get_or_insert_with(|| {
            let (link, id, op) = (this.link.clone(), this.id, this.until.op());
            Box::pin(async move {
                let request = Request::On { id, op };
                link.call_waiting_async(request, Undo::Nothing).await
            })
        });
        let members = Waker::from(Arc::new(WakeMembers(this.waits.clone())));
        let Poll::Ready(reply) = call.as_mut().poll(&mut Context::from_waker(&members)) else {
            return Poll::Pending;
        };
        // The round ends: every other member takes a copy of its outcome.
        let outcome = this.until.outcome_of(reply);
        let others = rounds.members - 1;
        if others > 0 {
            rounds.ended.insert(round, (copy(&outcome), others));
        }
        rounds.round += 1;
        rounds.members = 0;
        rounds.call = None;
        this.done = true;
        let woken = std::mem::take(&mut *lock(&this.waits.wakers));
        drop(rounds);
        for (waker, _) in woken {
            waker.wake();
        }
        Poll::Ready(outcome)
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        let Some(round) = self.round.filter(|_| !self.done) else {
            return;
        };
        let mut rounds = lock(&self.waits.rounds);
        if let Some((_, left)) = rounds.ended.get_mut(&round) {
            // Its round ended: one fewer to take the outcome.
            *left -= 1;
            if *left == 0 {
                rounds.ended.remove(&round);
            }
            return;
        }
        rounds.members = rounds.members.saturating_sub(1);
        if let Some(waker) = &self.waker {
            unregister(&mut lock(&self.waits.wakers), waker);
        }
        if rounds.members == 0 {
            // Nobody waits: the manager is told, as for any dropped wait.
            let call = rounds.call.take();
            drop(rounds);
            drop(call);
        }
        // (Otherwise the round's wait wakes the members left when it
        // moves: none of them needs this one.)
    }
}

/// Waits until object `id` of `link`'s manager is as `until` says, in
/// this process's round of such waits on it.
pub(super) async fn wait(link: &Link, id: u64, until: Until) -> Result<(), ManagerError> {
    let waits = with_pool(link, |pool| {
        pool.rounds.entry((id, until)).or_default().clone()
    });
    Member {
        waits,
        link: link.clone(),
        id,
        until,
        round: None,
        waker: None,
        done: false,
    }
    .await
}
