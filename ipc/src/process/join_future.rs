//! [`Process::join_async`]: `join` as a `std::future::Future`, for any
//! executor.
//!
//! The future tries a non-waiting join each time it is polled; while the
//! child runs, it leaves its waker with this process's reactor (one
//! thread, one `epoll`, for every awaited descriptor), which watches a
//! duplicate of the child's pidfd (or, for a fork server's child, of the
//! pipe its status comes through) and wakes it when the child ends.
//! A report of a megabyte or more is then read and decoded on a thread of
//! its own (see `off_thread`), so the executor's thread stays free.
//! Dropped before it is ready, it has changed nothing: the child runs on
//! (or its report stays), and a later join gets it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::watch::{Arm, Readiness, Registration, Source, WaitOn, Watch, Watched};

use super::{outcome_of, JoinError, JoinTimeoutError, Process};
use crate::off_thread::OffThread;

/// What a process's awaited end waits on, made on first use; let go
/// with the process (the reactor closes its duplicate descriptor then).
#[derive(Debug, Default)]
pub(super) struct ExitWatch(Option<WaitOn>);

impl Drop for ExitWatch {
    fn drop(&mut self) {
        if let Some(WaitOn::Watch(watch)) = &self.0 {
            watch.stop();
        }
    }
}

/// A child with nothing to poll (a kernel without pidfds): looked at
/// again every slice.
struct Ticking;

impl Watched for Ticking {
    fn epoch(&self) -> u64 {
        0
    }
    fn ready_now(&self) -> bool {
        false
    }
    fn arm(&self, _seen: u64) -> Arm<'_> {
        Arm::Poll
    }
}

impl<A, R> Process<A, R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned,
{
    /// Waits for the child to end and gives its entry's return value, as
    /// a future: [`join`](Self::join) for async code, with no runtime of
    /// ours. While it waits, this process's reactor thread (one for every
    /// awaited descriptor) watches the child's pidfd, not the executor; a
    /// result of a megabyte or more is then read and decoded on a thread
    /// of its own (awaiting asks `R: Send + 'static`). Dropped before it
    /// is ready, it has changed nothing (the child runs on, or its result
    /// waits for the next join).
    pub fn join_async(&mut self) -> JoinFuture<'_, A, R> {
        JoinFuture {
            process: self,
            waiting: None,
            reading: None,
        }
    }

    /// What the child's end is awaited on.
    fn exit_watch_for_futures(&mut self) -> std::io::Result<WaitOn> {
        if let Some(on) = &self.exit_watch.0 {
            return Ok(on.clone());
        }
        let fd = self.child.as_ref().and_then(|c| c.exit_watch());
        let on = match fd {
            Some(fd) => WaitOn::Descriptor(Source::new(fd, Readiness::Readable)?),
            None => WaitOn::Watch(Watch::new(Arc::new(Ticking), "join")),
        };
        self.exit_watch.0 = Some(on.clone());
        Ok(on)
    }
}

/// The future of [`Process::join_async`].
#[must_use = "a future joins nothing unless it is awaited"]
pub struct JoinFuture<'a, A, R> {
    process: &'a mut Process<A, R>,
    waiting: Option<Registration>,
    /// A large report being read and decoded off the executor's thread.
    reading: Option<OffThread<Result<R, JoinError>>>,
}

impl<A, R> std::fmt::Debug for JoinFuture<'_, A, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JoinFuture").finish_non_exhaustive()
    }
}

impl<A, R> Future for JoinFuture<'_, A, R>
where
    A: Serialize + DeserializeOwned,
    R: Serialize + DeserializeOwned + Send + 'static,
{
    type Output = Result<R, JoinError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        if let Some(reading) = &this.reading {
            let read = std::task::ready!(reading.poll(cx.waker()));
            this.reading = None;
            this.process.joined_elsewhere();
            return Poll::Ready(read.unwrap_or_else(|_| {
                Err(JoinError::BadReport(
                    "decoding the result panicked (see the message above)".into(),
                ))
            }));
        }
        match this.process.ended_with_large_report() {
            Ok(Some((status, report))) => {
                let max = this.process.max_result_size;
                let read = move || outcome_of::<R>(status, &report, max);
                // (No thread to be had: read here, as a join does.)
                if let Ok(reading) = OffThread::spawn("outlast-join", read, cx.waker()) {
                    this.reading = Some(reading);
                    return Poll::Pending;
                }
            }
            Ok(None) => {}
            Err(e) => return Poll::Ready(Err(JoinError::Io(e))),
        }
        match this.process.join_timeout(Duration::ZERO) {
            Ok(value) => Poll::Ready(Ok(value)),
            Err(JoinTimeoutError::Join(e)) => Poll::Ready(Err(e)),
            Err(JoinTimeoutError::Timeout) => {
                if this.waiting.is_none() {
                    match this.process.exit_watch_for_futures() {
                        Ok(watch) => this.waiting = Some(Registration::new(watch)),
                        Err(e) => return Poll::Ready(Err(JoinError::Io(e))),
                    }
                }
                match &this.waiting {
                    Some(registration) => match registration.wait(0, cx.waker()) {
                        Ok(()) => Poll::Pending,
                        Err(e) => Poll::Ready(Err(JoinError::Io(e))),
                    },
                    None => Poll::Pending,
                }
            }
        }
    }
}
