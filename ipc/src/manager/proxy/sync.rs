//! Locks, semaphores, conditions, events and barriers kept by the manager.
//! What a client holds is held by its connection: a holder whose process
//! dies gives it back, and the next taker is told
//! ([`Acquired::previous_owner_died`]); a barrier party that dies breaks
//! the barrier rather than leave the others waiting for ever.

use std::time::Duration;

use super::super::awaited::Undo;
use super::super::awaited_hold::Holding;
use super::super::awaited_round::Until;
use super::super::protocol::{Kind, Op, Reply};
use super::super::ManagerError;
use super::{expect_bool, expect_count, expect_done, proxy, unexpected, wait_ms, Target};

/// A manager lock or semaphore was taken (a condition's `wait` took its
/// lock back).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acquired {
    /// Its previous holder's process died holding it: what it guarded may
    /// be half-updated (as the shared-memory locks' `OwnerDied`).
    pub previous_owner_died: bool,
}

/// A manager lock, semaphore unit or condition's lock, held until this
/// guard is dropped (Python's `with lock:`), or [`release`](Held::release)d
/// with its error, or [`keep`](Held::keep)-t for a `release()` later.
///
/// A guard dropped while its thread unwinds releases too; a process that
/// dies holding one gives it back through the server, which sees its
/// connection close, and the next taker is told (`previous_owner_died`).
#[must_use = "the manager lock is released as soon as this guard is dropped"]
#[derive(Debug)]
pub struct Held<'a> {
    target: &'a Target,
    previous_owner_died: bool,
    /// Still to release when dropped.
    held: bool,
}

impl Held<'_> {
    /// Its previous holder's process died holding it: what it guarded may
    /// be half-updated.
    pub fn previous_owner_died(&self) -> bool {
        self.previous_owner_died
    }

    /// Releases it now, with the manager's answer (a drop releases too, but
    /// cannot say that the manager was gone).
    pub fn release(mut self) -> Result<(), ManagerError> {
        self.held = false;
        self.target.done(Op::Release)
    }

    /// Keeps it held past this guard, Python's way: the proxy's `release()`
    /// gives it back (or the holder's death).
    pub fn keep(mut self) -> Acquired {
        self.held = false;
        Acquired {
            previous_owner_died: self.previous_owner_died,
        }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        if self.held {
            // A manager that is gone holds nothing any more.
            let _ = self.target.done(Op::Release);
        }
    }
}

/// A manager lock, semaphore unit or condition's lock taken by an awaited
/// call ([`Lock::lock_async`], [`Semaphore::acquire_async`],
/// [`Condition::acquire_async`]): held until this guard is dropped, or
/// [`release`](HeldAsync::release)d with the manager's answer.
///
/// The manager knows holders by connection, and a future may move
/// between threads: the guard keeps the connection the acquire went on
/// (one of its own, not its thread's). So an awaited hold is not
/// reentrant with another (an `RLock` taken by two awaited calls is taken
/// twice over, the second waiting for the first), nor with a blocking
/// hold on the same thread; a condition's awaited wait and notify take
/// this guard. Dropped, it releases without waiting (the release goes out
/// at once); dropped while an acquire or a wait is under way, the manager
/// is told, and a thread of ours releases what was taken meanwhile: a
/// cancelled future (`tokio::time::timeout`, `select!`) leaves nothing
/// held. A process that dies holding one gives it back through the
/// server, and the next taker is told (`previous_owner_died`).
#[must_use = "the manager lock is released as soon as this guard is dropped"]
pub struct HeldAsync<'a> {
    holding: Holding<'a>,
    previous_owner_died: bool,
}

impl std::fmt::Debug for HeldAsync<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HeldAsync")
            .field("object", &self.holding.id())
            .field("previous_owner_died", &self.previous_owner_died)
            .finish()
    }
}

