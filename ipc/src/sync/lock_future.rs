//! [`Lock::lock_async`]: taking a [`Lock`] as a `std::future::Future`, for
//! any executor (a critical section shared with other processes, in async
//! code).
//!
//! The future tries the lock each time it is polled. When it is held, the
//! future raises the lock word's waiters mark (so the unlock wakes a
//! sleeper) and leaves its waker with the lock's [`Watch`], whose thread
//! sleeps on the word for every future of this process waiting on that
//! lock. The watch also asks every 50 ms whether the holder still lives,
//! and a future woken by that look takes over a dead holder's lock as the
//! blocking `lock` does (`LockError::OwnerDied`, with the lock held). A
//! dropped future has taken nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::shm::cell::{ShmCell, ShmState};
use crate::watch::{Arm, Registration, Watch, Watched};

use super::lock::{guard_or_error, LockTag, Tagged};
use super::robust::{Acquired, NotAcquired, RobustMutex};
use super::{Lock, LockGuard, LockResult};

/// A lock word as the watch sees it: its value is the epoch; it is
/// ready when free; the costly look asks whether the holder lives. Any
/// state in shared memory with a lock in it (a `Lock`'s, a `Condition`'s).
pub(super) struct MutexWord<S> {
    pub cell: ShmCell<S>,
    pub mutex: fn(&S) -> &RobustMutex,
}

impl<S: ShmState + Send + Sync + 'static> MutexWord<S> {
    fn mutex(&self) -> &RobustMutex {
        (self.mutex)(self.cell.state())
    }
}

impl<S: ShmState + Send + Sync + 'static> Watched for MutexWord<S> {
    fn epoch(&self) -> u64 {
        u64::from(self.mutex().lock_word().load(Ordering::Acquire))
    }

    fn ready_now(&self) -> bool {
        self.epoch() == 0
    }

    fn arm(&self, seen: u64) -> Arm<'_> {
        // The futures raised the waiters mark in `seen` before they waited:
        // the unlock wakes the word.
        Arm::Word {
            word: self.mutex().lock_word(),
            value: seen as u32,
            unfenced: false,
        }
    }

    fn look_harder(&self) -> bool {
        let held = self.mutex().lock_word().load(Ordering::Acquire);
        held != 0 && self.mutex().holder_gone(held)
    }

    fn has_costly_look(&self) -> bool {
        true
    }
}

/// A future's taking of a lock: its tries, and its wait with the lock's
/// watch between them.
#[derive(Default)]
pub(super) struct Locking {
    /// The word it last slept on: a wake with the word still there came
    /// from the watch's look at the holder.
    seen: Option<u32>,
    waiting: Option<Registration>,
}

impl Locking {
    /// Tries `mutex`; when it is held, leaves `cx`'s waker with `watch`
    /// (the lock's) until it moves or its holder is found gone.
    pub(super) fn poll(
        &mut self,
        mutex: &RobustMutex,
        watch: &Arc<Watch>,
        cx: &Context<'_>,
    ) -> Poll<Result<Acquired, NotAcquired>> {
        loop {
            // Once asleep, a take keeps the mark: others may sleep still.
            let tried = match self.seen {
                Some(_) => mutex.try_lock_marked(),
                None => mutex.try_lock(),
            };
            if !matches!(tried, Err(NotAcquired::Timeout)) {
                self.waiting = None;
                return Poll::Ready(tried);
            }
            let held = mutex.lock_word().load(Ordering::Acquire);
            if held == 0 {
                continue;
            }
            // Woken with the word unmoved: the watch found the holder
            // gone. Judged again here, then the exact word is taken over.
            if self.seen == Some(held) && mutex.holder_gone(held) {
                if let Some(taken) = mutex.take_over(held) {
                    self.waiting = None;
                    return Poll::Ready(Ok(taken));
                }
                continue;
            }
            let Some(marked) = mutex.mark_waiting(held) else {
                continue;
            };
            self.seen = Some(marked);
            let registration = self
                .waiting
                .get_or_insert_with(|| Registration::new(Arc::clone(watch)));
            return match registration.wait(u64::from(marked), cx.waker()) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(NotAcquired::Os(e))),
            };
        }
    }
}

impl Lock {
    /// Waits for the lock, as a future: [`lock`](Self::lock) for async
    /// code, with no runtime of ours (any executor polls it). While it
    /// waits, a watcher thread of this process (one for up to 127 awaited
    /// locks, events, semaphores and queue sides) sleeps on the lock word,
    /// not the executor's; it also checks every 50 ms that the holder lives,
    /// so a holder that dies gives the future
    /// [`LockError::OwnerDied`](super::LockError::OwnerDied) with the lock
    /// held, as `lock` does. Cancel-safe: dropped, it has taken nothing.
    ///
    /// The guard is `Send`: a task may hold it across an `.await` and move
    /// between threads. The lock counts as held by the thread that took it
    /// (the one that polled): while that thread lives, the lock is not
    /// judged dead; drop the guard before that thread ends (an executor's
    /// worker threads last as long as its runtime).
    ///
    /// ```
    /// use std::future::Future;
    /// use std::task::{Context, Poll, Waker};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let lock = outlast_ipc::sync::Lock::new()?;
    /// let mut cx = Context::from_waker(Waker::noop());
    /// let held = lock.lock().map_err(|e| e.to_string())?; // as another process would
    /// let mut wait = std::pin::pin!(lock.lock_async());
    /// assert!(wait.as_mut().poll(&mut cx).is_pending());
    /// drop(held);
    /// assert!(matches!(wait.as_mut().poll(&mut cx), Poll::Ready(Ok(_))));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Under an executor: `let _held = lock.lock_async().await?;`.
    pub fn lock_async(&self) -> LockFuture<'_> {
        LockFuture {
            lock: self,
            locking: Locking::default(),
        }
    }

    /// This lock's watch, started on first use.
    fn watch(&self) -> &Arc<Watch> {
        self.watch.get_or_init("lock", || {
            Arc::new(MutexWord {
                cell: self.cell.clone(),
                mutex: Tagged::<LockTag>::mutex,
            })
        })
    }
}

/// The future of [`Lock::lock_async`]: ready once it holds the lock.
#[must_use = "a future takes nothing unless it is awaited"]
pub struct LockFuture<'a> {
    lock: &'a Lock,
    locking: Locking,
}

impl std::fmt::Debug for LockFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockFuture").finish_non_exhaustive()
    }
}

impl<'a> Future for LockFuture<'a> {
    type Output = LockResult<LockGuard<'a>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let lock = this.lock;
        let mutex = lock.raw_mutex();
        crate::coop::cooperative(cx, |cx| {
            let taken = std::task::ready!(this.locking.poll(mutex, lock.watch(), cx));
            Poll::Ready(guard_or_error(taken, || LockGuard::new(mutex)))
        })
    }
}
