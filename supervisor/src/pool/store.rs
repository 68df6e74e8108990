//! The pool's side of the engine. Items are kept one by one (input until
//! settled, then result until taken), each as a small entry naming where
//! its bytes are: a submission's inputs stay in one buffer until its last
//! item settles, a chunk's replies in its output until the last is taken.
//! The engine's tasks are *chunks*: runs
//! of consecutive items of one call, formed when the pool next turns the
//! engine, as large as keeps each worker busy for a few milliseconds. A
//! chunk that killed `max_attempts` workers is split: each of its items
//! goes again alone, so only a poisonous item ends up an error.
//! [`PoolWork`] is what the engine calls; the pool's handles read the
//! same [`Store`].

use std::collections::{HashMap, VecDeque};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

use outlast_worker::job::JobOutcome;
use outlast_worker::work::{GaveUp, Refused, Work};

use super::call::{answers_short, split_replies, Call};
use super::error::TaskError;
use super::stream::{Stream, StreamId};
use super::taken::Taken;
use crate::id_hash::IdMap;

/// A result: the encoded reply, or why there is none.
pub(crate) type Settled = Result<Bytes, Box<TaskError>>;

/// An item's reply as handed out: kept in place when short (most are a
/// few bytes: no allocation, no reference count), else a piece of its
/// chunk's output.
#[derive(Clone, Debug)]
pub(crate) enum Bytes {
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Shared {
        buf: Arc<Vec<u8>>,
        range: Range<usize>,
    },
}

/// The longest reply handed out in place.
const INLINE: usize = 22;

impl Bytes {
    /// `range` of `buf`: copied if short, else shared.
    pub(crate) fn piece(buf: &Arc<Vec<u8>>, range: Range<usize>) -> Self {
        match buf.get(range.clone()) {
            Some(part) if part.len() <= INLINE => {
                let mut bytes = [0; INLINE];
                bytes[..part.len()].copy_from_slice(part);
                Bytes::Inline {
                    len: part.len() as u8,
                    bytes,
                }
            }
            _ => Bytes::Shared {
                buf: Arc::clone(buf),
                range,
            },
        }
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Inline { len, bytes } => bytes.get(..usize::from(*len)).unwrap_or_default(),
            Bytes::Shared { buf, range } => buf.get(range.clone()).unwrap_or_default(),
        }
    }
}

/// Items' arguments encoded into one buffer, for [`Store::submit`].
#[derive(Default)]
pub(crate) struct Encoded {
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// Items that could not be encoded: their place, and why.
    failed: Vec<(usize, String)>,
}

impl Encoded {
    pub(crate) fn push<T: serde::Serialize>(&mut self, item: &T) -> Result<(), String> {
        // The codec's words name the cause; one prefix says where.
        outlast_ipc::codec::encode_append(item, &mut self.buf)
            .map_err(|e| format!("cannot encode the item: {e}"))?;
        self.ends.push(self.buf.len());
        Ok(())
    }

