//! [`Condition::lock_async`] and [`Condition::wait_async`]: a condition's
//! lock and wait as `std::future::Future`s, for any executor.
//!
//! Taking the lock is a [`Lock::lock_async`](super::Lock::lock_async)'s
//! taking, on the condition's own lock. A wait takes a waiter's place as
//! the blocking `wait` does (under the lock, so a notify from then on sees
//! it), lets the lock go, and leaves its waker with a watch on its place's
//! word; once notified, it takes the lock back the same way.
//!
//! Cancel-safe in asyncio's manner: a wait dropped after a notify chose it
//! (before it had the lock back) passes that notify on to the next waiter,
//! so no notify is spent on a waiter that left; one dropped before leaves
//! its place. The guard given to `wait_async` is the future's: dropped
//! with it, the lock stays free.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::shm::cell::ShmCell;
use crate::watch::{Arm, LazyWatch, Registration, Watch, Watched};

use super::condition::{Condition, ConditionGuard, ConditionState};
use super::lock::guard_or_error;
use super::lock_future::{Locking, MutexWord};
use super::waiters::Place;
use super::LockResult;

/// A waiter's place as the watch sees it: its word moves when a notify
/// chooses it.
struct PlaceWord {
    cell: ShmCell<ConditionState>,
    place: Place,
}

impl Watched for PlaceWord {
    fn epoch(&self) -> u64 {
        self.cell
            .state()
            .waiters()
            .word(&self.place)
            .map_or(0, |(word, _)| u64::from(word.load(Ordering::Acquire)))
    }

    fn ready_now(&self) -> bool {
        false
    }

    fn arm(&self, seen: u64) -> Arm<'_> {
        match self.cell.state().waiters().word(&self.place) {
            Some((word, _)) => Arm::Word {
                word,
                value: seen as u32,
                unfenced: false,
            },
            None => Arm::Moved,
        }
    }
}

impl Condition {
    /// Takes the condition's lock, as a future: [`lock`](Self::lock) for
    /// async code (see [`Lock::lock_async`](super::Lock::lock_async): a
    /// watcher thread of this process waits, and a holder that dies gives
    /// `LockError::OwnerDied` with the lock held). Cancel-safe: dropped, it
    /// has taken nothing.
    pub fn lock_async(&self) -> ConditionLockFuture<'_> {
        ConditionLockFuture {
            cond: self,
            locking: Locking::default(),
        }
    }

    /// Lets the lock go, waits for a notify, and takes the lock again, as a
    /// future: [`wait`](Self::wait) for async code. Wake-ups can be
    /// spurious: wait in a loop on the real condition. Cancel-safe as
    /// asyncio's `Condition.wait`: dropped after a notify chose it, it
    /// passes the notify on to the next waiter; the guard it was given goes
    /// with it (the lock is free once the future is dropped).
    ///
    /// ```
    /// use std::future::Future;
    /// use std::task::{Context, Poll, Waker};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let cond = outlast_ipc::sync::Condition::new()?;
    /// let mut cx = Context::from_waker(Waker::noop());
    /// let guard = cond.lock().map_err(|e| e.to_string())?;
    /// let mut wait = std::pin::pin!(cond.wait_async(guard));
    /// assert!(wait.as_mut().poll(&mut cx).is_pending()); // the lock is free now
    /// {
    ///     let _held = cond.lock().map_err(|e| e.to_string())?; // as another process would
    ///     assert_eq!(cond.notify(1), 1);
    /// }
    /// assert!(matches!(wait.as_mut().poll(&mut cx), Poll::Ready(Ok(_))));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Under an executor, with a timeout (the guard went with the
    /// future, so a wait that timed out takes the lock again itself, as
    /// asyncio's `wait_for(cond.wait(), t)` does):
    ///
    /// ```text
    /// let mut held = cond.lock_async().await?;
    /// while !ready() {
    ///     held = match tokio::time::timeout(d, cond.wait_async(held)).await {
    ///         Ok(woken) => woken?,
    ///         Err(_) => cond.lock_async().await?,
    ///     };
    /// }
    /// ```
    pub fn wait_async<'a>(&'a self, guard: ConditionGuard<'a>) -> ConditionWaitFuture<'a> {
        ConditionWaitFuture {
            cond: self,
            stage: Stage::Start(Some(guard)),
        }
    }

    /// The watch on this condition's lock, started on first use.
    fn watch(&self) -> &Arc<Watch> {
        self.watch.get_or_init("condition lock", || {
            Arc::new(MutexWord {
                cell: self.cell.clone(),
                mutex: ConditionState::mutex,
            })
        })
    }
}

