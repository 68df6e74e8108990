//! [`Connection`]: one end of a [`Pipe`](super::Pipe), Python's
//! `multiprocessing.connection.Connection` with Rust method families.
//!
//! The descriptor stays blocking, so `send`/`recv` without a deadline cost
//! exactly the syscalls of a raw pipe: one `write` per message, one `read` for
//! whatever has arrived (cut into frames from an [`Inbox`]). The deadline forms
//! wait in `poll(2)` first; after that a pipe accepts `PIPE_BUF` bytes without
//! blocking and a socket write uses `MSG_DONTWAIT`, so a deadline is kept.
//! One reader and one writer per end, as with Python's pipes: a second process
//! reading the same end could take the data `poll` announced.
//!
//! A send that waits for room on a duplex end takes in what the peer sends
//! meanwhile (up to [`ABSORB_LIMIT`], or the whole frame that has begun),
//! for its next receives. Two processes that each send everything before
//! they receive (a parent that sends all its tasks, then reads the
//! results) would otherwise each wait for the other to read, forever, as
//! Python's pipes do. An end that was cloned does not: what it took in
//! might be another handle's to receive.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::{
    RecvError, RecvIntoError, RecvTimeoutError, SendError, SendTimeoutError, TryRecvError,
};
use super::inbox::{Inbox, Taken};
use super::mac::{FrameMac, FrameOpener, Sealing, TAG_LEN};
use crate::codec::{self, DEFAULT_MAX_FRAME_SIZE, HEADER_LEN};
use crate::handle;
use crate::os::{self, Deadline};

/// Payloads up to this size are copied next to their header and written with
/// one plain `write`; larger ones go out with `writev` and no copy.
const COPY_THRESHOLD: usize = 16 * 1024;
/// The encoding buffer is kept for the next frame up to this size; past
/// it, it goes once its frame is out (one 100 MB message would otherwise
/// stay allocated as long as the connection lives).
const SCRATCH_KEPT: usize = 4 << 20;

/// A frame this large makes its Unix socket ask for a send buffer of
/// [`LARGE_SEND_BUFFER`] (the kernel caps it at `net.core.wmem_max`). With
/// the default (about 200 KiB) a 100 MB frame crossed in some 500 turns of
/// writer and reader waking each other: a Manager's `items()` of one 100 MB
/// value took 0.38-0.41 s (median) on a 2-CPU VM, and 0.19 s with 4 MiB.
const LARGE_FRAME: usize = 1 << 20;
const LARGE_SEND_BUFFER: usize = 4 << 20;

/// What a waiting send takes in from its peer at most, beyond the rest of
/// a frame that has begun (which the next receive would buffer anyway).
pub(crate) const ABSORB_LIMIT: usize = 64 << 20;

/// One end of a pipe. Send and receive serde values (`send`/`recv`) or raw
/// byte messages (`send_bytes`/`recv_bytes`); each has `try_`/`_timeout` forms.
///
/// A closed or dead peer is [`RecvError::Disconnected`] / [`SendError::Disconnected`],
/// never a hang and never a `SIGPIPE`.
#[derive(Debug)]
pub struct Connection {
    pub(super) fd: OwnedFd,
    is_socket: bool,
    readable: bool,
    writable: bool,
    max_frame_size: usize,
    inbox: Inbox,
    /// Reused buffer for encoding outgoing frames.
    scratch: Vec<u8>,
    /// The tail of a frame whose `send_timeout` ran out after it had started.
    unsent: Vec<u8>,
    /// How much of `unsent` has been written since (an offset, not a
    /// drain: moving the rest to the front after every write made sending
    /// a 100 MB reply to a slow reader quadratic).
    unsent_at: usize,
    /// Frame tags, on a connection authenticated over TCP (see `mac`).
    mac: Option<Box<FrameMac>>,
    /// Whether a large frame has asked for a larger send buffer yet.
    send_buffer_asked: bool,
    /// Another handle may read this end (it was cloned, here or before it
    /// was handed over): a waiting send then takes nothing in.
    shared: AtomicBool,
    /// The threads that wait for this connection's futures (see `future`).
    pub(super) watches: super::future::Watches,
}

/// What a future's look at the connection found.
pub(super) enum FrameNow {
    /// A whole frame of this payload length is buffered.
    Whole(usize),
    /// Nothing more to read now.
    NotYet,
    /// More is there to read: the next poll reads on.
    MoreToRead,
}

/// How far a frame's write got before its deadline.
enum Wrote {
    Whole,
    /// This many bytes, then the deadline passed.
    Part(usize),
}

/// What a write that does not wait, within a budget, left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Written {
    All,
    /// The peer takes no more now: wait until it does.
    Blocked,
    /// The budget is spent, and more would go: go on at the next turn.
    Budget,
}

/// How the start of a frame went.
pub(crate) enum Started {
    Whole,
    /// Some of it; its rest waits unsent.
    Part(Written),
    /// Not a byte: the frame, to try again.
    Nothing(Vec<u8>),
}

/// How a raw write attempt ended.
enum WriteError {
    Timeout,
    Disconnected,
    Io(io::Error),
}

impl Connection {
    pub(crate) fn new(fd: OwnedFd, readable: bool, writable: bool) -> io::Result<Self> {
        os::fd::set_nonblocking(fd.as_raw_fd(), false)?;
        let is_socket = os::fd::is_socket(&fd);
        if !is_socket {
            os::signals::ignore_default_sigpipe();
        }
        Ok(Connection {
            fd,
            is_socket,
            readable,
            writable,
            max_frame_size: DEFAULT_MAX_FRAME_SIZE,
            inbox: Inbox::new(),
            scratch: Vec::new(),
            unsent: Vec::new(),
            unsent_at: 0,
            mac: None,
            send_buffer_asked: false,
            shared: AtomicBool::new(false),
            watches: Default::default(),
        })
    }

    /// Seals every frame sent from now on and checks every frame received
    /// (see `mac`): set by the handshake of a TCP connection.
    pub(crate) fn set_mac(&mut self, mac: FrameMac) {
        self.mac = Some(Box::new(mac));
    }

    /// Whether frames are sealed and checked.
    pub fn is_authenticated(&self) -> bool {
        self.mac.is_some()
    }

