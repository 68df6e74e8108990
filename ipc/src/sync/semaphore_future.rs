//! [`Semaphore::acquire_async`](super::Semaphore::acquire_async) and
//! [`BoundedSemaphore::acquire_async`](super::BoundedSemaphore::acquire_async):
//! taking a unit as a `std::future::Future`, for any executor (a bound on
//! how many processes use a resource at once, awaited by an async
//! program).
//!
//! The future tries to take a unit each time it is polled; when none is
//! free it leaves its waker with the semaphore's [`Watch`], whose thread
//! sleeps on the count for every future of this process waiting on that
//! semaphore, counted in the shared `watchers` word so that a release
//! wakes every sleeper (see `SemaphoreState::watchers`). A dropped future
//! has taken nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::os::Deadline;
use crate::watch::{Registration, Watch};

use super::semaphore::{Counter, SemaphoreState};
use super::word_watch::{self, Word};

impl Counter {
    fn watch(&self) -> &Arc<Watch> {
        self.watch.get_or_init("semaphore", || {
            Arc::new(Word {
                cell: self.cell.clone(),
                word: |state: &SemaphoreState| &state.value,
                // A release wakes one sleeper unless watch threads sleep too.
                watchers: Some(|state: &SemaphoreState| &state.watchers),
            })
        })
    }
}

/// The future of `acquire_async`: ready once it has taken a unit.
#[must_use = "a future takes nothing unless it is awaited"]
pub struct AcquireFuture<'a> {
    counter: &'a Counter,
    waiting: Option<Registration>,
}

impl<'a> AcquireFuture<'a> {
    pub(super) fn new(counter: &'a Counter) -> Self {
        AcquireFuture {
            counter,
            waiting: None,
        }
    }
}

impl std::fmt::Debug for AcquireFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AcquireFuture").finish_non_exhaustive()
    }
}

impl Future for AcquireFuture<'_> {
    type Output = std::io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        crate::coop::cooperative(cx, |cx| {
            // The count before the try: a release after it shows as a move.
            let seen = u64::from(this.counter.cell.state().value.load(Ordering::Acquire));
            if this.counter.acquire(Deadline::now()) {
                this.waiting = None;
                return Poll::Ready(Ok(()));
            }
            word_watch::wait(&mut this.waiting, this.counter.watch(), seen, cx)
        })
    }
}
