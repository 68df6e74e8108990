//! Locks, reentrant locks and semaphores on the server. A lock remembers
//! who holds it, so a holder whose connection closes (its process died)
//! gives it back, and the next taker is told the previous holder died. A
//! semaphore is a count with no owner, as Python's, unless it is made
//! owned: then it remembers who holds its units, as a lock does.

use std::collections::HashMap;

use super::super::protocol::{Op, Reply};
use super::step::{refuse, ClientId, Step};

/// A lock's state: also the lock inside a condition.
#[derive(Default)]
pub(super) struct LockCore {
    pub reentrant: bool,
    pub holder: Option<ClientId>,
    /// How many times the holder took it (an `RLock` counts).
    pub depth: u32,
    /// The last holder died holding it; told to the next one.
    pub owner_died: bool,
}

impl LockCore {
    pub fn new(reentrant: bool) -> Self {
        LockCore {
            reentrant,
            ..LockCore::default()
        }
    }

    /// Takes the lock for `client` if it can now (`depth` times if free).
    pub fn try_take(&mut self, client: ClientId, depth: u32) -> Option<bool> {
        match self.holder {
            None => {
                self.holder = Some(client);
                self.depth = depth;
                Some(std::mem::take(&mut self.owner_died))
            }
            Some(h) if h == client && self.reentrant => {
                self.depth = self.depth.saturating_add(1);
                Some(false)
            }
            // A plain lock taken again by its holder waits, as Python's does.
            Some(_) => None,
        }
    }

    pub fn release(&mut self, client: ClientId) -> Result<(), String> {
        if self.holder != Some(client) {
            return Err("release of a lock not held".into());
        }
        self.depth -= 1;
        if self.depth == 0 {
            self.holder = None;
        }
        Ok(())
    }

    /// Gives up the whole hold (a condition's wait): the depth it had.
    pub fn release_all(&mut self) -> u32 {
        self.holder = None;
        std::mem::take(&mut self.depth)
    }

    /// `client` died: a lock it held is freed and marked.
    pub fn gone(&mut self, client: ClientId) -> bool {
        if self.holder != Some(client) {
            return false;
        }
        self.holder = None;
        self.depth = 0;
        self.owner_died = true;
        true
    }

    /// `acquire`, `release`: what a lock and a condition share.
    pub fn op(&mut self, client: ClientId, op: &Op) -> Option<Step> {
        Some(match op {
            Op::Acquire { wait_ms } => match self.try_take(client, 1) {
                Some(owner_died) => Reply::Acquired { owner_died }.into(),
                None if *wait_ms == Some(0) => Reply::Bool(false).into(),
                None => Step::Wait,
            },
            Op::Release => match self.release(client) {
                Ok(()) => Reply::Done.into(),
                Err(why) => refuse(why),
            },
            _ => return None,
        })
    }
}

/// A counting semaphore; an owned one also keeps who holds how many of
/// its units.
pub(super) struct Semaphore {
    value: u64,
    initial: u64,
    bounded: bool,
    owned: bool,
    holders: HashMap<ClientId, u64>,
    owner_died: bool,
}

impl Semaphore {
    pub fn new(value: u64, bounded: bool, owned: bool) -> Self {
        Semaphore {
            value,
            initial: value,
            bounded,
            owned,
            holders: HashMap::new(),
            owner_died: false,
        }
    }

    pub fn op(&mut self, client: ClientId, op: &Op) -> Step {
        match op {
            Op::Acquire { wait_ms } => {
                if self.value > 0 {
                    self.value -= 1;
                    if self.owned {
                        *self.holders.entry(client).or_default() += 1;
                    }
                    let owner_died = std::mem::take(&mut self.owner_died);
                    Reply::Acquired { owner_died }.into()
                } else if *wait_ms == Some(0) {
                    Reply::Bool(false).into()
                } else {
                    Step::Wait
                }
            }
            Op::Release => {
                if self.bounded && self.value >= self.initial {
                    return refuse("a bounded semaphore released too many times");
                }
                self.value += 1;
                // The releaser's own unit if it has one, else anyone's (a
                // semaphore may be released by another than its taker).
                let from = if self.holders.contains_key(&client) {
                    Some(client)
                } else {
                    self.holders.keys().next().copied()
                };
                if let Some(from) = from {
                    if let Some(n) = self.holders.get_mut(&from) {
                        *n -= 1;
                        if *n == 0 {
                            self.holders.remove(&from);
                        }
                    }
                }
                Reply::Done.into()
            }
            Op::Len => Reply::Len(self.value).into(),
            _ => refuse("not an operation on a semaphore"),
        }
    }

    /// `client` disconnected: the units it held of an owned semaphore come
    /// back, and the next taker is told.
    pub fn gone(&mut self, client: ClientId) -> bool {
        let Some(held) = self.holders.remove(&client) else {
            return false;
        };
        self.value = self.value.saturating_add(held);
        if self.bounded {
            self.value = self.value.min(self.initial);
        }
        self.owner_died = true;
        true
    }

    pub fn holds(&self, client: ClientId) -> bool {
        self.holders.contains_key(&client)
    }
}