    /// A second handle on the same end (its descriptor duplicated), for
    /// instance to hand one writing end to several children (as Python
    /// pickles one `Connection` into many). Each whole frame goes in one
    /// piece up to the pipe's atomic size; readers sharing an end split
    /// what arrives between them. Nothing already received by this handle
    /// is copied.
    pub fn try_clone(&self) -> io::Result<Connection> {
        if self.mac.is_some() {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "an authenticated connection cannot be shared: its frame counters are its own",
            ));
        }
        let copy = Connection::new(self.fd.try_clone()?, self.readable, self.writable)?;
        let mut copy = copy.shared_with(true);
        copy.max_frame_size = self.max_frame_size;
        self.shared.store(true, Ordering::Relaxed);
        Ok(copy)
    }

    /// The largest payload this end will send or accept (default 1 GiB).
    pub fn max_frame_size(&self) -> usize {
        self.max_frame_size
    }

    /// Sets the largest payload this end will send or accept. A received header
    /// announcing more is an error raised before any allocation.
    pub fn set_max_frame_size(&mut self, bytes: usize) {
        self.max_frame_size = bytes.min(u32::MAX as usize);
    }

    pub fn is_readable(&self) -> bool {
        self.readable
    }

    pub fn is_writable(&self) -> bool {
        self.writable
    }

    // ---- sending ------------------------------------------------------------

    /// Sends a serde value as one message, waiting while the pipe is full.
    /// Meanwhile a duplex end that was not cloned takes in what its peer
    /// sends (up to 64 MiB beyond a frame that has begun) for its next
    /// receives, so two ends that both send before they receive do not
    /// wait for each other:
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (mut a, mut b) = outlast_ipc::Pipe::duplex()?;
    /// let big = vec![7u8; 8 << 20]; // far more than a socket holds
    /// let other = std::thread::spawn(move || -> Result<usize, outlast_ipc::pipe::RecvError> {
    ///     b.send_bytes(&[1u8; 8 << 20]).ok();
    ///     Ok(b.recv_bytes()?.len())
    /// });
    /// a.send_bytes(&big)?;
    /// assert_eq!(a.recv_bytes()?.len(), 8 << 20);
    /// assert_eq!(other.join().map_err(|_| "panicked")??, 8 << 20);
    /// # Ok(())
    /// # }
    /// ```
    pub fn send<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), SendError> {
        self.send_deadline(value, Deadline::never())
            .map_err(Self::expect_no_timeout)
    }

    /// Like [`send`](Self::send), giving up after `timeout` if no byte could be
    /// written. If the deadline passes after the message has started, the rest
    /// is kept here and written before the next message (or by [`flush_timeout`](Self::flush_timeout)),
    /// so the stream is never left with half a frame.
    pub fn send_timeout<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        self.send_deadline(value, Deadline::after(timeout))
    }

    /// Sends a byte message (Python's `send_bytes`). Bytes sent this way are
    /// received with [`recv_bytes`](Self::recv_bytes).
    pub fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), SendError> {
        self.send_bytes_deadline(bytes, Deadline::never())
            .map_err(Self::expect_no_timeout)
    }

    /// [`send_bytes`](Self::send_bytes) with a deadline, as [`send_timeout`](Self::send_timeout).
    pub fn send_bytes_timeout(
        &mut self,
        bytes: &[u8],
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        self.send_bytes_deadline(bytes, Deadline::after(timeout))
    }

    /// One byte message made of `head` then `tail`, written as they are
    /// (a large `tail`, a manager's 100 MB value, is not copied next to
    /// its request's first bytes), waiting at most `timeout` for room
    /// (`None`: as long as it takes). Received as one message.
    pub(crate) fn send_bytes_in_two(
        &mut self,
        head: &[u8],
        tail: &[u8],
        timeout: Option<Duration>,
    ) -> Result<(), SendTimeoutError> {
        let deadline = timeout.map_or_else(Deadline::never, Deadline::after);
        let (first, sealing) = self.frame_head(head, tail)?;
        // On an authenticated connection the tag covers both parts, hashed
        // where they lie (they were copied into one buffer first).
        let tag = sealing.map(|mut sealing| {
            sealing.update(head);
            sealing.update(tail);
            sealing.finish()
        });
        let wrote = match self.flush_unsent(deadline) {
            Ok(()) => self.write_frame(&[&first, tail], deadline),
            Err(e) => Err(Self::timeout_error(e)),
        };
        match (wrote, tag) {
            // Not a byte of it went: its place in the count is given back.
            (Err(SendTimeoutError::Timeout), Some(_)) => {
                self.take_back_seal();
                Err(SendTimeoutError::Timeout)
            }
            (Err(e), _) => Err(e),
            (Ok(()), None) => Ok(()),
            // The tag follows the message, now or, past the deadline, as
            // the rest of a frame does: before the next message.
            (Ok(()), Some(tag)) => {
                self.leave_unsent_too(&tag);
                match self.flush_unsent(deadline) {
                    Ok(()) | Err(WriteError::Timeout) => Ok(()),
                    Err(e) => Err(Self::timeout_error(e)),
                }
            }
        }
    }

    /// Sends a byte message with descriptors attached (`SCM_RIGHTS`; a Unix
    /// socket only), waiting at most `timeout` for room. The receiver takes
    /// both with [`recv_bytes_with_fds`](Self::recv_bytes_with_fds).
    pub fn send_bytes_with_fds(
        &mut self,
        bytes: &[u8],
        fds: &[RawFd],
        timeout: Duration,
    ) -> Result<(), SendTimeoutError> {
        self.check_writable()?;
        if !self.is_socket {
            return Err(SendError::Io(io::ErrorKind::Unsupported.into()).into());
        }
        let deadline = Deadline::after(timeout);
        let frame = self.sealed_frame(bytes)?;
        if let Err(e) = self.flush_unsent(deadline) {
            self.take_back_seal();
            return Err(Self::timeout_error(e));
        }
        loop {
            match os::rights::send_with_fds(self.fd.as_raw_fd(), &frame, fds) {
                // The descriptors went with the first byte; the rest is plain.
                Ok(n) => return self.write_frame(&[&frame[n..]], deadline),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self
                        .wait_ready(libc::POLLOUT, deadline)
                        .map_err(|e| SendTimeoutError::Send(SendError::Io(e)))?
                    {
                        self.take_back_seal();
                        return Err(SendTimeoutError::Timeout);
                    }
                }
                Err(e) if is_peer_gone(&e) => return Err(SendError::Disconnected.into()),
                Err(e) => return Err(SendError::Io(e).into()),
            }
        }
    }

    /// Writes the remainder of a message left by an expired `send_timeout`.
    pub fn flush_timeout(&mut self, timeout: Duration) -> Result<(), SendTimeoutError> {
        self.flush_unsent(Deadline::after(timeout))
            .map_err(Self::timeout_error)
    }

    /// How much of the frame that waits unsent is written already.
    #[cfg(test)]
    pub(crate) fn unsent_at_for_tests(&self) -> usize {
        self.unsent_at
    }

    /// True while part of a message waits to be written (see [`send_timeout`](Self::send_timeout)).
    pub fn has_unsent(&self) -> bool {
        self.unsent_at < self.unsent.len()
    }

    fn send_deadline<T: Serialize + ?Sized>(
        &mut self,
        value: &T,
        deadline: Deadline,
    ) -> Result<(), SendTimeoutError> {
        self.check_writable()?;
        codec::encode_frame_into(value, &mut self.scratch, self.max_frame_size)
            .map_err(SendError::from)?;
        if let Some(mac) = self.mac.as_mut() {
            let tag = mac.seal(&self.scratch[HEADER_LEN..]);
            self.scratch.extend_from_slice(&tag);
            let len = self.scratch.len() - HEADER_LEN;
            let header = match codec::encode_header(len, self.max_frame_size) {
                Ok(header) => header,
                Err(e) => {
                    mac.unseal();
                    return Err(SendError::from(e).into());
                }
            };
            self.scratch[..HEADER_LEN].copy_from_slice(&header);
        }
        let frame = std::mem::take(&mut self.scratch);
        self.write_sealed(frame, deadline)
    }

    /// Writes `frame` (sealed already, on an authenticated connection)
    /// after what an earlier frame left unsent; if not a byte of it went
    /// out, its seal is taken back.
    fn write_sealed(&mut self, frame: Vec<u8>, deadline: Deadline) -> Result<(), SendTimeoutError> {
        let wrote = match self.flush_unsent(deadline) {
            Ok(()) => self.write_owned_frame(frame, deadline),
            Err(e) => {
                self.reuse_scratch(frame);
                Err(Self::timeout_error(e))
            }
        };
        if matches!(wrote, Err(SendTimeoutError::Timeout)) {
            self.take_back_seal();
        }
        wrote
    }

    /// On an authenticated connection, takes back the seal of a frame of
    /// which not a byte went out.
    pub(crate) fn take_back_seal(&mut self) {
        if let Some(mac) = self.mac.as_mut() {
            mac.unseal();
        }
    }

    fn send_bytes_deadline(
        &mut self,
        bytes: &[u8],
        deadline: Deadline,
    ) -> Result<(), SendTimeoutError> {
        self.check_writable()?;
        if self.mac.is_some() {
            let frame = self.sealed_frame(bytes)?;
            return self.write_sealed(frame, deadline);
        }
        let header =
            codec::encode_header(bytes.len(), self.max_frame_size).map_err(SendError::from)?;
        self.flush_unsent(deadline).map_err(Self::timeout_error)?;
        if bytes.len() <= COPY_THRESHOLD {
            let mut frame = std::mem::take(&mut self.scratch);
            frame.clear();
            frame.extend_from_slice(&header);
            frame.extend_from_slice(bytes);
            self.write_owned_frame(frame, deadline)
        } else {
            self.write_frame(&[&header, bytes], deadline)
        }
    }

    /// `bytes` as one whole frame: header, payload and, on an
    /// authenticated connection, its tag.
    fn sealed_frame(&mut self, bytes: &[u8]) -> Result<Vec<u8>, SendError> {
        let tag = self.mac.as_mut().map(|mac| mac.seal(bytes));
        let len = bytes.len() + tag.map_or(0, |t| t.len());
        let header = match codec::encode_header(len, self.max_frame_size) {
            Ok(header) => header,
            Err(e) => {
                self.take_back_seal();
                return Err(e.into());
            }
        };
        let mut frame = Vec::with_capacity(HEADER_LEN + len);
        frame.extend_from_slice(&header);
        frame.extend_from_slice(bytes);
        if let Some(tag) = tag {
            frame.extend_from_slice(&tag);
        }
        Ok(frame)
    }

    fn check_writable(&self) -> Result<(), SendError> {
        if self.writable {
            Ok(())
        } else {
            Err(SendError::NotWritable)
        }
    }

    /// Writes `frame`, a whole frame in a buffer of this connection's. If
    /// the deadline passes after the first byte, the buffer itself becomes
    /// `unsent` (its tail is not copied) and this succeeds.
    fn write_owned_frame(
        &mut self,
        frame: Vec<u8>,
        deadline: Deadline,
    ) -> Result<(), SendTimeoutError> {
        match self.write_parts(&[&frame], deadline) {
            Ok(Wrote::Part(written)) => {
                // `flush_unsent` ran before this frame: nothing else waits.
                self.unsent = frame;
                self.unsent_at = written;
                Ok(())
            }
            ended => {
                self.reuse_scratch(frame);
                ended.map(|_| ())
            }
        }
    }

    /// Keeps `frame`'s buffer for the next frame, unless it is large.
    fn reuse_scratch(&mut self, mut frame: Vec<u8>) {
        if frame.capacity() <= SCRATCH_KEPT {
            frame.clear();
            self.scratch = frame;
        }
    }

    /// Writes a whole frame given as up to two parts. If the deadline passes
    /// after the first byte, the remainder moves to `unsent` and this succeeds.
    fn write_frame(&mut self, parts: &[&[u8]], deadline: Deadline) -> Result<(), SendTimeoutError> {
        if let Wrote::Part(written) = self.write_parts(parts, deadline)? {
            let (first, second) = remaining_parts(parts, written);
            self.unsent.extend_from_slice(first);
            self.unsent.extend_from_slice(second);
        }
        Ok(())
    }

    /// Writes up to two parts until all are out or the deadline passes:
    /// `Timeout` if nothing went, `Part` if some did.
    fn write_parts(
        &mut self,
        parts: &[&[u8]],
        deadline: Deadline,
    ) -> Result<Wrote, SendTimeoutError> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        self.ask_send_buffer(total);
        let mut written = 0;
        while written < total {
            let (first, second) = remaining_parts(parts, written);
            let bufs: &[&[u8]] = if second.is_empty() {
                &[first]
            } else {
                &[first, second]
            };
            match self.write_once(bufs, deadline) {
                Ok(n) => written += n,
                Err(WriteError::Timeout) if written == 0 => return Err(SendTimeoutError::Timeout),
                Err(WriteError::Timeout) => return Ok(Wrote::Part(written)),
                Err(other) => return Err(Self::timeout_error(other)),
            }
        }
        Ok(Wrote::Whole)
    }

    /// An awaited send's frame, made once: `payload` has [`HEADER_LEN`]
    /// bytes of room at its front for the header (no copy of a large
    /// payload) and, on an authenticated connection, takes its tag at the
    /// end, sealed now: [`take_back_seal`](Self::take_back_seal) if not a
    /// byte of it goes out.
    pub(crate) fn frame_in_place(&mut self, mut payload: Vec<u8>) -> Result<Vec<u8>, SendError> {
        self.check_writable()?;
        let body = payload.get(HEADER_LEN..).unwrap_or_default();
        if let Some(mac) = self.mac.as_mut() {
            let tag = mac.seal(body);
            payload.extend_from_slice(&tag);
        }
        let len = payload.len().saturating_sub(HEADER_LEN);
        let header = match codec::encode_header(len, self.max_frame_size) {
            Ok(header) => header,
            Err(e) => {
                self.take_back_seal();
                return Err(e.into());
            }
        };
        if let Some(room) = payload.get_mut(..HEADER_LEN) {
            room.copy_from_slice(&header);
        }
        Ok(payload)
    }

    /// The first part of a frame of `head` then `tail`, written as they
    /// lie (see [`send_bytes_in_two`](Self::send_bytes_in_two)): its
    /// header, then `head`; on an authenticated connection, with the tag's
    /// making begun, the tag to follow `tail` once made (its place in the
    /// count is taken now: [`take_back_seal`](Self::take_back_seal) if not
    /// a byte goes out).
    pub(crate) fn frame_head(
        &mut self,
        head: &[u8],
        tail: &[u8],
    ) -> Result<(Vec<u8>, Option<Sealing>), SendError> {
        self.check_writable()?;
        let tag_len = if self.mac.is_some() { TAG_LEN } else { 0 };
        let len = head
            .len()
            .saturating_add(tail.len())
            .saturating_add(tag_len);
        let header = codec::encode_header(len, self.max_frame_size)?;
        let mut first = Vec::with_capacity(HEADER_LEN + head.len());
        first.extend_from_slice(&header);
        first.extend_from_slice(head);
        let sealing = self.mac.as_mut().map(|mac| mac.begin_seal());
        Ok((first, sealing))
    }

    /// Writes, without waiting, about `budget` bytes at most of a frame
    /// made of `parts`, from byte `at` on: how many went, and whether the
    /// descriptor then had no room (`false`: the budget ran out, or all
    /// went).
    pub(crate) fn write_parts_now(
        &mut self,
        parts: [&[u8]; 2],
        at: usize,
        budget: usize,
    ) -> Result<(usize, bool), SendError> {
        self.ask_send_buffer(parts[0].len().saturating_add(parts[1].len()));
        let mut wrote = 0;
        loop {
            let (first, second) = remaining_parts(&parts, at + wrote);
            if first.is_empty() || wrote >= budget {
                return Ok((wrote, false));
            }
            let mut clipped: [&[u8]; 2] = [&[], &[]];
            let bufs = clip(&[first, second], budget - wrote, &mut clipped);
            match self.write_once(bufs, Deadline::now()) {
                Ok(n) => wrote += n,
                Err(WriteError::Timeout) => return Ok((wrote, true)),
                Err(e) => return Err(Self::expect_no_timeout(Self::timeout_error(e))),
            }
        }
    }

    /// What is left of a frame made of `parts` after byte `at`, kept to go
    /// out before the next message (a send dropped in its middle).
    pub(crate) fn leave_unsent(&mut self, parts: [&[u8]; 2], at: usize) {
        let (first, second) = remaining_parts(&parts, at);
        let mut rest = std::mem::take(&mut self.unsent);
        rest.drain(..self.unsent_at.min(rest.len()));
        rest.extend_from_slice(first);
        rest.extend_from_slice(second);
        self.unsent = rest;
        self.unsent_at = 0;
    }

    /// `bytes` to go out after what [`leave_unsent`](Self::leave_unsent)
    /// left (a dropped sealed frame's tag).
    pub(crate) fn leave_unsent_too(&mut self, bytes: &[u8]) {
        self.unsent.extend_from_slice(bytes);
    }

    /// Writes, without waiting, what an earlier frame left unsent, about
    /// `budget` bytes at most: what became of it.
    pub(crate) fn flush_some(&mut self, budget: usize) -> Result<Written, SendError> {
        let mut wrote = 0;
        while self.has_unsent() {
            if wrote >= budget {
                return Ok(Written::Budget);
            }
            let pending = std::mem::take(&mut self.unsent);
            let end = pending.len().min(self.unsent_at + (budget - wrote));
            let result = self.write_once(&[&pending[self.unsent_at..end]], Deadline::now());
            self.unsent = pending;
            match result {
                Ok(n) => {
                    self.unsent_at += n;
                    wrote += n;
                }
                Err(WriteError::Timeout) => return Ok(Written::Blocked),
                Err(e) => return Err(Self::expect_no_timeout(Self::timeout_error(e))),
            }
        }
        self.unsent = Vec::new();
        self.unsent_at = 0;
        Ok(Written::All)
    }

    /// Writes the start of `frame` (made by
    /// [`frame_in_place`](Self::frame_in_place)), without waiting, about
    /// `budget` bytes at most, once nothing else waits unsent. Its rest
    /// waits unsent (the buffer itself, not a copy); if not a byte went,
    /// the frame comes back.
    pub(crate) fn start_frame(
        &mut self,
        frame: Vec<u8>,
        budget: usize,
    ) -> Result<Started, SendError> {
        self.ask_send_buffer(frame.len());
        let mut wrote = 0;
        let blocked = loop {
            if wrote == frame.len() {
                return Ok(Started::Whole);
            }
            if wrote >= budget {
                break false;
            }
            let end = frame.len().min(budget);
            match self.write_once(&[&frame[wrote..end]], Deadline::now()) {
                Ok(n) => wrote += n,
                Err(WriteError::Timeout) => break true,
                Err(e) => return Err(Self::expect_no_timeout(Self::timeout_error(e))),
            }
        };
        if wrote == 0 {
            return Ok(Started::Nothing(frame));
        }
        self.unsent = frame;
        self.unsent_at = wrote;
        Ok(Started::Part(if blocked {
            Written::Blocked
        } else {
            Written::Budget
        }))
    }

    /// A Unix socket about to carry a large frame asks the kernel for a
    /// larger buffer, once (TCP sizes its own).
    fn ask_send_buffer(&mut self, total: usize) {
        if total >= LARGE_FRAME && !self.send_buffer_asked {
            self.send_buffer_asked = true;
            let fd = self.fd.as_raw_fd();
            // Only fewer wake-ups are lost if the kernel says no.
            if self.is_socket && os::fd::is_unix_socket(fd) {
                let _ = os::fd::set_send_buffer(fd, LARGE_SEND_BUFFER);
            }
        }
    }

    /// Writes what is left of an interrupted frame before anything else.
    fn flush_unsent(&mut self, deadline: Deadline) -> Result<(), WriteError> {
        while self.has_unsent() {
            let pending = std::mem::take(&mut self.unsent);
            let result = self.write_once(&[&pending[self.unsent_at..]], deadline);
            self.unsent = pending;
            self.unsent_at += result?;
        }
        // All out: the buffer goes too (it held a large frame's tail).
        self.unsent = Vec::new();
        self.unsent_at = 0;
        Ok(())
    }

    /// One successful write of at least one byte, waiting for room until the deadline.
    fn write_once(&mut self, bufs: &[&[u8]], deadline: Deadline) -> Result<usize, WriteError> {
        let fd = self.fd.as_raw_fd();
        let timed = !deadline.is_never();
        let mut clipped: [&[u8]; 2] = [&[], &[]];
        let bufs = if timed {
            // Wait for room first. Then a pipe takes PIPE_BUF bytes without
            // blocking, and a socket write is made non-blocking by MSG_DONTWAIT.
            if !self.wait_writable(deadline).map_err(WriteError::Io)? {
                return Err(WriteError::Timeout);
            }
            if self.is_socket {
                bufs
            } else {
                clip(bufs, libc::PIPE_BUF, &mut clipped)
            }
        } else {
            bufs
        };
        // An end that takes in while it waits must not wait inside the write.
        let dont_wait = timed || self.absorbs();
        loop {
            match os::fd::write_some(fd, bufs, self.is_socket, dont_wait) {
                Ok(0) => return Err(WriteError::Disconnected),
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self.wait_writable(deadline).map_err(WriteError::Io)? {
                        return Err(WriteError::Timeout);
                    }
                }
                Err(e) if is_peer_gone(&e) => return Err(WriteError::Disconnected),
                Err(e) => return Err(WriteError::Io(e)),
            }
        }
    }

    /// Whether a send that waits takes in what arrives (see the module docs).
    fn absorbs(&self) -> bool {
        self.is_socket && self.readable && !self.shared.load(Ordering::Relaxed)
    }

    /// Waits for room to write (or a hang-up, which the write turns into an
    /// error); false when the deadline passes first. Meanwhile an end that
    /// [`absorbs`](Self::absorbs) moves what its peer sends into the inbox,
    /// up to [`absorb_room`](Self::absorb_room). A send that may not wait
    /// (a server's, with no time) takes nothing in.
    fn wait_writable(&mut self, deadline: Deadline) -> io::Result<bool> {
        let fd = self.fd.as_raw_fd();
        let mut taking_in = self.absorbs();
        loop {
            let events = if taking_in && !deadline.passed() && self.absorb_room() > 0 {
                libc::POLLOUT | libc::POLLIN
            } else {
                libc::POLLOUT
            };
            let ready = os::poll::poll_one(fd, events, deadline)?;
            if ready.writable || ready.hangup {
                return Ok(true);
            }
            if !ready.readable {
                return Ok(false);
            }
            taking_in = self.absorb_now();
        }
    }

    /// Moves what has arrived into the inbox, without waiting, for a send
    /// that cannot go on (see [`wait_writable`](Self::wait_writable); an
    /// awaited send calls it too). True while this end takes in and has
    /// room for more: the caller may wait for the peer's bytes as well. The
    /// end of file and errors stay in the socket for a receive to find.
    pub(super) fn absorb_now(&mut self) -> bool {
        if !self.absorbs() {
            return false;
        }
        let fd = self.fd.as_raw_fd();
        loop {
            let room = self.absorb_room();
            if room == 0 {
                return false;
            }
            match self
                .inbox
                .fill_from_socket_now(fd, self.inbox.buffered() + room)
            {
                Ok(0) => return false,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(_) => return false,
            }
        }
    }

    /// How much more a waiting send may take in: up to [`ABSORB_LIMIT`]
    /// buffered, or to the end of the (valid) frame at the inbox's head.
    fn absorb_room(&self) -> usize {
        let head_frame = self
            .inbox
            .available()
            .first_chunk::<HEADER_LEN>()
            .and_then(|h| codec::decode_header(*h, self.max_frame_size).ok())
            .map_or(0, |len| HEADER_LEN + len);
        ABSORB_LIMIT
            .max(head_frame)
            .saturating_sub(self.inbox.buffered())
    }

    /// This connection, marked as read through other handles too (or not).
    fn shared_with(self, shared: bool) -> Self {
        self.shared.store(shared, Ordering::Relaxed);
        self
    }

    /// Waits for `events` (or a hang-up, which the next I/O turns into an error).
    fn wait_ready(&self, events: i16, deadline: Deadline) -> io::Result<bool> {
        Ok(os::poll::poll_one(self.fd.as_raw_fd(), events, deadline)?.any())
    }

    fn timeout_error(e: WriteError) -> SendTimeoutError {
        match e {
            WriteError::Timeout => SendTimeoutError::Timeout,
            WriteError::Disconnected => SendTimeoutError::Send(SendError::Disconnected),
            WriteError::Io(e) => SendTimeoutError::Send(SendError::Io(e)),
        }
    }

    /// Without a deadline a timeout cannot happen; map it to an I/O error rather than panic.
    fn expect_no_timeout(e: SendTimeoutError) -> SendError {
        match e {
            SendTimeoutError::Send(e) => e,
            SendTimeoutError::Timeout => SendError::Io(io::ErrorKind::TimedOut.into()),
        }
    }

    // ---- receiving ----------------------------------------------------------

    /// Receives one serde value, waiting for it.
    pub fn recv<T: DeserializeOwned>(&mut self) -> Result<T, RecvError> {
        match self.recv_deadline(Deadline::never()) {
            Ok(Some(v)) => Ok(v),
            Ok(None) => Err(RecvError::Io(io::ErrorKind::TimedOut.into())),
            Err(e) => Err(e),
        }
    }

    /// Receives one serde value if a whole one is already available.
    pub fn try_recv<T: DeserializeOwned>(&mut self) -> Result<T, TryRecvError> {
        if !self.is_socket {
            return self
                .recv_deadline(Deadline::now())?
                .ok_or(TryRecvError::Empty);
        }
        // A socket is read without waiting in one call, not polled first:
        // what spinning callers (a manager and its clients) do most.
        let Some(len) = self.next_frame_now()? else {
            return Err(TryRecvError::Empty);
        };
        Ok(self.take_value(len)?)
    }

    /// Decodes the whole frame of payload length `len` at the head of the
    /// inbox, and consumes it (an undecodable one too: the stream goes on).
    fn take_value<T: DeserializeOwned>(&mut self, len: usize) -> Result<T, RecvError> {
        let payload_len = self.opened(len);
        let value = payload_len
            .map(|n| codec::decode_payload(&self.inbox.available()[HEADER_LEN..HEADER_LEN + n]));
        self.inbox.consume(HEADER_LEN + len);
        Ok(value??)
    }

    /// The payload length of the frame of length `len` at the head of the
    /// inbox: all of it, or on an authenticated connection what is before
    /// its tag, once the tag is checked.
    fn opened(&mut self, len: usize) -> Result<usize, RecvError> {
        let Some(mac) = self.mac.as_mut() else {
            return Ok(len);
        };
        mac.open(&self.inbox.available()[HEADER_LEN..HEADER_LEN + len])
            .ok_or(RecvError::Forged)
    }

    /// A whole frame's length if one is buffered or can be read from the
    /// socket without waiting.
    fn next_frame_now(&mut self) -> Result<Option<usize>, RecvError> {
        if !self.readable {
            return Err(RecvError::NotReadable);
        }
        loop {
            if let Some(len) = self.complete_frame_len()? {
                return Ok(Some(len));
            }
            let want = self.bytes_wanted();
            match self.inbox.fill_from_socket_now(self.fd.as_raw_fd(), want) {
                Ok(0) => return Err(self.disconnected()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if is_peer_gone(&e) => return Err(self.disconnected()),
                Err(e) => return Err(RecvError::Io(e)),
            }
        }
    }

    /// Reads what is there without waiting, at most about `budget` bytes
    /// (a future's poll: reading a 50 MB frame as it came held the
    /// executor's thread 22 ms), until a whole frame is buffered.
    pub(super) fn frame_now(&mut self, budget: usize) -> Result<FrameNow, RecvError> {
        if !self.readable {
            return Err(RecvError::NotReadable);
        }
        let fd = self.fd.as_raw_fd();
        let mut read = 0;
        loop {
            if let Some(len) = self.complete_frame_len()? {
                return Ok(FrameNow::Whole(len));
            }
            if read >= budget {
                return Ok(FrameNow::MoreToRead);
            }
            let want = self.bytes_wanted();
            let got = match self.is_socket {
                true => self.inbox.fill_from_socket_now(fd, want),
                false => match self.wait_ready(libc::POLLIN, Deadline::now()) {
                    Ok(true) => self.inbox.fill_from(fd, want),
                    Ok(false) => return Ok(FrameNow::NotYet),
                    Err(e) => Err(e),
                },
            };
            match got {
                Ok(0) => return Err(self.disconnected()),
                Ok(n) => read += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(FrameNow::NotYet),
                Err(e) if is_peer_gone(&e) => return Err(self.disconnected()),
                Err(e) => return Err(RecvError::Io(e)),
            }
        }
    }

    /// Takes the whole frame of payload length `len` at the head of the
    /// inbox out (header included), for a thread to open and read; with
    /// the check of its tag on an authenticated connection.
    pub(super) fn take_frame(&mut self, len: usize) -> (Taken, Option<FrameOpener>) {
        let opener = self.mac.as_ref().map(|mac| mac.opener());
        (self.inbox.take_front(HEADER_LEN + len), opener)
    }

    /// A frame taken and not given (its future was dropped): at the head
    /// again, for the next receive.
    pub(super) fn put_frame_back(&mut self, frame: Taken) {
        self.inbox.put_front(frame);
    }

    /// A frame taken was opened, its tag right: the next one is checked
    /// against the next counter.
    pub(super) fn frame_opened(&mut self) {
        if let Some(mac) = self.mac.as_mut() {
            mac.opened_one();
        }
    }

    /// Receives one serde value, waiting at most `timeout`.
    pub fn recv_timeout<T: DeserializeOwned>(
        &mut self,
        timeout: Duration,
    ) -> Result<T, RecvTimeoutError> {
        self.recv_deadline(Deadline::after(timeout))?
            .ok_or(RecvTimeoutError::Timeout)
    }

    /// Receives one byte message (Python's `recv_bytes`).
    pub fn recv_bytes(&mut self) -> Result<Vec<u8>, RecvError> {
        let mut out = Vec::new();
        self.recv_bytes_reusing(&mut out)?;
        Ok(out)
    }

    /// Receives one byte message, waiting at most `timeout`.
    pub fn recv_bytes_timeout(&mut self, timeout: Duration) -> Result<Vec<u8>, RecvTimeoutError> {
        let mut out = Vec::new();
        self.recv_bytes_reusing_timeout(&mut out, timeout)?;
        Ok(out)
    }

    /// Python's `recv_bytes_into(buf, offset)`: receives one byte message
    /// into `buf` from `offset` on, and returns its length. A message
    /// longer than the room is [`RecvIntoError::BufferTooShort`], carrying
    /// it whole (it is not lost); an `offset` past the end is an error
    /// before anything is received.
    ///
    /// ```
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use outlast_ipc::pipe::RecvIntoError;
    /// let (mut a, mut b) = outlast_ipc::Pipe::duplex()?;
    /// a.send_bytes(b"hello")?;
    /// let mut buf = [0u8; 8];
    /// assert_eq!(b.recv_bytes_into(&mut buf, 2)?, 5);
    /// assert_eq!(&buf[2..7], b"hello");
    /// a.send_bytes(b"far too long")?;
    /// match b.recv_bytes_into(&mut buf, 0) {
    ///     Err(RecvIntoError::BufferTooShort(message)) => assert_eq!(message, b"far too long"),
    ///     other => panic!("{other:?}"),
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn recv_bytes_into(
        &mut self,
        buf: &mut [u8],
        offset: usize,
    ) -> Result<usize, RecvIntoError> {
        self.recv_bytes_into_deadline(buf, offset, Deadline::never())
    }

    /// [`recv_bytes_into`](Self::recv_bytes_into), waiting at most `timeout`.
    pub fn recv_bytes_into_timeout(
        &mut self,
        buf: &mut [u8],
        offset: usize,
        timeout: Duration,
    ) -> Result<usize, RecvIntoError> {
        self.recv_bytes_into_deadline(buf, offset, Deadline::after(timeout))
    }

    fn recv_bytes_into_deadline(
        &mut self,
        buf: &mut [u8],
        offset: usize,
        deadline: Deadline,
    ) -> Result<usize, RecvIntoError> {
        let len = buf.len();
        let Some(room) = buf.get_mut(offset..) else {
            return Err(RecvIntoError::OffsetOutOfBounds { offset, len });
        };
        let Some(frame) = self.next_frame(deadline)? else {
            return Err(RecvIntoError::Timeout);
        };
        let opened = self.opened(frame);
        let outcome = match opened {
            Ok(n) => {
                let message = &self.inbox.available()[HEADER_LEN..HEADER_LEN + n];
                match room.get_mut(..n) {
                    Some(to) => {
                        to.copy_from_slice(message);
                        Ok(n)
                    }
                    None => Err(RecvIntoError::BufferTooShort(message.to_vec())),
                }
            }
            Err(e) => Err(e.into()),
        };
        self.inbox.consume(HEADER_LEN + frame);
        outcome
    }

    /// Receives one byte message into `out` (replacing its contents, reusing its
    /// allocation) and returns its length.
    pub fn recv_bytes_reusing(&mut self, out: &mut Vec<u8>) -> Result<usize, RecvError> {
        match self.recv_bytes_deadline(out, Deadline::never()) {
            Ok(Some(n)) => Ok(n),
            Ok(None) => Err(RecvError::Io(io::ErrorKind::TimedOut.into())),
            Err(e) => Err(e),
        }
    }

    /// [`recv_bytes_reusing`](Self::recv_bytes_reusing) with a deadline.
    pub fn recv_bytes_reusing_timeout(
        &mut self,
        out: &mut Vec<u8>,
        timeout: Duration,
    ) -> Result<usize, RecvTimeoutError> {
        self.recv_bytes_deadline(out, Deadline::after(timeout))?
            .ok_or(RecvTimeoutError::Timeout)
    }

    /// Receives one byte message and the descriptors sent with it (see
    /// [`send_bytes_with_fds`](Self::send_bytes_with_fds)), waiting at most
    /// `timeout`. Descriptors come with the first byte of a message, so this
    /// must be called with nothing of it received yet: a message that a
    /// receive read ahead, or that a waiting send on this end took in (see
    /// [`send`](Self::send)), comes without its descriptors (the kernel
    /// closes them). Exchange descriptors as request and reply.
    pub fn recv_bytes_with_fds(
        &mut self,
        timeout: Duration,
    ) -> Result<(Vec<u8>, Vec<OwnedFd>), RecvTimeoutError> {
        if !self.readable {
            return Err(RecvError::NotReadable.into());
        }
        let deadline = Deadline::after(timeout);
        let mut fds = Vec::new();
        if self.inbox.buffered() == 0 {
            let mut buf = vec![0u8; 64 * 1024];
            loop {
                if !self
                    .wait_ready(libc::POLLIN, deadline)
                    .map_err(RecvError::Io)?
                {
                    return Err(RecvTimeoutError::Timeout);
                }
                match os::rights::recv_with_fds(self.fd.as_raw_fd(), &mut buf) {
                    Ok((0, _)) => return Err(self.disconnected().into()),
                    Ok((n, got)) => {
                        fds = got;
                        self.inbox.push(&buf[..n]);
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if is_peer_gone(&e) => return Err(self.disconnected().into()),
                    Err(e) => return Err(RecvError::Io(e).into()),
                }
            }
        }
        let mut out = Vec::new();
        self.recv_bytes_deadline(&mut out, deadline)?
            .ok_or(RecvTimeoutError::Timeout)?;
        Ok((out, fds))
    }

    /// Is a message (or the peer's end of file) waiting? Waits at most `timeout`.
    pub fn poll(&mut self, timeout: Duration) -> Result<bool, RecvError> {
        if !self.readable {
            return Err(RecvError::NotReadable);
        }
        if self.complete_frame_len()?.is_some() {
            return Ok(true);
        }
        let ready = os::poll::poll_one(self.fd.as_raw_fd(), libc::POLLIN, Deadline::after(timeout))
            .map_err(RecvError::Io)?;
        Ok(ready.readable || ready.hangup)
    }

    fn recv_deadline<T: DeserializeOwned>(
        &mut self,
        deadline: Deadline,
    ) -> Result<Option<T>, RecvError> {
        let Some(len) = self.next_frame(deadline)? else {
            return Ok(None);
        };
        self.take_value(len).map(Some)
    }

    fn recv_bytes_deadline(
        &mut self,
        out: &mut Vec<u8>,
        deadline: Deadline,
    ) -> Result<Option<usize>, RecvError> {
        let Some(len) = self.next_frame(deadline)? else {
            return Ok(None);
        };
        let opened = self.opened(len);
        if let Ok(n) = opened {
            out.clear();
            out.extend_from_slice(&self.inbox.available()[HEADER_LEN..HEADER_LEN + n]);
        }
        self.inbox.consume(HEADER_LEN + len);
        opened.map(Some)
    }

    /// The payload length of the complete frame at the head of the inbox, if any.
    fn complete_frame_len(&self) -> Result<Option<usize>, RecvError> {
        let available = self.inbox.available();
        let Some(header) = available.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let len = codec::decode_header(*header, self.max_frame_size)?;
        Ok((available.len() >= HEADER_LEN + len).then_some(len))
    }

    /// How many bytes the inbox needs for the frame at its head (its
    /// header, or the whole frame once the header is in: bounded, since
    /// `complete_frame_len` validated the header).
    fn bytes_wanted(&self) -> usize {
        match self.inbox.available().first_chunk::<HEADER_LEN>() {
            Some(h) => HEADER_LEN + u32::from_le_bytes(*h) as usize,
            None => HEADER_LEN,
        }
    }

    /// Reads until a whole frame is buffered; `Ok(None)` when the deadline passes first.
    fn next_frame(&mut self, deadline: Deadline) -> Result<Option<usize>, RecvError> {
        if !self.readable {
            return Err(RecvError::NotReadable);
        }
        loop {
            if let Some(len) = self.complete_frame_len()? {
                return Ok(Some(len));
            }
            let want = self.bytes_wanted();
            // Untimed: a plain blocking read, as cheap as a raw pipe. Timed:
            // wait for data first, so that the read cannot block past the deadline.
            if !deadline.is_never()
                && !self
                    .wait_ready(libc::POLLIN, deadline)
                    .map_err(RecvError::Io)?
            {
                return Ok(None);
            }
            match self.inbox.fill_from(self.fd.as_raw_fd(), want) {
                Ok(0) => return Err(self.disconnected()),
                Ok(_) => {}
                // Someone set O_NONBLOCK on the shared file description: wait in poll.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if !self
                        .wait_ready(libc::POLLIN, deadline)
                        .map_err(RecvError::Io)?
                    {
                        return Ok(None);
                    }
                }
                Err(e) if is_peer_gone(&e) => return Err(self.disconnected()),
                Err(e) => return Err(RecvError::Io(e)),
            }
        }
    }

    /// End of file. A partial frame left behind (a peer killed mid-send) is
    /// dropped: it can never be completed.
    fn disconnected(&mut self) -> RecvError {
        let partial = self.inbox.available().len();
        self.inbox.consume(partial);
        RecvError::Disconnected
    }
}

