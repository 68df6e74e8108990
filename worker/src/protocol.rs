//! The messages between the supervisor and a worker, over one duplex
//! [`Connection`](outlast_ipc::Connection) per worker. Task inputs and outputs are
//! job-defined bytes, so the supervisor stays independent of any job.
//!
//! Tasks travel in batches and results come back in batches: that is how
//! no-op tasks reach millions per second without the user choosing a chunk
//! size. The supervisor's ledger still knows each task by id.

use std::ops::Range;
use std::sync::Arc;

use outlast_ipc::codec::write_varint;
use outlast_ipc::spsc::spill::Spilled;
use serde::{Deserialize, Serialize};

mod hot_decode;

/// Sent in [`FromWorker::Ready`]; the supervisor refuses a worker speaking another version.
pub const PROTOCOL_VERSION: u32 = 2;

/// One unit of work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Index of the task in its job, `0..task_count`.
    pub id: u64,
    /// 1 on the first dispatch, one more each time it is re-queued.
    pub attempt: u32,
    /// Job-defined input (for `primes`, the range). Encoded as one byte
    /// string (a copy), not byte by byte.
    pub input: TaskInput,
}

/// A task's input: bytes of its own, a few bytes kept in the task itself,
/// or a piece of the spilled message it came in, read where it lies (a
/// 100 MB input is not copied out of its mapping before the job decodes it).
#[derive(Clone)]
pub enum TaskInput {
    Owned(Vec<u8>),
    /// At most [`InlineInput::MAX`] bytes, with no allocation of their
    /// own: a no-op task's input is a byte, and allocating and freeing it
    /// took a third of the time a worker spent on such a task.
    Inline(InlineInput),
    Mapped {
        message: Arc<Spilled>,
        range: Range<usize>,
    },
}

/// A short input, kept where its task is.
#[derive(Clone, Copy)]
pub struct InlineInput {
    len: u8,
    /// The bytes in memory order, gathered in registers and stored as
    /// whole words: stored a byte at a time and read back in words, a
    /// no-op's input stalled the worker at each task.
    words: [u64; 2],
}

impl InlineInput {
    /// The most bytes kept inline (a `TaskInput` stays as large as a `Vec`
    /// and its tag).
    pub const MAX: usize = 16;

    /// `bytes`, if there are at most [`MAX`](Self::MAX) of them.
    #[inline]
    pub fn new(bytes: &[u8]) -> Option<InlineInput> {
        if bytes.len() > Self::MAX {
            return None;
        }
        let mut words = [0u64; 2];
        for (i, &byte) in bytes.iter().enumerate() {
            words[i / 8] |= u64::from(byte) << (8 * (i % 8));
        }
        Some(InlineInput {
            len: bytes.len() as u8,
            // Byte `i` at bit `8 i` is byte `i` in memory once little-endian.
            words: words.map(u64::to_le),
        })
    }

    fn as_bytes(&self) -> &[u8] {
        // SAFETY: `[u64; 2]` is 16 initialised bytes with no padding, and
        // `u8` needs no alignment; the slice borrows `self`.
        let all =
            unsafe { std::slice::from_raw_parts(self.words.as_ptr().cast::<u8>(), Self::MAX) };
        all.get(..usize::from(self.len)).unwrap_or_default()
    }
}

impl std::ops::Deref for TaskInput {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            TaskInput::Owned(bytes) => bytes,
            TaskInput::Inline(inline) => inline.as_bytes(),
            TaskInput::Mapped { message, range } => message.get(range.clone()).unwrap_or_default(),
        }
    }
}

impl From<&[u8]> for TaskInput {
    /// Inline if short, else a copy of its own.
    #[inline]
    fn from(bytes: &[u8]) -> Self {
        match InlineInput::new(bytes) {
            Some(inline) => TaskInput::Inline(inline),
            None => TaskInput::Owned(bytes.to_vec()),
        }
    }
}

impl From<Vec<u8>> for TaskInput {
    fn from(bytes: Vec<u8>) -> Self {
        TaskInput::Owned(bytes)
    }
}

impl PartialEq for TaskInput {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for TaskInput {}

impl std::fmt::Debug for TaskInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TaskInput({} bytes)", self.len())
    }
}

impl Serialize for TaskInput {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(self)
    }
}

impl<'de> Deserialize<'de> for TaskInput {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        serde_bytes::ByteBuf::deserialize(deserializer).map(|b| TaskInput::Owned(b.into_vec()))
    }
}

