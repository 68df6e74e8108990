//! [`Link`]: what connects the supervisor and one worker. Tasks and results
//! travel through two shared-memory queues (no syscall per message); a
//! socketpair carries only a doorbell, so the supervisor's single `poll`
//! wakes when results are waiting, and its end of file says the worker is gone.
//!
//! The doorbell is rung only when no ring is pending: the worker sets the
//! shared `bell_pending` flag from 0 to 1 and writes one byte; the supervisor
//! reads the bytes, clears the flag, *then* drains the results queue, so a
//! result put after the drain started always rings again.

use std::time::Duration;

use ipc::queue::{GetTimeoutError, PutError, Queue};
use ipc::value::Value;
use ipc::{Connection, Pipe};
use serde::{Deserialize, Serialize};

use crate::protocol::{FromWorker, ToWorker};

/// One side of the link.
#[derive(Debug, Serialize, Deserialize)]
pub struct Link {
    pub tasks: Queue<ToWorker>,
    pub results: Queue<FromWorker>,
    pub bell_pending: Value<u32>,
    pub doorbell: Connection,
}

/// Why a link could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot make the link's queues: {0}")]
    Shm(#[from] ipc::shm::ShmError),
    #[error("cannot make the link's doorbell: {0}")]
    Doorbell(#[from] std::io::Error),
}

impl Link {
    /// The supervisor's side and the worker's side of a new link whose
    /// queues each have `ring_bytes` of ring.
    pub fn pair(ring_bytes: usize) -> Result<(Link, Link), LinkError> {
        let tasks = Queue::with_ring_bytes(0, ring_bytes)?;
        let results = Queue::with_ring_bytes(0, ring_bytes)?;
        let bell_pending = Value::new(0u32)?;
        let (ours, theirs) = Pipe::duplex()?;
        let worker_side = Link {
            tasks: tasks.try_clone()?,
            results: results.try_clone()?,
            bell_pending: bell_pending.try_clone()?,
            doorbell: theirs,
        };
        // The supervisor only reads results; its handle must not keep the
        // worker's results queue open after the worker is gone.
        results.close();
        let supervisor_side = Link {
            tasks,
            results,
            bell_pending,
            doorbell: ours,
        };
        Ok((supervisor_side, worker_side))
    }

    /// Worker side: puts a message for the supervisor and rings if needed.
    pub fn send(&mut self, message: &FromWorker) -> Result<(), PutError> {
        self.results.put(message)?;
        self.ring();
        Ok(())
    }

    /// Worker side: rings the doorbell unless a ring is already pending.
    pub fn ring(&mut self) {
        if self.bell_pending.compare_exchange(0, 1).is_ok() {
            // A full socket means rings are waiting to be read: enough.
            let _ = self.doorbell.send_bytes_timeout(&[1], Duration::ZERO);
        }
    }

    /// Worker side: the next message from the supervisor, waiting at most `timeout`.
    pub fn receive(&self, timeout: Duration) -> Result<ToWorker, GetTimeoutError> {
        self.tasks.get_timeout(timeout)
    }
}
