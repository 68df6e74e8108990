//! Where the encoder writes: a `Vec<u8>` (every frame and message), or a
//! sink of the caller's that does not keep the whole value in memory (a
//! queue's message too large for its ring goes straight into the memfd it
//! travels in; see `queue::spill_sink`).

/// What the encoder appends to. It never reads back or rewrites what it
/// wrote (postcard writes every length before what it counts).
pub(crate) trait Sink {
    fn push(&mut self, byte: u8);
    fn extend_from_slice(&mut self, bytes: &[u8]);

    /// `n` as LEB128 (postcard's lengths and integers).
    #[inline]
    fn varint(&mut self, mut n: u64) {
        while n >= 0x80 {
            self.push((n as u8) | 0x80);
            n >>= 7;
        }
        self.push(n as u8);
    }
}

impl Sink for Vec<u8> {
    #[inline]
    fn push(&mut self, byte: u8) {
        Vec::push(self, byte)
    }

    #[inline]
    fn varint(&mut self, n: u64) {
        super::bulk::write_varint(n, self)
    }

    #[inline]
    fn extend_from_slice(&mut self, bytes: &[u8]) {
        if bytes.len() >= crate::os::memory::PREFAULT_FROM {
            // A long run (a large `Vec<u8>`): fresh pages, asked for at once.
            self.reserve(bytes.len());
            let spare = self.spare_capacity_mut();
            crate::os::memory::prefault_for_writing(spare.as_mut_ptr().cast(), bytes.len());
        }
        Vec::extend_from_slice(self, bytes)
    }
}
