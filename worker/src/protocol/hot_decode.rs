//! The two messages on every task's path, read by hand: a batch of tasks
//! (`ToWorker::Tasks`) and a batch of results that are all outputs
//! (`FromWorker::Results` of `Done`s). Anything else, and anything these
//! readers are unsure of, goes to the generic decoder, which words the
//! error; what they return is what it would.
//!
//! Why by hand: serde builds each element of a `Vec` on the stack and then
//! moves it into the vector, and that move reads back what was just
//! written in smaller pieces. Decoding a no-op task's result that way was
//! half the time the supervisor spent reading results, and decoding its
//! task a fifth of a worker's time.

use std::collections::VecDeque;

use outlast_ipc::codec::{decode_payload, DecodeError};

use super::{FromWorker, InlineInput, Task, TaskInput, TaskResult, ToWorker};

/// Variant indexes, in declaration order (postcard writes them so).
const TO_WORKER_TASKS: u8 = 0;
const FROM_WORKER_RESULTS: u8 = 1;
const OUTPUT_DONE: u8 = 0;

/// The fewest bytes an element takes on the wire (a task: id, attempt,
/// input length; a result: id, tag, output length): a count beyond what
/// the bytes could hold is garbage, and nothing is reserved for it.
const LEAST_ELEMENT: usize = 3;

impl ToWorker {
    /// A message from the supervisor, as [`decode_payload`] reads it.
    pub fn decode(payload: &[u8]) -> Result<ToWorker, DecodeError> {
        let mut tasks = VecDeque::new();
        match tasks_into(payload, &mut tasks) {
            Some(()) => Ok(ToWorker::Tasks(Vec::from(tasks))),
            None => decode_payload(payload),
        }
    }

    /// A message from the supervisor, a batch of tasks appended to `held`
    /// (`Ok(None)`) rather than gathered in a vector of its own first.
    pub fn decode_appending(
        payload: &[u8],
        held: &mut VecDeque<Task>,
    ) -> Result<Option<ToWorker>, DecodeError> {
        match tasks_into(payload, held) {
            Some(()) => Ok(None),
            None => decode_payload(payload).map(Some),
        }
    }
}

impl FromWorker {
    /// A message from a worker, as [`decode_payload`] reads it.
    pub fn decode(payload: &[u8]) -> Result<FromWorker, DecodeError> {
        match done_results(payload) {
            Some(results) => Ok(FromWorker::Results(results)),
            None => decode_payload(payload),
        }
    }
}

/// A `ToWorker::Tasks`, its tasks appended to `held`; `None` (and `held`
/// as it was) for any other message or any doubt.
fn tasks_into(payload: &[u8], held: &mut VecDeque<Task>) -> Option<()> {
    let (count, mut rest) = head(payload, TO_WORKER_TASKS)?;
    // Gathered in a vector first, each written in place (a `VecDeque` has
    // no room to write into), then moved over at once.
    let mut tasks = Vec::with_capacity(count);
    for _ in 0..count {
        let (id, attempt, input, after) = one_task(rest)?;
        match InlineInput::new(input) {
            Some(inline) => Task::push_inline(&mut tasks, id, attempt, inline),
            None => tasks.push(Task {
                id,
                attempt,
                input: TaskInput::Owned(input.to_vec()),
            }),
        }
        rest = after;
    }
    if !rest.is_empty() {
        return None;
    }
    held.extend(tasks);
    Some(())
}

/// One task of a batch (its id, attempt and input), and the bytes after it.
#[inline]
fn one_task(message: &[u8]) -> Option<(u64, u32, &[u8], &[u8])> {
    let (id, rest) = varint(message)?;
    let (attempt, rest) = varint(rest)?;
    let attempt = u32::try_from(attempt).ok()?;
    let (input, rest) = bytes(rest)?;
    Some((id, attempt, input, rest))
}

/// A `FromWorker::Results` whose outputs are all `Done`; `None` for any
/// other message or any doubt.
fn done_results(payload: &[u8]) -> Option<Vec<TaskResult>> {
    let (count, mut rest) = head(payload, FROM_WORKER_RESULTS)?;
    let mut results = Vec::with_capacity(count);
    for _ in 0..count {
        let (id, after) = varint(rest)?;
        let (&tag, after) = after.split_first()?;
        if tag != OUTPUT_DONE {
            return None;
        }
        let (output, after) = bytes(after)?;
        // An empty output, every no-op's, needs no call to copy it.
        let output = match output.is_empty() {
            true => Vec::new(),
            false => output.to_vec(),
        };
        TaskResult::push_done(&mut results, id, output);
        rest = after;
    }
    rest.is_empty().then_some(results)
}

