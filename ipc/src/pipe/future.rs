//! A connection's receives and sends as `std::future::Future`s, for any
//! executor: [`Connection::recv_async`], [`Connection::recv_bytes_async`],
//! [`Connection::send_async`] and [`Connection::send_bytes_async`].
//!
//! A future tries the non-waiting call each time it is polled, in the
//! polling thread (a whole frame may already sit in our buffer, where no
//! reactor would see it); when that cannot go on, it leaves its waker with
//! the connection's [`Source`] in this process's reactor (one thread, one
//! `epoll`, for every awaited descriptor), which wakes it once the
//! descriptor is ready. The source holds a duplicate of the descriptor,
//! closed when the connection is dropped (so the peer sees the end of file
//! then).
//!
//! An awaited send on a duplex end takes in what the peer sends while it
//! waits for room, as a blocking one does (see `connection`).
//!
//! A large frame is read a megabyte per poll, then opened (its tag
//! checked, on an authenticated connection) and decoded on a thread of its
//! own, which wakes the future: a 50 MB frame held the executor's thread
//! 22 ms to read and as long again to decode. Awaiting a receive asks
//! `T: Send + 'static`.
//!
//! Cancel-safe: a receive dropped before it is ready has taken no message
//! (a frame read in part, or whole and being decoded, stays buffered for
//! the next receive); a send
//! dropped before it is ready has sent nothing, or, if it had started, its
//! rest goes out before the next message, as after a `send_timeout`.

use std::future::Future;
use std::io;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::codec::{self, HEADER_LEN};
use crate::off_thread::OffThread;
use crate::watch::{Readiness, Registration, Source};

use super::connection::{FrameNow, Started, Written};
use super::inbox::Taken;
use super::mac::FrameOpener;
use super::send_in_two::Parts;
use super::{Connection, RecvError, RecvTimeoutError, SendError, TryRecvError};

/// From this payload size on, a frame is opened and read off the
/// executor's thread (starting a thread costs tens of microseconds; a
/// megabyte decodes in about half a millisecond to a few).
const OFF_THREAD_BYTES: usize = 1 << 20;

/// From this size on, an awaited byte message is written from where it
/// lies: copied into a frame of its own, a 100 MB one held the executor's
/// thread some 50 ms.
const BORROWED_BYTES: usize = 1 << 20;

/// The most one poll reads before it lets the executor's other tasks run
/// (about a tenth of a millisecond).
const READ_PER_POLL: usize = 1 << 20;

/// A connection's descriptor in the reactor, for each way, added on
/// first use (their duplicates close with the connection).
#[derive(Debug, Default)]
pub(super) struct Watches {
    readable: Option<Arc<Source>>,
    writable: Option<Arc<Source>>,
}

