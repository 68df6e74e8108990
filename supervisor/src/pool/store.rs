//! The pool's side of the engine. Items are kept one by one (input until
//! settled, then result until taken); the engine's tasks are *chunks*: runs
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

use super::call::{split_replies, Call};
use super::error::TaskError;

/// A result: the encoded reply, or why there is none.
pub(crate) type Settled = Result<Bytes, Box<TaskError>>;

/// A piece of a shared buffer: one item's bytes within a submission's
/// inputs or a chunk's output (one allocation for many items).
#[derive(Clone, Debug)]
pub(crate) struct Bytes {
    buf: Arc<[u8]>,
    range: Range<usize>,
}

impl Bytes {
    pub(crate) fn as_slice(&self) -> &[u8] {
        self.buf.get(self.range.clone()).unwrap_or_default()
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
        outlast_worker::work::encode_into(item, &mut self.buf)
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

/// One item, from submission until its result is taken or abandoned.
struct Entry {
    state: State,
    /// Its handle is gone: its result is dropped on arrival.
    abandoned: bool,
    /// The unordered stream it belongs to, plus one (0: none).
    group: u32,
}

enum State {
    /// Not settled: its input, kept for retries.
    Waiting(Bytes),
    /// Settled, the result not yet taken.
    Ready(Settled),
    /// Settled, and the result taken or dropped.
    Consumed,
}

impl Entry {
    fn input(&self) -> Option<&Bytes> {
        match &self.state {
            State::Waiting(input) => Some(input),
            _ => None,
        }
    }

    fn result(&self) -> Option<&Settled> {
        match &self.state {
            State::Ready(result) => Some(result),
            _ => None,
        }
    }

    fn take_result(&mut self) -> Option<Settled> {
        match std::mem::replace(&mut self.state, State::Consumed) {
            State::Ready(result) => Some(result),
            other => {
                self.state = other;
                None
            }
        }
    }
}

/// One engine task: consecutive items of one call.
struct Chunk {
    call: Call,
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
    /// The id the next submitted item gets.
    next_item: u64,
    /// Items not settled yet.
    pending: usize,
    /// Submitted items not in a chunk yet, runs per call.
    unchunked: VecDeque<(Call, Range<u64>)>,
    /// The engine task id of `chunks[0]`.
    chunk_base: u64,
    chunks: VecDeque<Chunk>,
    /// Chunks cut and not yet done.
    open_chunks: usize,
    /// Each unordered stream's settled items in order of arrival.
    finished: HashMap<u64, VecDeque<u64>>,
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
            next_item: 0,
            pending: 0,
            unchunked: VecDeque::new(),
            chunk_base: 0,
            chunks: VecDeque::new(),
            open_chunks: 0,
            finished: HashMap::new(),
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

    /// Drops consumed items and chunks from the fronts.
    fn compact(&mut self) {
        while self
            .entries
            .front()
            .is_some_and(|e| matches!(e.state, State::Consumed))
        {
            self.entries.pop_front();
            self.base += 1;
        }
        while self.chunks.front().is_some_and(|c| c.done) {
            self.chunks.pop_front();
            self.chunk_base += 1;
        }
    }

    /// New items of `call`, in order; the first's id. `group` puts them
    /// in an unordered stream.
    pub(crate) fn submit(&mut self, call: Call, inputs: Encoded, group: Option<u64>) -> u64 {
        let first = self.next_item;
        let buf: Arc<[u8]> = inputs.buf.into();
        let mut failed = inputs.failed.into_iter().peekable();
        let mut start = 0;
        for (index, end) in inputs.ends.into_iter().enumerate() {
            let input = Bytes {
                buf: Arc::clone(&buf),
                range: start..end,
            };
            start = end;
            self.entries.push_back(Entry {
                state: State::Waiting(input),
                abandoned: false,
                group: group.map_or(0, |g| g as u32 + 1),
            });
            let id = self.next_item;
            self.next_item += 1;
            self.pending += 1;
            if let Some((_, why)) = failed.next_if(|(at, _)| *at == index) {
                // Settled where it stands; it goes to no worker.
                self.settle(id, Err(Box::new(TaskError::Failed(why))));
                continue;
            }
            // Right after earlier items of the same call (one submit after
            // another): one run, so they can share chunks.
            match self.unchunked.back_mut() {
                Some((last, run)) if *last == call && run.end == id => run.end = id + 1,
                _ => self.unchunked.push_back((call, id..id + 1)),
            }
        }
        first
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
    /// size the latest rate calls for.
    fn cut_chunks(&mut self) -> Vec<(Call, Range<u64>)> {
        let size = self.chunk_size();
        let mut cut = Vec::new();
        let room = (self.workers * OPEN_PER_WORKER).saturating_sub(self.open_chunks);
        while cut.len() < room {
            let Some((call, items)) = self.unchunked.pop_front() else {
                break;
            };
            let mut end = items.start;
            let mut bytes = 0;
            while end < items.end && ((end - items.start) as usize) < size && bytes < CHUNK_BYTES {
                bytes += self
                    .entry(end)
                    .and_then(Entry::input)
                    .map_or(0, |b| b.range.len());
                end += 1;
            }
            cut.push((call, items.start..end));
            if end < items.end {
                self.unchunked.push_front((call, end..items.end));
            }
        }
        cut
    }

    /// The chunks `cut` are engine tasks from `first` on.
    fn chunks_added(&mut self, first: u64, cut: Vec<(Call, Range<u64>)>) {
        if self.chunks.is_empty() {
            self.chunk_base = first;
        }
        self.open_chunks += cut.len();
        for (call, items) in cut {
            self.chunks.push_back(Chunk {
                call,
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
        self.entry(id).is_some_and(|e| e.result().is_some())
    }

    pub(crate) fn result(&self, id: u64) -> Option<&Settled> {
        self.entry(id)?.result()
    }

    pub(crate) fn take(&mut self, id: u64) -> Option<Settled> {
        let taken = self.entry_mut(id)?.take_result();
        self.compact();
        taken
    }

    /// Takes the results of the ids at the front of `ids` while they are
    /// settled (`first` taken regardless: its caller saw it settled) into
    /// `out`, compacting once for the run.
    pub(crate) fn take_run(
        &mut self,
        ids: &mut VecDeque<u64>,
        first: u64,
        out: &mut VecDeque<Option<Settled>>,
    ) {
        while let Some(&id) = ids.front() {
            if id != first && !self.is_settled(id) {
                break;
            }
            ids.pop_front();
            out.push_back(self.entry_mut(id).and_then(Entry::take_result));
        }
        self.compact();
    }

    /// The next settled item of `group`.
    pub(crate) fn next_of_group(&mut self, group: u64) -> Option<u64> {
        self.finished.get_mut(&group)?.pop_front()
    }

    /// The next settled item of `group`, left in place.
    pub(crate) fn peek_group(&self, group: u64) -> Option<u64> {
        self.finished.get(&group)?.front().copied()
    }

    /// Nobody will read the results of `group`'s items.
    pub(crate) fn abandon_group(&mut self, group: u64) {
        if let Some(done) = self.finished.remove(&group) {
            for id in done {
                self.abandon(id);
            }
        }
        for entry in self.entries.iter_mut() {
            if entry.group == group as u32 + 1 && entry.input().is_some() {
                entry.abandoned = true;
                entry.group = 0;
            }
        }
    }

    /// Nobody will read `id`'s result.
    /// Cancels item `id` if no chunk holds it yet (it waits behind busy
    /// workers): it settles as [`TaskError::Cancelled`]; true if so.
    pub(crate) fn cancel(&mut self, id: u64) -> bool {
        let Some(at) = self.unchunked.iter().position(|(_, run)| run.contains(&id)) else {
            return false;
        };
        let Some((call, run)) = self.unchunked.remove(at) else {
            return false;
        };
        // The run without it: what came after, then what came before.
        if id + 1 < run.end {
            self.unchunked.insert(at, (call, id + 1..run.end));
        }
        if run.start < id {
            self.unchunked.insert(at, (call, run.start..id));
        }
        self.settle(id, Err(Box::new(TaskError::Cancelled)));
        true
    }

    pub(crate) fn abandon(&mut self, id: u64) {
        if let Some(entry) = self.entry_mut(id) {
            entry.abandoned = true;
            if entry.result().is_some() {
                entry.state = State::Consumed;
            }
        }
        self.compact();
    }

    /// Items submitted and not yet settled.
    pub(crate) fn unsettled(&self) -> usize {
        self.pending
    }

    fn settle(&mut self, id: u64, result: Settled) {
        let Some(entry) = self.entry_mut(id) else {
            return;
        };
        if entry.input().is_none() {
            return;
        }
        entry.state = if entry.abandoned {
            State::Consumed
        } else {
            State::Ready(result)
        };
        let group = std::mem::take(&mut entry.group)
            .checked_sub(1)
            .map(u64::from);
        self.pending -= 1;
        self.done += 1;
        if self.log_readers > 0 {
            self.log.push(id);
        }
        if let Some(group) = group {
            self.finished.entry(group).or_default().push_back(id);
        }
    }

    /// Every item still unsettled fails with `why` (the engine stopped).
    pub(crate) fn lose_all(&mut self, why: &str) {
        let ids: Vec<u64> = (self.base..)
            .zip(self.entries.iter())
            .filter(|(_, e)| e.input().is_some())
            .map(|(id, _)| id)
            .collect();
        for id in ids {
            self.settle(id, Err(Box::new(TaskError::Lost(why.to_string()))));
        }
        self.unchunked.clear();
        for chunk in &mut self.chunks {
            chunk.done = true;
        }
        self.open_chunks = 0;
        self.compact();
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
        let mut state = self.shared.lock();
        let store = &mut state.store;
        let chunk = store
            .chunk(task)
            .ok_or_else(|| format!("no chunk {task}"))?;
        chunk
            .call
            .write_head((chunk.items.end - chunk.items.start) as usize, out)?;
        // Items submitted together lie side by side in one buffer: copy
        // each run of them at once.
        let mut run: Option<(&Arc<[u8]>, Range<usize>)> = None;
        for id in chunk.items.clone() {
            let input = store
                .entry(id)
                .and_then(Entry::input)
                .ok_or_else(|| format!("item {id} has no input"))?;
            match &mut run {
                Some((buf, range))
                    if Arc::ptr_eq(buf, &input.buf) && range.end == input.range.start =>
                {
                    range.end = input.range.end;
                }
                _ => {
                    if let Some((buf, range)) = run.take() {
                        out.extend_from_slice(buf.get(range).unwrap_or_default());
                    }
                    run = Some((&input.buf, input.range.clone()));
                }
            }
        }
        if let Some((buf, range)) = run {
            out.extend_from_slice(buf.get(range).unwrap_or_default());
        }
        Ok(())
    }

    fn input_size_hint(&mut self) -> usize {
        0
    }

    fn accept(&mut self, task: u64, output: &[u8]) -> Result<(), Refused> {
        let mut state = self.shared.lock();
        let store = &mut state.store;
        let (items, cut_at) = store
            .chunk(task)
            .map(|c| (c.items.clone(), c.cut_at))
            .ok_or_else(|| format!("bad output: no chunk {task}"))?;
        let count = (items.end - items.start) as usize;
        // All or nothing: a short or long output settles no item.
        let replies = split_replies(output, count)
            .ok_or_else(|| format!("bad output: not {count} replies"))?;
        let buf: Arc<[u8]> = output.into();
        for (id, range) in items.zip(replies) {
            let reply = Bytes {
                buf: Arc::clone(&buf),
                range,
            };
            store.settle(id, Ok(reply));
        }
        store.close_chunk(task);
        store.learn(count, cut_at.elapsed().as_secs_f64());
        store.compact();
        Ok(())
    }

    fn gave_up(&mut self, task: u64, why: &GaveUp) {
        let mut state = self.shared.lock();
        let store = &mut state.store;
        let Some(chunk) = store.chunk(task) else {
            return;
        };
        let (call, items) = (chunk.call, chunk.items.clone());
        store.close_chunk(task);
        if items.end - items.start > 1 {
            // Which item killed the workers is not known: each goes again
            // alone, with attempts of its own.
            for id in items {
                store.unchunked.push_back((call, id..id + 1));
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
            store.settle(items.start, Err(Box::new(error)));
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