    /// As [`push`](Self::push), but an item that cannot be encoded keeps
    /// its place and settles as that item's error (the others still run).
    pub(crate) fn push_or_fail<T: serde::Serialize>(&mut self, item: &T) {
        if let Err(why) = self.push(item) {
            self.failed.push((self.ends.len(), why));
            self.ends.push(self.buf.len());
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The bytes the items take, encoded.
    pub(crate) fn bytes(&self) -> usize {
        self.buf.len()
    }
}

/// A chunk's items stop growing past this many input bytes.
const CHUNK_BYTES: usize = 64 * 1024;
/// The most items in one chunk.
pub(crate) const MAX_CHUNK: usize = 4096;
/// A chunk aims to come back this long after it is cut.
const CHUNK_SECONDS: f64 = 0.002;
/// Chunks open (cut, not yet settled) per worker: enough that none waits
/// for the next, few enough that a new chunk size takes effect soon.
pub(crate) const OPEN_PER_WORKER: usize = 4;
/// The most results an awaited lazy map takes under one lock: a run of a
/// whole window (65,536 for two workers) held the executor's thread for
/// 1.5-2 ms. (A blocking map takes the whole run: fewer locks, as many
/// items a second as before.)
pub(crate) const MAX_AWAITED_RUN: usize = 1024;

/// An unordered map's run of results taken under one lock ends once it
/// holds this many bytes of replies (at least one reply: small results
/// come by the hundred thousand, large ones one at a time).
pub(crate) const MAX_RUN_BYTES: usize = 1 << 20;

/// One item, from submission until its result is taken or abandoned. It
/// names where its bytes are rather than holding them: 16 bytes, where a
/// map keeps some 65,000 in flight and each is written by the caller's
/// thread, then the pool's, then the caller's again (at 48 bytes, with a
/// reference count per item, that traffic was most of the caller's time).
struct Entry {
    phase: Phase,
    /// Its handle is gone: its result is dropped on arrival.
    abandoned: bool,
    /// The lazy map it belongs to ([`StreamId::key`]; 0: none), kept
    /// until its result is taken: the map counts the bytes it holds.
    stream: u32,
    /// Waiting: its submission's number; ready: its chunk output's number
    /// (the low 32 bits: fewer than 2^32 of either are ever kept at once).
    home: u32,
    /// Its place in that submission or output.
    slot: u32,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not settled: its input is kept (for retries) in its submission.
    Waiting,
    /// Settled with a reply, in its chunk's output, not yet taken.
    Ready,
    /// Settled with an error (in `Store::errors`), not yet taken.
    Failed,
    /// Settled, and the result taken or dropped.
    Consumed,
}

/// The inputs of one submission, kept until each of its items is settled.
struct Submission {
    buf: Vec<u8>,
    ends: Vec<usize>,
    /// Its items not settled yet; at 0 the bytes are freed.
    live: usize,
}

impl Submission {
    fn range(&self, slot: u32) -> Option<Range<usize>> {
        let slot = slot as usize;
        let start = match slot.checked_sub(1) {
            Some(before) => *self.ends.get(before)?,
            None => 0,
        };
        Some(start..*self.ends.get(slot)?)
    }
}

/// The output of one chunk: its items' replies, kept until each is taken.
struct Output {
    /// As the worker's message held it (kept, not copied: a 100 MB
    /// reply was copied here under the pool's lock).
    buf: Arc<Vec<u8>>,
    replies: Vec<Range<usize>>,
    /// Its replies not taken or dropped yet; at 0 the bytes are freed.
    live: usize,
}

impl Output {
    /// Frees the bytes once no reply is left to read.
    fn free_if_unread(&mut self) {
        if self.live == 0 {
            self.buf = Arc::new(Vec::new());
            self.replies = Vec::new();
        }
    }
}

/// Numbered things kept in order of their numbers (submissions, outputs),
/// freed one by one and trimmed at the front once freed.
struct Numbered<T> {
    base: u64,
    items: VecDeque<T>,
}

impl<T> Numbered<T> {
    fn new() -> Self {
        Numbered {
            base: 0,
            items: VecDeque::new(),
        }
    }

    /// Adds `item`; its number's low 32 bits.
    fn push(&mut self, item: T) -> u32 {
        let number = self.base + self.items.len() as u64;
        self.items.push_back(item);
        number as u32
    }

    fn get(&self, number: u32) -> Option<&T> {
        let at = number.wrapping_sub(self.base as u32) as usize;
        self.items.get(at)
    }

    fn get_mut(&mut self, number: u32) -> Option<&mut T> {
        let at = number.wrapping_sub(self.base as u32) as usize;
        self.items.get_mut(at)
    }

    fn trim(&mut self, freed: impl Fn(&T) -> bool) {
        while self.items.front().is_some_and(&freed) {
            self.items.pop_front();
            self.base += 1;
        }
    }
}

/// Consecutive items of one call and stream.
#[derive(Clone)]
struct Run {
    call: Call,
    /// Its [`StreamId::key`], 0 for none.
    stream: u32,
    items: Range<u64>,
}

/// One engine task: a run of items.
struct Chunk {
    call: Call,
    stream: u32,
    items: Range<u64>,
    done: bool,
    cut_at: Instant,
}

/// Where the items and chunks of a pool live, in deques indexed by id
/// (ids are handed out in order) trimmed at the front as they are
/// consumed, so every operation is O(1).
pub(crate) struct Store {
    /// The id of `entries[0]`.
    base: u64,
    entries: VecDeque<Entry>,
    submissions: Numbered<Submission>,
    outputs: Numbered<Output>,
    /// The errors of failed items not yet taken, by item id.
    errors: HashMap<u64, Box<TaskError>>,
    /// The id the next submitted item gets.
    next_item: u64,
    /// Items not settled yet.
    pending: usize,
    /// Submitted items not in a chunk yet.
    unchunked: VecDeque<Run>,
    /// The engine task id of `chunks[0]`.
    chunk_base: u64,
    chunks: VecDeque<Chunk>,
    /// Chunks cut and not yet done.
    open_chunks: usize,
    /// The lazy maps alive, by [`StreamId::key`].
    streams: IdMap<u32, Stream>,
    /// A take let a stream's held items go: the pool's thread is to cut
    /// chunks of them.
    released: bool,
    /// The pool is closed: nothing is held any more (`join` waits for
    /// every item, read or not).
    holds_lifted: bool,
    /// Every item settled while someone reads this log (`as_completed`).
    pub(crate) log: Vec<u64>,
    pub(crate) log_readers: usize,
    pub(crate) done: u64,
    /// Items per chunk: fixed (the user's chunksize), or adapted.
    fixed_chunk: Option<usize>,
    workers: usize,
    /// Items per chunk now, when adapted.
    size: usize,
}

impl Store {
    pub(crate) fn new(workers: u32, fixed_chunk: Option<usize>) -> Self {
        Store {
            base: 0,
            entries: VecDeque::new(),
            submissions: Numbered::new(),
            outputs: Numbered::new(),
            errors: HashMap::new(),
            next_item: 0,
            pending: 0,
            unchunked: VecDeque::new(),
            chunk_base: 0,
            chunks: VecDeque::new(),
            open_chunks: 0,
            streams: IdMap::default(),
            released: false,
            holds_lifted: false,
            log: Vec::new(),
            log_readers: 0,
            done: 0,
            fixed_chunk,
            workers: workers.max(1) as usize,
            size: 1,
        }
    }

    fn entry(&self, id: u64) -> Option<&Entry> {
        self.entries
            .get(usize::try_from(id.checked_sub(self.base)?).ok()?)
    }

    fn entry_mut(&mut self, id: u64) -> Option<&mut Entry> {
        let at = usize::try_from(id.checked_sub(self.base)?).ok()?;
        self.entries.get_mut(at)
    }

    /// A waiting entry's input: its submission and its range there.
    fn input(&self, entry: &Entry) -> Option<(&Submission, Range<usize>)> {
        if entry.phase != Phase::Waiting {
            return None;
        }
        let submission = self.submissions.get(entry.home)?;
        Some((submission, submission.range(entry.slot)?))
    }

    /// Drops consumed items, and freed submissions, outputs and chunks,
    /// from the fronts.
    fn compact(&mut self) {
        while self
            .entries
            .front()
            .is_some_and(|e| e.phase == Phase::Consumed)
        {
            self.entries.pop_front();
            self.base += 1;
        }
        self.submissions.trim(|s| s.live == 0);
        self.outputs.trim(|o| o.live == 0);
        while self.chunks.front().is_some_and(|c| c.done) {
            self.chunks.pop_front();
            self.chunk_base += 1;
        }
    }

    /// New items of `call`, in order; the first's id. `stream` names the
    /// lazy map they belong to.
    pub(crate) fn submit(&mut self, call: Call, inputs: Encoded, stream: Option<StreamId>) -> u64 {
        let first = self.next_item;
        let count = inputs.ends.len();
        let home = self.submissions.push(Submission {
            buf: inputs.buf,
            ends: inputs.ends,
            live: count,
        });
        let stream = stream.map_or(0, |id| {
            self.streams
                .entry(id.key())
                .or_insert_with(|| Stream::new(id, first));
            id.key()
        });
        self.entries.extend((0..count).map(|slot| Entry {
            phase: Phase::Waiting,
            abandoned: false,
            stream,
            home,
            slot: slot as u32,
        }));
        self.next_item += count as u64;
        self.pending += count;
        // The items between those that could not be encoded go in runs;
        // those settle where they stand and go to no worker.
        let mut start = 0;
        for (at, why) in inputs.failed {
            self.add_run(call, stream, first + start as u64..first + at as u64);
            self.fail(first + at as u64, Box::new(TaskError::Failed(why)));
            start = at + 1;
        }
        self.add_run(call, stream, first + start as u64..first + count as u64);
        first
    }

    /// Items `ids` of `call` and `stream` wait for a chunk: right after
    /// earlier ones of the same call and stream (one submit after
    /// another), in the same run, so that they can share chunks.
    fn add_run(&mut self, call: Call, stream: u32, ids: Range<u64>) {
        if ids.is_empty() {
            return;
        }
        match self.unchunked.back_mut() {
            Some(run) if run.call == call && run.stream == stream && run.items.end == ids.start => {
                run.items.end = ids.end
            }
            _ => self.unchunked.push_back(Run {
                call,
                stream,
                items: ids,
            }),
        }
    }

    /// Items per chunk now: the user's, or adapted (see [`Store::learn`]).
    fn chunk_size(&self) -> usize {
        self.fixed_chunk.unwrap_or(self.size)
    }

    /// A chunk of `items` came back `elapsed` after it was cut: the next
    /// ones hold what that pace fits in `CHUNK_SECONDS`, growing at most
    /// twofold at a time (1, 2, 4, ... for fast items; 1 for slow ones).
    fn learn(&mut self, items: usize, elapsed: f64) {
        let per_item = elapsed / items.max(1) as f64;
        let fits = if per_item > 0.0 {
            (CHUNK_SECONDS / per_item) as usize
        } else {
            MAX_CHUNK
        };
        self.size = fits.min(self.size.saturating_mul(2)).clamp(1, MAX_CHUNK);
    }

    /// Cuts chunks from the items waiting for one, while fewer than
    /// `OPEN_PER_WORKER` chunks per worker are open: each is cut at the
    /// size the latest rate calls for. Runs their stream holds wait.
    fn cut_chunks(&mut self) -> Vec<Run> {
        let size = self.chunk_size();
        let mut cut = Vec::new();
        let room = (self.workers * OPEN_PER_WORKER).saturating_sub(self.open_chunks);
        let mut at = 0;
        while cut.len() < room && at < self.unchunked.len() {
            if self.held_back(at) {
                at += 1;
                continue;
            }
            let Some(Run {
                call,
                stream,
                items,
            }) = self.unchunked.remove(at)
            else {
                break;
            };
            let mut end = items.start;
            let mut bytes = 0;
            while end < items.end && ((end - items.start) as usize) < size && bytes < CHUNK_BYTES {
                bytes += self
                    .entry(end)
                    .and_then(|e| self.input(e))
                    .map_or(0, |(_, range)| range.len());
                end += 1;
            }
            cut.push(Run {
                call,
                stream,
                items: items.start..end,
            });
            if end < items.end {
                let rest = Run {
                    call,
                    stream,
                    items: end..items.end,
                };
                self.unchunked.insert(at, rest);
            }
        }
        cut
    }

    /// Whether the run `at` waits for its stream's reader to take results.
    fn held_back(&mut self, at: usize) -> bool {
        let Some(run) = self.unchunked.get(at) else {
            return false;
        };
        if self.holds_lifted || run.stream == 0 {
            return false;
        }
        let (start, least) = (run.items.start, 2 * self.workers);
        self.streams
            .get_mut(&run.stream)
            .is_some_and(|stream| stream.holds(start, least))
    }

    /// The pool is closed: every item runs, read or not.
    pub(crate) fn lift_holds(&mut self) {
        self.holds_lifted = true;
    }

    /// Whether a take let held items go since the last call: the pool's
    /// thread is to be woken to cut chunks of them.
    pub(crate) fn take_released(&mut self) -> bool {
        std::mem::take(&mut self.released)
    }

    /// The chunks `cut` are engine tasks from `first` on.
    fn chunks_added(&mut self, first: u64, cut: Vec<Run>) {
        if self.chunks.is_empty() {
            self.chunk_base = first;
        }
        self.open_chunks += cut.len();
        for Run {
            call,
            stream,
            items,
        } in cut
        {
            self.chunks.push_back(Chunk {
                call,
                stream,
                items,
                done: false,
                cut_at: Instant::now(),
            });
        }
    }

    /// Whether items wait for a chunk.
    fn has_unchunked(&self) -> bool {
        !self.unchunked.is_empty()
    }

    /// Chunk `task` is settled, whichever way.
    fn close_chunk(&mut self, task: u64) {
        if let Some(chunk) = self.chunk_mut(task) {
            if !chunk.done {
                chunk.done = true;
                self.open_chunks -= 1;
            }
        }
    }

    fn chunk(&self, task: u64) -> Option<&Chunk> {
        self.chunks
            .get(usize::try_from(task.checked_sub(self.chunk_base)?).ok()?)
    }

    fn chunk_mut(&mut self, task: u64) -> Option<&mut Chunk> {
        let at = usize::try_from(task.checked_sub(self.chunk_base)?).ok()?;
        self.chunks.get_mut(at)
    }

    /// Whether `id` has a result waiting.
    pub(crate) fn is_settled(&self, id: u64) -> bool {
        self.entry(id)
            .is_some_and(|e| matches!(e.phase, Phase::Ready | Phase::Failed))
    }

    /// `id`'s result, left in place.
    pub(crate) fn result(&self, id: u64) -> Option<Settled> {
        let entry = self.entry(id)?;
        match entry.phase {
            Phase::Ready => {
                let output = self.outputs.get(entry.home)?;
                let range = output.replies.get(entry.slot as usize)?.clone();
                Some(Ok(Bytes::piece(&output.buf, range)))
            }
            Phase::Failed => Some(Err(self.errors.get(&id)?.clone())),
            Phase::Waiting | Phase::Consumed => None,
        }
    }

    /// `id`'s result, left in place, added to `out` (where a reply is
    /// read in place).
    pub(crate) fn result_into(&self, id: u64, out: &mut Taken) {
        let entry = self.entry(id);
        match entry.map(|e| (e.phase, e.home, e.slot)) {
            Some((Phase::Ready, home, slot)) => {
                let output = self.outputs.get(home);
                match output.and_then(|o| Some((&o.buf, o.replies.get(slot as usize)?))) {
                    Some((buf, range)) => out.push_reply(buf, range.clone()),
                    None => out.push_missing(),
                }
            }
            Some((Phase::Failed, ..)) => match self.errors.get(&id) {
                Some(error) => out.push_error(error.clone()),
                None => out.push_missing(),
            },
            _ => out.push_missing(),
        }
    }

    /// `id` is settled and its result taken or dropped: what held the
    /// result is freed once nothing else needs it.
    fn consume(&mut self, id: u64) {
        let Some(entry) = self.entry_mut(id) else {
            return;
        };
        let (phase, home, slot, stream) = (entry.phase, entry.home, entry.slot, entry.stream);
        entry.phase = Phase::Consumed;
        match phase {
            Phase::Ready => {
                let mut bytes = 0;
                if let Some(output) = self.outputs.get_mut(home) {
                    bytes = output.replies.get(slot as usize).map_or(0, |r| r.len());
                    output.live -= 1;
                    output.free_if_unread();
                }
                self.let_go(stream, bytes);
            }
            Phase::Failed => {
                self.errors.remove(&id);
            }
            Phase::Waiting | Phase::Consumed => {}
        }
    }

    /// Takes the results of the ids at the front of `ids` while they are
    /// settled (`first` taken regardless: its caller saw it settled) into
    /// `out`, at most `max` of them, compacting once for the run.
    pub(crate) fn take_run(
        &mut self,
        ids: &mut VecDeque<u64>,
        first: u64,
        out: &mut Taken,
        max: usize,
    ) {
        let stream = self.entry(first).map_or(0, |e| e.stream);
        let mut taken = 0;
        while let Some(&id) = ids.front() {
            if taken == max || (id != first && !self.is_settled(id)) {
                break;
            }
            taken += 1;
            ids.pop_front();
            // (An ordered map's stream counts no bytes: not told.)
            self.take_into(id, out);
        }
        if let Some(stream) = self.streams.get_mut(&stream) {
            self.released |= stream.reads_next(ids.front().copied());
        }
        self.compact();
    }

    /// Takes up to `max` of unordered stream `id`'s settled items, in
    /// order of arrival, into `out`, compacting once for the run; how many.
    /// The run ends once it holds [`MAX_RUN_BYTES`] of replies: what it
    /// takes no longer counts against the stream's hold, and large
    /// results taken in a run of their own stay bounded as before.
    pub(crate) fn take_finished(&mut self, id: StreamId, out: &mut Taken, max: usize) -> usize {
        let key = id.key();
        let mut taken = 0;
        let mut bytes = 0;
        while taken < max && bytes < MAX_RUN_BYTES {
            let Some(item) = self.next_of_stream(id) else {
                break;
            };
            taken += 1;
            bytes += self.take_into(item, out);
        }
        // Its stream counts the bytes it holds: let them go in one step.
        self.let_go(key, bytes);
        self.compact();
        taken
    }

    /// As [`take_one`](Self::take_one), into `out` (a reply stays where it
    /// is), without telling its stream: the reply's bytes, if any.
    fn take_into(&mut self, id: u64, out: &mut Taken) -> usize {
        let Some(entry) = self.entry_mut(id) else {
            out.push_missing();
            return 0;
        };
        match entry.phase {
            Phase::Ready => {
                entry.phase = Phase::Consumed;
                let (home, slot) = (entry.home, entry.slot);
                let Some(output) = self.outputs.get_mut(home) else {
                    out.push_missing();
                    return 0;
                };
                let bytes = match output.replies.get(slot as usize) {
                    Some(range) => {
                        out.push_reply(&output.buf, range.clone());
                        range.len()
                    }
                    None => {
                        out.push_missing();
                        0
                    }
                };
                output.live -= 1;
                output.free_if_unread();
                bytes
            }
            Phase::Failed => {
                entry.phase = Phase::Consumed;
                match self.errors.remove(&id) {
                    Some(error) => out.push_error(error),
                    None => out.push_missing(),
                }
                0
            }
            Phase::Waiting | Phase::Consumed => {
                out.push_missing();
                0
            }
        }
    }

    /// A result of `bytes` of stream `key` (0: none) was taken or dropped.
    fn let_go(&mut self, key: u32, bytes: usize) {
        if key == 0 {
            return;
        }
        if let Some(stream) = self.streams.get_mut(&key) {
            self.released |= stream.let_go(bytes);
        }
    }

    /// The next settled item of unordered stream `id`.
    pub(crate) fn next_of_stream(&mut self, id: StreamId) -> Option<u64> {
        self.streams.get_mut(&id.key())?.finished.pop_front()
    }

    /// The next settled item of unordered stream `id`, left in place.
    pub(crate) fn peek_stream(&self, id: StreamId) -> Option<u64> {
        self.streams.get(&id.key())?.finished.front().copied()
    }

    /// Nobody will read the results of stream `id`'s items: those settled
    /// are dropped, those no chunk holds yet are dropped unrun (as
    /// `concurrent.futures`' `Executor.map` cancels its pending futures
    /// when its iterator is closed), and the others' results as they
    /// settle. (An ordered map's handle abandons its items itself first:
    /// it knows which they are.)
    pub(crate) fn close_stream(&mut self, id: StreamId) {
        let key = id.key();
        if let Some(done) = self
            .streams
            .get_mut(&key)
            .map(|s| std::mem::take(&mut s.finished))
        {
            self.abandon_all(done.into_iter());
        }
        self.streams.remove(&key);
        if id.unordered {
            for entry in self.entries.iter_mut() {
                if entry.stream == key && entry.phase == Phase::Waiting {
                    entry.abandoned = true;
                    entry.stream = 0;
                }
            }
        }
        let mut unrun = Vec::new();
        self.unchunked.retain(|run| {
            let theirs = run.stream == key;
            if theirs {
                unrun.push(run.items.clone());
            }
            !theirs
        });
        for id in unrun.into_iter().flatten() {
            // Abandoned: settled as consumed, its input freed.
            self.settle(id, Phase::Consumed, 0, 0);
        }
        self.compact();
    }

    /// Cancels item `id` if no chunk holds it yet (it waits behind busy
    /// workers): it settles as [`TaskError::Cancelled`]; true if so.
    pub(crate) fn cancel(&mut self, id: u64) -> bool {
        let Some(at) = self
            .unchunked
            .iter()
            .position(|run| run.items.contains(&id))
        else {
            return false;
        };
        let Some(run) = self.unchunked.remove(at) else {
            return false;
        };
        // The run without it: what came after, then what came before.
        if id + 1 < run.items.end {
            let after = id + 1..run.items.end;
            self.unchunked.insert(
                at,
                Run {
                    items: after,
                    ..run.clone()
                },
            );
        }
        if run.items.start < id {
            let before = run.items.start..id;
            self.unchunked.insert(
                at,
                Run {
                    items: before,
                    ..run
                },
            );
        }
        self.fail(id, Box::new(TaskError::Cancelled));
        true
    }

    /// Nobody will read `id`'s result.
    pub(crate) fn abandon(&mut self, id: u64) {
        self.abandon_all(std::iter::once(id));
    }

    /// Nobody will read the results of `ids` (a dropped map's): as
    /// [`abandon`](Self::abandon) for each, compacting once.
    pub(crate) fn abandon_all(&mut self, ids: impl Iterator<Item = u64>) {
        for id in ids {
            let Some(entry) = self.entry_mut(id) else {
                continue;
            };
            entry.abandoned = true;
            if matches!(entry.phase, Phase::Ready | Phase::Failed) {
                self.consume(id);
            }
        }
        self.compact();
    }

    /// Items submitted and not yet settled.
    pub(crate) fn unsettled(&self) -> usize {
        self.pending
    }

    /// Settles waiting item `id` with its reply, `slot` of output `home`.
    /// True if the result is kept (its stream's [`Stream::settled`] is
    /// the caller's: once per chunk, not per item, it looks the stream up).
    fn reply(&mut self, id: u64, home: u32, slot: u32) -> bool {
        let kept = self.settle(id, Phase::Ready, home, slot);
        if kept {
            if let Some(output) = self.outputs.get_mut(home) {
                output.live += 1;
            }
        }
        kept
    }

    /// Settles waiting item `id` with `error`.
    fn fail(&mut self, id: u64, error: Box<TaskError>) {
        let stream = self.entry(id).map_or(0, |e| e.stream);
        if self.settle(id, Phase::Failed, 0, 0) {
            self.errors.insert(id, error);
            if let Some(stream) = self.streams.get_mut(&stream) {
                stream.settled(id, 0);
            }
        }
    }

    /// Moves waiting item `id` to `phase` (its result kept at `home` and
    /// `slot`), or to consumed if abandoned, and frees its input once its
    /// submission's last item is settled. True if its result is kept.
    fn settle(&mut self, id: u64, phase: Phase, home: u32, slot: u32) -> bool {
        let Some(entry) = self.entry_mut(id) else {
            return false;
        };
        if entry.phase != Phase::Waiting {
            return false;
        }
        let submission = entry.home;
        let kept = !entry.abandoned;
        entry.phase = if kept { phase } else { Phase::Consumed };
        entry.home = home;
        entry.slot = slot;
        if let Some(submission) = self.submissions.get_mut(submission) {
            submission.live -= 1;
            if submission.live == 0 {
                submission.buf = Vec::new();
                submission.ends = Vec::new();
            }
        }
        self.pending -= 1;
        self.done += 1;
        if self.log_readers > 0 {
            self.log.push(id);
        }
        kept
    }

    /// Every item still unsettled fails with `why` (the engine stopped).
    pub(crate) fn lose_all(&mut self, why: &str) {
        let ids: Vec<u64> = (self.base..)
            .zip(self.entries.iter())
            .filter(|(_, e)| e.phase == Phase::Waiting)
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            self.fail(id, Box::new(TaskError::Lost(why.to_string())));
        }
        self.unchunked.clear();
        for chunk in &mut self.chunks {
            chunk.done = true;
        }
        self.open_chunks = 0;
        self.compact();
    }

    /// Chunk `task`'s input: the call, the count, and each item's input.
    fn chunk_input(&self, task: u64, out: &mut Vec<u8>) -> Result<(), String> {
        let store = self;
        let chunk = store
            .chunk(task)
            .ok_or_else(|| format!("no chunk {task}"))?;
        chunk
            .call
            .write_head((chunk.items.end - chunk.items.start) as usize, out)?;
        // Items submitted together lie side by side in one buffer: copy
        // each run of them at once.
        if let Some(whole) = store.side_by_side(&chunk.items) {
            out.extend_from_slice(whole);
            return Ok(());
        }
        let mut run: Option<(&Submission, Range<usize>)> = None;
        for id in chunk.items.clone() {
            let (submission, range) = store
                .entry(id)
                .and_then(|e| store.input(e))
                .ok_or_else(|| format!("item {id} has no input"))?;
            match &mut run {
                Some((last, pending))
                    if std::ptr::eq(*last, submission) && pending.end == range.start =>
                {
                    pending.end = range.end;
                }
                _ => {
                    if let Some((last, pending)) = run.take() {
                        out.extend_from_slice(last.buf.get(pending).unwrap_or_default());
                    }
                    run = Some((submission, range));
                }
            }
        }
        if let Some((last, pending)) = run {
            out.extend_from_slice(last.buf.get(pending).unwrap_or_default());
        }
        Ok(())
    }

    /// What [`chunk_input`](Self::chunk_input) appends for chunk `task`,
    /// written to `out` from where the items lie (no copy in between).
    fn write_chunk_input(&self, task: u64, out: &mut dyn std::io::Write) -> Result<(), String> {
        let chunk = self.chunk(task).ok_or_else(|| format!("no chunk {task}"))?;
        let mut head = Vec::new();
        chunk
            .call
            .write_head((chunk.items.end - chunk.items.start) as usize, &mut head)?;
        let written = |e: std::io::Error| e.to_string();
        out.write_all(&head).map_err(written)?;
        if let Some(whole) = self.side_by_side(&chunk.items) {
            return out.write_all(whole).map_err(written);
        }
        for id in chunk.items.clone() {
            let (submission, range) = self
                .entry(id)
                .and_then(|e| self.input(e))
                .ok_or_else(|| format!("item {id} has no input"))?;
            out.write_all(submission.buf.get(range).unwrap_or_default())
                .map_err(written)?;
        }
        Ok(())
    }

    /// How many bytes [`chunk_input`](Self::chunk_input) writes for chunk
    /// `task`, found without copying its items.
    fn chunk_input_len(&self, task: u64) -> Option<usize> {
        let chunk = self.chunk(task)?;
        let mut head = Vec::new();
        chunk
            .call
            .write_head((chunk.items.end - chunk.items.start) as usize, &mut head)
            .ok()?;
        if let Some(whole) = self.side_by_side(&chunk.items) {
            return Some(head.len() + whole.len());
        }
        chunk.items.clone().try_fold(head.len(), |len, id| {
            let (_, range) = self.entry(id).and_then(|e| self.input(e))?;
            Some(len + range.len())
        })
    }

    /// The inputs of `items` as one slice when they all lie side by side
    /// in one submission (the usual chunk): its first and last are, and
    /// ids and slots count up together there. One look at two entries
    /// instead of one per item, which a debug build paid for per item.
    fn side_by_side(&self, items: &Range<u64>) -> Option<&[u8]> {
        let first = self.entry(items.start)?;
        let last = self.entry(items.end.checked_sub(1)?)?;
        let slots = u64::from(last.slot.checked_sub(first.slot)?);
        if first.home != last.home || slots != items.end - 1 - items.start {
            return None;
        }
        let (submission, from) = self.input(first)?;
        let (_, to) = self.input(last)?;
        submission.buf.get(from.start..to.end)
    }

    /// Chunk `task`'s output: one reply per item, all or nothing (a short
    /// or long output settles no item), except a short one that ends with
    /// a panic (an aborting build's last words): its items are settled,
    /// and the ones after it go again in a new chunk, uncharged.
    fn accept(&mut self, task: u64, output: Vec<u8>) -> Result<(), String> {
        let (call, stream, items, cut_at) = self
            .chunk(task)
            .map(|c| (c.call, c.stream, c.items.clone(), c.cut_at))
            .ok_or_else(|| format!("bad output: no chunk {task}"))?;
        let count = (items.end - items.start) as usize;
        let replies = split_replies(&output, count)
            .filter(|r| r.len() == count || answers_short(&output, r, count))
            .ok_or_else(|| format!("bad output: not {count} replies"))?;
        let answered = replies.len();
        let home = self.outputs.push(Output {
            buf: Arc::new(output),
            replies,
            live: 0,
        });
        // (Out of the map while its items settle: one look-up a chunk.)
        let mut stream_state = match stream {
            0 => None,
            key => self.streams.remove(&key),
        };
        for (slot, id) in items.clone().take(answered).enumerate() {
            let kept = self.reply(id, home, slot as u32);
            if let Some(stream) = stream_state.as_mut().filter(|_| kept) {
                let bytes = self
                    .outputs
                    .get(home)
                    .and_then(|o| o.replies.get(slot))
                    .map_or(0, |r| r.len());
                stream.settled(id, bytes);
            }
        }
        if let Some(state) = stream_state {
            self.streams.insert(stream, state);
        }
        // Every item was abandoned: nothing will read these replies, even
        // while an older output ahead of this one is kept.
        if let Some(output) = self.outputs.get_mut(home) {
            output.free_if_unread();
        }
        self.close_chunk(task);
        if answered < count {
            // They run next, in order, in chunks cut as any others.
            let rest = items.start + answered as u64..items.end;
            self.unchunked.push_front(Run {
                call,
                stream,
                items: rest,
            });
        }
        // (Answered short, the pace is of the items answered: a chunk
        // sent early for its output's size cuts the next ones smaller.)
        self.learn(answered, cut_at.elapsed().as_secs_f64());
        self.compact();
        Ok(())
    }

    /// Items submitted in all.
    pub(crate) fn submitted(&self) -> u64 {
        self.next_item
    }
}

/// The engine's view of a pool: [`Work`] over the shared [`Store`].
pub(crate) struct PoolWork {
    pub(crate) shared: Arc<super::shared::Inner>,
    pub(crate) workers: u32,
}

impl Work for PoolWork {
    fn name(&self) -> String {
        "pool".into()
    }

