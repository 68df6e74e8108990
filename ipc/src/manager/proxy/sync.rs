//! Locks, semaphores, conditions, events and barriers kept by the manager.
//! What a client holds is held by its connection: a holder whose process
//! dies gives it back, and the next taker is told
//! ([`Acquired::previous_owner_died`]); a barrier party that dies breaks
//! the barrier rather than leave the others waiting for ever.

use std::time::Duration;

use super::super::awaited::Undo;
use super::super::protocol::{Kind, Op, Reply};
use super::super::ManagerError;
use super::{expect_bool, expect_done, proxy, unexpected, wait_ms, Target};

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
    /// code, on a connection of its own (as a manager queue's
    /// `get_async`). Dropped while it waits, the manager is told at once.
    pub async fn wait_async(&self) -> Result<(), ManagerError> {
        let op = Op::WaitSet { wait_ms: None };
        match self.target.call_waiting_async(op, Undo::Nothing).await? {
            Reply::Bool(true) => Ok(()),
            other => Err(unexpected(other)),
        }
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
