//! An encoding written where its message will travel. A message that
//! fits a ring (a queue's, or what a manager keeps in memory) is encoded
//! into the caller's buffer; one that turns out too large for it goes on
//! into the sealed memfd it travels in, as the encoder makes it, a
//! quarter megabyte at a time (a long run of bytes, such as a `Vec<u8>`,
//! straight from the item). Used by a queue's put and a manager's store.
//!
//! Encoded whole into a fresh buffer first and then copied into its memfd,
//! a 100 MB item first touched 25,600 fresh pages of the caller's (about
//! 40 ms of page faults on a VM), was copied twice, and the buffer was
//! freed after: a blocking put took about 100 ms, the memfd's own writes
//! about 38 of them.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::ffi::CStr;

use super::Sink;

/// Bytes gathered before they are written to the memfd.
const STAGE: usize = 256 << 10;
/// A run this long is written from where it lies, not gathered first.
const DIRECT: usize = 64 << 10;

/// Why an encoding went nowhere.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SpillSinkError {
    #[error("cannot encode the message: {0}")]
    Encode(String),
    /// Longer than the cap: `len` is the whole encoding's length.
    #[error("a message of {len} bytes is over the cap of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("cannot write the message's memfd: {0}")]
    Os(std::io::Error),
}

/// Where an encoding ended up.
pub(crate) enum Encoded {
    /// In the caller's buffer: the message goes in the ring.
    Inline,
    /// In a sealed memfd of `len` bytes: the message travels beside the ring.
    Spilled { memfd: OwnedFd, len: usize },
}

/// The encoder's sink for one put (see the module's docs). What every
/// byte of a small message passes through is a buffer and a bound, as
/// in a `Vec`; the rest is behind `spilling`, made when the message
/// outgrows the ring (a first cut that kept it all inline cost typed
/// puts of a `u64` a quarter of their rate).
pub(crate) struct SpillSink<'a> {
    /// The encoding while it fits the ring; then, the bytes gathered for
    /// the memfd's next write.
    buf: Vec<u8>,
    /// How long `buf` may grow before `overflow` is called: the longest
    /// message the ring carries, then `STAGE`, then 0 once it failed.
    room: usize,
    /// The handle's cap, read when the message outgrows the ring.
    max_message: &'a AtomicUsize,
    /// What the memfd is called.
    name: &'static CStr,
    spilling: Option<Box<Spilling>>,
}

/// A message past the ring's room, on its way into a memfd.
struct Spilling {
    /// Absent once the message goes nowhere (`failed`).
    file: Option<std::fs::File>,
    name: &'static CStr,
    /// The largest message the handle puts.
    cap: usize,
    /// Bytes already written to the memfd.
    flushed: usize,
    /// Bytes of the encoding in all, once it is only counted.
    len: usize,
    failed: Option<Failed>,
}

enum Failed {
    TooLarge,
    Os(std::io::Error),
}

impl<'a> SpillSink<'a> {
    /// A sink writing into `buf` (emptied first) while the encoding is at
    /// most `inline` bytes, into a memfd after that, and nowhere past the
    /// cap `max_message` holds then (never below `inline`); the memfd
    /// is called `name`.
    #[inline]
    pub(crate) fn new(
        mut buf: Vec<u8>,
        inline: usize,
        max_message: &'a AtomicUsize,
        name: &'static CStr,
    ) -> Self {
        buf.clear();
        SpillSink {
            buf,
            room: inline,
            max_message,
            name,
            spilling: None,
        }
    }

    /// The encoding, if it stayed in the buffer (the ring carries it).
    #[inline(always)]
    pub(crate) fn inline(&self) -> Option<&[u8]> {
        match self.spilling {
            None => Some(&self.buf),
            Some(_) => None,
        }
    }

    /// Puts the buffer back in `slot` for the next put, unless it grew
    /// past `keep` bytes.
    #[inline(always)]
    pub(crate) fn give_back(self, slot: &mut Vec<u8>, keep: usize) {
        if self.buf.capacity() <= keep {
            *slot = self.buf;
        }
    }

    /// Where the encoding is, once the encoder is done (`encoded` is what
    /// it said): the buffer ([`inline`](Self::inline)), or a sealed memfd.
    pub(crate) fn finish(
        &mut self,
        encoded: Result<(), crate::codec::EncodeError>,
    ) -> Result<Encoded, SpillSinkError> {
        encoded.map_err(|e| SpillSinkError::Encode(e.to_string()))?;
        match self.spilling.take() {
            None => Ok(Encoded::Inline),
            Some(spilling) => spilling.finish(&mut self.buf),
        }
    }

