//! Work a future hands to a thread of its own: reading and decoding a
//! large `Process` result, which, done where the future is polled, held
//! a current-thread tokio runtime for tens of milliseconds (100 MB: 54-78
//! ms), where an executor's thread should never wait more than some
//! microseconds. The thread wakes the future when it is done; starting it
//! costs tens of microseconds. (A queue's large messages have a handoff
//! of their own, which a dropped future leaves to the next get: see
//! `queue::left`.)

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Poll, Waker};

/// What the thread and the future share.
struct Slot<T> {
    /// The work's output, or its panic.
    done: Option<std::thread::Result<T>>,
    /// Woken once `done` is there.
    waker: Option<Waker>,
}

/// Work running on a thread of its own, awaited.
pub(crate) struct OffThread<T> {
    slot: Arc<Mutex<Slot<T>>>,
}

fn lock<T>(slot: &Mutex<Slot<T>>) -> MutexGuard<'_, Slot<T>> {
    // (Nothing is left half-done under this lock: a poisoned one is fine.)
    slot.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<T: Send + 'static> OffThread<T> {
    /// Runs `work` on a new thread named `name`, which wakes `waker` when
    /// it is done.
    pub(crate) fn spawn(
        name: &str,
        work: impl FnOnce() -> T + Send + 'static,
        waker: &Waker,
    ) -> std::io::Result<Self> {
        let slot = Arc::new(Mutex::new(Slot {
            done: None,
            waker: Some(waker.clone()),
        }));
        let theirs = Arc::clone(&slot);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let done = std::panic::catch_unwind(AssertUnwindSafe(work));
                let waker = {
                    let mut slot = lock(&theirs);
                    slot.done = Some(done);
                    slot.waker.take()
                };
                if let Some(waker) = waker {
                    waker.wake();
                }
            })?;
        Ok(OffThread { slot })
    }

    /// The work's output (`Err`: it panicked) once it is done; else
    /// `waker` is woken then.
    pub(crate) fn poll(&self, waker: &Waker) -> Poll<std::thread::Result<T>> {
        let mut slot = lock(&self.slot);
        match slot.done.take() {
            Some(done) => Poll::Ready(done),
            None => {
                keep_waker(&mut slot.waker, waker);
                Poll::Pending
            }
        }
    }
}

/// `work` on a thread of its own named `name`, awaited; here, where it
/// is awaited, if no thread can be had. `Err`: it panicked. Dropped
/// before it is done, the work still ends on its thread, its output
/// dropped there.
pub(crate) async fn run_off_thread<T, F>(name: &str, work: F) -> std::thread::Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    // Handed over through a cell, so a thread that never started leaves
    // the work here.
    let cell = Arc::new(Mutex::new(Some(work)));
    let mut running: Option<OffThread<Option<T>>> = None;
    std::future::poll_fn(|cx| {
        if running.is_none() {
            let theirs = Arc::clone(&cell);
            let taken = move || theirs.lock().unwrap_or_else(PoisonError::into_inner).take();
            match OffThread::spawn(name, move || taken().map(|work| work()), cx.waker()) {
                Ok(started) => running = Some(started),
                Err(_) => {
                    let work = cell.lock().unwrap_or_else(PoisonError::into_inner).take();
                    let here = std::panic::catch_unwind(AssertUnwindSafe(|| work.map(|w| w())));
                    return Poll::Ready(here.and_then(|out| out.ok_or_else(gone)));
                }
            }
        }
        match &running {
            Some(started) => started
                .poll(cx.waker())
                .map(|done| done.and_then(|out| out.ok_or_else(gone))),
            None => Poll::Pending,
        }
    })
    .await
}

/// The outcome of work that was never there (taken twice): as a panic.
fn gone() -> Box<dyn std::any::Any + Send> {
    Box::new("the work was taken twice")
}

/// Keeps `waker` in `kept`, to be woken once work is done (reusing the
/// one kept when it wakes the same task).
pub(crate) fn keep_waker(kept: &mut Option<Waker>, waker: &Waker) {
    match kept {
        Some(kept) => kept.clone_from(waker),
        None => *kept = Some(waker.clone()),
    }
}

/// A waker that unparks a thread of ours which polls futures itself.
pub(crate) struct Unpark(pub std::thread::Thread);

impl std::task::Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}
