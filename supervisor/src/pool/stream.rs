//! What the store keeps for each lazy map (`imap`, `imap_unordered`, and
//! `map` through `imap`): its settled items in order of arrival when
//! unordered, and the bytes of its results nobody has taken yet. Once
//! those reach [`HELD_PER_STREAM`], its items that no chunk holds yet wait:
//! a reader slower than the workers no longer gathers every result the
//! items already submitted make. (The map's window bounds what it pulls
//! from its input, by the results' size so far; when they turn large
//! after thousands of small ones, that window already holds thousands:
//! 6,000 items whose last 3,000 make 5 MB each, behind a reader taking
//! 2 ms per result, peaked at 2.5 GB.)
//!
//! An ordered map's items wait once they lie more than 64 MiB of results
//! (at their recent size) past the one its reader takes next; an
//! unordered map's, while 64 MiB of its results wait to be taken. Two
//! results per worker may always wait, whatever their size.
//!
//! A held item never is the one the reader waits for: an ordered map's
//! next item in order is never held, and an unordered map holds only
//! while it has results to take. So holding only delays work a reader
//! could not take yet, and a take that moves the reader on lets the items
//! go (the pool's thread is woken for them). `Pool::close` lifts every
//! hold: `join` waits for every item, read or not.

use std::collections::VecDeque;

/// The bytes of results a lazy map may have waiting before its items that
/// no chunk holds yet wait too: many results of any size ahead of a
/// reader, few enough that it is a small share of memory. (Results
/// already in chunks still come: up to `OPEN_PER_WORKER` chunks per
/// worker, each sent once it holds 4 MiB.)
pub(crate) const HELD_PER_STREAM: usize = 64 << 20;

/// A lazy map, as its handle names it to the store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct StreamId {
    /// Unique in its pool.
    pub(crate) number: u64,
    /// Results are read as they settle, not in order.
    pub(crate) unordered: bool,
}

impl StreamId {
    /// Its key in the store's entries: 0 is no stream.
    pub(crate) fn key(self) -> u32 {
        self.number as u32 + 1
    }
}

/// One lazy map's share of the store.
pub(crate) struct Stream {
    unordered: bool,
    /// Unordered: its settled items, in order of arrival.
    pub(crate) finished: VecDeque<u64>,
    /// Unordered: the bytes of its results settled and not taken yet.
    held: usize,
    /// Ordered: the item its reader takes next, and its results' recent
    /// size (a moving average over some eight results).
    next: u64,
    result_bytes: usize,
    /// Some of its items were held: a take lets them go.
    holding: bool,
}

impl Stream {
    /// A stream whose first item is `first`.
    pub(crate) fn new(id: StreamId, first: u64) -> Self {
        Stream {
            unordered: id.unordered,
            finished: VecDeque::new(),
            held: 0,
            next: first,
            result_bytes: 0,
            holding: false,
        }
    }

    /// Item `id` settled, with a result of `bytes` kept for the reader.
    pub(crate) fn settled(&mut self, id: u64, bytes: usize) {
        if self.unordered {
            self.held += bytes;
            self.finished.push_back(id);
        } else {
            self.result_bytes = self.result_bytes - self.result_bytes / 8 + bytes / 8;
        }
    }

    /// Unordered: the bytes of its results settled and not taken yet.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// A result of `bytes` was taken or dropped; true if that lets held
    /// items go.
    pub(crate) fn let_go(&mut self, bytes: usize) -> bool {
        self.held = self.held.saturating_sub(bytes);
        self.release(self.held < HELD_PER_STREAM)
    }

    /// The ordered reader takes `next` after what it took (`None`: it
    /// waits for nothing until it pulls more); true if that lets held
    /// items go.
    pub(crate) fn reads_next(&mut self, next: Option<u64>) -> bool {
        match next {
            Some(next) if next > self.next => {
                self.next = next;
                self.release(true)
            }
            _ => false,
        }
    }

    fn release(&mut self, may: bool) -> bool {
        let released = self.holding && may;
        if released {
            self.holding = false;
        }
        released
    }

    /// Whether the run of its items from `start` on waits, for now. An
    /// unordered map's do while its results not taken reach the bound;
    /// an ordered map's, when they lie further past the reader's next
    /// than the bound holds of results of the recent size. (Not by the
    /// bytes it holds: results of items far ahead, whose chunks were cut
    /// before the results turned large, then held back the very items
    /// the reader needed first, and it waited for each in turn.) Either
    /// way `least` results may wait, whatever their size: every worker
    /// has something to do.
    pub(crate) fn holds(&mut self, start: u64, least: usize) -> bool {
        let held = if self.unordered {
            self.held >= HELD_PER_STREAM && self.finished.len() >= least
        } else {
            let ahead = (HELD_PER_STREAM / self.result_bytes.max(1)).max(least) as u64;
            start > self.next.saturating_add(ahead)
        };
        self.holding |= held;
        held
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORDERED: StreamId = StreamId {
        number: 0,
        unordered: false,
    };

    #[test]
    fn an_ordered_stream_holds_what_lies_past_its_reader_by_the_results_size() {
        let mut stream = Stream::new(ORDERED, 10);
        for id in 10..20 {
            stream.settled(id, 10);
        }
        assert!(!stream.holds(1_000_000, 4), "small results: nothing waits");
        // The average catches up with large results within some eight.
        for id in 20..60 {
            stream.settled(id, HELD_PER_STREAM / 4);
        }
        assert!(!stream.holds(10, 4), "the reader's next never waits");
        assert!(!stream.holds(14, 4));
        assert!(stream.holds(15, 4));
        assert!(!stream.holds(15, 8), "eight workers have eight to run");
        assert!(stream.reads_next(Some(12)), "a take lets the held go");
        assert!(!stream.holds(15, 4));
        assert!(stream.holds(17, 4));
        assert!(!stream.reads_next(Some(12)), "nothing new was read");
        assert!(!stream.reads_next(None));
    }

    #[test]
    fn an_unordered_stream_holds_while_it_has_results_to_take() {
        let id = StreamId {
            number: 3,
            unordered: true,
        };
        let mut stream = Stream::new(id, 0);
        stream.settled(5, HELD_PER_STREAM - 1);
        assert!(!stream.holds(0, 2));
        stream.settled(7, 1);
        assert!(stream.holds(0, 2));
        assert!(!stream.holds(0, 3), "fewer results wait than workers run");
        assert_eq!(stream.finished, [5, 7]);
        assert!(stream.let_go(1));
        assert!(!stream.holds(0, 2));
    }
}
