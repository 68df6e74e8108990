//! A future bounded by a deadline, with no executor's timer: the
//! reactor's [`Alarm`] wakes it when the deadline passes. For the timed
//! waits of ours whose peer keeps the deadline (a manager's timed
//! acquire): a peer that stopped (SIGSTOP) never answers, and the wait
//! must still end.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Instant;

use super::Alarm;

/// `future`'s output, or `None` once `deadline` has passed first (the
/// future is then dropped). Without a deadline, or if no alarm can be set
/// (the reactor's thread cannot start), it is `future` unbounded.
pub(crate) async fn within<F: Future>(deadline: Option<Instant>, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut alarm: Option<Alarm> = None;
    let mut unbounded = deadline.is_none();
    std::future::poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        let Some(at) = deadline.filter(|_| !unbounded) else {
            return Poll::Pending;
        };
        if Instant::now() >= at {
            return Poll::Ready(None);
        }
        match &alarm {
            Some(set) => set.set_waker(cx.waker()),
            None => match Alarm::new(at, cx.waker()) {
                Ok(set) => alarm = Some(set),
                Err(_) => unbounded = true,
            },
        }
        Poll::Pending
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn block_on<F: Future>(future: F) -> F::Output {
        let unpark = crate::off_thread::Unpark(std::thread::current());
        let waker = std::task::Waker::from(std::sync::Arc::new(unpark));
        let mut cx = std::task::Context::from_waker(&waker);
        let mut future = pin!(future);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            std::thread::park();
        }
    }

    #[test]
    fn a_future_that_never_ends_ends_at_the_deadline_and_one_that_does_is_kept() {
        let started = Instant::now();
        let at = started + Duration::from_millis(100);
        assert_eq!(
            block_on(within(Some(at), std::future::pending::<()>())),
            None
        );
        assert!(started.elapsed() >= Duration::from_millis(100));
        let ready = block_on(within(Some(at + Duration::from_secs(60)), async { 7 }));
        assert_eq!(ready, Some(7));
        assert_eq!(block_on(within(None, async { 8 })), Some(8));
    }
}
