//! The receive buffer of a connection. Reading in large chunks and cutting
//! frames out of the buffer costs one `read(2)` for many small messages, and it
//! lets a timed-out receive keep a half-arrived frame for the next call instead
//! of losing the stream's framing.

use std::io;
use std::os::fd::RawFd;

use crate::os;

/// Initial (and resting) capacity: one default pipe buffer.
const RESTING_CAPACITY: usize = 64 * 1024;
/// Reads into less free space than this are not worth a syscall.
const MIN_READ: usize = 16 * 1024;
/// The most room one read zeroes before it reads.
const ZEROED_AT_ONCE: usize = 1 << 20;
/// Above this, a buffer that has drained is shrunk back to its resting size.
const SHRINK_ABOVE: usize = 4 << 20;

#[derive(Debug)]
pub(crate) struct Inbox {
    buf: Vec<u8>,
    start: usize,
    end: usize,
}

impl Inbox {
    pub fn new() -> Self {
        Inbox::with_contents(Vec::new())
    }

    /// An inbox that starts with bytes already received by another copy of the
    /// connection (handed over with the handle).
    pub fn with_contents(bytes: Vec<u8>) -> Self {
        let end = bytes.len();
        let mut buf = bytes;
        if buf.len() < RESTING_CAPACITY {
            grow_zeroed(&mut buf, RESTING_CAPACITY);
        }
        Inbox { buf, start: 0, end }
    }