impl HeldAsync<'_> {
    /// Its previous holder's process died holding it: what it guarded may
    /// be half-updated.
    pub fn previous_owner_died(&self) -> bool {
        self.previous_owner_died
    }

    /// Releases it now and awaits the manager's answer (a drop releases
    /// too, but cannot say that the manager was gone, or that a bounded
    /// semaphore was released past its bound).
    pub async fn release(self) -> Result<(), ManagerError> {
        self.holding.release().await
    }

    /// The same hold, no longer borrowing the proxy it was taken through:
    /// a guard to move into a spawned task (`tokio::spawn` asks
    /// `'static`) or keep in a struct, as tokio's `lock_owned` gives. (An
    /// object made anonymously lives while a proxy to it does: keep one.)
    ///
    /// ```no_run
    /// # async fn run(lock: &outlast_ipc::manager::Lock) -> Result<(), outlast_ipc::manager::ManagerError> {
    /// let held: outlast_ipc::manager::HeldAsync<'static> = lock.lock_async().await?.into_owned();
    /// let worker = std::thread::spawn(move || {
    ///     // ... what the lock guards, still held here ...
    ///     drop(held);
    /// });
    /// # let _ = worker;
    /// # Ok(()) }
    /// ```
    pub fn into_owned(self) -> HeldAsync<'static> {
        HeldAsync {
            holding: self.holding.into_owned(),
            previous_owner_died: self.previous_owner_died,
        }
    }

    /// Whether it holds `target`'s object (a condition's wait and notify
    /// take only their own lock's guard).
    fn holds(&self, target: &Target) -> bool {
        self.holding.id() == target.id && *self.holding.link() == target.link
    }
}

/// `acquire` awaited, without end (`None`) or at most `wait` (kept by the
/// manager; `Some(ZERO)`: a try).
async fn take_async(
    target: &Target,
    wait: Option<Duration>,
) -> Result<Option<HeldAsync<'_>>, ManagerError> {
    let op = Op::Acquire {
        wait_ms: wait_ms(wait),
    };
    match target.call_holding_async(op).await? {
        (Reply::Acquired { owner_died }, holding) => Ok(Some(HeldAsync {
            holding,
            previous_owner_died: owner_died,
        })),
        (Reply::Bool(false), holding) => {
            holding.holds_nothing();
            Ok(None)
        }
        (other, holding) => {
            // Whatever it is, nothing was taken by it.
            holding.holds_nothing();
            Err(unexpected(other))
        }
    }
}

/// `acquire` in its three forms, for locks, semaphores and conditions.
fn take(target: &Target, wait: Option<Duration>) -> Result<Option<Held<'_>>, ManagerError> {
    let op = Op::Acquire {
        wait_ms: wait_ms(wait),
    };
    match target.call_waiting(op, wait)? {
        Reply::Acquired { owner_died } => Ok(Some(Held {
            target,
            previous_owner_died: owner_died,
            held: true,
        })),
        Reply::Bool(false) => Ok(None),
        other => Err(unexpected(other)),
    }
}

