//! Locks, semaphores, conditions, events and barriers kept by the manager.
//! What a client holds is held by its connection: a holder whose process
//! dies gives it back, and the next taker is told
//! ([`Acquired::previous_owner_died`]); a barrier party that dies breaks
//! the barrier rather than leave the others waiting for ever.

use std::time::Duration;

use super::super::protocol::{Kind, Op, Reply};
use super::super::ManagerError;
use super::{expect_done, proxy, unexpected, wait_ms, Target};

/// A manager lock or semaphore was taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acquired {
    /// Its previous holder's process died holding it: what it guarded may
    /// be half-updated (as the shared-memory locks' `OwnerDied`).
    pub previous_owner_died: bool,
}

/// `acquire` in its three forms, for locks, semaphores and conditions.
fn take(target: &Target, wait: Option<Duration>) -> Result<Option<Acquired>, ManagerError> {
    let op = Op::Acquire {
        wait_ms: wait_ms(wait),
    };
    match target.call_waiting(op, wait)? {
        Reply::Acquired { owner_died } => Ok(Some(Acquired {
            previous_owner_died: owner_died,
        })),
        Reply::Bool(false) => Ok(None),
        other => Err(unexpected(other)),
    }
}

fn forever(taken: Option<Acquired>) -> Result<Acquired, ManagerError> {
    taken.ok_or(ManagerError::Protocol("a wait without end ended".into()))
}

/// The acquire/release methods a lock-like proxy has.
macro_rules! acquire_release {
    ($name:ident) => {
        impl $name {
            /// Waits for it as long as the manager lives.
            pub fn acquire(&self) -> Result<Acquired, ManagerError> {
                forever(take(&self.target, None)?)
            }

            /// Takes it if it is free now.
            pub fn try_acquire(&self) -> Result<Option<Acquired>, ManagerError> {
                take(&self.target, Some(Duration::ZERO))
            }

            /// Waits at most `timeout` for it (the manager keeps the deadline).
            pub fn acquire_timeout(
                &self,
                timeout: Duration,
            ) -> Result<Option<Acquired>, ManagerError> {
                take(&self.target, Some(timeout))
            }

            /// Gives it back.
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

proxy! {
    /// Python's `manager.Semaphore(n)` (or `BoundedSemaphore(n)`, whose
    /// release past `n` is an error).
    Semaphore [] = Kind::Semaphore { value: 1, bounded: false }
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
