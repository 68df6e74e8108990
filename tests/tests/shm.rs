//! End-to-end tests of `ipc::shm`: a segment handed to a child (fork and
//! spawn) is the same memory in both processes, and never shows in /dev/shm.

use std::sync::atomic::{AtomicU64, Ordering};

use ipc::shm::{SharedMemory, ShmError};
use ipc::{Process, StartMethod};
use tests::{cases, harness};

fn main() {
    ipc::init();
    harness::run(cases![
        a_child_writes_what_the_parent_reads,
        anonymous_segments_never_appear_in_dev_shm,
        an_empty_segment_is_refused,
    ]);
}

/// The first word of the segment, as an atomic.
fn word(shm: &SharedMemory) -> &AtomicU64 {
    // SAFETY: the mapping is page-aligned and at least 8 bytes long, and
    // every process touches it only through atomics.
    unsafe { &*(shm.as_ptr() as *const AtomicU64) }
}

fn add_in_child((shm, n): (SharedMemory, u64)) -> u64 {
    word(&shm).fetch_add(n, Ordering::SeqCst) + n
}

fn a_child_writes_what_the_parent_reads() {
    let shm = SharedMemory::anonymous(4096).expect("segment");
    for (method, n) in [(StartMethod::Fork, 5), (StartMethod::Spawn, 7)] {
        let theirs = shm.try_clone().expect("clone");
        let mut p = Process::new(add_in_child, (theirs, n)).start_method(method);
        p.start().expect("start");
        p.join().expect("join");
    }
    assert_eq!(word(&shm).load(Ordering::SeqCst), 12);
}

fn anonymous_segments_never_appear_in_dev_shm() {
    let before = std::fs::read_dir("/dev/shm")
        .map(|d| d.count())
        .unwrap_or(0);
    let segments: Vec<_> = (0..4)
        .map(|_| SharedMemory::anonymous(1 << 20).expect("segment"))
        .collect();
    let during = std::fs::read_dir("/dev/shm")
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(before, during);
    assert_eq!(segments.len(), 4);
}

fn an_empty_segment_is_refused() {
    assert!(matches!(SharedMemory::anonymous(0), Err(ShmError::Empty)));
}
