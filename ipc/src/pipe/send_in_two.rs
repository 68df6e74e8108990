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
use super::mac::{Sealing, TAG_LEN};
use super::{Connection, SendError};

impl Connection {
    /// Sends one byte message made of `head` then `tail`, as a future;
    /// `tail` is written from where it lies. On an authenticated
    /// connection its tag is made as the message goes, a part at a time
    /// (see [`Parts`]).
    pub(crate) fn send_bytes_in_two_async<'a>(
        &'a mut self,
        head: &[u8],
        tail: &'a [u8],
    ) -> SendFuture<'a> {
        match self.frame_head(head, tail) {
            Ok((first, sealing)) => SendFuture::in_parts(Parts {
                connection: self,
                seal: sealing.map(|sealing| Seal::Making {
                    sealing,
                    hashed: HEADER_LEN,
                }),
                first,
                tail,
                at: 0,
                waiting: None,
                taking_in: None,
            }),
            Err(e) => SendFuture::new(self, Err(e)),
        }
    }
}

/// An authenticated frame's tag: being made over the payload, a part ahead
/// of what is written (never a byte written before it is hashed), then
/// made, to go out after the payload.
enum Seal {
    Making {
        sealing: Sealing,
        /// The frame's bytes hashed so far end here (the header is not).
        hashed: usize,
    },
    Made([u8; TAG_LEN]),
}

/// A frame written from its two parts (and, on an authenticated
/// connection, its tag).
///
/// Over TCP the tag covers the whole message: it was made by copying both
/// parts into one buffer and hashing it where the future was first polled
/// (a 100 MB manager value held the executor's thread 270-360 ms). Now a
/// megabyte is hashed per poll, ahead of the bytes written.
pub(super) struct Parts<'a> {
    connection: &'a mut Connection,
    /// The frame's header, then the message's first part.
    first: Vec<u8>,
    tail: &'a [u8],
    seal: Option<Seal>,
    /// How many of the frame's bytes went.
    at: usize,
    waiting: Option<Registration>,
    /// Woken by the peer's bytes too (see `wait_for_room`).
    taking_in: Option<Registration>,
}

impl Parts<'_> {
    /// The header, the message's two parts: all but the tag.
    fn body(&self) -> usize {
        self.first.len() + self.tail.len()
    }

    fn total(&self) -> usize {
        self.body() + self.seal.as_ref().map_or(0, |_| TAG_LEN)
    }

    /// Whether a byte of the frame went.
    pub(super) fn started(&self) -> bool {
        self.at > 0
    }

    /// Hashes the body's bytes from where the hashing is up to `end`, and
    /// makes the tag once the whole body is hashed; how far the body may
    /// be written.
    fn hash_to(&mut self, end: usize) -> usize {
        let body = self.body();
        let Some(Seal::Making { sealing, hashed }) = &mut self.seal else {
            return body;
        };
        let end = end.clamp(*hashed, body);
        let split = self.first.len();
        if *hashed < split {
            sealing.update(&self.first[*hashed..end.min(split)]);
        }
        if end > split {
            sealing.update(&self.tail[(*hashed).max(split) - split..end - split]);
        }
        *hashed = end;
        if end == body {
            if let Some(Seal::Making { sealing, .. }) = self.seal.take() {
                self.seal = Some(Seal::Made(sealing.finish()));
            }
        }
        end
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
        let body = self.body();
        if self.at < body {
            let may = self.hash_to(self.at + WRITE_PER_POLL);
            let parts = [self.first.as_slice(), self.tail];
            let budget = (may - self.at).min(WRITE_PER_POLL);
            let (wrote, blocked) = self.connection.write_parts_now(parts, self.at, budget)?;
            self.at += wrote;
            if self.at < body {
                return Ok(if blocked {
                    Written::Blocked
                } else {
                    Written::Budget
                });
            }
        }
        if let Some(Seal::Made(tag)) = &self.seal {
            let tag = *tag;
            let (wrote, blocked) =
                self.connection
                    .write_parts_now([&tag, &[]], self.at - body, TAG_LEN)?;
            self.at += wrote;
            if self.at < self.total() {
                return Ok(if blocked {
                    Written::Blocked
                } else {
                    Written::Budget
                });
            }
        }
        Ok(Written::All)
    }
}

