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
        if self.buf.len() < want && self.buf.len() - self.end < MIN_READ {
            let grown = (self.buf.len() * 2).clamp(RESTING_CAPACITY, want.max(RESTING_CAPACITY));
            grow_zeroed(&mut self.buf, grown);
        }
        let n = read(&mut self.buf[self.end..])?;
        self.end += n;
        Ok(n)
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
