//! [`Connection::send_bytes_in_two_async`]: one frame made of a small
//! first part and a large borrowed second, awaited, written as they are
//! (and so [`Connection::send_bytes_async`] of a large message).
//!
//! A manager's awaited set of a large value encoded its whole request
//! again to send it: the value was copied where the future was polled (a
//! 100 MB value held the executor's thread 50 ms more than its encoding,
//! and took 100 MB more memory meanwhile). Its blocking call already
//! wrote the value from where it lay (`send_bytes_in_two`).
//!
//! Cancel-safe as any [`SendFuture`] is: dropped before a byte went, it has
//! sent nothing; dropped in the middle, its rest (copied then) goes out
//! before the next message.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use crate::codec::HEADER_LEN;
use crate::watch::Registration;

use super::connection::Written;
use super::future::{wait_for_room, SendFuture, WRITE_PER_POLL};
use super::{Connection, SendError};

impl Connection {
    /// Sends one byte message made of `head` then `tail`, as a future;
    /// `tail` is written from where it lies (on an authenticated
    /// connection, whose tag covers the whole message, both are copied
    /// into one buffer first).
    pub(crate) fn send_bytes_in_two_async<'a>(
        &'a mut self,
        head: &[u8],
        tail: &'a [u8],
    ) -> SendFuture<'a> {
        match self.frame_head(head, tail) {
            Ok(Some(first)) => SendFuture::in_parts(Parts {
                connection: self,
                first,
                tail,
                at: 0,
                waiting: None,
                taking_in: None,
            }),
            Ok(None) => {
                let mut payload = Vec::with_capacity(HEADER_LEN + head.len() + tail.len());
                payload.extend_from_slice(&[0; HEADER_LEN]);
                payload.extend_from_slice(head);
                payload.extend_from_slice(tail);
                SendFuture::new(self, Ok(payload))
            }
            Err(e) => SendFuture::new(self, Err(e)),
        }
    }
}

/// A frame written from its two parts.
pub(super) struct Parts<'a> {
    connection: &'a mut Connection,
    /// The frame's header, then the message's first part.
    first: Vec<u8>,
    tail: &'a [u8],
    /// How many of the frame's bytes went.
    at: usize,
    waiting: Option<Registration>,
    /// Woken by the peer's bytes too (see `wait_for_room`).
    taking_in: Option<Registration>,
}

impl Parts<'_> {
    fn total(&self) -> usize {
        self.first.len() + self.tail.len()
    }

    /// Whether a byte of the frame went.
    pub(super) fn started(&self) -> bool {
        self.at > 0
    }

    /// Writes on without waiting, at most [`WRITE_PER_POLL`] bytes.
    fn step(&mut self) -> Result<Written, SendError> {
        // An earlier message's rest first, as `send` writes it.
        if self.at == 0 && self.connection.has_unsent() {
            match self.connection.flush_some(WRITE_PER_POLL)? {
                Written::All => {}
                not_yet => return Ok(not_yet),
            }
        }
        let parts = [self.first.as_slice(), self.tail];
        let (wrote, blocked) = self
            .connection
            .write_parts_now(parts, self.at, WRITE_PER_POLL)?;
        self.at += wrote;
        Ok(match (self.at == self.total(), blocked) {
            (true, _) => Written::All,
            (false, true) => Written::Blocked,
            (false, false) => Written::Budget,
        })
    }
}

impl Drop for Parts<'_> {
    fn drop(&mut self) {
        if self.at > 0 && self.at < self.total() {
            let parts = [self.first.as_slice(), self.tail];
            self.connection.leave_unsent(parts, self.at);
        }
    }
}

impl Future for Parts<'_> {
    type Output = Result<(), SendError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let parts = self.get_mut();
        crate::coop::cooperative(cx, |cx| match parts.step() {
            Ok(Written::All) => Poll::Ready(Ok(())),
            Ok(Written::Budget) => {
                // More would go now: the executor's other tasks first.
                cx.waker().wake_by_ref();
                Poll::Pending
            }
            Ok(Written::Blocked) => {
                let (waiting, taking_in) = (&mut parts.waiting, &mut parts.taking_in);
                wait_for_room(parts.connection, waiting, taking_in, cx)
            }
            Err(e) => Poll::Ready(Err(e)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    /// A frame written from two parts is received as one message, a
    /// megabyte per poll; dropped in its middle, its rest goes out whole
    /// before the next message.
    #[test]
    fn a_frame_in_two_parts_arrives_whole_even_when_dropped_in_its_middle() {
        let (mut ours, mut theirs) = crate::Pipe::duplex().expect("a pipe");
        let head = b"head:".to_vec();
        let tail: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
        let mut cx = Context::from_waker(Waker::noop());
        {
            let mut send = std::pin::pin!(ours.send_bytes_in_two_async(&head, &tail));
            assert!(
                send.as_mut().poll(&mut cx).is_pending(),
                "a megabyte per poll"
            );
        }
        let reader = std::thread::spawn(move || {
            let patience = std::time::Duration::from_secs(20);
            let first = theirs
                .recv_bytes_timeout(patience)
                .expect("the message in two parts");
            let second = theirs.recv_timeout::<u64>(patience).expect("the next one");
            let third = theirs
                .recv_bytes_timeout(patience)
                .expect("another in two parts");
            (first, second, third)
        });
        ours.send(&5u64).expect("the next message, after the rest");
        let mut send = std::pin::pin!(ours.send_bytes_in_two_async(b"", &tail[..10]));
        let sent = loop {
            if let Poll::Ready(sent) = send.as_mut().poll(&mut cx) {
                break sent;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        sent.expect("sent");
        let (first, second, third) = reader.join().expect("the reader");
        assert!(first == [head.as_slice(), tail.as_slice()].concat());
        assert_eq!(second, 5);
        assert_eq!(third, &tail[..10]);
    }
}
