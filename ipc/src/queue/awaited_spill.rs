//! An awaited put of a message too large for the ring: its copy into the
//! memfd it travels in is made on a thread of its own, once, and the
//! future then only announces it.
//!
//! Made where the future was polled, that copy held the executor's
//! thread as long as the item's own encoding had (a 100 MB message: 50
//! ms more, in one poll), and a queue too full for the record made it
//! again at every try. The thread also frees the encoded bytes (a 100 MB
//! buffer takes milliseconds to unmap).

use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Poll, Waker};

use crate::off_thread::OffThread;

use super::wait::Patience;
use super::{PutError, PutTimeoutError, Queue};

/// A large message on its way into a queue.
pub(super) enum Spill {
    /// Being copied into its memfd.
    Writing {
        len: usize,
        done: OffThread<Option<io::Result<OwnedFd>>>,
    },
    /// In its memfd, waiting for room to be announced.
    Written { len: usize, memfd: OwnedFd },
}

impl Spill {
    /// Starts copying `bytes` into a memfd on a thread of its own, which
    /// wakes `waker` when it is done; `Err(bytes)` if no thread can be had
    /// (the caller puts them itself, as a blocking put does).
    pub(super) fn start(bytes: Vec<u8>, waker: &Waker) -> Result<Spill, Vec<u8>> {
        let len = bytes.len();
        // Handed over through a cell, so a thread that never started
        // leaves the bytes here.
        let cell = Arc::new(Mutex::new(Some(bytes)));
        let theirs = Arc::clone(&cell);
        let write = move || {
            let bytes = theirs.lock().unwrap_or_else(PoisonError::into_inner).take();
            bytes.map(|bytes| super::spill_memfd(&bytes))
        };
        match OffThread::spawn("outlast-spill", write, waker) {
            Ok(done) => Ok(Spill::Writing { len, done }),
            Err(_) => {
                let bytes = cell.lock().unwrap_or_else(PoisonError::into_inner).take();
                Err(bytes.unwrap_or_default())
            }
        }
    }

    /// Puts the message once its memfd is written and the queue has room
    /// for its record: `Ok(None)` when it is in; `Ok(Some(seen))` when the
    /// queue was full, whose head read `seen` before the try (the caller
    /// waits for it to move); `Pending` while the copy runs.
    pub(super) fn poll_put<T: serde::Serialize + serde::de::DeserializeOwned>(
        &mut self,
        queue: &Queue<T>,
        waker: &Waker,
    ) -> Poll<Result<Option<u64>, PutError>> {
        if let Spill::Writing { len, done } = self {
            let written = match std::task::ready!(done.poll(waker)) {
                Ok(Some(written)) => written,
                // (The cell is emptied only when the thread never ran.)
                Ok(None) | Err(_) => Err(io::Error::other(
                    "copying the message into its memfd panicked (see the message above)",
                )),
            };
            match written {
                Ok(memfd) => *self = Spill::Written { len: *len, memfd },
                Err(e) => return Poll::Ready(Err(PutError::Os(e))),
            }
        }
        let Spill::Written { len, memfd } = self else {
            return Poll::Pending;
        };
        // Before the try: room made after it moves the head from this.
        let seen = queue.ring().head_word();
        Poll::Ready(
            match queue.publish_spilled(memfd, *len, &mut Patience::now()) {
                Ok(()) => Ok(None),
                Err(PutTimeoutError::Full) => Ok(Some(seen)),
                Err(PutTimeoutError::Put(e)) => Err(e),
            },
        )
    }
}
