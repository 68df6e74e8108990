//! The link between the supervisor and one worker: two single-producer
//! single-consumer rings in shared memory ([`outlast_ipc::spsc`]), tasks one way
//! and results the other, with the worker's heartbeat slot in the aux area
//! of its results ring, and a pipe that carries only a doorbell, so the
//! supervisor's single `poll` wakes when results are waiting and its end of
//! file says the worker is gone.
//!
//! Nothing in the link is a lock, and the supervisor trusts no word of it:
//! its ends check every position the worker publishes and copy each record
//! out before decoding it (see `outlast_ipc::spsc`), and the heartbeat is a claim
//! it judges (see [`crate::heartbeat`]). Each worker has its
//! own link, and a forked worker maps no other worker's: one worker's
//! corrupted memory can break only its own link, and then it is killed.
//!
//! A message too large for its ring (a big task input or result) goes
//! through the link's spill port instead: a sealed memfd handed over a
//! socket, announced in the ring by a `Spilled { len }` record, and checked
//! on arrival against the link's cap ([`outlast_ipc::spsc::spill`]).
//!
//! The doorbell is rung only when no ring is pending: the worker sets the
//! bell word from 0 to 1 and writes one byte; the supervisor reads the
//! bytes, clears the word, *then* drains the results, so a result published
//! after the drain started always rings again. (The supervisor also looks
//! at every results ring on each turn, so a worker that never rings only
//! delays itself.)

use std::collections::VecDeque;
use std::time::Duration;

use outlast_ipc::spsc::doorbell::{self, Listener, Ringer};
use outlast_ipc::spsc::spill::{self, SpillError, SpillPort};
use outlast_ipc::spsc::{self, Receiver, RecvValueError, Sender, SpscError, TrySendError};
use serde::{Deserialize, Serialize};

use crate::heartbeat::{self, Heartbeat};
use crate::protocol::{FromWorker, Task, ToWorker};

/// The most a worker's encoding buffer keeps between messages.
const SCRATCH_KEPT: usize = 4 << 20;

/// The supervisor's end of a link.
#[derive(Debug)]
pub struct SupervisorLink {
    pub tasks: Sender,
    pub results: Receiver,
    pub doorbell: Listener,
    /// Where messages too large for a ring go, both ways.
    pub spill: SpillPort,
    /// The largest message either side may send, in bytes.
    pub max_message: u64,
}

/// The worker's end of a link (a `Process` argument).
#[derive(Debug, Serialize, Deserialize)]
pub struct WorkerLink {
    pub tasks: Receiver,
    pub results: Sender,
    pub doorbell: Ringer,
    pub spill: SpillPort,
    /// The largest message the supervisor takes, in bytes: a task's output
    /// above it is that task's error ([`crate::protocol::TaskOutput::TooLarge`]).
    pub max_message: u64,
    /// Where messages are encoded, kept from one to the next.
    #[serde(skip)]
    scratch: Vec<u8>,
}

/// The bytes of a message's task outputs: its encoding is longer.
fn payload_bytes(message: &FromWorker) -> usize {
    match message {
        FromWorker::Results(results) => results
            .iter()
            .map(|r| match &r.output {
                crate::protocol::TaskOutput::Done(bytes) => bytes.len(),
                _ => 0,
            })
            .sum(),
        _ => 0,
    }
}

