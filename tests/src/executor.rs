//! A minimal executor for the tests of our futures, with no runtime of
//! anyone's: the calling thread polls, parks until a waker is called, and
//! counts its polls (a future that asks to be polled in a loop while it
//! waits shows there), with a patience after which it gives up.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// A boxed future for [`join_all`].
pub type Task<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

struct Unpark {
    woken: AtomicBool,
    thread: Thread,
}

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        self.thread.unpark();
    }
}

/// What [`join_all`] saw.
#[derive(Debug)]
pub struct Joined<T> {
    /// Each future's output, in order; `None` for those still pending
    /// when the patience ran out.
    pub outputs: Vec<Option<T>>,
    /// How many times futures were polled in all.
    pub polls: u64,
}

/// Polls `futures` on this thread until all are ready or `patience` passes.
pub fn join_all<T>(mut futures: Vec<Task<'_, T>>, patience: Duration) -> Joined<T> {
    let unpark = Arc::new(Unpark {
        woken: AtomicBool::new(true),
        thread: std::thread::current(),
    });
    let waker = Waker::from(Arc::clone(&unpark));
    let mut cx = Context::from_waker(&waker);
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    let mut polls = 0;
    let deadline = Instant::now() + patience;
    while outputs.iter().any(Option::is_none) {
        if unpark.woken.swap(false, Ordering::SeqCst) {
            for (future, out) in futures.iter_mut().zip(outputs.iter_mut()) {
                if out.is_none() {
                    polls += 1;
                    if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
                        *out = Some(v);
                    }
                }
            }
            continue;
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::park_timeout(deadline - now);
    }
    Joined { outputs, polls }
}

/// One future: its output, or `None` if `patience` passed first.
pub fn block_on<T>(future: impl Future<Output = T>, patience: Duration) -> Option<T> {
    let task: Task<'_, T> = Box::pin(future);
    join_all(vec![task], patience).outputs.pop().flatten()
}

/// Polls `future` once: pending or its output.
pub fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}