/// The element count after a message's one-byte `variant`, if the bytes
/// after it could hold that many.
fn head(payload: &[u8], variant: u8) -> Option<(usize, &[u8])> {
    let (&first, rest) = payload.split_first()?;
    if first != variant {
        return None;
    }
    let (count, rest) = varint(rest)?;
    let count = usize::try_from(count).ok()?;
    (count <= rest.len() / LEAST_ELEMENT).then_some((count, rest))
}

/// A length, then that many bytes.
fn bytes(input: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = varint(input)?;
    let len = usize::try_from(len).ok()?;
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// A LEB128 number of at most four bytes (below 2^28: every id, attempt,
/// count and length a batch in a ring has; a longer one is left to the
/// generic decoder, with postcard's own checks of what fits a type).
/// Not the codec's `read_varint`: its general loop, up to ten bytes with
/// checked shifts, took a result from 3.8 ns to 6.8-9.4 ns here.
#[inline]
fn varint(input: &[u8]) -> Option<(u64, &[u8])> {
    let mut n = 0u64;
    for (i, &byte) in input.iter().take(4).enumerate() {
        n |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((n, &input[i + 1..]));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::TaskOutput;

    fn encode_payload<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, postcard::Error> {
        postcard::to_allocvec(value)
    }

    fn task(id: u64, attempt: u32, input: Vec<u8>) -> Task {
        Task {
            id,
            attempt,
            input: input.into(),
        }
    }

    fn done(id: u64, output: Vec<u8>) -> TaskResult {
        TaskResult {
            id,
            output: TaskOutput::Done(output),
        }
    }

    /// What the hand reader and the generic decoder make of `payload`:
    /// the same value, or both an error.
    fn same_as_generic<T: PartialEq + std::fmt::Debug>(
        payload: &[u8],
        hand: fn(&[u8]) -> Option<T>,
        decode: fn(&[u8]) -> Result<T, DecodeError>,
    ) {
        if let Some(value) = hand(payload) {
            match decode(payload) {
                Ok(generic) => assert_eq!(value, generic, "{payload:?}"),
                Err(e) => panic!("{payload:?}: by hand {value:?}, generic: {e}"),
            }
        }
    }

    fn tasks(payload: &[u8]) -> Option<Vec<Task>> {
        let mut held = VecDeque::new();
        tasks_into(payload, &mut held).map(|()| Vec::from(held))
    }

    /// Appended to tasks held already, a batch goes in whole, after them,
    /// or nothing does; anything else decodes as the generic decoder has it.
    fn appending_is_all_or_nothing(payload: &[u8]) {
        let earlier = vec![task(u64::MAX - 1, 3, vec![9; 30]), task(7, 1, vec![1])];
        let mut held = VecDeque::from(earlier.clone());
        match ToWorker::decode_appending(payload, &mut held) {
            Ok(None) => {
                let batch = generic_to_worker(payload).expect("appended, so it decodes");
                assert_eq!(Vec::from(held), [earlier, batch].concat());
            }
            Ok(Some(message)) => {
                assert_eq!(Vec::from(held), earlier);
                assert_eq!(decode_payload::<ToWorker>(payload).ok(), Some(message));
            }
            Err(_) => {
                assert_eq!(Vec::from(held), earlier);
                assert!(decode_payload::<ToWorker>(payload).is_err());
            }
        }
    }

    fn generic_to_worker(payload: &[u8]) -> Result<Vec<Task>, DecodeError> {
        match decode_payload::<ToWorker>(payload)? {
            ToWorker::Tasks(tasks) => Ok(tasks),
            other => Ok(vec![task(u64::MAX, 0, format!("{other:?}").into_bytes())]),
        }
    }

    fn generic_from_worker(payload: &[u8]) -> Result<Vec<TaskResult>, DecodeError> {
        match decode_payload::<FromWorker>(payload)? {
            FromWorker::Results(results) => Ok(results),
            other => Ok(vec![done(u64::MAX, format!("{other:?}").into_bytes())]),
        }
    }

    fn messages() -> (Vec<ToWorker>, Vec<FromWorker>) {
        let ids = [
            0,
            1,
            127,
            128,
            16_383,
            16_384,
            (1 << 28) - 1,
            1 << 28,
            u64::MAX,
        ];
        let attempts = [1, 2, 127, 128, (1 << 28) - 1, 1 << 28, u32::MAX];
        let sizes = [0, 1, 127, 128, 5_000];
        let mut to = vec![
            ToWorker::Tasks(Vec::new()),
            ToWorker::Stop,
            ToWorker::Spilled { len: 9 },
        ];
        let mut from = vec![
            FromWorker::Results(Vec::new()),
            FromWorker::Ready {
                protocol: 2,
                pid: 7,
            },
            FromWorker::Spilled { len: 300 },
        ];
        for (i, &id) in ids.iter().enumerate() {
            let attempt = attempts[i % attempts.len()];
            let size = sizes[i % sizes.len()];
            to.push(ToWorker::Tasks(vec![
                task(id, attempt, vec![i as u8; size]),
                task(i as u64, 1, Vec::new()),
            ]));
            from.push(FromWorker::Results(vec![
                done(id, vec![3; size]),
                done(5, Vec::new()),
            ]));
            from.push(FromWorker::Results(vec![
                done(id, Vec::new()),
                TaskResult {
                    id: 6,
                    output: TaskOutput::Failed("no".into()),
                },
            ]));
            from.push(FromWorker::Results(vec![TaskResult {
                id,
                output: TaskOutput::TooLarge { len: 9, max: 8 },
            }]));
        }
        to.push(ToWorker::Tasks(
            (0..1000).map(|id| task(id, 1, vec![0])).collect(),
        ));
        from.push(FromWorker::Results(
            (0..1000).map(|id| done(id, Vec::new())).collect(),
        ));
        (to, from)
    }

    #[test]
    fn every_message_reads_back_as_the_generic_decoder_reads_it() {
        let (to, from) = messages();
        for message in to {
            let payload = encode_payload(&message).expect("encodes");
            assert_eq!(ToWorker::decode(&payload).expect("decodes"), message);
            same_as_generic(&payload, tasks, generic_to_worker);
            appending_is_all_or_nothing(&payload);
        }
        for message in from {
            let payload = encode_payload(&message).expect("encodes");
            assert_eq!(FromWorker::decode(&payload).expect("decodes"), message);
            same_as_generic(&payload, done_results, generic_from_worker);
        }
        // The common batches take the hand path.
        let batch =
            encode_payload(&ToWorker::Tasks(vec![task(300, 2, vec![1; 200])])).expect("encodes");
        assert!(tasks(&batch).is_some());
        let results =
            encode_payload(&FromWorker::Results(vec![done(300, vec![1; 200])])).expect("encodes");
        assert!(done_results(&results).is_some());
    }

    /// Every message cut short, every byte changed, and bytes added: the
    /// hand readers agree with the generic decoder or step aside.
    #[test]
    fn cut_changed_or_lengthened_messages_read_as_the_generic_decoder_reads_them() {
        let (to, from) = messages();
        let payloads = to
            .iter()
            .map(|m| encode_payload(m).expect("encodes"))
            .chain(from.iter().map(|m| encode_payload(m).expect("encodes")))
            .filter(|p| p.len() < 400);
        for payload in payloads {
            let mut variants = Vec::new();
            for cut in 0..payload.len() {
                variants.push(payload[..cut].to_vec());
            }
            for at in 0..payload.len() {
                for byte in [0x00, 0x01, 0x7f, 0x80, 0xff, payload[at] ^ 0x40] {
                    let mut changed = payload.clone();
                    changed[at] = byte;
                    variants.push(changed);
                }
            }
            for extra in [&[0u8][..], &[0x80, 0x80, 0x80, 0x80, 0x80, 0x01]] {
                variants.push([payload.as_slice(), extra].concat());
            }
            for variant in variants {
                same_as_generic(&variant, tasks, generic_to_worker);
                appending_is_all_or_nothing(&variant);
                same_as_generic(&variant, done_results, generic_from_worker);
                let _ = ToWorker::decode(&variant);
                let _ = FromWorker::decode(&variant);
            }
        }
    }

    #[test]
    fn a_count_the_bytes_cannot_hold_reserves_nothing() {
        // Results, then a count of 2^27 with three bytes after it.
        let payload = [FROM_WORKER_RESULTS, 0x80, 0x80, 0x80, 0x40, 1, 0, 0];
        assert!(done_results(&payload).is_none());
        assert!(FromWorker::decode(&payload).is_err());
        let payload = [TO_WORKER_TASKS, 0x80, 0x80, 0x80, 0x40, 1, 1, 0];
        assert!(tasks(&payload).is_none());
        assert!(ToWorker::decode(&payload).is_err());
    }
}
