//! [`Taken`]: the results an ordered map took from the store under one
//! lock, read after it. Each reply is kept as its place in its chunk's
//! output (one reference per output, not one per item), so that a map
//! decodes it straight from there. Handing each out as a [`Settled`]
//! first cost more than decoding it: the caller's thread, which bounds
//! `Pool::map` of small items, spent 40 % of its time copying replies
//! into those values and reading them back (the CPU cannot forward a
//! value stored in narrow pieces to the wide load that reads it whole).

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use super::store::{Bytes, Settled};
use super::{decode_reply, TaskError};

/// Taken results, in order.
#[derive(Default)]
pub(crate) struct Taken {
    /// The outputs the places read from. One read again after another is
    /// listed again, so that the places' output numbers never go down and
    /// those before the next place's can be let go.
    outputs: VecDeque<Arc<Vec<u8>>>,
    /// The number of `outputs[0]`.
    first_output: u32,
    places: VecDeque<Place>,
    /// The errors of the [`Place::Failed`] places, in order.
    errors: VecDeque<Box<TaskError>>,
}

/// Where one taken result is.
#[derive(Clone, Copy)]
enum Place {
    /// A reply: bytes `start..end` of output number `output`.
    Reply {
        output: u32,
        start: usize,
        end: usize,
    },
    /// An error, next in `errors`.
    Failed,
    /// Nothing: the result was already taken.
    Missing,
}

const ALREADY_TAKEN: &str = "its result was already taken";

impl Taken {
    /// Adds a reply: `range` of `buf`.
    pub(crate) fn push_reply(&mut self, buf: &Arc<Vec<u8>>, range: Range<usize>) {
        let last = self.first_output as usize + self.outputs.len();
        let output = match self.outputs.back() {
            Some(back) if Arc::ptr_eq(back, buf) => last - 1,
            _ => {
                self.outputs.push_back(Arc::clone(buf));
                last
            }
        };
        self.places.push_back(Place::Reply {
            // (Fewer outputs than places: a run of the store's
            // entries, far below 2^32.)
            output: output as u32,
            start: range.start,
            end: range.end,
        });
    }

    pub(crate) fn push_error(&mut self, error: Box<TaskError>) {
        self.places.push_back(Place::Failed);
        self.errors.push_back(error);
    }

    /// Adds a result that was already taken.
    pub(crate) fn push_missing(&mut self) {
        self.places.push_back(Place::Missing);
    }

    /// The replies held and their bytes.
    pub(crate) fn reply_sizes(&self) -> (usize, usize) {
        self.places
            .iter()
            .fold((0, 0), |(n, bytes), place| match place {
                Place::Reply { start, end, .. } => (n + 1, bytes + (end - start)),
                Place::Failed | Place::Missing => (n, bytes),
            })
    }

    /// The first result as the store keeps one (`None` inside: already
    /// taken), or `None` if there is none.
    pub(crate) fn pop_front(&mut self) -> Option<Option<Settled>> {
        let place = self.places.pop_front()?;
        let settled = match place {
            Place::Reply { output, start, end } => {
                self.let_go_before(output);
                let at = output.wrapping_sub(self.first_output) as usize;
                self.outputs
                    .get(at)
                    .map(|buf| Ok(Bytes::piece(buf, start..end)))
            }
            Place::Failed => self.errors.pop_front().map(Err),
            Place::Missing => None,
        };
        if self.places.is_empty() {
            self.clear();
        }
        Some(settled)
    }

    /// The first result decoded as an `R`, or `None` if there is none or
    /// it is a reply of `below` bytes or more (left for a thread of its
    /// own).
    pub(crate) fn pop_decoded<R: DeserializeOwned>(
        &mut self,
        below: usize,
    ) -> Option<Result<R, TaskError>> {
        let place = *self.places.front()?;
        if let Place::Reply { start, end, .. } = place {
            if end - start >= below {
                return None;
            }
        }
        self.places.pop_front();
        if let Place::Reply { output, .. } = place {
            self.let_go_before(output);
        }
        let decoded = decoded(&self.outputs, self.first_output, &mut self.errors, place);
        if self.places.is_empty() {
            self.clear();
        }
        Some(decoded)
    }

    /// Every result decoded as an `R`, in order, given to `f`; none is
    /// left.
    pub(crate) fn drain_decoded<R: DeserializeOwned>(
        &mut self,
        mut f: impl FnMut(Result<R, TaskError>),
    ) {
        // Read in place: a place moved out whole is read back wide.
        for place in &self.places {
            f(decoded(
                &self.outputs,
                self.first_output,
                &mut self.errors,
                *place,
            ));
        }
        self.clear();
    }

    /// Outputs before number `output` are read for good: let them go.
    fn let_go_before(&mut self, output: u32) {
        while self.first_output < output && self.outputs.pop_front().is_some() {
            self.first_output += 1;
        }
    }

    fn clear(&mut self) {
        self.places.clear();
        self.outputs.clear();
        self.errors.clear();
        self.first_output = 0;
    }
}

