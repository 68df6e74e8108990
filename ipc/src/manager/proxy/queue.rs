//! Queues kept by the manager (Python's `manager.Queue()` and
//! `manager.JoinableQueue()`), typed. Unlike an [`crate::queue::Queue`]
//! they are reachable over the network, by any process with the key.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use super::super::awaited::Undo;
use super::super::awaited_round::Until;
use super::super::protocol::{Kind, Op, Reply};
use super::super::{ManagerError, Payload};
use super::{expect_done, expect_value, proxy, unexpected, wait_ms, Target};

fn put(target: &Target, item: Payload, wait: Option<Duration>) -> Result<bool, ManagerError> {
    match target.call_waiting(Op::Put(item, wait_ms(wait)), wait)? {
        Reply::Done => Ok(true),
        Reply::Bool(false) => Ok(false),
        other => Err(unexpected(other)),
    }
}

fn take<T: DeserializeOwned>(
    target: &Target,
    wait: Option<Duration>,
) -> Result<Option<T>, ManagerError> {
    expect_value(target.call_waiting(Op::Take(wait_ms(wait)), wait)?)
}

/// What both queue proxies have.
macro_rules! queue_methods {
    ($name:ident) => {
        impl<T: Serialize + DeserializeOwned> $name<T> {
            /// Puts `item`, waiting while the queue is full.
            pub fn put(&self, item: &T) -> Result<(), ManagerError> {
                put(&self.target, self.target.to_store(item)?, None).map(|_| ())
            }

            /// Puts `item` if there is room within `timeout`; whether it did.
            pub fn put_timeout(&self, item: &T, timeout: Duration) -> Result<bool, ManagerError> {
                put(&self.target, self.target.to_store(item)?, Some(timeout))
            }

            /// Takes the oldest item, waiting for one.
            pub fn get(&self) -> Result<T, ManagerError> {
                take(&self.target, None)?
                    .ok_or(ManagerError::Protocol("a wait without end ended".into()))
            }

            /// Takes the oldest item if one comes within `timeout`.
            pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>, ManagerError> {
                take(&self.target, Some(timeout))
            }

            /// Takes the oldest item if there is one now (`get_nowait`).
            pub fn try_get(&self) -> Result<Option<T>, ManagerError> {
                take(&self.target, Some(Duration::ZERO))
            }

            /// Takes the oldest item, waiting for one, as a future: [`get`](Self::get)
            /// for async code, with no runtime of ours (any executor polls
            /// it). The wait is on a connection of its own, so the
            /// proxies' other awaited calls stay free; at most eight of
            /// this process's gets on one queue wait at the manager at
            /// once, and the rest here, in line (a thousand tasks
            /// waiting hold eight connections). Cancel-safe: dropped
            /// while it waits (a
            /// `tokio::time::timeout` that ran out), the manager is told at
            /// once, and an item it had already sent goes back to the
            /// front of the queue: no item is lost.
            ///
            /// ```no_run
            /// # async fn f() -> Result<(), outlast_ipc::manager::ManagerError> {
            /// let manager = outlast_ipc::manager::Manager::start()?;
            /// let q = manager.queue::<String>()?;
            /// let line: String = q.get_async().await?;
            /// # Ok(()) }
            /// ```
            pub async fn get_async(&self) -> Result<T, ManagerError> {
                let reply = self
                    .target
                    .call_waiting_async(Op::Take(None), Undo::Unget(self.target.id))
                    .await?;
                expect_value(reply)?
                    .ok_or(ManagerError::Protocol("a wait without end ended".into()))
            }

            /// Puts `item`, waiting while the queue is full, as a future
            /// ([`get_async`](Self::get_async) is `get`'s). The item is
            /// encoded now. Dropped while it waits for room, it has put
            /// nothing, unless the item went in meanwhile (it then stays).
            pub async fn put_async(&self, item: &T) -> Result<(), ManagerError> {
                let op = Op::Put(self.target.to_store(item)?, None);
                expect_done(self.target.call_waiting_async(op, Undo::Nothing).await?)
            }

            /// `qsize()`: exact, as the manager keeps the queue.
            pub fn len(&self) -> Result<u64, ManagerError> {
                self.target.count(Op::Len)
            }

            /// `empty()`.
            pub fn is_empty(&self) -> Result<bool, ManagerError> {
                self.len().map(|n| n == 0)
            }

            /// `full()`.
            pub fn is_full(&self) -> Result<bool, ManagerError> {
                self.target.boolean(Op::IsFull)
            }
        }
    };
}

proxy! {
    /// Python's `manager.Queue(maxsize)`.
    Queue [T] = Kind::Queue { maxsize: 0, joinable: false }
}
queue_methods!(Queue);

proxy! {
    /// Python's `manager.JoinableQueue(maxsize)`: a queue whose consumers
    /// mark each item done, and whose `join` waits until all are.
    JoinableQueue [T] = Kind::Queue { maxsize: 0, joinable: true }
}
queue_methods!(JoinableQueue);

impl<T> JoinableQueue<T> {
    /// Marks one item taken as done.
    pub fn task_done(&self) -> Result<(), ManagerError> {
        self.target.done(Op::TaskDone)
    }

    fn join_wait(&self, wait: Option<Duration>) -> Result<bool, ManagerError> {
        match self.target.call_waiting(Op::Join(wait_ms(wait)), wait)? {
            Reply::Done => Ok(true),
            Reply::Bool(false) => Ok(false),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until every item put has been marked done.
    pub fn join(&self) -> Result<(), ManagerError> {
        self.join_wait(None).map(|_| ())
    }

    /// Marks one item taken as done, as a future.
    pub async fn task_done_async(&self) -> Result<(), ManagerError> {
        expect_done(self.target.call_async(Op::TaskDone).await?)
    }

    /// Waits until every item put has been marked done, as a future
    /// (dropped, it stops waiting). The awaited joins of a process on one
    /// queue share one wait at the manager, as an event's waits do.
    pub async fn join_async(&self) -> Result<(), ManagerError> {
        self.target.wait_round_async(Until::Joined).await
    }

    /// [`join`](Self::join) for at most `timeout`; whether all were done.
    pub fn join_timeout(&self, timeout: Duration) -> Result<bool, ManagerError> {
        self.join_wait(Some(timeout))
    }
}
