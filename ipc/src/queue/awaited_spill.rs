//! An awaited put of a message too large for the ring, once its encoding
//! is in the memfd it travels in (written there as it was encoded, where
//! `put_async` was called; see `spill_sink`): the future only announces
//! it, when the ring has room for its record.

use std::os::fd::OwnedFd;

use super::wait::Patience;
use super::{PutError, PutTimeoutError, Queue};

/// A large message on its way into a queue: in its memfd, waiting for
/// room to be announced.
pub(super) struct Spill {
    pub(super) len: usize,
    pub(super) memfd: OwnedFd,
}

impl Spill {
    /// Puts the message if the queue has room for its record: `Ok(None)`
    /// when it is in; `Ok(Some(seen))` when the queue was full, whose head
    /// read `seen` before the try (the caller waits for it to move).
    pub(super) fn try_put<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        queue: &Queue<T>,
    ) -> Result<Option<u64>, PutError> {
        // Before the try: room made after it moves the head from this.
        let seen = queue.ring().head_word();
        match queue.publish_spilled(&self.memfd, self.len, &mut Patience::now()) {
            Ok(()) => Ok(None),
            Err(PutTimeoutError::Full) => Ok(Some(seen)),
            Err(PutTimeoutError::Put(e)) => Err(e),
        }
    }
}