/// A spilled `ToWorker`, decoded where it lies: each task's input a range
/// of the mapping. `None` if it does not decode as a `ToWorker`.
pub fn decode_spilled(message: Spilled) -> Option<ToWorker> {
    /// `ToWorker`, its variants in the same order, inputs borrowed.
    #[derive(Deserialize)]
    enum Borrowed<'a> {
        Tasks(#[serde(borrow)] Vec<BorrowedTask<'a>>),
        Stop,
        Spilled { len: u64 },
    }
    #[derive(Deserialize)]
    struct BorrowedTask<'a> {
        id: u64,
        attempt: u32,
        #[serde(borrow)]
        input: &'a [u8],
    }
    let message = Arc::new(message);
    let base = message.as_ptr() as usize;
    Some(match postcard::from_bytes::<Borrowed<'_>>(&message).ok()? {
        Borrowed::Tasks(tasks) => ToWorker::Tasks(
            tasks
                .into_iter()
                .map(|t| {
                    let start = t.input.as_ptr() as usize - base;
                    Task {
                        id: t.id,
                        attempt: t.attempt,
                        input: TaskInput::Mapped {
                            message: Arc::clone(&message),
                            range: start..start + t.input.len(),
                        },
                    }
                })
                .collect(),
        ),
        Borrowed::Stop => ToWorker::Stop,
        Borrowed::Spilled { len } => ToWorker::Spilled { len },
    })
}

/// Supervisor to worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ToWorker {
    /// Run these, in order, after any held already.
    Tasks(Vec<Task>),
    /// Finish every task held, report, and exit with code 0.
    Stop,
    /// The next message is on the link's spill port, `len` bytes long
    /// (it was too large for the ring).
    Spilled { len: u64 },
}

/// Writes a `ToWorker::Tasks` batch into a reused buffer, byte for byte
/// as postcard would encode it, with each input written in place by its
/// job: no `Task`, no input `Vec` per task, and no second copy of an
/// input (a 100 MB one was copied three times: into a scratch buffer, the
/// batch, and the message). Room for the message's head is kept at the
/// front, and [`finish`](Self::finish) fills it in.
#[derive(Default)]
pub struct TaskBatch {
    body: Vec<u8>,
    count: usize,
    /// Where the last task pushed begins, to take it out again (once).
    last_start: Option<usize>,
}

/// The message's head: the variant (one byte) and the task count, a
/// varint of at most 3 bytes below 2^21 tasks.
const HEAD_ROOM: usize = 4;

/// A buffer grown past this (by a batch too large for a ring, spilled) is
/// let go once used: kept, one 100 MB item held 100 MB for the life of
/// the run.
const KEEP_AT_MOST: usize = 4 << 20;

impl TaskBatch {
    /// Starts a new batch (and lets go of a buffer grown large).
    pub fn clear(&mut self) {
        if self.body.capacity() > KEEP_AT_MOST {
            self.body = Vec::new();
        }
        self.body.clear();
        self.count = 0;
        self.last_start = None;
    }

    /// Adds task `id`, whose input `write` appends to the buffer it is
    /// given (and nothing else: what it appended is the input).
    pub fn push<E>(
        &mut self,
        id: u64,
        attempt: u32,
        write: impl FnOnce(&mut Vec<u8>) -> Result<(), E>,
    ) -> Result<(), E> {
        if self.body.len() < HEAD_ROOM {
            self.body.resize(HEAD_ROOM, 0);
        }
        let start = self.body.len();
        write_varint(id, &mut self.body);
        write_varint(u64::from(attempt), &mut self.body);
        // The input's length goes before it: one byte is kept for it, and
        // the input moved along in the rare case its length needs more.
        let len_at = self.body.len();
        self.body.push(0);
        if let Err(e) = write(&mut self.body) {
            self.body.truncate(start);
            return Err(e);
        }
        let end = self.body.len();
        let len = (end - len_at - 1) as u64;
        if len < 0x80 {
            self.body[len_at] = len as u8;
        } else {
            let mut prefix = Vec::with_capacity(10);
            write_varint(len, &mut prefix);
            self.body.resize(end + prefix.len() - 1, 0);
            self.body
                .copy_within(len_at + 1..end, len_at + prefix.len());
            self.body[len_at..len_at + prefix.len()].copy_from_slice(&prefix);
        }
        self.count += 1;
        self.last_start = Some(start);
        Ok(())
    }

    /// Takes the last task pushed out again (it made the batch too large
    /// for the ring; it goes in a batch of its own).
    pub fn drop_last(&mut self) {
        if let Some(start) = self.last_start.take() {
            self.body.truncate(start);
            self.count -= 1;
        }
    }

    /// The bytes the tasks take so far (the message is at most
    /// `HEAD_ROOM` more).
    pub fn size(&self) -> usize {
        self.body.len().saturating_sub(HEAD_ROOM)
    }