/// The future of [`Condition::lock_async`].
#[must_use = "a future takes nothing unless it is awaited"]
pub struct ConditionLockFuture<'a> {
    cond: &'a Condition,
    locking: Locking,
}

impl std::fmt::Debug for ConditionLockFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConditionLockFuture")
            .finish_non_exhaustive()
    }
}

impl<'a> Future for ConditionLockFuture<'a> {
    type Output = LockResult<ConditionGuard<'a>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let cond = this.cond;
        crate::coop::cooperative(cx, |cx| {
            let mutex = cond.state().mutex();
            let taken = std::task::ready!(this.locking.poll(mutex, cond.watch(), cx));
            Poll::Ready(guard_or_error(taken, || ConditionGuard::new(cond)))
        })
    }
}

/// Where a wait stands.
enum Stage<'a> {
    /// Not polled yet: holding the lock.
    Start(Option<ConditionGuard<'a>>),
    /// In its place, the lock let go.
    Waiting {
        place: Place,
        /// (Dropped before its watch, which it holds a place in.)
        waiting: Option<Registration>,
        watch: LazyWatch,
    },
    /// Notified: taking the lock back.
    Relocking(Locking),
    Done,
}

/// The future of [`Condition::wait_async`].
#[must_use = "a future waits for nothing unless it is awaited"]
pub struct ConditionWaitFuture<'a> {
    cond: &'a Condition,
    stage: Stage<'a>,
}

impl std::fmt::Debug for ConditionWaitFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConditionWaitFuture")
            .finish_non_exhaustive()
    }
}

impl<'a> Future for ConditionWaitFuture<'a> {
    type Output = LockResult<ConditionGuard<'a>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let cond = this.cond;
        let waiters = cond.state().waiters();
        crate::coop::cooperative(cx, |cx| loop {
            match &mut this.stage {
                Stage::Start(guard) => {
                    // In place before unlocking: a notify from now on sees it.
                    let place = waiters.enter();
                    drop(guard.take());
                    this.stage = Stage::Waiting {
                        place,
                        waiting: None,
                        watch: LazyWatch::default(),
                    };
                }
                Stage::Waiting {
                    place,
                    waiting,
                    watch,
                } => {
                    let Some((_, unmoved)) = waiters.word(place) else {
                        this.stage = Stage::Relocking(Locking::default());
                        continue;
                    };
                    if waiters.take_wake(place) {
                        this.stage = Stage::Relocking(Locking::default());
                        continue;
                    }
                    let place = *place;
                    let watch = watch.get_or_init("condition", || {
                        Arc::new(PlaceWord {
                            cell: cond.cell.clone(),
                            place,
                        })
                    });
                    let registration =
                        waiting.get_or_insert_with(|| Registration::new(Arc::clone(watch)));
                    if let Err(e) = registration.wait(u64::from(unmoved), cx.waker()) {
                        // No thread to wait with: leave, passing on any notify.
                        if waiters.abandon(&place) {
                            cond.notify(1);
                        }
                        this.stage = Stage::Done;
                        return Poll::Ready(Err(super::LockError::Os(e)));
                    }
                    return Poll::Pending;
                }
                Stage::Relocking(locking) => {
                    let mutex = cond.state().mutex();
                    let taken = std::task::ready!(locking.poll(mutex, cond.watch(), cx));
                    this.stage = Stage::Done;
                    return Poll::Ready(guard_or_error(taken, || ConditionGuard::new(cond)));
                }
                Stage::Done => return Poll::Ready(Err(super::LockError::Timeout)),
            }
        })
    }
}

impl Drop for ConditionWaitFuture<'_> {
    fn drop(&mut self) {
        let notified = match &self.stage {
            Stage::Waiting { place, .. } => self.cond.state().waiters().abandon(place),
            // Chosen by a notify, gone before it had the lock back.
            Stage::Relocking(_) => true,
            Stage::Start(_) | Stage::Done => false,
        };
        if notified {
            self.cond.notify(1);
        }
    }
}