    fn describe(&self) -> String {
        format!("a pool of {} workers", self.workers)
    }

    fn task_count(&self) -> u64 {
        0
    }

    fn input(&mut self, task: u64, out: &mut Vec<u8>) -> Result<(), String> {
        self.shared.lock().store.chunk_input(task, out)
    }

    fn input_len(&mut self, task: u64) -> Option<usize> {
        self.shared.lock().store.chunk_input_len(task)
    }

    fn write_input(&mut self, task: u64, out: &mut dyn std::io::Write) -> Result<(), String> {
        self.shared.lock().store.write_chunk_input(task, out)
    }

    fn input_size_hint(&mut self) -> usize {
        0
    }

    fn accept(&mut self, task: u64, output: &[u8]) -> Result<(), Refused> {
        self.shared.lock().store.accept(task, output.to_vec())?;
        Ok(())
    }

    fn accept_owned(&mut self, task: u64, output: Vec<u8>) -> Result<(), Refused> {
        self.shared.lock().store.accept(task, output)?;
        Ok(())
    }

    fn gave_up(&mut self, task: u64, why: &GaveUp) {
        let mut state = self.shared.lock();
        let store = &mut state.store;
        let Some(chunk) = store.chunk(task) else {
            return;
        };
        let (call, stream, items) = (chunk.call, chunk.stream, chunk.items.clone());
        store.close_chunk(task);
        if items.end - items.start > 1 {
            // Which item killed the workers is not known: each goes again
            // alone, with attempts of its own.
            for id in items {
                store.unchunked.push_back(Run {
                    call,
                    stream,
                    items: id..id + 1,
                });
            }
        } else {
            let error = match why.oversize {
                Some(o) => TaskError::TooLarge {
                    len: o.len,
                    max: o.max,
                },
                None => TaskError::WorkerDied {
                    attempts: why.failures,
                    cause: why.last_cause.clone(),
                    exit_code: why.exit_code,
                },
            };
            store.fail(items.start, Box::new(error));
        }
        store.compact();
    }

