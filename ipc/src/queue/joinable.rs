//! [`JoinableQueue`]: a [`Queue`] that counts unfinished items: `put` adds
//! one, `task_done` takes one away, `join` waits until none are left. An
//! item counts once its `put` has committed it, from the ring's own count
//! of messages, so a producer SIGKILLed in the middle of a put leaves the
//! count right. Each handle counts what it took and has not marked done,
//! so items held by a process that dies are known: `join` says so instead
//! of waiting for them forever.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let q = outlast_ipc::queue::JoinableQueue::<u32>::new(0)?;
//! q.put(&7)?;
//! assert!(q.join_timeout(std::time::Duration::from_millis(1)).is_err());
//! assert_eq!(q.get()?, 7);
//! q.task_done()?;
//! q.join()?;
//! # Ok(())
//! # }
//! ```

use std::ops::Deref;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Queue, TaskDoneError};
use crate::os::Deadline;
use crate::shm::ShmError;

/// How often a waiting `join` looks for holders that died (between
/// those looks it sleeps until a `task_done` may have finished the work).
const LOOK_FOR_THE_DEAD: Duration = Duration::from_millis(100);

/// Items taken that will never be marked done: the process that took them
/// died (or let its last handle go) before its `task_done`. `join` counts
/// them as done and says so.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{items} item(s) taken from the queue will never be marked done: \
     process {pid} died (or dropped its handle) before task_done(); every other item is done"
)]
pub struct LostItems {
    /// How many.
    pub items: u64,
    /// The process that took the last of them.
    pub pid: u32,
}

/// Why [`JoinableQueue::join_timeout`] returned before every item was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JoinQueueTimeoutError {
    #[error("items are still being worked on")]
    Timeout,
    #[error(transparent)]
    Lost(#[from] LostItems),
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct JoinableQueue<T> {
    queue: Queue<T>,
}

/// Another handle on the same queue (see [`Queue`]'s `Clone`).
impl<T> Clone for JoinableQueue<T> {
    fn clone(&self) -> Self {
        JoinableQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T> Deref for JoinableQueue<T> {
    type Target = Queue<T>;
    fn deref(&self) -> &Queue<T> {
        &self.queue
    }
}

impl<T: Serialize + DeserializeOwned> JoinableQueue<T> {
    pub fn new(maxsize: usize) -> Result<Self, ShmError> {
        Self::with_ring_bytes(maxsize, super::DEFAULT_RING_BYTES)
    }

    pub fn with_ring_bytes(maxsize: usize, ring_bytes: usize) -> Result<Self, ShmError> {
        let mut queue = Queue::with_ring_bytes(maxsize, ring_bytes)?;
        queue.count_takes();
        Ok(JoinableQueue { queue })
    }

    /// Items put and not yet marked done.
    pub fn unfinished(&self) -> i64 {
        self.queue.unfinished() as i64
    }

    /// Marks one item taken with `get` as processed.
    pub fn task_done(&self) -> Result<(), TaskDoneError> {
        if self.queue.mark_done() {
            Ok(())
        } else {
            Err(TaskDoneError::TooManyCalls)
        }
    }

    /// Waits until every item put has been marked done (Python's `join`).
    ///
    /// An item taken by a process that died (or dropped its last handle)
    /// before its `task_done` will never be done: Python's `join` then
    /// waits forever. Here, once every other item is done, `join` counts
    /// those as done and returns [`LostItems`] (once: a `join` after it
    /// waits for what was put since).
    pub fn join(&self) -> Result<(), LostItems> {
        match self.join_deadline(Deadline::never()) {
            Err(JoinQueueTimeoutError::Lost(lost)) => Err(lost),
            _ => Ok(()),
        }
    }

    /// [`join`](Self::join), waiting at most `timeout`.
    pub fn join_timeout(&self, timeout: Duration) -> Result<(), JoinQueueTimeoutError> {
        self.join_deadline(Deadline::after(timeout))
    }

    fn join_deadline(&self, deadline: Deadline) -> Result<(), JoinQueueTimeoutError> {
        let mut looked = Instant::now();
        loop {
            let lost = self.queue.lost();
            if self.queue.unfinished() <= lost {
                match self.queue.write_off_lost() {
                    Some((items, pid)) => return Err(LostItems { items, pid }.into()),
                    // None left, or another join reported them.
                    None if self.queue.unfinished() == 0 => return Ok(()),
                    None => continue,
                }
            }
            if deadline.passed() {
                return Err(JoinQueueTimeoutError::Timeout);
            }
            // The processes that hold items are asked every so often (a
            // death moves nothing another process could wake us for).
            if looked.elapsed() >= LOOK_FOR_THE_DEAD {
                self.queue.find_dead_holders();
                looked = Instant::now();
            }
            let ready = || self.queue.unfinished() <= self.queue.lost();
            let until = deadline.min(Deadline::after(LOOK_FOR_THE_DEAD));
            self.queue.sleep_until_done_moves(ready, until);
        }
    }

    /// The same as [`clone`](Clone::clone), which cannot fail.
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(self.clone())
    }
}
