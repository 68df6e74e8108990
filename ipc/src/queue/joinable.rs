//! [`JoinableQueue`]: a [`Queue`] that counts unfinished items: `put` adds
//! one, `task_done` takes one away, `join` waits until none are left. An
//! item counts once its `put` has committed it, from the ring's own count
//! of messages, so a producer SIGKILLed in the middle of a put leaves the
//! count right.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let q = outlast_ipc::queue::JoinableQueue::<u32>::new(0)?;
//! q.put(&7)?;
//! assert!(!q.join_timeout(std::time::Duration::from_millis(1)));
//! assert_eq!(q.get()?, 7);
//! q.task_done()?;
//! assert!(q.join_timeout(std::time::Duration::ZERO));
//! # Ok(())
//! # }
//! ```

use std::ops::Deref;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{Queue, TaskDoneError};
use crate::shm::ShmError;

/// How often `join` re-reads the count (no futex: the count is 64-bit and
/// changes on every put; a short sleep keeps it simple and cheap).
const JOIN_POLL: Duration = Duration::from_millis(1);

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
        let queue = Queue::with_ring_bytes(maxsize, ring_bytes)?;
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

    /// Waits until every item put has been marked done.
    pub fn join(&self) {
        while self.unfinished() > 0 {
            std::thread::sleep(JOIN_POLL);
        }
    }

    /// Waits at most `timeout`; true if every item was done.
    pub fn join_timeout(&self, timeout: Duration) -> bool {
        let end = Instant::now() + timeout;
        loop {
            if self.unfinished() <= 0 {
                return true;
            }
            if Instant::now() >= end {
                return false;
            }
            std::thread::sleep(JOIN_POLL.min(end.saturating_duration_since(Instant::now())));
        }
    }

    /// The same as [`clone`](Clone::clone), which cannot fail.
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(self.clone())
    }
}
