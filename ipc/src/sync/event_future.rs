//! [`Event::wait_async`]: an event's wait as a `std::future::Future`, for
//! any executor (a shutdown flag that worker processes set, awaited in a
//! `select!`).
//!
//! The future looks at the flag each time it is polled; while it is
//! clear, it leaves its waker with the event's [`Watch`], whose thread
//! sleeps on the flag's futex for every future of this process waiting on
//! that event (`set` wakes every sleeper), and wakes them. A dropped future
//! has changed nothing.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::watch::{Registration, Watch};

use super::event::{Event, EventState};
use super::word_watch::{self, Word};

impl Event {
    /// Waits until the flag is set, as a future: [`wait`](Self::wait)
    /// for async code, with no runtime of ours (any executor polls it).
    /// While it waits, a watcher thread of this process (one for up to 127
    /// awaited events, semaphores and queue sides) sleeps on the flag, not
    /// the executor's. Cancel-safe: dropped, it has changed nothing. An error
    /// only if that thread cannot start.
    ///
    /// ```
    /// use std::future::Future;
    /// use std::task::{Context, Poll, Waker};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let stop = outlast_ipc::sync::Event::new()?;
    /// let mut cx = Context::from_waker(Waker::noop());
    /// let mut wait = std::pin::pin!(stop.wait_async());
    /// assert!(wait.as_mut().poll(&mut cx).is_pending());
    /// stop.set(); // as a worker process would
    /// assert!(matches!(wait.as_mut().poll(&mut cx), Poll::Ready(Ok(()))));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Under an executor: `stop.wait_async().await?`, or a branch of a
    /// `select!` beside the work.
    pub fn wait_async(&self) -> WaitFuture<'_> {
        WaitFuture {
            event: self,
            waiting: None,
        }
    }

    /// This event's watch, started on first use.
    fn watch(&self) -> &Arc<Watch> {
        self.watch.get_or_init("event", || {
            Arc::new(Word {
                cell: self.cell.clone(),
                word: |state: &EventState| &state.flag,
                watchers: None,
            })
        })
    }
}

/// The future of [`Event::wait_async`].
#[must_use = "a future waits for nothing unless it is awaited"]
pub struct WaitFuture<'a> {
    event: &'a Event,
    waiting: Option<Registration>,
}

impl std::fmt::Debug for WaitFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WaitFuture").finish_non_exhaustive()
    }
}

impl Future for WaitFuture<'_> {
    type Output = std::io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        crate::coop::cooperative(cx, |cx| {
            // The flag before the look: a set after it shows as a moved epoch.
            let seen = u64::from(this.event.flag().load(Ordering::Acquire));
            if seen != 0 {
                this.waiting = None;
                return Poll::Ready(Ok(()));
            }
            word_watch::wait(&mut this.waiting, this.event.watch(), seen, cx)
        })
    }
}
