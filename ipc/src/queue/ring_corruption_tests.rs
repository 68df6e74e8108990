//! A ring whose bytes end exactly where an inaccessible guard page begins,
//! and whose shared words are set to what a process scribbling on the
//! segment could leave: no put may write, and no get read, past the ring's
//! end (the guard page would kill the test with SIGSEGV), and every call
//! returns by its deadline.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::*;
use crate::os::memory;
use crate::shm::SharedMemory;

const RING: usize = 4096;

/// The shared state at the start of a segment, a ring of `RING` bytes
/// ending at a page boundary, then a guard page.
struct Guarded {
    shm: SharedMemory,
    data_offset: usize,
}

impl Guarded {
    fn new() -> Guarded {
        let page = crate::os::procfs::page_size() as usize;
        let state_len = std::mem::size_of::<RingState>().next_multiple_of(page);
        let shm = SharedMemory::anonymous(state_len + RING + page).expect("segment");
        let guard = state_len + RING;
        // SAFETY: the last page of our own mapping, which nothing uses.
        unsafe { memory::protect_none(shm.as_ptr().add(guard), page) }.expect("guard page");
        let g = Guarded {
            shm,
            data_offset: state_len,
        };
        g.state().init(RING, 0).expect("init");
        g
    }

    fn state(&self) -> &RingState {
        // SAFETY: the segment starts with room for a RingState, page-aligned,
        // zeroed; its fields are atomics and lock words.
        unsafe { &*(self.shm.as_ptr() as *const RingState) }
    }

    fn ring<'a>(&'a self, view: &'a LocalView) -> Ring<'a> {
        // SAFETY: data_offset + RING is inside the mapping (before the guard).
        let data = unsafe { self.shm.as_ptr().add(self.data_offset) };
        Ring::new(self.state(), data, RING, view)
    }

    fn data_word(&self, at: usize) -> &AtomicU32 {
        assert!(at + 4 <= RING && at % 4 == 0);
        // SAFETY: inside the ring, 4-aligned; only atomics touch it here.
        unsafe { &*(self.shm.as_ptr().add(self.data_offset + at) as *const AtomicU32) }
    }
}

fn put(g: &Guarded, message: &[u8]) -> Result<usize, RingError> {
    let view = LocalView::default();
    g.ring(&view)
        .put_many(&[message], Patience::after(Duration::from_millis(30)))
}

fn get(g: &Guarded) -> Result<usize, RingError> {
    let view = LocalView::default();
    g.ring(&view).get_many(
        8,
        Patience::after(Duration::from_millis(30)),
        None,
        &mut |_| {},
    )
}

#[test]
fn an_unaligned_tail_near_the_end_is_refused_before_any_write() {
    let g = Guarded::new();
    for bad in [
        RING as u64 - 4,
        2 * RING as u64 - 4,
        2 * RING as u64,
        u32::MAX as u64,
        POS_MASK,
    ] {
        g.state().tail.word.store(pack(0, bad), Ordering::Release);
        assert!(
            matches!(put(&g, &[7u8; 40]), Err(RingError::Corrupted(_))),
            "tail {bad}"
        );
    }
}

#[test]
fn an_unaligned_head_near_the_end_is_refused_before_any_read() {
    let g = Guarded::new();
    assert!(matches!(put(&g, b"hello"), Ok(1)));
    g.state()
        .head
        .word
        .store(pack(0, RING as u64 - 4), Ordering::Release);
    assert!(matches!(get(&g), Err(RingError::Corrupted(_))));
}

#[test]
fn a_wild_record_length_is_refused() {
    let g = Guarded::new();
    assert!(matches!(put(&g, b"hello"), Ok(1)));
    g.data_word(0).store(u32::MAX, Ordering::Release);
    assert!(matches!(get(&g), Err(RingError::Corrupted(_))));
    // A record whose length runs past the end from near the end.
    let g = Guarded::new();
    let near_end = RING as u64 - 16;
    g.state()
        .tail
        .word
        .store(pack(0, near_end), Ordering::Release);
    g.state()
        .head
        .word
        .store(pack(0, near_end), Ordering::Release);
    assert!(matches!(put(&g, b"x"), Ok(1)));
    g.data_word(RING - 16).store(64, Ordering::Release);
    assert!(matches!(get(&g), Err(RingError::Corrupted(_))));
}

#[test]
fn positions_far_ahead_or_behind_never_leave_the_ring() {
    let g = Guarded::new();
    for (head, tail) in [
        (0, 2 * RING as u64 - 8),
        (2 * RING as u64 - 8, 0),
        (RING as u64, 8),
        (8, RING as u64 + 8),
    ] {
        g.state().head.word.store(pack(3, head), Ordering::Release);
        g.state().tail.word.store(pack(1, tail), Ordering::Release);
        let _ = put(&g, &[1u8; 200]);
        let _ = get(&g);
    }
}

#[test]
fn a_capacity_word_larger_than_the_mapping_is_clamped() {
    let g = Guarded::new();
    g.state().config.capacity.store(u64::MAX, Ordering::Release);
    for _ in 0..100 {
        assert!(matches!(
            put(&g, &[9u8; 500]),
            Ok(1) | Err(RingError::Timeout)
        ));
        let _ = get(&g);
    }
}

#[test]
fn random_bytes_over_the_state_and_the_ring_never_crash_or_hang() {
    for seed in 1..=8u64 {
        let g = Guarded::new();
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let len = g.data_offset + RING;
        for at in (0..len).step_by(4) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            // SAFETY: inside our mapping, before the guard page; the state
            // is only atomics and lock words, which any bytes are valid for.
            unsafe { (g.shm.as_ptr().add(at) as *mut u32).write_volatile(x as u32) };
        }
        let started = Instant::now();
        for _ in 0..4 {
            let _ = put(&g, &[seed as u8; 100]);
            let _ = get(&g);
        }
        // Eight calls of at most 30 ms each, plus what taking over a lock
        // whose word names a dead thread costs (one liveness look).
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "seed {seed}: calls overran their deadlines"
        );
    }
}
