//! Authenticated frames: after a handshake over TCP (see `net::auth`),
//! each side seals every frame it sends with an HMAC-SHA256 tag (the first
//! [`TAG_LEN`] bytes) over a per-direction counter and the payload, under
//! a key derived from that handshake's nonces and the shared key. The
//! receiver checks each tag with the counter it expects next, so a frame
//! injected by a relay on the path, replayed, reordered, altered or sent
//! the other way is refused ([`RecvError::Forged`](super::RecvError::Forged))
//! instead of being read as the peer's.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Bytes of tag after each payload.
pub const TAG_LEN: usize = 16;

/// One connection's frame keys and counters.
pub struct FrameMac {
    send: HmacSha256,
    recv: HmacSha256,
    sent: u64,
    received: u64,
}

impl std::fmt::Debug for FrameMac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameMac")
            .field("sent", &self.sent)
            .field("received", &self.received)
            .finish_non_exhaustive()
    }
}

impl FrameMac {
    /// Keys for this side: what it sends is sealed with `send`, what it
    /// receives checked with `recv` (the peer's `send`).
    pub fn new(send: &[u8; 32], recv: &[u8; 32]) -> Self {
        // A 32-byte key is always a valid HMAC key.
        let key = |k: &[u8; 32]| {
            HmacSha256::new_from_slice(k).unwrap_or_else(|_| unreachable!("HMAC takes any key"))
        };
        FrameMac {
            send: key(send),
            recv: key(recv),
            sent: 0,
            received: 0,
        }
    }

    /// The tag for the next frame sent with `payload`.
    pub fn seal(&mut self, payload: &[u8]) -> [u8; TAG_LEN] {
        let mut sealing = self.begin_seal();
        sealing.update(payload);
        sealing.finish()
    }

    /// The tag for the next frame sent, made as its payload is given (a
    /// large awaited frame is hashed a part at a time, as it is written,
    /// not all at once where its future is first polled). Its place in
    /// the count is taken now: [`unseal`](Self::unseal) if not a byte of
    /// the frame goes out.
    pub fn begin_seal(&mut self) -> Sealing {
        let mut mac = self.send.clone();
        mac.update(&self.sent.to_le_bytes());
        self.sent = self.sent.wrapping_add(1);
        Sealing { mac }
    }

    /// Takes the last seal back: not a byte of its frame went out (a send
    /// that timed out first), so the next frame sent takes its place in
    /// the count, which the peer expects. Before, the count ran one ahead
    /// of the peer's, and every later frame failed its authentication.
    pub fn unseal(&mut self) {
        self.sent = self.sent.wrapping_sub(1);
    }

    /// Checks the next received frame (payload then tag): its payload's
    /// length if the tag is right. A frame that fails is not counted, but
    /// the connection is not to be trusted after it.
    pub fn open(&mut self, frame: &[u8]) -> Option<usize> {
        let len = self.opener().open(frame)?;
        self.opened_one();
        Some(len)
    }

    /// What checks the next frame's tag, for another thread.
    pub fn opener(&self) -> FrameOpener {
        FrameOpener {
            mac: self.recv.clone(),
            counter: self.received,
        }
    }

    /// The next frame was opened by its [`opener`](Self::opener).
    pub fn opened_one(&mut self) {
        self.received = self.received.wrapping_add(1);
    }
}

/// One frame's tag in the making (see [`FrameMac::begin_seal`]).
pub struct Sealing {
    mac: HmacSha256,
}

impl std::fmt::Debug for Sealing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealing").finish_non_exhaustive()
    }
}

impl Sealing {
    /// The payload's next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.mac.update(bytes);
    }

    /// The tag, once the whole payload was given.
    pub fn finish(self) -> [u8; TAG_LEN] {
        let full = self.mac.finalize().into_bytes();
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&full[..TAG_LEN]);
        tag
    }
}

/// The check of one frame's tag, made apart from the connection (a large
/// frame is opened off the executor's thread); the connection counts the
/// frame once it is opened.
pub struct FrameOpener {
    mac: HmacSha256,
    counter: u64,
}

impl FrameOpener {
    /// The payload's length if `frame`'s tag is right.
    pub fn open(self, frame: &[u8]) -> Option<usize> {
        let len = frame.len().checked_sub(TAG_LEN)?;
        let (payload, tag) = frame.split_at(len);
        let mut mac = self.mac;
        mac.update(&self.counter.to_le_bytes());
        mac.update(payload);
        mac.verify_truncated_left(tag).ok()?;
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_frame_opens_once_in_order_and_nothing_else_does() {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        let mut ours = FrameMac::new(&a, &b);
        let mut theirs = FrameMac::new(&b, &a);
        let mut first = b"one".to_vec();
        first.extend(ours.seal(b"one"));
        let mut second = b"two".to_vec();
        second.extend(ours.seal(b"two"));
        // Out of order: refused, and the expected counter stays.
        assert_eq!(theirs.open(&second), None);
        assert_eq!(theirs.open(&first), Some(3));
        // Replayed: refused.
        assert_eq!(theirs.open(&first), None);
        assert_eq!(theirs.open(&second), Some(3));
        // Altered, too short, or sent back the other way: refused.
        let mut third = b"333".to_vec();
        third.extend(ours.seal(b"333"));
        let mut altered = third.clone();
        altered[0] ^= 1;
        assert_eq!(theirs.open(&altered), None);
        assert_eq!(theirs.open(&third[..4]), None);
        assert_eq!(ours.open(&third), None);
        assert_eq!(theirs.open(&third), Some(3));
    }
}
