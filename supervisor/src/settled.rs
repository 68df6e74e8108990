//! Which task ids are settled (done, or dead letters), without a bit for
//! every task up front: every id below `base` is settled, and a window of
//! bit words covers the ids from `base` up to the highest settled one.
//! Results come back nearly in dispatch order, so the window spans about
//! what is in flight: a ledger of a billion tasks costs a few words, not
//! 125 MB. The ledger uses it so that no task is ever counted twice.

use std::collections::VecDeque;

#[derive(Debug, Default)]
pub struct Settled {
    /// Every id below this is settled; a multiple of 64.
    base: u64,
    /// Bit `id % 64` of word `(id - base) / 64`: settled.
    window: VecDeque<u64>,
}

impl Settled {
    pub fn contains(&self, id: u64) -> bool {
        if id < self.base {
            return true;
        }
        let word = ((id - self.base) / 64) as usize;
        self.window
            .get(word)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }

    /// Marks `id` settled; false if it already was.
    pub fn insert(&mut self, id: u64) -> bool {
        if id < self.base {
            return false;
        }
        let word = ((id - self.base) / 64) as usize;
        if word >= self.window.len() {
            self.window.resize(word + 1, 0);
        }
        let bit = 1 << (id % 64);
        let Some(w) = self.window.get_mut(word) else {
            return false;
        };
        if *w & bit != 0 {
            return false;
        }
        *w |= bit;
        // Whole words at the front are settled for good: fold them into base.
        while self.window.front() == Some(&u64::MAX) {
            self.window.pop_front();
            self.base += 64;
        }
        true
    }

    /// Words the window holds now (for tests: what the fold keeps small).
    #[cfg(test)]
    pub fn window_words(&self) -> usize {
        self.window.len()
    }
}

#[cfg(test)]
mod tests {
    use super::Settled;

    #[test]
    fn in_order_ids_keep_at_most_one_word() {
        let mut s = Settled::default();
        for id in 0..100_000 {
            assert!(s.insert(id));
            assert!(s.window_words() <= 1);
        }
        assert!(s.contains(99_999));
        assert!(!s.contains(100_000));
    }

    #[test]
    fn out_of_order_ids_wait_in_the_window_then_fold_in() {
        let mut s = Settled::default();
        for id in 1..200 {
            assert!(s.insert(id));
        }
        assert!(!s.contains(0));
        assert_eq!(s.window_words(), 4);
        assert!(s.insert(0));
        assert_eq!(s.window_words(), 1, "three full words folded");
        assert!(!s.insert(1), "settled twice");
        assert!(!s.insert(150), "settled twice in the window");
        assert!(s.contains(199));
        assert!(!s.contains(200));
    }
}
