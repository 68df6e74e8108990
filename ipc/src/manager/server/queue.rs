//! Queues on the server (Python's `manager.Queue()` and
//! `JoinableQueue()`): FIFO, optionally bounded, with `task_done`/`join`.

use std::collections::VecDeque;

use super::super::protocol::{Op, Reply};
use super::step::{refuse, Step};
use super::MAX_ITEMS;

pub(super) struct Queue {
    items: VecDeque<Vec<u8>>,
    /// 0: unbounded (up to `MAX_ITEMS`).
    maxsize: u64,
    joinable: bool,
    /// Put and not yet marked done.
    unfinished: u64,
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
            bytes: 0,
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

    pub fn op(&mut self, op: &Op) -> Step {
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
                    Reply::Value(Some(item.into())).into()
                }
                None if *wait_ms == Some(0) => Reply::Value(None).into(),
                None => Step::Wait,
            },
            Op::Len => Reply::Len(self.items.len() as u64).into(),
            Op::IsFull => Reply::Bool(self.is_full()).into(),
            Op::TaskDone if !self.joinable => refuse("task_done on a queue that is not joinable"),
            Op::TaskDone if self.unfinished == 0 => refuse("task_done() called too many times"),
            Op::TaskDone => {
                self.unfinished -= 1;
                Reply::Done.into()
            }
            Op::Join(_) if !self.joinable => refuse("join on a queue that is not joinable"),
            Op::Join(wait_ms) => {
                if self.unfinished == 0 {
                    Reply::Done.into()
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