    /// The bytes of a batch of one task, `id` at `attempt`, that come
    /// before its input of `len` bytes: the input itself may then be
    /// written straight to where the message goes.
    pub fn head_of_one(id: u64, attempt: u32, len: usize) -> Vec<u8> {
        let mut head = vec![0, 1]; // ToWorker::Tasks, one task
        write_varint(id, &mut head);
        write_varint(u64::from(attempt), &mut head);
        write_varint(len as u64, &mut head);
        head
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The whole message: the head written into the room kept for it
    /// (moving the tasks along only past 2^21 of them).
    pub fn finish(&mut self) -> &[u8] {
        if self.body.len() < HEAD_ROOM {
            self.body.resize(HEAD_ROOM, 0);
        }
        let mut head = vec![0]; // ToWorker::Tasks
        write_varint(self.count as u64, &mut head);
        match HEAD_ROOM.checked_sub(head.len()) {
            Some(at) => {
                self.body[at..HEAD_ROOM].copy_from_slice(&head);
                &self.body[at..]
            }
            None => {
                self.body.splice(0..HEAD_ROOM, head);
                &self.body
            }
        }
    }
}

/// What became of one task.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskResult {
    pub id: u64,
    pub output: TaskOutput,
}

impl Task {
    /// Appends task `id` with a short input to `tasks`, written straight
    /// into the vector's room (see [`TaskResult::push_done`]: a whole task
    /// put together on the stack and pushed stalled a worker at each one).
    #[inline]
    pub(crate) fn push_inline(tasks: &mut Vec<Task>, id: u64, attempt: u32, input: InlineInput) {
        tasks.reserve(1);
        let at = tasks.len();
        let slot: *mut Task = tasks.spare_capacity_mut().as_mut_ptr().cast();
        // SAFETY: `slot` is the first unused element of `tasks` (room for
        // one was reserved above); every field is written before the
        // length takes it in, and nothing reads it before.
        unsafe {
            std::ptr::addr_of_mut!((*slot).id).write(id);
            std::ptr::addr_of_mut!((*slot).attempt).write(attempt);
            std::ptr::addr_of_mut!((*slot).input).write(TaskInput::Inline(input));
            tasks.set_len(at + 1);
        }
    }
}

impl TaskResult {
    /// Appends task `id`'s output to `results`, written straight into the
    /// vector's room: a `push` of a whole result put it together on the
    /// stack first and read it back in wider pieces than it was written, a
    /// stall each time (half the time a worker spent keeping a no-op's
    /// result, and the supervisor decoding it).
    #[inline]
    pub(crate) fn push_done(results: &mut Vec<TaskResult>, id: u64, output: Vec<u8>) {
        results.reserve(1);
        let at = results.len();
        let slot: *mut TaskResult = results.spare_capacity_mut().as_mut_ptr().cast();
        // SAFETY: `slot` is the first unused element of `results` (room for
        // one was reserved above); both fields are written before the
        // length takes it in, and nothing reads it before.
        unsafe {
            std::ptr::addr_of_mut!((*slot).id).write(id);
            std::ptr::addr_of_mut!((*slot).output).write(TaskOutput::Done(output));
            results.set_len(at + 1);
        }
    }
}

/// Job-defined output, or the error the task returned.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskOutput {
    Done(#[serde(with = "serde_bytes")] Vec<u8>),
    Failed(String),
    /// The output had `len` bytes, over the link's cap of `max`: running
    /// it again would end the same way, so the task is not retried.
    TooLarge {
        len: u64,
        max: u64,
    },
}

impl From<Result<Vec<u8>, String>> for TaskOutput {
    fn from(result: Result<Vec<u8>, String>) -> Self {
        match result {
            Ok(bytes) => TaskOutput::Done(bytes),
            Err(e) => TaskOutput::Failed(e),
        }
    }
}

/// The most bytes a spilled message may have on a link whose cap is
/// `max_message`: one task's input or output, and the framing around it.
pub fn spilled_limit(max_message: u64) -> u64 {
    max_message.saturating_add(SPILL_FRAMING)
}

/// Ids, lengths and tags around one input or output in a message.
const SPILL_FRAMING: u64 = 256;

