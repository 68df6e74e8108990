//! [`Event`]: Python's `multiprocessing.Event`, a flag in shared memory that
//! processes wait on with a futex.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let ev = outlast_ipc::sync::Event::new()?;
//! assert!(!ev.wait_timeout(std::time::Duration::from_millis(1)));
//! ev.set();
//! assert!(ev.is_set() && ev.wait_timeout(std::time::Duration::ZERO));
//! # Ok(())
//! # }
//! ```

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::os::futex;
use crate::os::Deadline;
use crate::shm::cell::{ShmCell, ShmState};
use crate::shm::ShmError;

use crate::watch::LazyWatch;

#[repr(C)]
pub(crate) struct EventState {
    pub(super) flag: AtomicU32,
}

impl ShmState for EventState {
    const TAG: u64 = 0x4950_4345_5645_4e01; // "IPCEVEN" v1
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Event {
    pub(super) cell: ShmCell<EventState>,
    /// The thread that `wait_async` futures leave their wakers with.
    #[serde(skip)]
    pub(super) watch: Arc<LazyWatch>,
}

impl std::fmt::Debug for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Event")
            .field("cell", &self.cell)
            .finish_non_exhaustive()
    }
}

impl Event {
    /// A new, clear event.
    pub fn new() -> Result<Self, ShmError> {
        Ok(Event {
            cell: ShmCell::new(0, |_, _| {})?,
            watch: Arc::default(),
        })
    }

    pub(super) fn flag(&self) -> &AtomicU32 {
        &self.cell.state().flag
    }

    pub fn is_set(&self) -> bool {
        self.flag().load(Ordering::Acquire) != 0
    }

    /// Sets the flag and wakes every waiter.
    pub fn set(&self) {
        self.flag().store(1, Ordering::Release);
        futex::wake_all(self.flag());
    }

    pub fn clear(&self) {
        self.flag().store(0, Ordering::Release);
    }

    /// Waits until the flag is set.
    pub fn wait(&self) {
        self.wait_deadline(Deadline::never());
    }

    /// Waits at most `timeout`; true if the flag is set.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_deadline(Deadline::after(timeout))
    }

    fn wait_deadline(&self, deadline: Deadline) -> bool {
        while !self.is_set() {
            if !futex::wait(self.flag(), 0, deadline) {
                return self.is_set();
            }
        }
        true
    }

    /// A second handle on the same event.
    /// The same as [`clone`](Clone::clone), which cannot fail: handles in
    /// one process share a mapping. Kept for code from when a handle had
    /// its own.
    pub fn try_clone(&self) -> Result<Self, ShmError> {
        Ok(self.clone())
    }
}