impl Connection {
    /// Receives one serde value, as a future: [`recv`](Self::recv) for
    /// async code, with no runtime of ours (any executor polls it). While
    /// it waits, this process's reactor thread (one for every awaited
    /// descriptor) watches the descriptor, not the executor. A frame of a
    /// megabyte or more is read a megabyte per poll and decoded on a
    /// thread of its own (awaiting asks `T: Send + 'static`). Cancel-safe:
    /// dropped before it is ready, it has taken no message.
    ///
    /// ```
    /// use std::future::Future;
    /// use std::task::{Context, Poll, Waker};
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let (mut a, mut b) = outlast_ipc::Pipe::duplex()?;
    /// let mut cx = Context::from_waker(Waker::noop());
    /// let mut recv = std::pin::pin!(b.recv_async::<String>());
    /// assert!(recv.as_mut().poll(&mut cx).is_pending());
    /// a.send("hello")?;
    /// // Each poll tries again, in the polling thread.
    /// assert!(matches!(recv.as_mut().poll(&mut cx), Poll::Ready(Ok(s)) if s == "hello"));
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// Under an executor: `let reply: String = conn.recv_async().await?;`.
    pub fn recv_async<T: DeserializeOwned>(&mut self) -> RecvFuture<'_, T> {
        RecvFuture {
            connection: self,
            waiting: None,
            opening: None,
        }
    }

    /// Receives one byte message, as a future ([`recv_bytes`](Self::recv_bytes)
    /// for async code; see [`recv_async`](Self::recv_async)).
    pub fn recv_bytes_async(&mut self) -> RecvBytesFuture<'_> {
        RecvBytesFuture {
            connection: self,
            waiting: None,
            opening: None,
        }
    }

    /// Sends a serde value, as a future: [`send`](Self::send) for async
    /// code. The value is encoded now; the future is ready once the whole
    /// message is written. Dropped before that, it has sent nothing, or
    /// its rest goes out before the next message.
    pub fn send_async<T: Serialize + ?Sized>(&mut self, value: &T) -> SendFuture<'_> {
        // Room for the frame's header in front: a large payload is not
        // copied to put one there.
        let mut payload = vec![0; HEADER_LEN];
        let payload = crate::codec::encode_append(value, &mut payload)
            .map(|()| payload)
            .map_err(SendError::from);
        SendFuture::new(self, payload)
    }

    /// Sends a byte message, as a future ([`send_bytes`](Self::send_bytes)
    /// for async code; see [`send_async`](Self::send_async)). A message of
    /// a megabyte or more is written from where it lies (on an
    /// authenticated connection, whose tag covers it whole, it is copied
    /// first); a smaller one is copied now.
    pub fn send_bytes_async<'a>(&'a mut self, bytes: &'a [u8]) -> SendFuture<'a> {
        if bytes.len() >= BORROWED_BYTES {
            return self.send_bytes_in_two_async(&[], bytes);
        }
        let mut payload = Vec::with_capacity(HEADER_LEN + bytes.len());
        payload.extend_from_slice(&[0; HEADER_LEN]);
        payload.extend_from_slice(bytes);
        SendFuture::new(self, Ok(payload))
    }

    /// This connection's descriptor in the reactor for `readiness`, added
    /// on first use.
    fn source(&mut self, readiness: Readiness) -> io::Result<Arc<Source>> {
        let slot = match readiness {
            Readiness::Writable => &mut self.watches.writable,
            Readiness::Readable => &mut self.watches.readable,
        };
        if let Some(source) = slot {
            return Ok(Arc::clone(source));
        }
        let source = Source::new(&self.fd, readiness)?;
        *slot = Some(Arc::clone(&source));
        Ok(source)
    }
}

/// Leaves `cx`'s waker with `connection`'s source for `readiness`.
fn wait_for(
    connection: &mut Connection,
    readiness: Readiness,
    waiting: &mut Option<Registration>,
    cx: &mut Context<'_>,
) -> io::Result<()> {
    if waiting.is_none() {
        *waiting = Some(Registration::new(connection.source(readiness)?));
    }
    match waiting {
        Some(registration) => registration.wait(0, cx.waker()),
        None => Ok(()),
    }
}

/// The future of [`Connection::recv_async`].
#[must_use = "a future receives nothing unless it is awaited"]
pub struct RecvFuture<'a, T> {
    connection: &'a mut Connection,
    waiting: Option<Registration>,
    /// A large frame, being opened and decoded on a thread of its own.
    opening: Option<Opening<T>>,
}

impl<T> std::fmt::Debug for RecvFuture<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvFuture").finish_non_exhaustive()
    }
}

impl<T> Drop for RecvFuture<'_, T> {
    fn drop(&mut self) {
        if let Some(opening) = self.opening.take() {
            opening.give_back(self.connection);
        }
    }
}

impl<T: DeserializeOwned + Send + 'static> Future for RecvFuture<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        crate::coop::cooperative(cx, |cx| {
            let decode =
                |payload: &[u8]| codec::decode_payload::<T>(payload).map_err(RecvError::from);
            let now = |c: &mut Connection| match c.try_recv::<T>() {
                Ok(value) => Ok(Some(value)),
                Err(TryRecvError::Empty) => Ok(None),
                Err(TryRecvError::Recv(e)) => Err(e),
            };
            let (connection, waiting) = (&mut *this.connection, &mut this.waiting);
            poll_receive(connection, waiting, &mut this.opening, cx, decode, now)
        })
    }
}

/// The future of [`Connection::recv_bytes_async`].
#[must_use = "a future receives nothing unless it is awaited"]
pub struct RecvBytesFuture<'a> {
    connection: &'a mut Connection,
    waiting: Option<Registration>,
    /// A large frame, being opened and copied on a thread of its own.
    opening: Option<Opening<Vec<u8>>>,
}

impl std::fmt::Debug for RecvBytesFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBytesFuture").finish_non_exhaustive()
    }
}

impl Drop for RecvBytesFuture<'_> {
    fn drop(&mut self) {
        if let Some(opening) = self.opening.take() {
            opening.give_back(self.connection);
        }
    }
}

