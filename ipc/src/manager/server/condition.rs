//! A condition variable on the server, with its own reentrant lock. A
//! wait gives the lock up whole, waits for a notify (or its deadline),
//! then takes the lock back at the depth it had, as Python's does.

use std::collections::{HashMap, VecDeque};

use super::super::protocol::{Op, Reply};
use super::lock::LockCore;
use super::step::{refuse, ClientId, Step};

pub(super) struct Condition {
    lock: LockCore,
    /// Waiting for a notify, oldest first, with the depth to take back.
    waiting: VecDeque<(ClientId, u32)>,
    /// Woken (by a notify: true; by the deadline: false), taking the lock back.
    woken: HashMap<ClientId, (bool, u32)>,
}

impl Condition {
    pub fn new() -> Self {
        Condition {
            lock: LockCore::new(true),
            waiting: VecDeque::new(),
            woken: HashMap::new(),
        }
    }

    pub fn op(&mut self, client: ClientId, op: &Op) -> Step {
        if let Some(step) = self.lock.op(client, op) {
            return step;
        }
        match op {
            Op::Wait { wait_ms } => {
                if let Some(step) = self.take_back(client) {
                    return step;
                }
                if self.waiting.iter().any(|w| w.0 == client) {
                    return Step::Wait;
                }
                if self.lock.holder != Some(client) {
                    return refuse("wait on a condition whose lock is not held");
                }
                let depth = self.lock.release_all();
                if *wait_ms == Some(0) {
                    self.woken.insert(client, (false, depth));
                    return self.take_back(client).unwrap_or(Step::Wait);
                }
                self.waiting.push_back((client, depth));
                Step::Wait
            }
            Op::Notify(_) | Op::NotifyAll if self.lock.holder != Some(client) => {
                refuse("notify on a condition whose lock is not held")
            }
            Op::Notify(n) => {
                let n = usize::try_from(*n).unwrap_or(usize::MAX);
                self.wake(n);
                Reply::Done.into()
            }
            Op::NotifyAll => {
                self.wake(usize::MAX);
                Reply::Done.into()
            }
            _ => refuse("not an operation on a condition"),
        }
    }

    fn wake(&mut self, n: usize) {
        for _ in 0..n {
            let Some((client, depth)) = self.waiting.pop_front() else {
                break;
            };
            self.woken.insert(client, (true, depth));
        }
    }

    /// A woken waiter takes the lock back if it is free.
    fn take_back(&mut self, client: ClientId) -> Option<Step> {
        let &(notified, depth) = self.woken.get(&client)?;
        if self.lock.holder.is_some() {
            return Some(Step::Wait);
        }
        self.woken.remove(&client);
        let owner_died = self.lock.try_take(client, depth).unwrap_or(false);
        Some(
            Reply::Notified {
                notified,
                owner_died,
            }
            .into(),
        )
    }

    /// A wait's deadline passed: it stops waiting for a notify, and still
    /// takes the lock back before it is answered.
    pub fn expire(&mut self, client: ClientId) {
        if let Some(at) = self.waiting.iter().position(|w| w.0 == client) {
            if let Some((_, depth)) = self.waiting.remove(at) {
                self.woken.insert(client, (false, depth));
            }
        }
    }

    /// A waiter's awaited wait was dropped: it stops waiting for a notify
    /// and still takes its lock back before it is answered (its client
    /// then releases it). A notify it was given and has not used goes on
    /// to the next waiter, as in Python's asyncio (3.13), so that no
    /// notify is lost with a cancelled waiter.
    pub fn cancel(&mut self, client: ClientId) {
        self.expire(client);
        if let Some((notified, _)) = self.woken.get_mut(&client) {
            if std::mem::take(notified) {
                self.wake(1);
            }
        }
    }

    pub fn gone(&mut self, client: ClientId) -> bool {
        self.waiting.retain(|w| w.0 != client);
        self.woken.remove(&client);
        self.lock.gone(client)
    }

    pub fn holds(&self, client: ClientId) -> bool {
        self.lock.holder == Some(client)
    }
}
