//! How many of this process's awaited calls wait at the manager on one
//! object at once. Each waiting call needs a connection of its own (the
//! manager answers a connection's requests in order, and a lock is held
//! by the connection that took it), so two thousand tasks awaiting one
//! semaphore, the usual async rate limiter, opened two thousand: past the
//! process's 1,024 descriptors more than half failed, and past the
//! manager's 1,024 clients it refused the rest.
//!
//! So at most [`AT_ONCE`] acquires, untimed gets and untimed puts per
//! object wait at the manager (each kind in a line of its own); the rest
//! wait here, in the order they came, and each goes as one of those ends,
//! that is, once the object moved. What a program can see is the order:
//! this process's waiters beyond the first eight are served in the order
//! they came, and those of other processes may be served before them. A
//! timed acquire waits in line too, with an alarm (see
//! [`crate::watch::Alarm`]) at its deadline: it goes to the manager with
//! the time it has left, and one whose time runs out in line gives up
//! there, having taken nothing, as the manager would have answered. (Waits
//! that every waiter must be at the manager for are not gated: a
//! barrier's, a condition's; an event's and a join's share one wait
//! instead, see [`super::awaited_round`]. A try never waits: not gated.)

use std::collections::{HashMap, VecDeque};
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use super::awaited::with_pool;
use super::client::Link;
use super::protocol::{Op, Reply, Request};
use crate::watch::Alarm;

/// The waiting calls of one process that one line lets wait at the
/// manager at once.
pub(super) const AT_ONCE: usize = 8;

/// What a gated call waits for. Each has its own line: a get in line
/// behind puts waiting for room, with nobody else to take, would wait for
/// ever (and a put on an unbounded queue behind gets waiting for items).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Awaits {
    /// A lock, a semaphore's unit, a condition's lock.
    Acquire,
    /// A queue's item.
    Item,
    /// Room in a queue.
    Room,
}

/// One line: an object, and what its calls wait for.
pub(super) type Gate = (u64, Awaits);

/// The waiting calls of a process on a manager's objects, by line.
#[derive(Default)]
pub(super) struct Gates {
    by_object: HashMap<Gate, Line>,
}

/// One object's calls: how many wait at the manager, and who waits here.
#[derive(Default)]
struct Line {
    at_manager: usize,
    next_ticket: u64,
    /// In the order they came: a ticket and the waker of its last poll.
    queue: VecDeque<(u64, Waker)>,
}

impl Gates {
    /// Lets the ticket holder (or a newcomer, `None`) through if its turn
    /// has come, else keeps `waker` for it: `Ok` once through, `Err` with
    /// the caller's ticket in line.
    fn pass(&mut self, id: Gate, ticket: Option<u64>, waker: &Waker) -> Result<(), u64> {
        let line = self.by_object.entry(id).or_default();
        // A ticket the line no longer has (the manager ended, and its line
        // with it) comes as a newcomer.
        let ticket = ticket.filter(|t| line.queue.iter().any(|(at, _)| at == t));
        let first = match ticket {
            None => line.queue.is_empty(),
            Some(t) => line.queue.front().map(|(front, _)| *front) == Some(t),
        };
        if first && line.at_manager < AT_ONCE {
            if ticket.is_some() {
                line.queue.pop_front();
            }
            line.at_manager += 1;
            // Room for more: the next one goes too.
            if line.at_manager < AT_ONCE {
                if let Some((_, next)) = line.queue.front() {
                    next.wake_by_ref();
                }
            }
            return Ok(());
        }
        match ticket.and_then(|t| line.queue.iter_mut().find(|(at, _)| *at == t)) {
            Some((t, kept)) => {
                if !kept.will_wake(waker) {
                    *kept = waker.clone();
                }
                Err(*t)
            }
            None => {
                let t = line.next_ticket;
                line.next_ticket += 1;
                line.queue.push_back((t, waker.clone()));
                Err(t)
            }
        }
    }

    /// A call through the gate ended: the first in line goes.
    fn leave(&mut self, id: Gate) {
        if let Some(line) = self.by_object.get_mut(&id) {
            line.at_manager = line.at_manager.saturating_sub(1);
            self.wake_first(id);
        }
    }

    /// A call in line was dropped: it leaves the line, and its turn, if it
    /// had come, goes to the next.
    fn give_up(&mut self, id: Gate, ticket: u64) {
        if let Some(line) = self.by_object.get_mut(&id) {
            line.queue.retain(|(t, _)| *t != ticket);
            self.wake_first(id);
        }
    }

    /// Wakes the first in line if it may go; forgets an object nobody
    /// waits on.
    fn wake_first(&mut self, id: Gate) {
        let Some(line) = self.by_object.get(&id) else {
            return;
        };
        match line.queue.front() {
            Some((_, first)) if line.at_manager < AT_ONCE => first.wake_by_ref(),
            Some(_) => {}
            None if line.at_manager == 0 => {
                self.by_object.remove(&id);
            }
            None => {}
        }
    }

