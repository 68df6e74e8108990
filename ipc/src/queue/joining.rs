//! Which of this process's queue handles belong to a process waiting in
//! `join()`. Python's most common hang: consumers loop on `get()` until an
//! end marker that never comes, while the parent, the only one left who
//! could put, waits in `join()` for them. A consumer's get cannot see that
//! by itself (the parent's handle is open and not getting), so while a
//! thread of this process waits in a join, every producer slot this
//! process holds says so in shared memory, and a stuck get's look (see
//! `stuck`) counts those slots as waiting too, and names the join.
//!
//! The table is this process's own (a child made by `fork` starts it
//! afresh); a handle leaves it before its slot closes, under the same lock
//! that the marking holds, so no slot is touched after its handle has let
//! it go.

use std::sync::{Mutex, MutexGuard};

use super::producers::Producers;

/// This process's open producer slots, and how many of its threads wait
/// in a join now.
struct Open {
    /// Whose table this is: a forked child finds its parent's, and clears it.
    pid: u32,
    slots: Vec<OpenSlot>,
    joins: usize,
}

struct OpenSlot {
    producers: *const Producers,
    index: usize,
}

// SAFETY: `producers` points into a queue's mapping, which stays mapped
// while the handle that added the entry lives; the handle removes the
// entry (under the lock) before it lets the slot go, and every use of the
// pointer holds the lock.
unsafe impl Send for OpenSlot {}

static OPEN: Mutex<Open> = Mutex::new(Open {
    pid: 0,
    slots: Vec::new(),
    joins: 0,
});

fn open() -> MutexGuard<'static, Open> {
    // A thread that panicked while holding it left the table whole.
    let mut open = OPEN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let me = std::process::id();
    if open.pid != me {
        // The parent's entries point at its handles, not ours.
        open.pid = me;
        open.slots.clear();
        open.joins = 0;
    }
    open
}

impl OpenSlot {
    /// The slot's table, while its entry is in `OPEN` (the lock held).
    fn producers(&self) -> &Producers {
        // SAFETY: see `unsafe impl Send`: the entry is in the table, so its
        // handle lives and the mapping with it; the caller holds the lock.
        unsafe { &*self.producers }
    }
}

/// A handle of this process holds slot `index` of `producers` from now.
pub(crate) fn remember(producers: &Producers, index: usize) {
    let mut open = open();
    if open.joins > 0 {
        producers.joining(index, true);
    }
    open.slots.push(OpenSlot { producers, index });
}

/// The handle lets slot `index` of `producers` go (then closes it).
pub(crate) fn forget(producers: &Producers, index: usize) {
    let mut open = open();
    let joining = open.joins > 0;
    let at = open
        .slots
        .iter()
        .position(|s| std::ptr::eq(s.producers, producers) && s.index == index);
    if let Some(at) = at {
        open.slots.swap_remove(at);
        if joining {
            producers.joining(index, false);
        }
    }
}

/// While it lives, a thread of this process waits in a join: this
/// process's slots say so.
pub(crate) struct Joining(());

impl Joining {
    pub(crate) fn start() -> Joining {
        let mut open = open();
        open.joins += 1;
        if open.joins == 1 {
            mark(&open, true);
        }
        Joining(())
    }
}

impl Drop for Joining {
    fn drop(&mut self) {
        let mut open = open();
        open.joins = open.joins.saturating_sub(1);
        if open.joins == 0 {
            mark(&open, false);
        }
    }
}

fn mark(open: &Open, joining: bool) {
    for slot in &open.slots {
        slot.producers().joining(slot.index, joining);
    }
}