    /// Bytes received and not yet consumed.
    /// Bytes received and not yet taken.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    pub fn available(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    pub fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.end);
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
            if self.buf.len() > SHRINK_ABOVE {
                self.buf.truncate(RESTING_CAPACITY);
                self.buf.shrink_to_fit();
            }
        }
    }

    /// Takes the first `n` buffered bytes out (a whole frame, for a
    /// thread to open and decode): the buffer itself when what follows is
    /// no longer (a fresh one gets those bytes), else a copy.
    pub fn take_front(&mut self, n: usize) -> Taken {
        let n = n.min(self.buffered());
        let frame = self.start..self.start + n;
        let rest = self.end - frame.end;
        if rest > n {
            let copy = self.available()[..n].to_vec();
            self.consume(n);
            return Taken {
                buf: copy,
                range: 0..n,
            };
        }
        let mut fresh = Vec::new();
        grow_zeroed(&mut fresh, RESTING_CAPACITY.max(rest));
        fresh[..rest].copy_from_slice(&self.buf[frame.end..self.end]);
        let whole = std::mem::replace(&mut self.buf, fresh);
        self.start = 0;
        self.end = rest;
        Taken {
            buf: whole,
            range: frame,
        }
    }

    /// Puts bytes taken by [`take_front`](Self::take_front) back in front
    /// of what was buffered since.
    pub fn put_front(&mut self, taken: Taken) {
        let Taken { mut buf, range } = taken;
        buf.truncate(range.end);
        buf.extend_from_slice(self.available());
        self.start = range.start;
        self.end = buf.len();
        self.buf = buf;
    }

    /// Reads once from `fd`, making room so that `want` bytes (counted from the
    /// first unconsumed byte) fit. `want` is already bounded by the maximum frame size.
    /// Returns the bytes read (0: end of file).
    pub fn fill_from(&mut self, fd: RawFd, want: usize) -> io::Result<usize> {
        self.fill_with(want, |buf| os::fd::read_some(fd, buf))
    }

    /// Appends bytes received by other means (a `recvmsg` that brought
    /// descriptors along).
    pub fn push(&mut self, bytes: &[u8]) {
        let want = self.buffered() + bytes.len();
        // Already received: room for all of it at once.
        if self.buf.len() - self.end < bytes.len() {
            let need = self.end + bytes.len();
            grow_zeroed(&mut self.buf, need);
        }
        let _ = self.fill_with(want, |buf| {
            buf[..bytes.len()].copy_from_slice(bytes);
            Ok(bytes.len())
        });
    }

    /// [`fill_from`](Self::fill_from) for a socket, without waiting
    /// (`WouldBlock` when nothing is there).
    pub fn fill_from_socket_now(&mut self, fd: RawFd, want: usize) -> io::Result<usize> {
        self.fill_with(want, |buf| os::fd::recv_now(fd, buf))
    }

    fn fill_with(
        &mut self,
        want: usize,
        read: impl FnOnce(&mut [u8]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let free_tail = self.buf.len() - self.end;
        // A read into a small tail costs a syscall for little data: move the
        // (short) partial frame to the front first, and grow for big frames.
        if self.start > 0 && (free_tail < MIN_READ || self.buf.len() - self.start < want) {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // Grow with what arrived, not with what a header announced: at
        // most double, and only once the room left is used up, so a peer
        // that announces a huge frame and sends little costs little.
        // The room is reserved at once (amortized), but zeroed a step at
        // a time: zeroing 32 MB in one go held an executor's thread 10 ms.
        if self.buf.len() < want && self.buf.len() - self.end < MIN_READ {
            let grown = (self.buf.len() * 2).clamp(RESTING_CAPACITY, want.max(RESTING_CAPACITY));
            self.buf.reserve_exact(grown.saturating_sub(self.buf.len()));
            let step = grown.min(self.buf.len() + ZEROED_AT_ONCE);
            grow_zeroed(&mut self.buf, step);
        }
        let n = read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
    }
}

/// Bytes taken out of an inbox: `buf[range]`.
#[derive(Debug)]
pub(crate) struct Taken {
    buf: Vec<u8>,
    range: std::ops::Range<usize>,
}

impl Taken {
    /// A copy, for bytes another thread still reads.
    pub fn copied(&self) -> Taken {
        Taken {
            buf: self.to_vec(),
            range: 0..self.range.len(),
        }
    }
}

impl std::ops::Deref for Taken {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

/// Lengthens `buf` to `len` with zeros. Not `resize`: a debug build
/// compiles its fill as a loop a byte at a time (half of a 100 MB frame's
/// receive); copies from a static block of zeros are `memcpy`s in any
/// build, and the growth stays `realloc`'s (which moves large blocks
/// without copying them).
fn grow_zeroed(buf: &mut Vec<u8>, len: usize) {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    if len <= buf.len() {
        return;
    }
    buf.reserve_exact(len - buf.len());
    // A large step is fresh pages: asked for at once, not a fault each.
    let spare = buf.spare_capacity_mut();
    crate::os::memory::prefault_for_writing(spare.as_mut_ptr().cast(), len - buf.len());
    while buf.len() < len {
        let n = (len - buf.len()).min(ZEROS.len());
        buf.extend_from_slice(&ZEROS[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_keeps_the_bytes_and_adds_zeros() {
        let mut buf = vec![7u8; 3];
        grow_zeroed(&mut buf, 3);
        assert_eq!(buf, [7, 7, 7]);
        grow_zeroed(&mut buf, 200_003);
        assert_eq!(buf.len(), 200_003);
        assert_eq!(buf[..3], [7, 7, 7]);
        assert!(buf[3..].iter().all(|&b| b == 0));
        grow_zeroed(&mut buf, 10);
        assert_eq!(buf.len(), 200_003, "never shrinks");
    }

    #[test]
    fn bytes_taken_from_the_front_and_put_back_keep_their_place() {
        for (frame, rest) in [(100, 30), (30, 100), (100, 0)] {
            let mut inbox = Inbox::new();
            let bytes: Vec<u8> = (0..frame + rest).map(|i| i as u8).collect();
            inbox.push(&bytes[..5]);
            inbox.consume(5);
            inbox.push(&bytes);
            let taken = inbox.take_front(frame);
            assert_eq!(&taken[..], &bytes[..frame]);
            assert_eq!(inbox.available(), &bytes[frame..]);
            inbox.push(&[1, 2, 3]);
            let taken = match frame > rest {
                true => taken,
                false => taken.copied(),
            };
            inbox.put_front(taken);
            let mut all = bytes.clone();
            all.extend([1, 2, 3]);
            assert_eq!(inbox.available(), &all[..]);
            inbox.consume(all.len() - 1);
            inbox.push(&[9]);
            assert_eq!(inbox.available(), &[3, 9]);
        }
    }

    #[test]
    fn the_buffer_grows_with_bytes_received_not_announced() {
        let mut inbox = Inbox::new();
        // A header announced a 1 GiB frame; 100 bytes come per read.
        let want = 1 << 30;
        for _ in 0..1000 {
            inbox
                .fill_with(want, |buf| {
                    buf[..100].fill(7);
                    Ok(100)
                })
                .expect("fill");
        }
        assert_eq!(inbox.buffered(), 100_000);
        assert!(
            inbox.buf.len() <= 4 * 100_000,
            "{} bytes held for 100000 received",
            inbox.buf.len()
        );
    }
}
