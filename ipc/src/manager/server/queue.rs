//! Queues on the server (Python's `manager.Queue()` and
//! `JoinableQueue()`): FIFO, optionally bounded, with `task_done`/`join`.
//! A joinable queue keeps how many items each client took and has not
//! marked done: a client that leaves (its process died) loses them, and a
//! `join` waits for every other item, then says so once, where Python's
//! waits forever.

use std::collections::{HashMap, VecDeque};

use super::super::protocol::{Op, Reply};
use super::super::Payload;
use super::step::{refuse, ClientId, Step};
use super::MAX_ITEMS;

pub(super) struct Queue {
    items: VecDeque<Payload>,
    /// 0: unbounded (up to `MAX_ITEMS`).
    maxsize: u64,
    joinable: bool,
    /// Put and not yet marked done.
    unfinished: u64,
    /// A joinable queue's items taken by each client and not yet marked done.
    holders: HashMap<ClientId, u64>,
    /// Items whose taker left before marking them done, not yet reported.
    lost: u64,
    /// Bytes of its items (the server's byte budget counts them).
    bytes: usize,
}

impl Queue {
    pub fn new(maxsize: u64, joinable: bool) -> Self {
        Queue {
            items: VecDeque::new(),
            maxsize,
            joinable,
            unfinished: 0,
            holders: HashMap::new(),
            lost: 0,
            bytes: 0,
        }
    }

    pub fn is_joinable(&self) -> bool {
        self.joinable
    }

    /// Whether `client` holds items it has not marked done.
    pub fn holds(&self, client: ClientId) -> bool {
        self.holders.contains_key(&client)
    }

    /// `client` left: the items it held are lost (true if it held any).
    pub fn gone(&mut self, client: ClientId) -> bool {
        let held = self.holders.remove(&client).unwrap_or(0);
        self.lost = self.lost.saturating_add(held);
        held > 0
    }

    /// One item marked done by `client`: off its own count, or another
    /// client's (one thread takes, another marks), or else one the queue
    /// thought lost.
    fn mark_done(&mut self, client: ClientId) {
        let from = match self.holders.contains_key(&client) {
            true => Some(client),
            false => self.holders.keys().next().copied(),
        };
        match from {
            Some(from) => {
                if let Some(held) = self.holders.get_mut(&from) {
                    *held = held.saturating_sub(1);
                    if *held == 0 {
                        self.holders.remove(&from);
                    }
                }
            }
            None => self.lost = self.lost.saturating_sub(1),
        }
    }

    /// One item `client` took is back in the queue: not its to mark done.
    fn give_back(&mut self, client: ClientId) {
        if let Some(held) = self.holders.get_mut(&client) {
            *held = held.saturating_sub(1);
            if *held == 0 {
                self.holders.remove(&client);
            }
        }
    }

    /// Bytes of its items.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    fn is_full(&self) -> bool {
        (self.maxsize > 0 && self.items.len() as u64 >= self.maxsize)
            || self.items.len() >= MAX_ITEMS
    }

    pub fn op(&mut self, client: ClientId, op: &Op) -> Step {
        match op {
            Op::Put(item, wait_ms) => {
                if !self.is_full() {
                    self.items.push_back(item.clone());
                    self.bytes = self.bytes.saturating_add(item.len());
                    self.unfinished += 1;
                    Reply::Done.into()
                } else if *wait_ms == Some(0) {
                    Reply::Bool(false).into()
                } else {
                    Step::Wait
                }
            }
            Op::Take(wait_ms) => match self.items.pop_front() {
                Some(item) => {
                    self.bytes = self.bytes.saturating_sub(item.len());
                    if self.joinable {
                        *self.holders.entry(client).or_default() += 1;
                    }
                    Reply::Value(Some(item)).into()
                }
                None if *wait_ms == Some(0) => Reply::Value(None).into(),
                None => Step::Wait,
            },
            Op::Unget(item) => {
                // Back where it was taken from, even past `maxsize`: it was
                // in the queue a moment ago.
                self.items.push_front(Payload::from(item.clone()).stored());
                self.bytes = self.bytes.saturating_add(item.len());
                if self.joinable {
                    self.give_back(client);
                }
                Reply::Done.into()
            }
            Op::Len => Reply::Len(self.items.len() as u64).into(),
            Op::IsFull => Reply::Bool(self.is_full()).into(),
            Op::TaskDone if !self.joinable => refuse("task_done on a queue that is not joinable"),
            Op::TaskDone if self.unfinished == 0 => refuse("task_done() called too many times"),
            Op::TaskDone => {
                self.unfinished -= 1;
                self.mark_done(client);
                Reply::Done.into()
            }
            Op::Join(_) if !self.joinable => refuse("join on a queue that is not joinable"),
            Op::Join(wait_ms) => {
                if self.unfinished == 0 {
                    Reply::Done.into()
                } else if self.unfinished <= self.lost {
                    // Every other item is done: these never will be.
                    let lost = self.unfinished;
                    self.unfinished = 0;
                    self.lost = 0;
                    refuse(format!(
                        "{lost} item(s) taken from the queue will never be marked done: \
                         the process that took them left before task_done(); every other item is done"
                    ))
                } else if *wait_ms == Some(0) {
                    Reply::Bool(false).into()
                } else {
                    Step::Wait
                }
            }
            _ => refuse("not an operation on a queue"),
        }
    }
}