    /// Wakes everyone in line (their manager ended: each goes on, and
    /// finds it gone).
    pub fn wake_all(&mut self) {
        for line in self.by_object.values() {
            for (_, waker) in &line.queue {
                waker.wake_by_ref();
            }
        }
    }
}

/// A waiting request's place in the gate: its line, and until when it
/// waits (`None`: for ever).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Gated {
    pub gate: Gate,
    pub until: Option<Instant>,
}

/// The line a waiting request stands in, if it is one the gate counts:
/// an acquire that waits (with a deadline or not), an untimed get or put.
pub(super) fn gated(request: &Request) -> Option<Gated> {
    let Request::On { id, op } = request else {
        return None;
    };
    let (awaits, until) = match op {
        Op::Acquire { wait_ms: None } => (Awaits::Acquire, None),
        // (Past what an Instant holds, if ever: for ever.)
        &Op::Acquire {
            wait_ms: Some(ms @ 1..),
        } => (
            Awaits::Acquire,
            Instant::now().checked_add(Duration::from_millis(ms)),
        ),
        Op::Take(None) => (Awaits::Item, None),
        Op::Put(_, None) => (Awaits::Room, None),
        _ => return None,
    };
    Some(Gated {
        gate: (*id, awaits),
        until,
    })
}

/// `request`, a timed acquire whose turn came, with the time it has left
/// (none: a try).
pub(super) fn with_time_left(request: &mut Request, until: Instant) {
    if let Request::On {
        op: Op::Acquire { wait_ms: Some(ms) },
        ..
    } = request
    {
        let left = until.saturating_duration_since(Instant::now());
        // Rounded up: a wait with a moment left still waits that moment.
        *ms = u64::try_from(left.as_micros().div_ceil(1000)).unwrap_or(u64::MAX);
    }
}

/// What the manager answers a timed acquire that took nothing: the answer
/// of one whose time ran out in line.
pub(super) fn timed_out() -> Reply {
    Reply::Bool(false)
}

/// A turn to wait at the manager on one object; the next in line goes
/// when it is dropped.
pub(super) struct Turn<'a> {
    link: &'a Link,
    id: Gate,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        with_pool(self.link, |pool| pool.gates.leave(self.id));
    }
}

/// A place in line, given up if dropped before its turn.
struct InLine<'a> {
    link: &'a Link,
    id: Gate,
    ticket: Option<u64>,
}

impl Drop for InLine<'_> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            with_pool(self.link, |pool| pool.gates.give_up(self.id, ticket));
        }
    }
}

/// How a wait in line ended.
pub(super) enum Passage<'a> {
    /// Its turn came: it waits at the manager until this is dropped.
    Turn(Turn<'a>),
    /// Its time ran out in line: it took nothing.
    TimedOut,
    /// No alarm could be set for its deadline (the reactor's thread could
    /// not start): it goes to the manager out of line, as before the gate.
    Unlined,
}