impl Future for RecvBytesFuture<'_> {
    type Output = Result<Vec<u8>, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        crate::coop::cooperative(cx, |cx| {
            let copy = |payload: &[u8]| Ok(payload.to_vec());
            let now = |c: &mut Connection| match c.recv_bytes_timeout(Duration::ZERO) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(RecvTimeoutError::Timeout) => Ok(None),
                Err(RecvTimeoutError::Recv(e)) => Err(e),
            };
            let (connection, waiting) = (&mut *this.connection, &mut this.waiting);
            poll_receive(connection, waiting, &mut this.opening, cx, copy, now)
        })
    }
}

/// One poll of a receive: a whole frame of a megabyte or more goes to a
/// thread that reads its payload with `read`; a smaller one is received
/// here by `now` (the non-waiting receive of the frame already buffered);
/// with none, the wait is left with the reactor.
fn poll_receive<R: Send + 'static>(
    connection: &mut Connection,
    waiting: &mut Option<Registration>,
    opening: &mut Option<Opening<R>>,
    cx: &mut Context<'_>,
    read: impl FnOnce(&[u8]) -> Result<R, RecvError> + Send + 'static,
    now: impl FnOnce(&mut Connection) -> Result<Option<R>, RecvError>,
) -> Poll<Result<R, RecvError>> {
    if opening.is_some() {
        return Opening::poll(opening, connection, cx.waker());
    }
    match connection.frame_now(READ_PER_POLL) {
        Ok(FrameNow::Whole(len)) if len >= OFF_THREAD_BYTES => {
            *opening = Opening::start(connection, len, read, cx.waker());
            if opening.is_some() {
                return Poll::Pending;
            }
        }
        Ok(FrameNow::Whole(_)) => {}
        Ok(FrameNow::MoreToRead) => return read_on(cx),
        // Not `now`: it would read what came since, and a large frame
        // completed by that read would be decoded here.
        Ok(FrameNow::NotYet) => return wait_readable(connection, waiting, cx),
        Err(e) => return Poll::Ready(Err(e)),
    }
    match now(connection) {
        Ok(Some(value)) => Poll::Ready(Ok(value)),
        Err(e) => Poll::Ready(Err(e)),
        Ok(None) => wait_readable(connection, waiting, cx),
    }
}

/// Leaves the wait for bytes with the reactor.
fn wait_readable<R>(
    connection: &mut Connection,
    waiting: &mut Option<Registration>,
    cx: &mut Context<'_>,
) -> Poll<Result<R, RecvError>> {
    match wait_for(connection, Readiness::Readable, waiting, cx) {
        Ok(()) => Poll::Pending,
        Err(e) => Poll::Ready(Err(RecvError::Io(e))),
    }
}

/// A poll that read its share of a large frame: the executor polls again
/// at once (its other tasks first), and the next poll reads on.
fn read_on<R>(cx: &mut Context<'_>) -> Poll<R> {
    cx.waker().wake_by_ref();
    Poll::Pending
}

/// A whole frame taken out of the connection's inbox, opened (its tag
/// checked, on an authenticated connection) and read on a thread of its
/// own, which wakes the future.
struct Opening<R> {
    frame: Arc<Taken>,
    /// Whether the tag was right (the connection counts the frame then),
    /// and what was read.
    done: OffThread<(bool, Result<R, RecvError>)>,
}

impl<R: Send + 'static> Opening<R> {
    /// Takes the frame of payload length `len` at the head of
    /// `connection` to a thread that reads its payload with `read`; `None`
    /// (the frame left in place) if no thread can be had.
    fn start(
        connection: &mut Connection,
        len: usize,
        read: impl FnOnce(&[u8]) -> Result<R, RecvError> + Send + 'static,
        waker: &Waker,
    ) -> Option<Self> {
        let (frame, opener) = connection.take_frame(len);
        let frame = Arc::new(frame);
        let theirs = Arc::clone(&frame);
        let work = move || open_and_read(&theirs, opener, read);
        match OffThread::spawn("outlast-decode", work, waker) {
            Ok(done) => Some(Opening { frame, done }),
            Err(_) => {
                connection.put_frame_back(unshared(frame));
                None
            }
        }
    }

    /// What was read, once the thread is done (`slot` is emptied then);
    /// the frame is let go on a thread of its own (freeing 100 MB takes
    /// milliseconds).
    fn poll(
        slot: &mut Option<Self>,
        connection: &mut Connection,
        waker: &Waker,
    ) -> Poll<Result<R, RecvError>> {
        let done = match slot {
            Some(opening) => std::task::ready!(opening.done.poll(waker)),
            None => return Poll::Ready(Err(panicked())),
        };
        if let Some(Opening { frame, .. }) = slot.take() {
            let _ = std::thread::Builder::new()
                .name("outlast-free".into())
                .spawn(move || drop(frame));
        }
        Poll::Ready(match done {
            Ok((opened, read)) => {
                if opened {
                    connection.frame_opened();
                }
                read
            }
            Err(_) => Err(panicked()),
        })
    }
}

