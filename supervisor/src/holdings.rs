//! What each worker holds, for the ledger: a worker's leases in dispatch
//! order, found by its id.
//!
//! Every result looks its worker up (twice: is the task held, then settle
//! it), so the lookup is on the path of every task. Workers are few and
//! their ids only grow, so the entries sit in a vector sorted by id, found
//! by a binary search, and the entry found last is tried first: results
//! come in runs from one worker. With two workers this took a no-op task's
//! two lookups from hashing and probing a map (a quarter of the time the
//! supervisor spent on a result) to a compare each.

use std::cell::Cell;
use std::collections::VecDeque;

use crate::ledger::{Lease, WorkerId};

#[derive(Debug, Default)]
pub struct Holdings {
    /// Sorted by worker id; an entry may be empty (a worker between batches).
    by_worker: Vec<(WorkerId, VecDeque<Lease>)>,
    /// Where the last lookup found its worker (a guess: checked before use).
    last: Cell<usize>,
}

impl Holdings {
    /// Where `worker`'s entry is, or where it would go.
    fn find(&self, worker: WorkerId) -> Result<usize, usize> {
        let last = self.last.get();
        if self
            .by_worker
            .get(last)
            .is_some_and(|(id, _)| *id == worker)
        {
            return Ok(last);
        }
        let found = self.by_worker.binary_search_by_key(&worker, |(id, _)| *id);
        if let Ok(at) = found {
            self.last.set(at);
        }
        found
    }

    /// What `worker` holds, if it ever held anything.
    pub fn get(&self, worker: WorkerId) -> Option<&VecDeque<Lease>> {
        let at = self.find(worker).ok()?;
        self.by_worker.get(at).map(|(_, held)| held)
    }

    pub fn get_mut(&mut self, worker: WorkerId) -> Option<&mut VecDeque<Lease>> {
        let at = self.find(worker).ok()?;
        self.by_worker.get_mut(at).map(|(_, held)| held)
    }

    /// What `worker` holds, an empty entry made for it if it had none.
    pub fn entry(&mut self, worker: WorkerId) -> &mut VecDeque<Lease> {
        let at = match self.find(worker) {
            Ok(at) => at,
            Err(at) => {
                self.by_worker.insert(at, (worker, VecDeque::new()));
                self.last.set(at);
                at
            }
        };
        &mut self.by_worker[at].1
    }

    /// Takes `worker`'s entry out: what it held.
    pub fn remove(&mut self, worker: WorkerId) -> Option<VecDeque<Lease>> {
        let at = self.find(worker).ok()?;
        self.last.set(0);
        Some(self.by_worker.remove(at).1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(id: u64) -> Lease {
        Lease { id, attempt: 1 }
    }

    #[test]
    fn workers_are_found_in_any_order_and_removed_ones_are_gone() {
        let mut holdings = Holdings::default();
        // Out of order, as replacements and removals interleave.
        for worker in [5, 1, 9, 3, 7] {
            holdings.entry(worker).push_back(lease(worker * 100));
        }
        for worker in [9, 1, 5, 7, 3, 3, 1] {
            let held = holdings.get(worker).expect("entry made above");
            assert_eq!(held.front(), Some(&lease(worker * 100)));
        }
        assert!(holdings.get(2).is_none());
        assert!(holdings.get_mut(10).is_none());
        assert_eq!(holdings.remove(5).map(|h| h.len()), Some(1));
        assert!(holdings.get(5).is_none());
        assert!(holdings.remove(5).is_none());
        // The others keep their own leases after the shift.
        for worker in [1, 3, 7, 9] {
            assert_eq!(
                holdings.get(worker).and_then(|h| h.front()),
                Some(&lease(worker * 100))
            );
        }
        holdings.entry(5).push_back(lease(1));
        assert_eq!(holdings.get(5).map(VecDeque::len), Some(1));
        assert_eq!(holdings.get(7).map(VecDeque::len), Some(1));
    }
}
