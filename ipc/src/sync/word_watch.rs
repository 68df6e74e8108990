//! What the futures of [`Event`](super::Event) and the semaphores share:
//! a futex word in a shared cell as a [`Watch`] sees it (its value is the
//! epoch, and it is ready when not zero), and the wait of a future whose
//! try found nothing.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::shm::cell::{ShmCell, ShmState};
use crate::watch::{Arm, Registration, Watch, Watched};

/// One futex word of the state in `cell`.
pub(super) struct Word<S> {
    pub cell: ShmCell<S>,
    pub word: fn(&S) -> &AtomicU32,
    /// Where a watch thread counts itself before it sleeps, for a state
    /// whose wakers wake one sleeper unless told that watch threads sleep
    /// there too (the semaphore's `watchers`).
    pub watchers: Option<fn(&S) -> &AtomicU32>,
}

impl<S: ShmState + Send + Sync + 'static> Watched for Word<S> {
    fn epoch(&self) -> u64 {
        u64::from((self.word)(self.cell.state()).load(Ordering::Acquire))
    }

    fn ready_now(&self) -> bool {
        self.epoch() != 0
    }

    fn arm(&self, seen: u64) -> Arm<'_> {
        let state = self.cell.state();
        if let Some(count) = self.watchers.map(|w| w(state)) {
            count.fetch_add(1, Ordering::SeqCst);
        }
        // A wake of the word ends the sleep; so does a value that moved
        // and moved back before the sleep (the futures look, find nothing,
        // and wait again, as a blocking wait may miss such a pulse too).
        Arm::Word {
            word: (self.word)(state),
            value: seen as u32,
            unfenced: false,
        }
    }

    fn disarm(&self) {
        if let Some(count) = self.watchers.map(|w| w(self.cell.state())) {
            count.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// After a try that found nothing, with the word at `seen` before it:
/// leaves the future's waker with `watch` (through its registration,
/// made on first use). An error only if the watch's thread cannot start.
pub(super) fn wait(
    waiting: &mut Option<Registration>,
    watch: &Arc<Watch>,
    seen: u64,
    cx: &Context<'_>,
) -> Poll<std::io::Result<()>> {
    let registration = waiting.get_or_insert_with(|| Registration::new(Arc::clone(watch)));
    match registration.wait(seen, cx.waker()) {
        Ok(()) => Poll::Pending,
        Err(e) => Poll::Ready(Err(e)),
    }
}