impl<R> Opening<R> {
    /// The future was dropped: the frame goes back to the head of the
    /// inbox, for the next receive (a copy, while the thread still reads
    /// it).
    fn give_back(self, connection: &mut Connection) {
        connection.put_frame_back(unshared(self.frame));
    }
}

/// The frame itself if nobody else holds it, else a copy.
fn unshared(frame: Arc<Taken>) -> Taken {
    Arc::try_unwrap(frame).unwrap_or_else(|shared| shared.copied())
}

/// Checks `frame`'s tag with `opener` (if any), then reads its payload.
fn open_and_read<R>(
    frame: &[u8],
    opener: Option<FrameOpener>,
    read: impl FnOnce(&[u8]) -> Result<R, RecvError>,
) -> (bool, Result<R, RecvError>) {
    let payload = frame.get(HEADER_LEN..).unwrap_or_default();
    let len = match opener {
        None => payload.len(),
        Some(opener) => match opener.open(payload) {
            Some(len) => len,
            None => return (false, Err(RecvError::Forged)),
        },
    };
    let read = std::panic::catch_unwind(AssertUnwindSafe(|| read(&payload[..len])));
    (true, read.unwrap_or_else(|_| Err(panicked())))
}

fn panicked() -> RecvError {
    RecvError::Frame(codec::DecodeError::Refused(
        "decoding the message panicked (see the message above)".into(),
    ))
}

/// How much an awaited send writes in one poll: past it, the future wakes
/// itself and gives the executor its thread back (a 50 MB message to a
/// reader that kept up was written in one poll of 30-60 ms).
pub(super) const WRITE_PER_POLL: usize = 1 << 20;

/// The future of [`Connection::send_async`] and [`Connection::send_bytes_async`].
#[must_use = "a future sends nothing unless it is awaited"]
pub struct SendFuture<'a>(How<'a>);

/// How a send's frame is written.
enum How<'a> {
    /// From one buffer of its own.
    Frame(FrameSend<'a>),
    /// From a small first part of its own and a large borrowed second
    /// (see `send_in_two`).
    Parts(Parts<'a>),
}

impl<'a> SendFuture<'a> {
    pub(super) fn new(connection: &'a mut Connection, payload: Result<Vec<u8>, SendError>) -> Self {
        SendFuture(How::Frame(FrameSend::new(connection, payload)))
    }

    pub(super) fn in_parts(parts: Parts<'a>) -> Self {
        SendFuture(How::Parts(parts))
    }

    /// Its frame in two parts, if it is written so.
    #[cfg(test)]
    pub(super) fn parts(&self) -> Option<&Parts<'a>> {
        match &self.0 {
            How::Parts(parts) => Some(parts),
            How::Frame(_) => None,
        }
    }
}

impl Future for SendFuture<'_> {
    type Output = Result<(), SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            How::Frame(frame) => Pin::new(frame).poll(cx),
            How::Parts(parts) => Pin::new(parts).poll(cx),
        }
    }
}

impl std::fmt::Debug for SendFuture<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (how, started) = match &self.0 {
            How::Frame(frame) => ("one buffer", frame.started),
            How::Parts(parts) => ("two parts", parts.started()),
        };
        f.debug_struct("SendFuture")
            .field("how", &how)
            .field("started", &started)
            .finish()
    }
}

/// A send from one buffer: the frame, made (and sealed) from its payload.
pub(super) struct FrameSend<'a> {
    connection: &'a mut Connection,
    /// The message's payload, with room for its header in front (or why
    /// it has none); taken when its frame is made.
    payload: Option<Result<Vec<u8>, SendError>>,
    /// Its frame, made (and sealed) but not a byte of it written yet.
    frame: Option<Vec<u8>>,
    /// Part of the message is written; its rest waits in the connection.
    started: bool,
    waiting: Option<Registration>,
    /// Woken by the peer's bytes too, which a duplex end takes in while
    /// it waits, as a blocking send does (two ends that both send first
    /// would otherwise wait for each other).
    taking_in: Option<Registration>,
}