impl AsFd for Connection {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

impl AsRawFd for Connection {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // Best effort, never blocking: push out the tail of a timed-out send.
        if self.has_unsent() {
            let _ = self.flush_unsent(Deadline::now());
        }
    }
}

/// The first `limit` bytes of `bufs`, as up to two slices in `out`.
fn clip<'a>(bufs: &[&'a [u8]], limit: usize, out: &'a mut [&'a [u8]; 2]) -> &'a [&'a [u8]] {
    let mut left = limit;
    let mut count = 0;
    for buf in bufs.iter().take(2) {
        if left == 0 {
            break;
        }
        let take = buf.len().min(left);
        out[count] = &buf[..take];
        left -= take;
        count += 1;
    }
    &out[..count]
}

/// The two parts of a frame that remain after `written` bytes.
fn remaining_parts<'a>(parts: &[&'a [u8]], written: usize) -> (&'a [u8], &'a [u8]) {
    let first = parts.first().copied().unwrap_or(&[]);
    let second = parts.get(1).copied().unwrap_or(&[]);
    if written < first.len() {
        (&first[written..], second)
    } else {
        (&second[written - first.len()..], &[])
    }
}

fn is_peer_gone(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPIPE) | Some(libc::ECONNRESET))
}

/// What a connection looks like inside a serialized Process argument: the
/// descriptor's slot in the handle table plus the connection's state.
#[derive(Serialize, Deserialize)]
struct ConnectionWire {
    slot: u32,
    readable: bool,
    writable: bool,
    max_frame_size: u64,
    /// Bytes this copy had received but not yet handed out.
    buffered: Vec<u8>,
    /// Whether other handles may read the same end.
    shared: bool,
}

