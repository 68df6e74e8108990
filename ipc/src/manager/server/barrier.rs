//! Events and barriers on the server. A barrier breaks, as Python's does,
//! when a waiter times out or it is aborted; and here also when a waiting
//! party's process dies, since it can never arrive: the others are told
//! `Broken` instead of waiting for ever. A party whose awaited wait is
//! cancelled only leaves the round, as in Python's asyncio.

use std::collections::{HashMap, HashSet};

use super::super::protocol::{Op, Reply};
use super::step::{refuse, ClientId, Step};

/// Python's `Event`: a flag that waiters wait to see set.
#[derive(Default)]
pub(super) struct Event {
    set: bool,
}

impl Event {
    pub fn op(&mut self, op: &Op) -> Step {
        match op {
            Op::SetFlag => {
                self.set = true;
                Reply::Done.into()
            }
            Op::ClearFlag => {
                self.set = false;
                Reply::Done.into()
            }
            Op::IsSet => Reply::Bool(self.set).into(),
            Op::WaitSet { wait_ms } => {
                if self.set {
                    Reply::Bool(true).into()
                } else if *wait_ms == Some(0) {
                    Reply::Bool(false).into()
                } else {
                    Step::Wait
                }
            }
            _ => refuse("not an operation on an event"),
        }
    }
}

pub(super) struct Barrier {
    parties: u64,
    /// Arrived in this round, in order.
    arrived: Vec<ClientId>,
    /// Let through, with their arrival index, not yet answered.
    released: HashMap<ClientId, u64>,
    /// Waiting when it broke or was reset, not yet answered.
    broken_for: HashSet<ClientId>,
    broken: bool,
}

impl Barrier {
    pub fn new(parties: u64) -> Self {
        Barrier {
            parties,
            arrived: Vec::new(),
            released: HashMap::new(),
            broken_for: HashSet::new(),
            broken: false,
        }
    }

    pub fn op(&mut self, client: ClientId, op: &Op) -> Step {
        match op {
            Op::Arrive { wait_ms } => {
                if let Some(index) = self.released.remove(&client) {
                    return Reply::Int(index as i64).into();
                }
                if self.broken_for.remove(&client) {
                    return Reply::Broken.into();
                }
                if self.arrived.contains(&client) {
                    return Step::Wait;
                }
                if self.broken {
                    return Reply::Broken.into();
                }
                let index = self.arrived.len() as u64;
                self.arrived.push(client);
                if self.arrived.len() as u64 == self.parties {
                    for (i, c) in self.arrived.drain(..).enumerate() {
                        self.released.insert(c, i as u64);
                    }
                    self.released.remove(&client);
                    return Reply::Int(index as i64).into();
                }
                if *wait_ms == Some(0) {
                    self.break_it();
                    self.broken_for.remove(&client);
                    return Reply::Broken.into();
                }
                Step::Wait
            }
            Op::Abort => {
                self.break_it();
                Reply::Done.into()
            }
            Op::Reset => {
                self.broken_for.extend(self.arrived.drain(..));
                self.broken = false;
                Reply::Done.into()
            }
            Op::Waiting => Reply::Len(self.arrived.len() as u64).into(),
            Op::IsBroken => Reply::Bool(self.broken).into(),
            Op::Len => Reply::Len(self.parties).into(),
            _ => refuse("not an operation on a barrier"),
        }
    }

    fn break_it(&mut self) {
        self.broken = true;
        self.broken_for.extend(self.arrived.drain(..));
    }

    /// A waiter's deadline passed: the barrier breaks; its answer is `Broken`.
    pub fn expire(&mut self, client: ClientId) -> Reply {
        self.break_it();
        self.broken_for.remove(&client);
        Reply::Broken
    }

    /// A waiting party stopped waiting (its call was cancelled): it leaves
    /// this round, which it never filled, without breaking it; the next
    /// arrivals take its place.
    pub fn leave(&mut self, client: ClientId) {
        self.arrived.retain(|&c| c != client);
    }

    pub fn gone(&mut self, client: ClientId) -> bool {
        self.released.remove(&client);
        self.broken_for.remove(&client);
        if self.arrived.contains(&client) {
            self.arrived.retain(|&c| c != client);
            self.break_it();
            return true;
        }
        false
    }
}