fn forever(taken: Option<Held<'_>>) -> Result<Held<'_>, ManagerError> {
    taken.ok_or(ManagerError::Protocol("a wait without end ended".into()))
}

/// The acquire/release methods a lock-like proxy has.
macro_rules! acquire_release {
    ($name:ident) => {
        impl $name {
            /// Waits for it as long as the manager lives; held until the
            /// guard is dropped.
            pub fn acquire(&self) -> Result<Held<'_>, ManagerError> {
                forever(take(&self.target, None)?)
            }

            /// Takes it if it is free now.
            pub fn try_acquire(&self) -> Result<Option<Held<'_>>, ManagerError> {
                take(&self.target, Some(Duration::ZERO))
            }

            /// Waits at most `timeout` for it (the manager keeps the deadline).
            pub fn acquire_timeout(
                &self,
                timeout: Duration,
            ) -> Result<Option<Held<'_>>, ManagerError> {
                take(&self.target, Some(timeout))
            }

            /// Gives back what [`Held::keep`] kept (Python's `release()`).
            pub fn release(&self) -> Result<(), ManagerError> {
                self.target.done(Op::Release)
            }

            /// [`acquire`](Self::acquire) as a future, for async code (on
            /// a connection of its own, which the guard keeps: see
            /// [`HeldAsync`]). At most eight of this process's acquires
            /// wait at the manager per object; the rest wait in line here,
            /// so thousands of tasks can share a semaphore as a rate
            /// limiter. Cancel-safe: dropped while it waits, it takes
            /// nothing. Bound it with the executor's timeout, or with
            /// [`acquire_timeout_async`](Self::acquire_timeout_async)
            /// (both wait in line).
            pub async fn acquire_async(&self) -> Result<HeldAsync<'_>, ManagerError> {
                let taken = take_async(&self.target, None).await?;
                taken.ok_or(ManagerError::Protocol("a wait without end ended".into()))
            }

            /// [`try_acquire`](Self::try_acquire) as a future.
            pub async fn try_acquire_async(&self) -> Result<Option<HeldAsync<'_>>, ManagerError> {
                take_async(&self.target, Some(Duration::ZERO)).await
            }

            /// [`acquire_timeout`](Self::acquire_timeout) as a future. It
            /// waits in line as [`acquire_async`](Self::acquire_async)
            /// does, and goes to the manager with the time it has left; one
            /// whose time runs out in line gives up there (`Ok(None)`),
            /// having taken nothing, woken by a thread of ours at its
            /// deadline. A manager that does not answer (stopped) makes it
            /// [`ManagerError::Timeout`] ten seconds after its deadline, as
            /// the blocking form.
            pub async fn acquire_timeout_async(
                &self,
                timeout: Duration,
            ) -> Result<Option<HeldAsync<'_>>, ManagerError> {
                take_async(&self.target, Some(timeout)).await
            }
        }
    };
}

proxy! {
    /// A lock kept by the manager (Python's `manager.Lock()`, or
    /// `manager.RLock()` when reentrant). Held by a thread's connection.
    Lock [] = Kind::Lock
}
acquire_release!(Lock);

/// The shared-memory locks' names ([`crate::sync::Lock::lock`]), so that
/// a manager lock reads the same.
impl Lock {
    /// [`acquire`](Self::acquire).
    pub fn lock(&self) -> Result<Held<'_>, ManagerError> {
        self.acquire()
    }

    /// [`try_acquire`](Self::try_acquire).
    pub fn try_lock(&self) -> Result<Option<Held<'_>>, ManagerError> {
        self.try_acquire()
    }

    /// [`acquire_timeout`](Self::acquire_timeout).
    pub fn lock_timeout(&self, timeout: Duration) -> Result<Option<Held<'_>>, ManagerError> {
        self.acquire_timeout(timeout)
    }

    /// [`acquire_async`](Self::acquire_async): the lock as a future.
    ///
    /// ```no_run
    /// # async fn run(lock: &outlast_ipc::manager::Lock) -> Result<(), outlast_ipc::manager::ManagerError> {
    /// let held = lock.lock_async().await?;
    /// // ... what the lock guards, in any process ...
    /// held.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn lock_async(&self) -> Result<HeldAsync<'_>, ManagerError> {
        self.acquire_async().await
    }

    /// [`try_acquire_async`](Self::try_acquire_async).
    pub async fn try_lock_async(&self) -> Result<Option<HeldAsync<'_>>, ManagerError> {
        self.try_acquire_async().await
    }

    /// [`acquire_timeout_async`](Self::acquire_timeout_async).
    pub async fn lock_timeout_async(
        &self,
        timeout: Duration,
    ) -> Result<Option<HeldAsync<'_>>, ManagerError> {
        self.acquire_timeout_async(timeout).await
    }
}

proxy! {
    /// Python's `manager.Semaphore(n)` (or `BoundedSemaphore(n)`, whose
    /// release past `n` is an error).
    Semaphore [] = Kind::Semaphore { value: 1, bounded: false, owned: false }
}
acquire_release!(Semaphore);

impl Semaphore {
    /// The units free now (Python's `get_value()`).
    pub fn value(&self) -> Result<u64, ManagerError> {
        self.target.count(Op::Len)
    }

    /// [`value`](Self::value), awaited.
    pub async fn value_async(&self) -> Result<u64, ManagerError> {
        expect_count(self.target.call_async(Op::Len).await?)
    }
}