/// Worker to supervisor.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FromWorker {
    /// The worker built its job and waits for tasks.
    Ready { protocol: u32, pid: u32 },
    /// Results in the order the tasks ran.
    Results(Vec<TaskResult>),
    /// The next message is on the link's spill port, `len` bytes long.
    Spilled { len: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: u64, attempt: u32, input: Vec<u8>) -> Task {
        Task {
            id,
            attempt,
            input: input.into(),
        }
    }

    #[test]
    fn short_inputs_are_kept_inline_and_read_back_whole() {
        let long: Vec<u8> = (1..=40).collect();
        for len in 0..=long.len() {
            let bytes = &long[..len];
            let input = TaskInput::from(bytes);
            assert_eq!(&*input, bytes);
            assert_eq!(
                matches!(input, TaskInput::Inline(_)),
                len <= InlineInput::MAX,
                "{len}"
            );
            assert_eq!(input, TaskInput::Owned(bytes.to_vec()));
        }
        assert!(InlineInput::new(&long[..InlineInput::MAX + 1]).is_none());
        // As large as an owned input: a task moves no more bytes than before.
        assert_eq!(
            std::mem::size_of::<TaskInput>(),
            std::mem::size_of::<Vec<u8>>() + 8
        );
    }

    #[test]
    fn a_task_batch_is_what_postcard_writes() {
        let tasks = vec![
            task(0, 1, vec![]),
            task(300, 2, vec![7; 200]),
            task(301, 1, vec![8; 20_000]),
            task(u64::MAX, u32::MAX, b"abc".to_vec()),
        ];
        let mut batch = TaskBatch::default();
        for round in 0..2 {
            batch.clear();
            for t in &tasks {
                batch
                    .push::<()>(t.id, t.attempt, |out| {
                        out.extend_from_slice(&t.input);
                        Ok(())
                    })
                    .unwrap();
            }
            // One that fails leaves nothing behind.
            assert_eq!(
                batch.push(9, 1, |out| {
                    out.push(1);
                    Err(())
                }),
                Err(())
            );
            let ours = batch.finish().to_vec();
            let theirs = postcard::to_allocvec(&ToWorker::Tasks(tasks.clone())).unwrap();
            assert_eq!(ours, theirs, "round {round}");
            assert_eq!(
                postcard::from_bytes::<ToWorker>(&ours).unwrap(),
                ToWorker::Tasks(tasks.clone())
            );
        }
        batch.clear();
        assert_eq!(
            batch.finish(),
            postcard::to_allocvec(&ToWorker::Tasks(vec![])).unwrap()
        );
    }

    #[test]
    fn a_head_of_one_and_its_input_are_what_postcard_writes() {
        for (id, attempt, len) in [(0, 1, 0), (300, 2, 127), (u64::MAX, u32::MAX, 70_000)] {
            let t = task(id, attempt, vec![3; len]);
            let mut ours = TaskBatch::head_of_one(id, attempt, len);
            ours.extend_from_slice(&t.input);
            assert_eq!(
                ours,
                postcard::to_allocvec(&ToWorker::Tasks(vec![t])).unwrap()
            );
        }
    }

    #[test]
    fn the_last_task_taken_out_leaves_the_batch_of_the_others() {
        let tasks = [task(1, 1, vec![5; 10]), task(2, 1, vec![6; 300])];
        let mut batch = TaskBatch::default();
        for t in tasks.iter().chain([&task(3, 1, vec![7; 100_000])]) {
            batch
                .push::<()>(t.id, t.attempt, |out| {
                    out.extend_from_slice(&t.input);
                    Ok(())
                })
                .unwrap();
        }
        assert!(batch.size() > 100_000);
        batch.drop_last();
        // Only the last one: a second call takes nothing more.
        batch.drop_last();
        assert_eq!(batch.len(), 2);
        assert!(batch.size() < 400);
        let theirs = postcard::to_allocvec(&ToWorker::Tasks(tasks.to_vec())).unwrap();
        assert_eq!(batch.finish(), theirs);
    }

    #[test]
    fn a_spilled_batch_decodes_in_place_as_postcard_decodes_it() {
        let tasks = vec![task(7, 1, vec![1; 3]), task(8, 3, vec![9; 2_000_000])];
        let (ours, theirs) = outlast_ipc::spsc::spill::ports().expect("ports");
        for message in [
            ToWorker::Tasks(tasks),
            ToWorker::Stop,
            ToWorker::Spilled { len: 5 },
        ] {
            let bytes = postcard::to_allocvec(&message).unwrap();
            ours.send(&bytes).unwrap();
            let spilled = theirs.take(bytes.len() as u64, u64::MAX).unwrap();
            let decoded = decode_spilled(spilled).expect("decodes");
            assert_eq!(decoded, message);
            if let ToWorker::Tasks(tasks) = decoded {
                assert!(tasks
                    .iter()
                    .all(|t| matches!(t.input, TaskInput::Mapped { .. })));
            }
        }
        // Cut short, it is refused (and nothing past it is read).
        let bytes =
            postcard::to_allocvec(&ToWorker::Tasks(vec![task(1, 1, vec![5; 100])])).unwrap();
        ours.send(&bytes[..50]).unwrap();
        let spilled = theirs.take(50, u64::MAX).unwrap();
        assert_eq!(decode_spilled(spilled), None);
    }
}