/// Waits here until fewer than [`AT_ONCE`] of this process's calls wait
/// at `link`'s manager in its line, first come first served, or until its
/// deadline. Cancel-safe: dropped, it leaves the line, having sent
/// nothing.
pub(super) async fn turn(link: &Link, gated: Gated) -> Passage<'_> {
    let id = gated.gate;
    let mut place = InLine {
        link,
        id,
        ticket: None,
    };
    let mut alarm: Option<Alarm> = None;
    let passage = std::future::poll_fn(|cx| {
        let passed = with_pool(link, |pool| pool.gates.pass(id, place.ticket, cx.waker()));
        let ticket = match passed {
            Ok(()) => {
                place.ticket = None;
                return Poll::Ready(Passage::Turn(Turn { link, id }));
            }
            Err(ticket) => ticket,
        };
        place.ticket = Some(ticket);
        let Some(until) = gated.until else {
            return Poll::Pending;
        };
        if Instant::now() >= until {
            return Poll::Ready(Passage::TimedOut);
        }
        match &alarm {
            Some(set) => set.set_waker(cx.waker()),
            None => match Alarm::new(until, cx.waker()) {
                Ok(set) => alarm = Some(set),
                Err(_) => return Poll::Ready(Passage::Unlined),
            },
        }
        Poll::Pending
    })
    .await;
    // Out of line, its turn passes on (`InLine`'s drop).
    drop(place);
    passage
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    /// Counts its wakes.
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        (count.clone(), Waker::from(count))
    }

    /// A call in line: its ticket, its wakes, its waker.
    type InLine = (u64, Arc<Count>, Waker);

    /// Fills `gate`'s line at the manager, then puts two calls in line.
    fn full_with_two_in_line(gates: &mut Gates, gate: Gate) -> (InLine, InLine) {
        let (_, w) = waker();
        for _ in 0..AT_ONCE {
            assert_eq!(gates.pass(gate, None, &w), Ok(()));
        }
        let mut next = || {
            let (woken, w) = waker();
            let ticket = gates.pass(gate, None, &w).expect_err("in line");
            (ticket, woken, w)
        };
        (next(), next())
    }

    #[test]
    fn past_the_limit_calls_wait_in_order_and_go_as_others_end() {
        let mut gates = Gates::default();
        let items = (7, Awaits::Item);
        let ((a, first_woken, first), (b, second_woken, second)) =
            full_with_two_in_line(&mut gates, items);
        // Another object has its own line, and so have the same
        // object's puts.
        let (_, w) = waker();
        assert_eq!(gates.pass((8, Awaits::Item), None, &w), Ok(()));
        assert_eq!(gates.pass((7, Awaits::Room), None, &w), Ok(()));
        // Not its turn: the second stays in line, even polled again.
        assert_eq!(gates.pass(items, Some(b), &second), Err(b));
        gates.leave(items);
        assert_eq!(first_woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(second_woken.0.load(Ordering::SeqCst), 0);
        // The second cannot jump ahead of the first.
        assert_eq!(gates.pass(items, Some(b), &second), Err(b));
        assert_eq!(gates.pass(items, Some(a), &first), Ok(()));
        // One more call at the manager ends: the second goes.
        gates.leave(items);
        assert_eq!(second_woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(gates.pass(items, Some(b), &second), Ok(()));
        for _ in 0..AT_ONCE {
            gates.leave(items);
        }
        gates.leave((8, Awaits::Item));
        gates.leave((7, Awaits::Room));
        assert!(gates.by_object.is_empty(), "nobody left in any line");
    }

    #[test]
    fn a_timed_acquire_goes_with_the_time_it_has_left() {
        let mut request = Request::On {
            id: 1,
            op: Op::Acquire {
                wait_ms: Some(5_000),
            },
        };
        with_time_left(&mut request, Instant::now() + Duration::from_millis(1_500));
        let Request::On {
            op: Op::Acquire { wait_ms: Some(ms) },
            ..
        } = request
        else {
            panic!("not an acquire: {request:?}");
        };
        assert!((1_000..=1_500).contains(&ms), "{ms} ms left");
        with_time_left(&mut request, Instant::now());
        assert!(
            matches!(
                request,
                Request::On {
                    op: Op::Acquire { wait_ms: Some(0) },
                    ..
                }
            ),
            "a passed deadline is a try: {request:?}"
        );
    }

    #[test]
    fn a_call_dropped_at_the_front_passes_its_turn_on() {
        let mut gates = Gates::default();
        let items = (1, Awaits::Item);
        let ((a, _, _), (b, second_woken, second)) = full_with_two_in_line(&mut gates, items);
        gates.leave(items);
        // Its turn came, and it was dropped before it took it.
        gates.give_up(items, a);
        assert_eq!(second_woken.0.load(Ordering::SeqCst), 1);
        assert_eq!(gates.pass(items, Some(b), &second), Ok(()));
    }

    #[test]
    fn a_ticket_whose_line_is_gone_comes_as_a_newcomer() {
        let mut gates = Gates::default();
        let (_, w) = waker();
        for _ in 0..AT_ONCE {
            assert_eq!(gates.pass((3, Awaits::Item), None, &w), Ok(()));
        }
        let t = gates
            .pass((3, Awaits::Item), None, &w)
            .expect_err("in line");
        // The manager ended: its gates went with its pool.
        let mut gates = Gates::default();
        assert_eq!(gates.pass((3, Awaits::Item), Some(t), &w), Ok(()));
    }

    #[test]
    fn waiting_acquires_and_untimed_gets_and_puts_are_gated() {
        let on = |op| Request::On { id: 5, op };
        let gate = |op| gated(&on(op)).map(|g| g.gate);
        assert_eq!(
            gated(&on(Op::Acquire { wait_ms: None })),
            Some(Gated {
                gate: (5, Awaits::Acquire),
                until: None
            })
        );
        let before = Instant::now();
        let timed = gated(&on(Op::Acquire {
            wait_ms: Some(2_000),
        }))
        .expect("a timed acquire is gated");
        assert_eq!(timed.gate, (5, Awaits::Acquire));
        let until = timed.until.expect("a deadline");
        assert!(until >= before + Duration::from_millis(2_000));
        assert!(until <= Instant::now() + Duration::from_millis(2_000));
        assert_eq!(gate(Op::Take(None)), Some((5, Awaits::Item)));
        assert_eq!(gate(Op::Put(vec![1].into(), None)), Some((5, Awaits::Room)));
        assert_eq!(gated(&on(Op::Acquire { wait_ms: Some(0) })), None);
        assert_eq!(gated(&on(Op::Take(Some(10)))), None);
        assert_eq!(gated(&on(Op::WaitSet { wait_ms: None })), None);
        assert_eq!(gated(&on(Op::Arrive { wait_ms: None })), None);
        assert_eq!(gated(&on(Op::Wait { wait_ms: None })), None);
        assert_eq!(gated(&on(Op::Join(None))), None);
    }
}