proxy! {
    /// Python's `manager.Condition()`: a condition variable with its own
    /// reentrant lock.
    Condition [] = Kind::Condition
}
acquire_release!(Condition);

impl Condition {
    fn wait_for_notify(&self, wait: Option<Duration>) -> Result<(bool, bool), ManagerError> {
        let op = Op::Wait {
            wait_ms: wait_ms(wait),
        };
        match self.target.call_waiting(op, wait)? {
            Reply::Notified {
                notified,
                owner_died,
            } => Ok((notified, owner_died)),
            Reply::Error(why) => Err(ManagerError::Server(why)),
            other => Err(unexpected(other)),
        }
    }

    /// Releases the lock (which this thread holds), waits for a notify,
    /// takes the lock back. `previous_owner_died`: someone died holding it
    /// meanwhile.
    pub fn wait(&self) -> Result<Acquired, ManagerError> {
        let (_, owner_died) = self.wait_for_notify(None)?;
        Ok(Acquired {
            previous_owner_died: owner_died,
        })
    }

    /// [`wait`](Self::wait), for at most `timeout`: false if no notify came
    /// (the lock is held again either way, as in Python).
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.wait_for_notify(Some(timeout)).map(|(n, _)| n)
    }

    /// Python's `wait_for(predicate, timeout)`: waits until `ready()` holds
    /// (checked with the lock held), at most `timeout`; its last answer.
    pub fn wait_for(
        &self,
        mut ready: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, ManagerError> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            if ready() {
                return Ok(true);
            }
            match deadline {
                None => {
                    self.wait()?;
                }
                Some(d) => {
                    let left = d.saturating_duration_since(std::time::Instant::now());
                    if left.is_zero() {
                        return Ok(false);
                    }
                    self.wait_timeout(left)?;
                }
            }
        }
    }

    /// Wakes at most `n` waiters (this thread holds the lock).
    pub fn notify(&self, n: u64) -> Result<(), ManagerError> {
        self.target.done(Op::Notify(n))
    }

    /// Wakes every waiter.
    pub fn notify_all(&self) -> Result<(), ManagerError> {
        self.target.done(Op::NotifyAll)
    }

    /// Checks that `held` holds this condition's lock.
    fn own<'h, 'a>(
        &self,
        held: &'h mut HeldAsync<'a>,
    ) -> Result<&'h mut Holding<'a>, ManagerError> {
        match held.holds(&self.target) {
            true => Ok(&mut held.holding),
            false => Err(ManagerError::WrongGuard),
        }
    }

    /// An awaited wait, `wait` long at most (`None`: without end): the
    /// guard back, and whether a notify came.
    async fn wait_for_notify_async<'a>(
        &self,
        mut held: HeldAsync<'a>,
        wait: Option<Duration>,
    ) -> Result<(HeldAsync<'a>, bool), ManagerError> {
        let op = Op::Wait {
            wait_ms: wait_ms(wait),
        };
        match self.own(&mut held)?.wait(op).await? {
            Reply::Notified {
                notified,
                owner_died,
            } => {
                held.previous_owner_died = owner_died;
                Ok((held, notified))
            }
            other => Err(unexpected(other)),
        }
    }

    /// [`wait`](Self::wait) as a future: gives up the lock `held` holds
    /// (taken with [`acquire_async`](Self::acquire_async)), waits for a
    /// notify, and gives the guard back once the lock is taken again
    /// (its `previous_owner_died` says whether someone died holding it
    /// meanwhile). Dropped while it waits, the lock is still taken back
    /// and then released, by a thread of ours.
    ///
    /// ```no_run
    /// # async fn run(
    /// #     cond: &outlast_ipc::manager::Condition,
    /// #     ready: &outlast_ipc::manager::Value<bool>,
    /// # ) -> Result<(), outlast_ipc::manager::ManagerError> {
    /// let mut held = cond.acquire_async().await?;
    /// while !ready.get_async().await? {
    ///     held = cond.wait_async(held).await?;
    /// }
    /// held.release().await?;
    /// # Ok(()) }
    /// ```
    pub async fn wait_async<'a>(&self, held: HeldAsync<'a>) -> Result<HeldAsync<'a>, ManagerError> {
        self.wait_for_notify_async(held, None)
            .await
            .map(|(held, _)| held)
    }

    /// [`wait_async`](Self::wait_async) for at most `timeout` (the manager
    /// keeps the deadline): the guard back, with the lock taken again, and
    /// whether a notify came (Python's `wait(timeout)`).
    pub async fn wait_timeout_async<'a>(
        &self,
        held: HeldAsync<'a>,
        timeout: Duration,
    ) -> Result<(HeldAsync<'a>, bool), ManagerError> {
        self.wait_for_notify_async(held, Some(timeout)).await
    }

    /// Python's `await cond.wait_for(predicate)`, as a future: waits
    /// (giving up the lock `held` holds) until `ready()` holds, checked
    /// with the lock held, at most `timeout` in all (`None`: without end);
    /// the guard back, with the lock held, and `ready()`'s last answer.
    pub async fn wait_for_async<'a>(
        &self,
        mut held: HeldAsync<'a>,
        mut ready: impl FnMut() -> bool,
        timeout: Option<Duration>,
    ) -> Result<(HeldAsync<'a>, bool), ManagerError> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        loop {
            if ready() {
                return Ok((held, true));
            }
            let left = deadline.map(|d| d.saturating_duration_since(std::time::Instant::now()));
            if left.is_some_and(|left| left.is_zero()) {
                return Ok((held, false));
            }
            held = self.wait_for_notify_async(held, left).await?.0;
        }
    }

    /// [`notify`](Self::notify) as a future, by the holder of `held`.
    pub async fn notify_async(&self, held: &mut HeldAsync<'_>, n: u64) -> Result<(), ManagerError> {
        expect_done(self.own(held)?.call(Op::Notify(n)).await?)
    }

    /// [`notify_all`](Self::notify_all) as a future, by the holder of `held`.
    pub async fn notify_all_async(&self, held: &mut HeldAsync<'_>) -> Result<(), ManagerError> {
        expect_done(self.own(held)?.call(Op::NotifyAll).await?)
    }
}

