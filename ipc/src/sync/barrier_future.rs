//! [`Barrier::wait_async`]: a barrier's wait as a `std::future::Future`,
//! for any executor (worker processes that each run an async runtime and
//! meet between phases).
//!
//! The first poll counts the party in, as `wait` does (taking the
//! barrier's lock for its bookkeeping; the last party runs the action and
//! releases the others). Until the generation ends, the future leaves its
//! waker with the barrier's [`Watch`], whose thread sleeps on the epoch
//! word for every future of this process waiting on that barrier.
//!
//! Dropped before its generation ended (a `tokio::time::timeout` that ran
//! out, the losing branch of a `select!`), the party leaves: the count
//! goes back down, as if it never came, as asyncio's `Barrier` does for a
//! cancelled waiter. A blocking `wait_timeout` that runs out breaks the
//! barrier instead, as Python's `threading` and `multiprocessing` do.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::os::Deadline;
use crate::shm::cell::ShmCell;
use crate::watch::{Arm, Registration, Watch, Watched};

use super::barrier::{Arrival, Barrier, BarrierState};
use super::BarrierError;

/// The barrier's epoch word as the watch sees it: any move may end a
/// wait (a generation passed, a reset, a break).
struct Epoch {
    cell: ShmCell<BarrierState>,
}

impl Watched for Epoch {
    fn epoch(&self) -> u64 {
        u64::from(self.cell.state().epoch().load(Ordering::Acquire))
    }

    fn ready_now(&self) -> bool {
        false
    }

    fn arm(&self, seen: u64) -> Arm<'_> {
        // Every move of the epoch wakes every sleeper on it.
        Arm::Word {
            word: self.cell.state().epoch(),
            value: seen as u32,
            unfenced: false,
        }
    }
}

impl Barrier {
    /// Waits for every party, as a future: [`wait`](Self::wait) for async
    /// code, with no runtime of ours (any executor polls it); gives this
    /// party's arrival index. The first poll counts the party in (it takes
    /// the barrier's lock, held by any party only for its bookkeeping and
    /// by the last one while the action runs); then a watcher thread of
    /// this process (one for up to 127 awaited barriers, locks, events,
    /// semaphores and queue sides) sleeps on the barrier, not the
    /// executor's.
    ///
    /// Cancel-safe: dropped before its generation has passed, the party
    /// leaves, as if it had never come (as asyncio's `Barrier`), so the
    /// others still wait for a full count. The barrier's default timeout
    /// ([`with_timeout`](Self::with_timeout)) is `wait`'s: under an
    /// executor, put the future in the executor's timeout instead.
    ///
    /// ```
    /// use std::future::Future;
    /// use std::task::{Context, Poll, Waker};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let barrier = outlast_ipc::sync::Barrier::new(2)?;
    /// let mut cx = Context::from_waker(Waker::noop());
    /// let mut first = std::pin::pin!(barrier.wait_async());
    /// assert!(first.as_mut().poll(&mut cx).is_pending());
    /// assert_eq!(barrier.wait(), Ok(1)); // as another process would
    /// assert_eq!(first.as_mut().poll(&mut cx), Poll::Ready(Ok(0)));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Under an executor: `let index = barrier.wait_async().await?;`.
    pub fn wait_async(&self) -> BarrierWaitFuture<'_> {
        BarrierWaitFuture {
            barrier: self,
            stage: Stage::Arriving,
            waiting: None,
        }
    }

    /// This barrier's watch, started on first use.
    fn watch(&self) -> &Arc<Watch> {
        self.watch.get_or_init("barrier", || {
            Arc::new(Epoch {
                cell: self.cell.clone(),
            })
        })
    }
}

/// Where the future's party stands.
enum Stage {
    Arriving,
    Waiting { generation: u32, index: u32 },
    Done,
}

/// The future of [`Barrier::wait_async`].
#[must_use = "a future waits for nothing unless it is awaited"]
pub struct BarrierWaitFuture<'a> {
    barrier: &'a Barrier,
    stage: Stage,
    waiting: Option<Registration>,
}

impl std::fmt::Debug for BarrierWaitFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BarrierWaitFuture").finish_non_exhaustive()
    }
}

impl Future for BarrierWaitFuture<'_> {
    type Output = Result<u32, BarrierError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let barrier = this.barrier;
        crate::coop::cooperative(cx, |cx| {
            let (generation, index) = match this.stage {
                Stage::Done => return Poll::Ready(Err(BarrierError::Broken)),
                Stage::Waiting { generation, index } => (generation, index),
                Stage::Arriving => match barrier.arrive(Deadline::never()) {
                    Ok(Arrival::Passed(index)) => {
                        this.stage = Stage::Done;
                        return Poll::Ready(Ok(index));
                    }
                    Ok(Arrival::Waiting { generation, index }) => {
                        this.stage = Stage::Waiting { generation, index };
                        (generation, index)
                    }
                    Err(e) => {
                        this.stage = Stage::Done;
                        return Poll::Ready(Err(e));
                    }
                },
            };
            // The epoch before the look: a move after it wakes the watch.
            let seen = barrier.epoch_word().load(Ordering::Acquire);
            if let Some(done) = barrier.outcome(generation, index) {
                this.stage = Stage::Done;
                this.waiting = None;
                return Poll::Ready(done);
            }
            let registration = this
                .waiting
                .get_or_insert_with(|| Registration::new(Arc::clone(barrier.watch())));
            match registration.wait(u64::from(seen), cx.waker()) {
                Ok(()) => Poll::Pending,
                Err(e) => {
                    this.stage = Stage::Done;
                    barrier.leave(generation);
                    Poll::Ready(Err(BarrierError::Os(e.to_string())))
                }
            }
        })
    }
}

impl Drop for BarrierWaitFuture<'_> {
    fn drop(&mut self) {
        if let Stage::Waiting { generation, index } = self.stage {
            if self.barrier.outcome(generation, index).is_none() {
                self.barrier.leave(generation);
            }
        }
    }
}