impl Drop for Parts<'_> {
    fn drop(&mut self) {
        if self.at == 0 {
            // Not a byte went: the tag's place in the count is given back.
            if self.seal.is_some() {
                self.connection.take_back_seal();
            }
            return;
        }
        if self.at >= self.total() {
            return;
        }
        // Its rest goes out before the next message: hashed now, on the
        // dropping thread, as it is copied.
        let body = self.body();
        self.hash_to(body);
        let tag = match &self.seal {
            Some(Seal::Made(tag)) => Some(*tag),
            _ => None,
        };
        if self.at < body {
            let parts = [self.first.as_slice(), self.tail];
            self.connection.leave_unsent(parts, self.at);
            if let Some(tag) = tag {
                self.connection.leave_unsent_too(&tag);
            }
        } else if let Some(tag) = tag {
            self.connection.leave_unsent([&tag, &[]], self.at - body);
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

    /// Reads a message, a `u64`, and a message from `theirs`, on a thread.
    fn read_three(mut theirs: Connection) -> std::thread::JoinHandle<(Vec<u8>, u64, Vec<u8>)> {
        std::thread::spawn(move || {
            let patience = std::time::Duration::from_secs(20);
            let first = theirs.recv_bytes_timeout(patience).expect("a message");
            let second = theirs.recv_timeout::<u64>(patience).expect("the next one");
            let third = theirs.recv_bytes_timeout(patience).expect("a third");
            (first, second, third)
        })
    }

    /// Polls `send` until it is done.
    fn send_whole(send: SendFuture<'_>) {
        let mut send = std::pin::pin!(send);
        let mut cx = Context::from_waker(Waker::noop());
        let sent = loop {
            if let Poll::Ready(sent) = send.as_mut().poll(&mut cx) {
                break sent;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        };
        sent.expect("sent");
    }

    /// A frame written from two parts is received as one message, a
    /// megabyte per poll; dropped in its middle, its rest goes out whole
    /// before the next message.
    #[test]
    fn a_frame_in_two_parts_arrives_whole_even_when_dropped_in_its_middle() {
        let (mut ours, theirs) = crate::Pipe::duplex().expect("a pipe");
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
        let reader = read_three(theirs);
        ours.send(&5u64).expect("the next message, after the rest");
        send_whole(ours.send_bytes_in_two_async(b"", &tail[..10]));
        let (first, second, third) = reader.join().expect("the reader");
        assert!(first == [head.as_slice(), tail.as_slice()].concat());
        assert_eq!(second, 5);
        assert_eq!(third, &tail[..10]);
    }

    /// The blocking two-part send on an authenticated connection, cut by
    /// its deadline with the peer not reading, then once more with
    /// nothing of it able to go: the cut frame's rest and tag go out
    /// before the next message, the refused one gives back its place in
    /// the count, and every frame the peer reads checks.
    #[test]
    fn a_sealed_blocking_send_in_two_cut_by_its_deadline_keeps_the_count() {
        use crate::pipe::mac::FrameMac;
        use crate::pipe::SendTimeoutError;
        use std::time::Duration;
        let (mut ours, mut theirs) = crate::Pipe::duplex().expect("a pipe");
        let (a, b) = ([3u8; 32], [4u8; 32]);
        ours.set_mac(FrameMac::new(&a, &b));
        theirs.set_mac(FrameMac::new(&b, &a));
        let tail: Vec<u8> = (0..8u32 << 20).map(|i| (i % 253) as u8).collect();
        let cut = ours.send_bytes_in_two(b"cut:", &tail, Some(Duration::from_millis(20)));
        assert!(cut.is_ok(), "part of it went: {cut:?}");
        assert!(ours.has_unsent(), "8 MB went into a pipe nobody reads");
        // Nothing more can go while the rest waits: refused whole.
        let refused = ours.send_bytes_in_two(b"no:", &tail[..10], Some(Duration::ZERO));
        assert!(
            matches!(refused, Err(SendTimeoutError::Timeout)),
            "{refused:?}"
        );
        let reader = read_three(theirs);
        ours.send(&5u64).expect("the next message, after the rest");
        ours.send_bytes_in_two(b"last:", &tail[..10], None)
            .expect("a last one");
        let (first, second, third) = reader.join().expect("the reader");
        assert!(
            first == [b"cut:".as_slice(), &tail].concat(),
            "the cut one changed"
        );
        assert_eq!(second, 5);
        assert_eq!(third, [b"last:".as_slice(), &tail[..10]].concat());
    }

    /// On an authenticated connection a large frame's tag is made a part
    /// per poll, ahead of what is written (the first poll hashes a
    /// megabyte, not the whole message); the peer checks it. Dropped
    /// before a byte went, the frame gives back its place in the count;
    /// dropped in its middle, its rest and its tag go out before the next
    /// message: every frame after still checks.
    #[test]
    fn a_sealed_frame_in_two_parts_is_hashed_as_it_goes_and_checks() {
        use crate::pipe::mac::FrameMac;
        let (mut ours, mut theirs) = crate::Pipe::duplex().expect("a pipe");
        let (a, b) = ([1u8; 32], [2u8; 32]);
        ours.set_mac(FrameMac::new(&a, &b));
        theirs.set_mac(FrameMac::new(&b, &a));
        let head = b"head:".to_vec();
        let tail: Vec<u8> = (0..5u32 << 20).map(|i| (i % 251) as u8).collect();
        let mut cx = Context::from_waker(Waker::noop());
        // Dropped before its first poll, then before a byte went.
        drop(ours.send_bytes_in_two_async(&head, &tail));
        {
            let mut send = std::pin::pin!(ours.send_bytes_in_two_async(&head, &tail));
            assert!(
                send.as_mut().poll(&mut cx).is_pending(),
                "a megabyte per poll"
            );
            let parts = send.parts().expect("a sealed large frame is sent in parts");
            match &parts.seal {
                Some(Seal::Making { hashed, .. }) => {
                    assert!(*hashed <= HEADER_LEN + head.len() + 2 * WRITE_PER_POLL)
                }
                _ => panic!("the whole message was hashed at the first poll"),
            }
        }
        let reader = read_three(theirs);
        ours.send(&5u64).expect("the next message, after the rest");
        send_whole(ours.send_bytes_in_two_async(&head, &tail));
        let (first, second, third) = reader.join().expect("the reader");
        let whole = [head.as_slice(), tail.as_slice()].concat();
        assert!(first == whole, "the cut message came in changed");
        assert_eq!(second, 5);
        assert!(third == whole, "the whole message came in changed");
    }
}