proxy! {
    /// Python's `manager.Event()`.
    Event [] = Kind::Event
}

impl Event {
    pub fn set(&self) -> Result<(), ManagerError> {
        self.target.done(Op::SetFlag)
    }

    pub fn clear(&self) -> Result<(), ManagerError> {
        self.target.done(Op::ClearFlag)
    }

    pub fn is_set(&self) -> Result<bool, ManagerError> {
        self.target.boolean(Op::IsSet)
    }

    fn wait_set(&self, wait: Option<Duration>) -> Result<bool, ManagerError> {
        let op = Op::WaitSet {
            wait_ms: wait_ms(wait),
        };
        match self.target.call_waiting(op, wait)? {
            Reply::Bool(b) => Ok(b),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until it is set.
    pub fn wait(&self) -> Result<(), ManagerError> {
        self.wait_set(None).map(|_| ())
    }

    /// Waits at most `timeout`: whether it is set.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.wait_set(Some(timeout))
    }

    /// [`set`](Self::set), as a future.
    pub async fn set_async(&self) -> Result<(), ManagerError> {
        expect_done(self.target.call_async(Op::SetFlag).await?)
    }

    /// [`clear`](Self::clear), as a future.
    pub async fn clear_async(&self) -> Result<(), ManagerError> {
        expect_done(self.target.call_async(Op::ClearFlag).await?)
    }

    /// [`is_set`](Self::is_set), as a future.
    pub async fn is_set_async(&self) -> Result<bool, ManagerError> {
        expect_bool(self.target.call_async(Op::IsSet).await?)
    }

    /// Waits until it is set, as a future: [`wait`](Self::wait) for async
    /// code. The awaited waits of a process on one event share one wait
    /// at the manager, on a connection of its own (two thousand tasks
    /// awaiting a shutdown event hold one); once all of them are
    /// dropped, the manager is told at once.
    pub async fn wait_async(&self) -> Result<(), ManagerError> {
        self.target.wait_round_async(Until::Set).await
    }
}

proxy! {
    /// Python's `manager.Barrier(parties)`.
    Barrier [] = Kind::Barrier { parties: 1 }
}

impl Barrier {
    fn arrive(&self, wait: Option<Duration>) -> Result<u64, ManagerError> {
        let op = Op::Arrive {
            wait_ms: wait_ms(wait),
        };
        match self.target.call_waiting(op, wait)? {
            Reply::Int(i) => Ok(i as u64),
            Reply::Broken => Err(ManagerError::BrokenBarrier),
            other => Err(unexpected(other)),
        }
    }