impl<'a> FrameSend<'a> {
    fn new(connection: &'a mut Connection, payload: Result<Vec<u8>, SendError>) -> Self {
        FrameSend {
            connection,
            payload: Some(payload),
            frame: None,
            started: false,
            waiting: None,
            taking_in: None,
        }
    }

    /// One step that does not wait, writing at most [`WRITE_PER_POLL`]:
    /// `All` once the whole message is out.
    fn step(&mut self) -> Result<Written, SendError> {
        let connection = &mut *self.connection;
        if self.started {
            return connection.flush_some(WRITE_PER_POLL);
        }
        // An earlier message's rest first, as `send` writes it.
        if connection.has_unsent() {
            match connection.flush_some(WRITE_PER_POLL)? {
                Written::All => {}
                not_yet => return Ok(not_yet),
            }
        }
        let frame = match self.frame.take() {
            Some(frame) => frame,
            None => match self.payload.take() {
                Some(Ok(payload)) => connection.frame_in_place(payload)?,
                Some(Err(e)) => return Err(e),
                None => return Err(SendError::Io(io::ErrorKind::InvalidInput.into())),
            },
        };
        match connection.start_frame(frame, WRITE_PER_POLL)? {
            Started::Whole => Ok(Written::All),
            Started::Part(left) => {
                self.started = true;
                Ok(left)
            }
            Started::Nothing(frame) => {
                self.frame = Some(frame);
                Ok(Written::Blocked)
            }
        }
    }
}

impl Drop for FrameSend<'_> {
    fn drop(&mut self) {
        // Made and sealed, but not a byte went: the count takes it back.
        if self.frame.take().is_some() {
            self.connection.take_back_seal();
        }
    }
}

impl Future for FrameSend<'_> {
    type Output = Result<(), SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        crate::coop::cooperative(cx, |cx| match this.step() {
            Ok(Written::All) => {
                this.payload = None;
                Poll::Ready(Ok(()))
            }
            Err(e) => {
                this.payload = None;
                if this.frame.take().is_some() {
                    this.connection.take_back_seal();
                }
                Poll::Ready(Err(e))
            }
            Ok(Written::Budget) => {
                // More would go now: the executor's other tasks first.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Ok(Written::Blocked) => {
                wait_for_room(this.connection, &mut this.waiting, &mut this.taking_in, cx)
            }
        })
    }
}

/// Leaves `cx`'s waker with `connection`'s source until it has room to
/// write; a duplex end takes in what its peer sends meanwhile, and is
/// woken by that too (two ends that both send first would otherwise wait
/// for each other).
pub(super) fn wait_for_room<T>(
    connection: &mut Connection,
    waiting: &mut Option<Registration>,
    taking_in: &mut Option<Registration>,
    cx: &mut Context<'_>,
) -> Poll<Result<T, SendError>> {
    let mut waited = wait_for(connection, Readiness::Writable, waiting, cx);
    if waited.is_ok() && connection.absorb_now() {
        waited = wait_for(connection, Readiness::Readable, taking_in, cx);
    }
    match waited {
        Ok(()) => Poll::Pending,
        Err(e) => Poll::Ready(Err(SendError::Io(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A poll of an awaited send writes a megabyte at most, then gives the
    /// thread back (a 50 MB message to a reader that kept up went in one
    /// poll of 30-60 ms); the rest goes out whole before the next message.
    #[test]
    fn an_awaited_send_writes_a_megabyte_per_poll_at_most() {
        let (mut ours, mut theirs) = crate::Pipe::duplex().expect("a pipe");
        let message = vec![7u8; 3 << 20];
        let mut cx = Context::from_waker(Waker::noop());
        {
            let mut send = std::pin::pin!(ours.send_async(&message));
            assert!(send.as_mut().poll(&mut cx).is_pending());
        }
        // Dropped after its first poll: what it wrote and what waits.
        let written = ours.unsent_at_for_tests();
        assert!(
            (1..=WRITE_PER_POLL).contains(&written),
            "{written} bytes in one poll"
        );
        let reader = std::thread::spawn(move || {
            let first = theirs.recv::<Vec<u8>>().expect("the large message");
            let second = theirs.recv::<u64>().expect("the next one");
            (first, second)
        });
        ours.send(&5u64).expect("the next message, after the rest");
        let (first, second) = reader.join().expect("the reader");
        assert!(first == message);
        assert_eq!(second, 5);
    }
}