    fn outcome(&self, _complete: bool) -> JobOutcome {
        JobOutcome::value(self.shared.lock().store.done)
    }

    fn top_up(&mut self, first: u64) -> u64 {
        let mut state = self.shared.lock();
        let store = &mut state.store;
        if !store.has_unchunked() {
            return 0;
        }
        let cut = store.cut_chunks();
        let n = cut.len() as u64;
        store.chunks_added(first, cut);
        n
    }

    fn progress(&self) -> Option<(u64, u64)> {
        let mut state = self.shared.lock();
        let store = &mut state.store;
        Some((store.done, store.submitted()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(x: u64) -> u64 {
        x
    }

    /// A store of one worker and chunks of 3, with `submissions` of 5
    /// items each, every chunk cut (engine tasks from 0).
    fn store_with(submissions: usize) -> Store {
        let mut store = Store::new(1, Some(3));
        for s in 0..submissions {
            let mut inputs = Encoded::default();
            for i in 0..5u64 {
                inputs.push(&(s as u64 * 5 + i)).unwrap();
            }
            store.submit(Call::one(identity), inputs, None);
        }
        let mut first = 0;
        while store.has_unchunked() {
            store.open_chunks = 0;
            let cut = store.cut_chunks();
            let n = cut.len() as u64;
            store.chunks_added(first, cut);
            first += n;
        }
        store
    }

    /// A chunk's output: item `id`'s reply is `id` bytes of `id`, so some
    /// are handed out in place and some as pieces of the output.
    fn output_of(store: &Store, task: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for id in store.chunk(task).unwrap().items.clone() {
            out.extend_from_slice(&(id as u32 * 3).to_le_bytes());
            out.extend(std::iter::repeat_n(id as u8, id as usize * 3));
        }
        out
    }

    fn accept_all(store: &mut Store, tasks: Range<u64>) {
        for task in tasks {
            let output = output_of(store, task);
            store.accept(task, output.clone()).unwrap();
        }
    }

    fn held_bytes(store: &Store) -> usize {
        let inputs: usize = store.submissions.items.iter().map(|s| s.buf.len()).sum();
        let outputs: usize = store.outputs.items.iter().map(|o| o.buf.len()).sum();
        inputs + outputs
    }

    /// `id`'s result, taken as an ordered map takes it.
    fn take(store: &mut Store, id: u64) -> Option<Settled> {
        let mut taken = Taken::default();
        store.take_run(&mut VecDeque::from([id]), id, &mut taken, 1);
        taken.pop_front().flatten()
    }

    #[test]
    fn results_are_whole_and_free_their_bytes_once_taken() {
        let mut store = store_with(2);
        accept_all(&mut store, 0..4);
        // Inputs are freed as their items settle; replies wait.
        assert!(store.submissions.items.iter().all(|s| s.buf.is_empty()));
        for id in 0..10u64 {
            let reply = take(&mut store, id).unwrap().unwrap();
            assert_eq!(
                reply.as_slice(),
                vec![id as u8; id as usize * 3],
                "item {id}"
            );
            assert!(take(&mut store, id).is_none(), "item {id} taken twice");
        }
        assert_eq!(held_bytes(&store), 0);
        assert!(store.entries.is_empty());
        assert!(store.submissions.items.is_empty() && store.outputs.items.is_empty());
    }

    #[test]
    fn a_bounded_run_takes_at_most_its_bound_and_leaves_the_rest_in_order() {
        let mut store = store_with(2);
        accept_all(&mut store, 0..4);
        let mut ids: VecDeque<u64> = (0..10).collect();
        let mut out = Taken::default();
        store.take_run(&mut ids, 0, &mut out, 4);
        assert_eq!(out.reply_sizes().0, 4);
        assert_eq!(ids, (4..10).collect::<VecDeque<u64>>());
        store.take_run(&mut ids, 4, &mut out, usize::MAX);
        assert!(ids.is_empty());
        for id in 0..10 {
            let reply = out.pop_front().expect("settled").expect("a reply");
            let reply = reply.expect("a reply");
            assert_eq!(reply.as_slice(), vec![id as u8; id * 3], "item {id}");
        }
        assert!(out.pop_front().is_none());
        assert_eq!(held_bytes(&store), 0);
    }

    /// A store of one worker with an unordered map of items `0..items`,
    /// cut in chunks of `chunk`.
    fn unordered_store(items: u64, chunk: usize) -> (Store, StreamId) {
        let mut store = Store::new(1, Some(chunk));
        let stream = StreamId {
            number: 0,
            unordered: true,
        };
        let mut inputs = Encoded::default();
        for i in 0..items {
            inputs.push(&i).unwrap();
        }
        store.submit(Call::one(identity), inputs, Some(stream));
        let cut = store.cut_chunks();
        store.chunks_added(0, cut);
        (store, stream)
    }

    #[test]
    fn an_unordered_run_takes_what_settled_in_order_of_arrival_and_lets_its_bytes_go() {
        let (mut store, stream) = unordered_store(6, 3);
        // Chunk 1 (items 3-5) comes back before chunk 0 (items 0-2).
        accept_all(&mut store, 1..2);
        accept_all(&mut store, 0..1);
        let held = |store: &Store| store.streams.get(&stream.key()).map(|s| s.held());
        let all: usize = (0..6).map(|id| id * 3).sum();
        assert_eq!(held(&store), Some(all));
        let mut taken = Taken::default();
        assert_eq!(store.take_finished(stream, &mut taken, 4), 4);
        // Items 3, 4, 5 and 0 (whose result is empty).
        assert_eq!(held(&store), Some(all - (3 + 4 + 5) * 3));
        assert_eq!(store.take_finished(stream, &mut taken, usize::MAX), 2);
        assert_eq!(store.take_finished(stream, &mut taken, usize::MAX), 0);
        assert_eq!(held(&store), Some(0));
        for id in [3usize, 4, 5, 0, 1, 2] {
            let reply = taken.pop_front().unwrap().unwrap().unwrap();
            assert_eq!(reply.as_slice(), vec![id as u8; id * 3], "item {id}");
        }
        assert!(taken.pop_front().is_none());
        assert_eq!(held_bytes(&store), 0);
        assert!(store.entries.is_empty());
    }

    #[test]
    fn an_unordered_run_ends_once_it_holds_a_megabyte() {
        let (mut store, stream) = unordered_store(4, 2);
        // Four replies of 600 KB each, in two chunks.
        for task in 0..2u64 {
            let mut output = Vec::new();
            for _ in 0..2 {
                output.extend_from_slice(&600_000u32.to_le_bytes());
                output.extend(std::iter::repeat_n(7u8, 600_000));
            }
            store.accept(task, output).unwrap();
        }
        let mut taken = Taken::default();
        assert_eq!(store.take_finished(stream, &mut taken, usize::MAX), 2);
        assert_eq!(taken.reply_sizes(), (2, 1_200_000));
        assert_eq!(store.take_finished(stream, &mut taken, usize::MAX), 2);
        assert_eq!(store.take_finished(stream, &mut taken, usize::MAX), 0);
    }

    /// An item that cannot be encoded when it is 0, 4, 5 or 9.
    struct Refused(u64);

    impl serde::Serialize for Refused {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            match self.0 {
                0 | 4 | 5 | 9 => Err(serde::ser::Error::custom(format!("no {}", self.0))),
                n => s.serialize_u64(n),
            }
        }
    }

    #[test]
    fn items_that_cannot_be_encoded_settle_as_errors_and_the_rest_run_in_order() {
        let mut store = Store::new(1, None);
        let mut inputs = Encoded::default();
        for i in 0..10 {
            inputs.push_or_fail(&Refused(i));
        }
        assert_eq!(store.submit(Call::one(identity), inputs, None), 0);
        // First, adjacent and last failures: the others in two runs.
        let runs: Vec<Range<u64>> = store.unchunked.iter().map(|r| r.items.clone()).collect();
        assert_eq!(runs, [1..4, 6..9]);
        assert_eq!(store.pending, 6);
        for id in 0..10 {
            let refused = matches!(id, 0 | 4 | 5 | 9);
            assert_eq!(store.is_settled(id), refused, "item {id}");
            if refused {
                match take(&mut store, id) {
                    Some(Err(e)) => assert!(
                        matches!(&*e, TaskError::Failed(why) if why.contains(&format!("no {id}"))),
                        "item {id}: {e:?}"
                    ),
                    other => panic!("item {id}: {other:?}"),
                }
            }
        }
        // Past the refused 9, a new run; a next submission of the same
        // call then goes on it.
        for id in [10u64, 11] {
            let mut more = Encoded::default();
            more.push(&id).unwrap();
            assert_eq!(store.submit(Call::one(identity), more, None), id);
        }
        let runs: Vec<Range<u64>> = store.unchunked.iter().map(|r| r.items.clone()).collect();
        assert_eq!(runs, [1..4, 6..9, 10..12]);
    }

    #[test]
    fn a_chunks_input_is_its_items_in_order_within_and_across_submissions() {
        // Chunks of 3 over two submissions of 5: chunk 1 (items 3-5)
        // spans both; the others lie side by side in one.
        let store = store_with(2);
        for task in 0..4u64 {
            let items = store.chunk(task).unwrap().items.clone();
            let mut expected = Vec::new();
            Call::one(identity)
                .write_head((items.end - items.start) as usize, &mut expected)
                .unwrap();
            for id in items {
                outlast_ipc::codec::encode_append(&id, &mut expected).unwrap();
            }
            let mut got = Vec::new();
            store.chunk_input(task, &mut got).unwrap();
            assert_eq!(got, expected, "chunk {task}");
        }
    }

    #[test]
    fn an_untaken_result_holds_only_its_own_chunk() {
        let mut store = store_with(2);
        accept_all(&mut store, 0..4);
        // Item 0 stays; every other result is taken, and read twice first.
        for id in 1..10u64 {
            let kept = store.result(id).unwrap().unwrap();
            assert_eq!(
                kept.as_slice(),
                store.result(id).unwrap().unwrap().as_slice()
            );
            take(&mut store, id).unwrap().unwrap();
        }
        assert_eq!(held_bytes(&store), output_of(&store_with(2), 0).len());
        store.abandon(0);
        assert_eq!(held_bytes(&store), 0);
        assert!(store.entries.is_empty());
    }

    #[test]
    fn replies_nobody_will_read_are_freed_behind_a_kept_one() {
        let mut store = store_with(1);
        let output = output_of(&store, 0);
        store.accept(0, output.clone()).unwrap();
        store.abandon(3);
        store.abandon(4);
        let late = output_of(&store, 1);
        store.accept(1, late.clone()).unwrap();
        assert_eq!(store.outputs.items.len(), 2);
        assert_eq!(held_bytes(&store), output.len());
    }

    #[test]
    fn errors_abandoned_items_and_retried_inputs() {
        let mut store = store_with(1);
        // Item 3 is abandoned before its chunk (items 3 and 4) comes back.
        store.abandon(3);
        let output = output_of(&store, 1);
        store.accept(1, output.clone()).unwrap();
        // Chunk 0 (items 0-2) is sent again, as after its worker died:
        // its inputs are still there though others of theirs settled.
        let mut again = Vec::new();
        store.chunk_input(0, &mut again).unwrap();
        let mut first = Vec::new();
        store_with(1).chunk_input(0, &mut first).unwrap();
        assert_eq!(again, first);
        store.fail(0, Box::new(TaskError::Cancelled));
        assert!(matches!(take(&mut store, 0), Some(Err(e)) if matches!(*e, TaskError::Cancelled)));
        assert!(store.errors.is_empty());
        assert!(
            take(&mut store, 3).is_none(),
            "an abandoned result is dropped"
        );
        assert_eq!(
            take(&mut store, 4).unwrap().unwrap().as_slice(),
            vec![4u8; 12]
        );
        store.lose_all("over");
        for id in 1..3 {
            assert!(
                matches!(take(&mut store, id), Some(Err(e)) if matches!(*e, TaskError::Lost(_)))
            );
        }
        assert_eq!(held_bytes(&store), 0);
        assert!(store.entries.is_empty() && store.errors.is_empty());
    }
}