    /// `bytes` do not fit in `buf`'s room: the message goes to a memfd
    /// from now on (made here the first time), or is only counted once it
    /// cannot go anywhere.
    #[cold]
    #[inline(never)]
    fn overflow(&mut self, bytes: &[u8]) {
        let room = self.room;
        let spilling = self.spilling.get_or_insert_with(|| {
            Box::new(Spilling {
                file: None,
                name: self.name,
                cap: self.max_message.load(Ordering::Relaxed).max(room),
                flushed: 0,
                len: 0,
                failed: None,
            })
        });
        self.room = spilling.take(&mut self.buf, bytes);
    }
}

impl Spilling {
    /// Takes `bytes`, after those gathered in `buf`; returns the room
    /// `buf` has from now on.
    fn take(&mut self, buf: &mut Vec<u8>, bytes: &[u8]) -> usize {
        if self.failed.is_some() {
            self.len += bytes.len();
            return 0;
        }
        let total = self.flushed + buf.len() + bytes.len();
        let written = match total > self.cap {
            true => Err(Failed::TooLarge),
            false => self.write_on(buf, bytes).map_err(Failed::Os),
        };
        match written {
            Ok(()) => STAGE,
            Err(why) => {
                self.failed = Some(why);
                self.len = total;
                self.file = None;
                buf.clear();
                0
            }
        }
    }

    fn write_on(&mut self, buf: &mut Vec<u8>, bytes: &[u8]) -> std::io::Result<()> {
        let file = match &mut self.file {
            Some(file) => file,
            None => self
                .file
                .insert(crate::os::memory::sealable_memfd(self.name)?),
        };
        if !buf.is_empty() {
            file.write_all(buf)?;
            self.flushed += buf.len();
            buf.clear();
        }
        if bytes.len() >= DIRECT {
            crate::os::memory::prefault_for_reading(bytes);
            file.write_all(bytes)?;
            self.flushed += bytes.len();
        } else {
            buf.extend_from_slice(bytes);
        }
        Ok(())
    }

    /// The sealed memfd, with what is still gathered in `buf` written.
    fn finish(self, buf: &mut Vec<u8>) -> Result<Encoded, SpillSinkError> {
        let len = match self.failed {
            Some(_) => self.len,
            None => self.flushed + buf.len(),
        };
        match (self.failed, self.file) {
            (Some(Failed::TooLarge), _) => Err(SpillSinkError::TooLarge { len, max: self.cap }),
            (Some(Failed::Os(e)), _) => Err(SpillSinkError::Os(e)),
            (None, None) => Err(SpillSinkError::Os(std::io::Error::other(
                "a message past the ring's room had no memfd",
            ))),
            (None, Some(mut file)) => {
                file.write_all(buf).map_err(SpillSinkError::Os)?;
                buf.clear();
                let memfd = crate::os::memory::seal_written(file).map_err(SpillSinkError::Os)?;
                Ok(Encoded::Spilled { memfd, len })
            }
        }
    }
}

impl Sink for SpillSink<'_> {
    #[inline(always)]
    fn push(&mut self, byte: u8) {
        if self.buf.len() < self.room {
            self.buf.push(byte);
        } else {
            self.overflow(&[byte]);
        }
    }

    /// One bound check for the whole number, then a `Vec`'s own varint
    /// (a check per byte cost typed `u64` puts some 4 %).
    #[inline(always)]
    fn varint(&mut self, n: u64) {
        const LONGEST: usize = 10;
        if self.room.saturating_sub(self.buf.len()) >= LONGEST {
            crate::codec::write_varint(n, &mut self.buf);
        } else {
            let mut bytes = [0u8; LONGEST];
            let mut tail = &mut bytes[..];
            let mut n = n;
            let mut len = 0;
            while n >= 0x80 {
                tail[0] = (n as u8) | 0x80;
                tail = &mut tail[1..];
                n >>= 7;
                len += 1;
            }
            tail[0] = n as u8;
            self.extend_from_slice(&bytes[..=len]);
        }
    }

    #[inline(always)]
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
    ) -> (Vec<u8>, Result<Encoded, SpillSinkError>) {
        let cap = AtomicUsize::new(cap);
        let mut sink = SpillSink::new(vec![9u8; 3], inline, &cap, c"test-message");
        let encoded = crate::codec::encode_to(value, &mut sink);
        let outcome = sink.finish(encoded);
        let mut buf = Vec::new();
        sink.give_back(&mut buf, usize::MAX);
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
        // Never the whole message (8.7 MB) in the buffer.
        assert!(
            buf.capacity() <= 2 * (STAGE + DIRECT),
            "the buffer grew to {}",
            buf.capacity()
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
            Err(SpillSinkError::TooLarge { len, max }) => {
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
            Err(SpillSinkError::Encode(why)) => assert!(why.contains("no, thanks"), "{why}"),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("encoded"),
        }
    }
}