    /// Waits for every party: this one's arrival index, 0 to `parties - 1`.
    /// `BrokenBarrier` if it was aborted, reset, or a party timed out or died.
    pub fn wait(&self) -> Result<u64, ManagerError> {
        self.arrive(None)
    }

    /// [`wait`](Self::wait) for at most `timeout`; past it the barrier breaks.
    pub fn wait_timeout(&self, timeout: Duration) -> Result<u64, ManagerError> {
        self.arrive(Some(timeout))
    }

    /// Breaks it: every waiter, and every later one, gets `BrokenBarrier`.
    pub fn abort(&self) -> Result<(), ManagerError> {
        self.target.done(Op::Abort)
    }

    /// An awaited arrival, `wait` long at most (`None`: without end).
    async fn arrive_async(&self, wait: Option<Duration>) -> Result<u64, ManagerError> {
        let op = Op::Arrive {
            wait_ms: wait_ms(wait),
        };
        match self.target.call_waiting_async(op, Undo::Nothing).await? {
            Reply::Int(i) => Ok(i as u64),
            Reply::Broken => Err(ManagerError::BrokenBarrier),
            other => Err(unexpected(other)),
        }
    }

    /// [`wait`](Self::wait) as a future (on a connection of its own).
    /// Dropped while it waits, this party leaves the round without
    /// breaking it, as in Python's asyncio (a later arrival takes its
    /// place); a deadline ([`wait_timeout_async`](Self::wait_timeout_async))
    /// breaks it, as in Python's `threading`.
    pub async fn wait_async(&self) -> Result<u64, ManagerError> {
        self.arrive_async(None).await
    }

    /// [`wait_timeout`](Self::wait_timeout) as a future: past `timeout`
    /// the barrier breaks (the manager keeps the deadline).
    pub async fn wait_timeout_async(&self, timeout: Duration) -> Result<u64, ManagerError> {
        self.arrive_async(Some(timeout)).await
    }

    /// [`abort`](Self::abort) as a future.
    pub async fn abort_async(&self) -> Result<(), ManagerError> {
        expect_done(self.target.call_async(Op::Abort).await?)
    }

    /// [`reset`](Self::reset) as a future.
    pub async fn reset_async(&self) -> Result<(), ManagerError> {
        expect_done(self.target.call_async(Op::Reset).await?)
    }

    /// [`parties`](Self::parties) as a future.
    pub async fn parties_async(&self) -> Result<u64, ManagerError> {
        expect_count(self.target.call_async(Op::Len).await?)
    }

    /// [`n_waiting`](Self::n_waiting) as a future.
    pub async fn n_waiting_async(&self) -> Result<u64, ManagerError> {
        expect_count(self.target.call_async(Op::Waiting).await?)
    }

    /// [`broken`](Self::broken) as a future.
    pub async fn broken_async(&self) -> Result<bool, ManagerError> {
        expect_bool(self.target.call_async(Op::IsBroken).await?)
    }

    /// Back to its first state (waiters now get `BrokenBarrier`).
    pub fn reset(&self) -> Result<(), ManagerError> {
        expect_done(self.target.call(Op::Reset)?)
    }

    pub fn parties(&self) -> Result<u64, ManagerError> {
        self.target.count(Op::Len)
    }

    /// How many wait now (`n_waiting`).
    pub fn n_waiting(&self) -> Result<u64, ManagerError> {
        self.target.count(Op::Waiting)
    }

    pub fn broken(&self) -> Result<bool, ManagerError> {
        self.target.boolean(Op::IsBroken)
    }
}
