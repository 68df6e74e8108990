//! What a sender and a receiver have alike: their segment (open or
//! parked), the ring's size and where it starts, the aux words, whether the
//! peer broke the channel, whether the end was handed to a child, and how
//! the end waits (spin only while the peer is active; `/proc` at most once
//! a second).

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::error::SpscError;
use super::layout::Header;
use super::segment::Segment;
use crate::os::{futex, Deadline};
use crate::shm::cell::ShmCell;
use crate::shm::ShmError;
use crate::spin::SpinBudget;

/// How often at most an end reads `/proc` to see whether its peer lives.
const LIVENESS_EVERY: Duration = Duration::from_secs(1);
/// The longest an end spins before it sleeps (only while the peer is
/// active: an idle end sleeps at once, so a thousand idle ones cost no
/// CPU; within it, as long as recent waits say pays, and not at all while
/// the CPUs are oversubscribed), and how long it sleeps at a time.
const SPIN: Duration = Duration::from_micros(20);
const SLICE: Duration = Duration::from_millis(100);

pub(super) struct End {
    pub(super) seg: Segment,
    pub(super) cap: usize,
    pub(super) aux_bytes: usize,
    pub(super) broken: Option<SpscError>,
    /// Serialized into a child's arguments: the child owns the end now.
    pub(super) handed_over: AtomicBool,
    pub(super) scratch: Vec<u8>,
    /// The last wait saw the peer move: spin before sleeping next time.
    pub(super) streaming: bool,
    budget: SpinBudget,
    /// The longest it spins ([`SPIN`] unless its owner says otherwise).
    spin_bound: Duration,
    liveness_checked: Option<Instant>,
}

impl End {
    pub(super) fn new(seg: Segment, cap: usize, aux_bytes: usize) -> Self {
        End {
            seg,
            cap,
            aux_bytes,
            broken: None,
            handed_over: AtomicBool::new(false),
            scratch: Vec::new(),
            streaming: false,
            budget: SpinBudget::default(),
            spin_bound: SPIN,
            liveness_checked: None,
        }
    }

    /// Spins up to `bound` (still only as recent waits say pays, and not
    /// while the CPUs are oversubscribed) before it sleeps.
    pub(super) fn set_spin_bound(&mut self, bound: Duration) {
        self.spin_bound = bound;
    }

    pub(super) fn header(&self) -> Result<&Header, SpscError> {
        Ok(self.seg.cell()?.state())
    }

    /// The first byte of the ring.
    pub(super) fn ring(&self) -> Result<*mut u8, SpscError> {
        // SAFETY: the segment holds aux_bytes + cap bytes after the header
        // (checked when the endpoint was made or received).
        Ok(unsafe { self.seg.cell()?.extra_ptr().add(self.aux_bytes) })
    }

    pub(super) fn open(&mut self) -> Result<(), ShmError> {
        self.seg.open()
    }

    pub(super) fn is_open(&self) -> bool {
        self.seg.is_open()
    }

    /// The aux words; none while parked.
    pub(super) fn aux(&self) -> &[AtomicU64] {
        match self.seg.cell() {
            Ok(cell) => aux_words(cell, self.aux_bytes),
            Err(_) => &[],
        }
    }

    /// After a slice of waiting in which the peer did not move: whether it
    /// is time to read `/proc` for its liveness.
    pub(super) fn liveness_due(&mut self, idle_slice: bool) -> bool {
        if !idle_slice {
            return false;
        }
        let now = Instant::now();
        match self.liveness_checked {
            Some(at) if now.duration_since(at) < LIVENESS_EVERY => false,
            _ => {
                self.liveness_checked = Some(now);
                true
            }
        }
    }
}

impl End {
    /// Waits for the peer's `word` to move from `seen` (spinning first
    /// while the peer is active, then asleep for a slice, with `sleeping`
    /// raised so the peer wakes us); true if it moved.
    pub(super) fn wait_for_move(
        &mut self,
        word: fn(&Header) -> &AtomicU64,
        sleeping: fn(&Header) -> &AtomicU32,
        seen: u64,
        deadline: Deadline,
    ) -> bool {
        let Ok(h) = self.header() else { return false };
        let (word, sleeping) = (word(h), sleeping(h));
        let mut moved = false;
        let started = Instant::now();
        let spin = if self.streaming {
            self.budget.limit(self.spin_bound)
        } else {
            Duration::ZERO
        };
        if !spin.is_zero() {
            while started.elapsed() < spin {
                if word.load(Ordering::Acquire) != seen {
                    moved = true;
                    break;
                }
                std::hint::spin_loop();
            }
        }
        if !moved {
            sleeping.store(1, Ordering::Relaxed);
            // Dekker with the peer: our flag before our look at its word,
            // its word before its look at our flag.
            std::sync::atomic::fence(Ordering::SeqCst);
            if word.load(Ordering::Acquire) == seen {
                // Asleep on the flag, not the word: see `futex::owes_wake`.
                futex::wait(sleeping, 1, deadline.min(Deadline::after(SLICE)));
            }
            sleeping.store(0, Ordering::Relaxed);
            moved = word.load(Ordering::Acquire) != seen;
        }
        self.streaming = moved;
        self.budget.record(started.elapsed());
        moved
    }
}

/// The aux area of a channel as words.
pub(super) fn aux_words(cell: &ShmCell<Header>, aux_bytes: usize) -> &[AtomicU64] {
    // SAFETY: the aux area is `aux_bytes` (a multiple of 64) bytes at the
    // 64-aligned start of the extra area, inside the segment; it is only
    // ever accessed through atomics.
    unsafe { std::slice::from_raw_parts(cell.extra_ptr() as *const AtomicU64, aux_bytes / 8) }
}