/// Why a link could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot make the link's rings: {0}")]
    Shm(#[from] outlast_ipc::shm::ShmError),
    #[error("cannot make the link's doorbell: {0}")]
    Doorbell(#[from] std::io::Error),
}

/// Why a worker could not send to its supervisor.
#[derive(Debug, thiserror::Error)]
pub enum LinkSendError {
    #[error("the supervisor is gone")]
    Gone,
    #[error("the results ring stayed full for {0:?}")]
    Stuck(Duration),
    #[error("the link broke: {0}")]
    Broken(String),
    #[error("cannot hand over a large message: {0}")]
    Spill(#[from] SpillError),
}

/// Why a worker could not take its supervisor's next message.
#[derive(Debug, thiserror::Error)]
pub enum LinkRecvError {
    #[error(transparent)]
    Ring(#[from] RecvValueError),
    #[error("cannot take a large message: {0}")]
    Spill(#[from] SpillError),
    #[error("a spilled message is itself a spill record")]
    NestedSpill,
    #[error("a spilled message does not decode: {0}")]
    Decode(String),
}

/// The supervisor's end and the worker's end of a new link whose rings
/// each have `ring_bytes` (rounded up to a power of two), carrying
/// messages of at most `max_message` bytes (larger than a ring's go
/// through the spill port).
///
/// Both ends are parked (not mapped here): hand the worker's to its
/// process, and [`open`](SupervisorLink::open) the supervisor's when it is
/// needed. A supervisor forking a thousand workers keeps its own ends
/// parked until they have all started, since each mapping it holds makes
/// every fork slower.
pub fn pair(
    ring_bytes: usize,
    max_message: u64,
) -> Result<(SupervisorLink, WorkerLink), LinkError> {
    let (task_tx, task_rx) = spsc::channel_parked(ring_bytes, 0, |_| {})?;
    let (result_tx, result_rx) = spsc::channel_parked(ring_bytes, heartbeat::WORDS, |aux| {
        Heartbeat::new(aux).reset()
    })?;
    let (theirs, ours) = doorbell::doorbell()?;
    let (spill_ours, spill_theirs) = spill::ports()?;
    let supervisor = SupervisorLink {
        tasks: task_tx,
        results: result_rx,
        doorbell: ours,
        spill: spill_ours,
        max_message,
    };
    let worker = WorkerLink {
        tasks: task_rx,
        results: result_tx,
        doorbell: theirs,
        spill: spill_theirs,
        max_message,
        scratch: Vec::new(),
    };
    Ok((supervisor, worker))
}

impl SupervisorLink {
    /// Maps the supervisor's ends (a no-op once they are).
    pub fn open(&mut self) -> Result<(), outlast_ipc::shm::ShmError> {
        self.tasks.open()?;
        self.results.open()
    }

    /// Whether the supervisor's ends are mapped.
    pub fn is_open(&self) -> bool {
        self.tasks.is_open() && self.results.is_open()
    }

    /// The worker's heartbeat slot (its claims, to be judged; empty while
    /// the link is parked).
    pub fn heartbeat(&self) -> Heartbeat<'_> {
        Heartbeat::new(self.results.aux())
    }
}

impl WorkerLink {
    pub fn heartbeat(&self) -> Heartbeat<'_> {
        Heartbeat::new(self.results.aux())
    }

    /// Sends a message to the supervisor, waiting for room in slices of
    /// `beat_every` and beating between them, for at most `patience`. One
    /// too large for the ring is spilled: handed over first, then announced.
    pub fn send(
        &mut self,
        message: &FromWorker,
        beat_every: Duration,
        patience: Duration,
    ) -> Result<(), LinkSendError> {
        if payload_bytes(message) > self.results.max_message() {
            return self.spill_straight(message, beat_every, patience);
        }
        let mut bytes = std::mem::take(&mut self.scratch);
        bytes.clear();
        // The codec, not postcard's `to_extend`: that one appends a byte
        // at a time, which a user's debug build leaves unoptimised (0.4 s
        // of a 100 MB result's 0.67 s).
        outlast_ipc::codec::encode_append(message, &mut bytes)
            .map_err(|e| LinkSendError::Broken(e.to_string()))?;
        let sent = if bytes.len() <= self.results.max_message() {
            self.send_bytes(&bytes, beat_every, patience)
        } else {
            self.spill
                .send(&bytes)
                .map_err(LinkSendError::from)
                .and_then(|()| {
                    let record = FromWorker::Spilled {
                        len: bytes.len() as u64,
                    };
                    let record = postcard::to_allocvec(&record)
                        .map_err(|e| LinkSendError::Broken(e.to_string()))?;
                    self.send_bytes(&record, beat_every, patience)
                })
        };
        // Kept for the next message, unless a large one grew it.
        if bytes.capacity() <= SCRATCH_KEPT {
            self.scratch = bytes;
        }
        sent
    }

    /// Sends a message whose outputs alone are too large for the ring:
    /// encoded straight into the memfd that carries it (a 100 MB output
    /// is not copied into a buffer first), handed over, then announced.
    fn spill_straight(
        &mut self,
        message: &FromWorker,
        beat_every: Duration,
        patience: Duration,
    ) -> Result<(), LinkSendError> {
        use std::io::Write;
        let len = self
            .spill
            .send_written(|file| {
                // Outputs pass through whole; the small fields around
                // them are gathered into few writes.
                let mut out = std::io::BufWriter::with_capacity(64 << 10, file);
                postcard::to_io(message, &mut out).map_err(std::io::Error::other)?;
                out.flush()
            })
            .map_err(LinkSendError::from)?;
        let record = postcard::to_allocvec(&FromWorker::Spilled { len })
            .map_err(|e| LinkSendError::Broken(e.to_string()))?;
        self.send_bytes(&record, beat_every, patience)
    }

    /// Writes one record, waiting for room as [`send`](Self::send) does.
    fn send_bytes(
        &mut self,
        bytes: &[u8],
        beat_every: Duration,
        patience: Duration,
    ) -> Result<(), LinkSendError> {
        let started = std::time::Instant::now();
        match self.results.try_send(bytes) {
            Ok(()) => {
                self.ring();
                return Ok(());
            }
            // No room: the supervisor is told to take what is there (a
            // lap's end skipped for this record, perhaps) before we wait.
            Err(TrySendError::Full) => self.ring(),
            Err(_) => {}
        }
        loop {
            match self.results.send_timeout(bytes, beat_every) {
                Ok(()) => {
                    self.ring();
                    return Ok(());
                }
                Err(TrySendError::Full) if started.elapsed() < patience => {
                    self.heartbeat().touch();
                    // The supervisor may have missed a ring while busy.
                    self.ring();
                }
                Err(TrySendError::Full) => return Err(LinkSendError::Stuck(patience)),
                Err(TrySendError::Failed(SpscError::Disconnected)) => {
                    return Err(LinkSendError::Gone)
                }
                Err(e) => return Err(LinkSendError::Broken(e.to_string())),
            }
        }
    }

    /// Writes raw bytes as one record (fault injection only).
    pub fn send_raw(&mut self, bytes: &[u8]) -> Result<(), LinkSendError> {
        self.results
            .send_timeout(bytes, Duration::from_secs(1))
            .map_err(|e| LinkSendError::Broken(e.to_string()))?;
        self.ring();
        Ok(())
    }

    /// Rings the doorbell unless a ring is already pending.
    pub fn ring(&mut self) {
        if self.heartbeat().claim_bell() {
            self.doorbell.ring();
        }
    }

    /// The next message from the supervisor, waiting at most `timeout`:
    /// `Ok(None)` if none came. A batch's tasks are appended to `held`.
    /// Decoded in place: a worker trusts its supervisor (the other way
    /// round, records are copied out first).
    pub fn receive(
        &mut self,
        held: &mut VecDeque<Task>,
        timeout: Duration,
    ) -> Result<Option<Received>, LinkRecvError> {
        let before = held.len();
        // (Batches of tasks are read by hand: see `protocol::hot_decode`.)
        let message = self
            .tasks
            .recv_in_place_timeout(timeout, |payload| ToWorker::decode_appending(payload, held));
        let message = match message {
            Ok(Some(decoded)) => decoded.map_err(RecvValueError::from)?,
            Ok(None) => return Ok(None),
            Err(e) => return Err(RecvValueError::from(e).into()),
        };
        let message = match message {
            None => return Ok(Some(Received::Tasks(held.len() - before))),
            Some(ToWorker::Spilled { len }) => {
                let bytes = self.spill.take(len, u64::MAX)?;
                // Decoded in place too: each input stays in the mapping.
                crate::protocol::decode_spilled(bytes).ok_or_else(|| {
                    LinkRecvError::Decode("a spilled message does not decode".into())
                })?
            }
            Some(message) => message,
        };
        match message {
            ToWorker::Tasks(tasks) => {
                let count = tasks.len();
                held.extend(tasks);
                Ok(Some(Received::Tasks(count)))
            }
            ToWorker::Stop => Ok(Some(Received::Stop)),
            ToWorker::Spilled { .. } => Err(LinkRecvError::NestedSpill),
        }
    }
}

/// What [`WorkerLink::receive`] took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// This many tasks, appended to those held.
    Tasks(usize),
    /// Finish every task held, report, and exit.
    Stop,
}
