//! [`SimpleQueue`]: Python's `multiprocessing.SimpleQueue`, an unbounded
//! queue with only `put`, `get`, `empty` and `close`.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let q = outlast_ipc::queue::SimpleQueue::<(u8, String)>::new()?;
//! q.put(&(1, "one".into()))?;
//! assert!(!q.empty());
//! assert_eq!(q.get()?, (1, "one".to_string()));
//! # Ok(())
//! # }
//! ```

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::{GetError, GetTimeoutError, PutError, Queue};
use crate::shm::ShmError;

#[derive(Debug, Serialize, Deserialize)]
#[serde(bound = "")]
pub struct SimpleQueue<T> {
    queue: Queue<T>,
}

/// Another handle on the same queue (see [`Queue`]'s `Clone`).
impl<T> Clone for SimpleQueue<T> {
    fn clone(&self) -> Self {
        SimpleQueue {
            queue: self.queue.clone(),
        }
    }
}

impl<T: Serialize + DeserializeOwned> SimpleQueue<T> {
    pub fn new() -> Result<Self, ShmError> {
        Ok(SimpleQueue {
            queue: Queue::new(0)?,
        })
    }

    pub fn put(&self, item: &T) -> Result<(), PutError> {
        self.queue.put(item)
    }

    pub fn get(&self) -> Result<T, GetError> {
        self.queue.get()
    }

    pub fn get_timeout(&self, timeout: Duration) -> Result<T, GetTimeoutError> {
        self.queue.get_timeout(timeout)
    }

    /// [`get`](Self::get) as a future (see [`Queue::get_async`]).
    pub fn get_async(&self) -> super::GetFuture<'_, T> {
        self.queue.get_async()
    }

    /// [`put`](Self::put) as a future (see [`Queue::put_async`]).
    pub fn put_async(&self, item: &T) -> super::PutFuture<'_, T> {
        self.queue.put_async(item)
    }

    pub fn empty(&self) -> bool {
        self.queue.is_empty()
    }

    pub fn close(&self) {
        self.queue.close()
    }

    /// The same as [`clone`](Clone::clone), which cannot fail.
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(self.clone())
    }
}
