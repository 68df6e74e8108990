//! A put's encoding, written where its message will travel. A message
//! that fits the ring is encoded into the caller's buffer, as before; one
//! that turns out too large for it goes on into the sealed memfd it
//! travels in, as the encoder makes it, a quarter megabyte at a time (a
//! long run of bytes, such as a `Vec<u8>`, straight from the item).
//!
//! Encoded whole into a fresh buffer first and then copied into its memfd,
//! a 100 MB item first touched 25,600 fresh pages of the caller's (about
//! 40 ms of page faults on a VM), was copied twice, and the buffer was
//! freed after: a blocking put took about 100 ms, the memfd's own writes
//! about 38 of them.

use std::io::Write;
use std::os::fd::OwnedFd;

use crate::codec::Sink;

use super::PutError;

/// Bytes gathered before they are written to the memfd.
const STAGE: usize = 256 << 10;
/// A run this long is written from where it lies, not gathered first.
const DIRECT: usize = 64 << 10;

/// Where a put's encoding ended up.
pub(super) enum Encoded {
    /// In the caller's buffer: the message goes in the ring.
    Inline,
    /// In a sealed memfd of `len` bytes: the message travels beside the ring.
    Spilled { memfd: OwnedFd, len: usize },
}

/// The encoder's sink for one put (see the module's docs).
pub(super) struct SpillSink<'a> {
    /// The encoding while it fits the ring; then, the bytes gathered for
    /// the memfd's next write.
    buf: &'a mut Vec<u8>,
    /// How long `buf` may grow before `overflow` is called: the longest
    /// message the ring carries, then `STAGE`.
    room: usize,
    /// The longest message the queue handle puts at all.
    cap: usize,
    /// The memfd, once the message is too long for the ring.
    file: Option<std::fs::File>,
    /// Bytes already written to the memfd.
    flushed: usize,
    /// Bytes of the encoding in all, written or not.
    len: usize,
    /// Why the encoding goes nowhere any more (it is then only counted).
    failed: Option<Failed>,
}

enum Failed {
    TooLarge,
    Os(std::io::Error),
}

impl<'a> SpillSink<'a> {
    /// A sink writing into `buf` (emptied first) while the encoding is at
    /// most `inline` bytes, into a memfd after that, and nowhere past `cap`.
    pub(super) fn new(buf: &'a mut Vec<u8>, inline: usize, cap: usize) -> Self {
        buf.clear();
        SpillSink {
            buf,
            room: inline,
            cap: cap.max(inline),
            file: None,
            flushed: 0,
            len: 0,
            failed: None,
        }
    }

    /// Where the encoding is, once the encoder is done (`encoded` is what
    /// it said).
    pub(super) fn finish(
        mut self,
        encoded: Result<(), crate::codec::EncodeError>,
    ) -> Result<Encoded, PutError> {
        encoded.map_err(|e| PutError::Encode(e.to_string()))?;
        let len = self.total();
        match self.failed.take() {
            Some(Failed::TooLarge) => return Err(PutError::TooLarge { len, max: self.cap }),
            Some(Failed::Os(e)) => return Err(PutError::Os(e)),
            None => {}
        }
        let Some(mut file) = self.file.take() else {
            return Ok(Encoded::Inline);
        };
        file.write_all(self.buf).map_err(PutError::Os)?;
        self.buf.clear();
        let memfd = crate::os::memory::seal_written(file).map_err(PutError::Os)?;
        Ok(Encoded::Spilled { memfd, len })
    }

    fn total(&self) -> usize {
        match self.failed {
            Some(_) => self.len,
            None => self.flushed + self.buf.len(),
        }
    }

    /// `bytes` do not fit in `buf`'s room: the message goes to a memfd
    /// from now on (made here if it is the first time), or is only
    /// counted once it cannot go anywhere.
    #[cold]
    fn overflow(&mut self, bytes: &[u8]) {
        if self.failed.is_some() {
            self.len += bytes.len();
            return;
        }
        let total = self.flushed + self.buf.len() + bytes.len();
        if total > self.cap {
            self.fail(Failed::TooLarge, total);
            return;
        }
        if let Err(e) = self.write_on(bytes) {
            self.fail(Failed::Os(e), total);
        }
    }