/// The result at `place` decoded as an `R`: `outputs` begin with number
/// `first_output`, and `errors` with the place's error if it is one.
#[inline(always)]
fn decoded<R: DeserializeOwned>(
    outputs: &VecDeque<Arc<Vec<u8>>>,
    first_output: u32,
    errors: &mut VecDeque<Box<TaskError>>,
    place: Place,
) -> Result<R, TaskError> {
    let missing = || TaskError::Failed(ALREADY_TAKEN.into());
    match place {
        Place::Reply { output, start, end } => {
            let at = output.wrapping_sub(first_output) as usize;
            match outputs.get(at).and_then(|buf| buf.get(start..end)) {
                Some(bytes) => decode_reply(bytes),
                None => Err(missing()),
            }
        }
        Place::Failed => Err(errors.pop_front().map_or_else(missing, |e| *e)),
        Place::Missing => Err(missing()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn returned(value: u64) -> Vec<u8> {
        let mut bytes = vec![0];
        outlast_ipc::codec::encode_append(&value, &mut bytes).unwrap();
        bytes
    }

    /// Two outputs of three replies each, the second read again after a
    /// third: item `i` replies `i`.
    fn three_outputs() -> (Taken, Vec<Arc<Vec<u8>>>) {
        let mut bufs = Vec::new();
        let mut taken = Taken::default();
        for out in 0..2u64 {
            let mut buf = Vec::new();
            let mut ranges = Vec::new();
            for i in 0..3 {
                let start = buf.len();
                buf.extend(returned(out * 3 + i));
                ranges.push(start..buf.len());
            }
            let buf = Arc::new(buf);
            for range in ranges {
                taken.push_reply(&buf, range);
            }
            bufs.push(buf);
        }
        taken.push_error(Box::new(TaskError::Returned("no".into())));
        taken.push_missing();
        taken.push_reply(&bufs[0], 0..2);
        (taken, bufs)
    }

    #[test]
    fn drained_results_are_each_items_own_in_order() {
        let (mut taken, _bufs) = three_outputs();
        assert_eq!(taken.reply_sizes(), (7, 14));
        let mut got = Vec::new();
        taken.drain_decoded::<u64>(|r| got.push(r));
        assert!(taken.pop_front().is_none(), "none left");
        let values: Vec<_> = got.iter().take(6).map(|r| *r.as_ref().unwrap()).collect();
        assert_eq!(values, [0, 1, 2, 3, 4, 5]);
        assert!(matches!(&got[6], Err(TaskError::Returned(w)) if w == "no"));
        assert!(matches!(&got[7], Err(TaskError::Failed(w)) if w == ALREADY_TAKEN));
        assert_eq!(*got[8].as_ref().unwrap(), 0);
    }

    #[test]
    fn results_decoded_one_by_one_match_drained_ones_and_let_outputs_go() {
        let (mut taken, bufs) = three_outputs();
        let mut got = Vec::new();
        while let Some(result) = taken.pop_decoded::<u64>(usize::MAX) {
            got.push(result);
            if got.len() == 6 {
                assert_eq!(
                    Arc::strong_count(&bufs[0]),
                    2,
                    "ours and the second listing"
                );
            }
        }
        let (mut again, _) = three_outputs();
        let mut drained = Vec::new();
        again.drain_decoded::<u64>(|r| drained.push(r));
        assert_eq!(format!("{got:?}"), format!("{drained:?}"));
        assert_eq!(Arc::strong_count(&bufs[0]), 1);
        assert_eq!(Arc::strong_count(&bufs[1]), 1);
    }

    #[test]
    fn a_reply_as_large_as_the_bound_is_left_in_place() {
        let (mut taken, _bufs) = three_outputs();
        // Each reply is 2 bytes (variant 0, then a one-byte varint).
        assert!(taken.pop_decoded::<u64>(2).is_none());
        assert_eq!(taken.pop_decoded::<u64>(3).unwrap().unwrap(), 0);
        let left = taken.pop_front().unwrap().unwrap().unwrap();
        assert_eq!(left.as_slice(), returned(1));
    }

    #[test]
    fn popped_results_match_drained_ones_and_let_outputs_go() {
        let (mut taken, bufs) = three_outputs();
        for i in 0..6u64 {
            let reply = taken.pop_front().unwrap().unwrap().unwrap();
            assert_eq!(reply.as_slice(), returned(i), "item {i}");
        }
        // The first output is read: only the place that reads it again
        // (listed anew) still holds it.
        assert_eq!(
            Arc::strong_count(&bufs[0]),
            2,
            "ours and the second listing"
        );
        let err = taken.pop_front().unwrap().unwrap().unwrap_err();
        assert!(matches!(*err, TaskError::Returned(_)));
        assert!(taken.pop_front().unwrap().is_none(), "already taken");
        let last = taken.pop_front().unwrap().unwrap().unwrap();
        assert_eq!(last.as_slice(), returned(0));
        assert!(taken.pop_front().is_none());
        assert_eq!(Arc::strong_count(&bufs[0]), 1);
        assert_eq!(Arc::strong_count(&bufs[1]), 1);
    }
}