impl Serialize for Connection {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Its frame counters cannot be in two processes at once.
        if self.mac.is_some() {
            return Err(S::Error::custom(
                "an authenticated (TCP) connection cannot be handed to another process",
            ));
        }
        // Both copies would write the tail of a timed-out send: refuse instead.
        if self.has_unsent() {
            return Err(S::Error::custom(
                "this connection holds part of a timed-out send; flush_timeout() it before handing it to a process",
            ));
        }
        let slot = handle::export_fd(self.fd.as_raw_fd()).map_err(S::Error::custom)?;
        ConnectionWire {
            slot,
            readable: self.readable,
            writable: self.writable,
            max_frame_size: self.max_frame_size as u64,
            buffered: self.inbox.available().to_vec(),
            shared: self.shared.load(Ordering::Relaxed),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Connection {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let wire = ConnectionWire::deserialize(deserializer)?;
        let fd = handle::import_fd(wire.slot).map_err(D::Error::custom)?;
        let mut conn = Connection::new(fd, wire.readable, wire.writable)
            .map_err(D::Error::custom)?
            .shared_with(wire.shared);
        conn.max_frame_size = usize::try_from(wire.max_frame_size).unwrap_or(usize::MAX);
        conn.inbox = Inbox::with_contents(wire.buffered);
        Ok(conn)
    }
}

impl crate::wait::Waitable for Connection {
    fn ready_fd(&self) -> Option<std::os::fd::RawFd> {
        self.readable.then(|| self.fd.as_raw_fd())
    }
    fn ready_now(&self) -> bool {
        // A frame's first bytes are here already (or more to come): a recv
        // will not wait for the kernel.
        self.readable && self.inbox.buffered() > 0
    }
}