    fn write_on(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => {
                // Named as every spilled message's memfd is.
                let file = crate::os::memory::sealable_memfd(c"ipc-queue-message")?;
                self.room = STAGE;
                self.file.insert(file)
            }
        };
        if !self.buf.is_empty() {
            file.write_all(self.buf)?;
            self.flushed += self.buf.len();
            self.buf.clear();
        }
        if bytes.len() >= DIRECT {
            file.write_all(bytes)?;
            self.flushed += bytes.len();
        } else {
            self.buf.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn fail(&mut self, why: Failed, total: usize) {
        self.failed = Some(why);
        self.len = total;
        self.file = None;
        self.buf.clear();
        // Every later write comes to `overflow`, to be counted.
        self.room = 0;
    }
}

impl Sink for SpillSink<'_> {
    #[inline]
    fn push(&mut self, byte: u8) {
        if self.buf.len() < self.room {
            self.buf.push(byte);
        } else {
            self.overflow(&[byte]);
        }
    }

    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        if bytes.len() <= self.room.saturating_sub(self.buf.len()) {
            self.buf.extend_from_slice(bytes);
        } else {
            self.overflow(bytes);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode<T: serde::Serialize>(
        value: &T,
        inline: usize,
        cap: usize,
    ) -> (Vec<u8>, Result<Encoded, PutError>) {
        let mut buf = vec![9u8; 3];
        let mut sink = SpillSink::new(&mut buf, inline, cap);
        let encoded = crate::codec::encode_to(value, &mut sink);
        let outcome = sink.finish(encoded);
        (buf, outcome)
    }

    fn memfd_bytes(memfd: OwnedFd) -> Vec<u8> {
        use std::io::Read;
        let mut bytes = Vec::new();
        std::fs::File::from(memfd)
            .read_to_end(&mut bytes)
            .expect("read the memfd");
        bytes
    }

    fn postcard<T: serde::Serialize>(value: &T) -> Vec<u8> {
        let mut bytes = Vec::new();
        crate::codec::encode_append(value, &mut bytes).expect("encode");
        bytes
    }

    #[test]
    fn a_message_that_fits_the_ring_stays_in_the_buffer() {
        let value = (7u32, vec![1u8; 100], "seven".to_string());
        let (buf, outcome) = encode(&value, 1000, 1 << 20);
        assert!(matches!(outcome, Ok(Encoded::Inline)));
        assert_eq!(buf, postcard(&value));
    }

    #[test]
    fn a_message_longer_than_the_ring_is_the_same_bytes_in_a_sealed_memfd() {
        // Small pieces past the ring's room (gathered), long runs (written
        // from where they lie), and the ring's limit crossed in the middle.
        let mut value: Vec<(u64, Vec<u8>, String)> = Vec::new();
        for i in 0..300u64 {
            let run = vec![(i % 251) as u8; if i % 7 == 0 { 200_000 } else { 300 }];
            value.push((i * 1_000_003, run, format!("item {i}")));
        }
        let expected = postcard(&value);
        let (buf, outcome) = encode(&value, 100_000, 1 << 30);
        let Ok(Encoded::Spilled { memfd, len }) = outcome else {
            panic!("not spilled");
        };
        assert_eq!(len, expected.len());
        assert!(
            buf.len() <= STAGE + DIRECT,
            "the buffer grew to {}",
            buf.len()
        );
        let fd = std::os::fd::AsRawFd::as_raw_fd(&memfd);
        // SAFETY: F_GET_SEALS on a descriptor we own.
        let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
        assert_ne!(seals & libc::F_SEAL_WRITE, 0, "not sealed against writes");
        assert_eq!(memfd_bytes(memfd), expected);
    }

    #[test]
    fn a_message_past_the_cap_is_refused_with_its_whole_length() {
        let value = (vec![5u8; 3_000_000], vec![6u8; 10]);
        let expected = postcard(&value).len();
        let (_, outcome) = encode(&value, 1000, 2_000_000);
        match outcome {
            Err(PutError::TooLarge { len, max }) => {
                assert_eq!((len, max), (expected, 2_000_000));
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("put past the cap"),
        }
    }

    #[test]
    fn an_encoding_refused_midway_says_so() {
        struct Refuses;
        impl serde::Serialize for Refuses {
            fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
                Err(serde::ser::Error::custom("no, thanks"))
            }
        }
        let value = (vec![1u8; 500_000], Refuses);
        let (_, outcome) = encode(&value, 1000, 1 << 30);
        match outcome {
            Err(PutError::Encode(why)) => assert!(why.contains("no, thanks"), "{why}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("encoded"),
        }
    }
}
