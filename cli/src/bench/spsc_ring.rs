//! A reference for the queue benchmark: the simplest ring that can carry
//! our records between two processes. Single producer, single consumer, the
//! same record as ours (8-byte length + 64-byte payload) in a 1 MiB
//! mapping, cached indices, spinning, one index store per message, and
//! nothing else: no locks, no kill-safety, no second producer, no sleeping.
//! `supervisor bench queue` runs it right after each of our 64 B put/get
//! runs, so every run shows what the machine allows at that moment (this VM
//! swings between spells where such a ring does 150+ M msgs/s and spells
//! where it does about 12 M, and ours moves with it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use outlast_ipc::shm::SharedMemory;
use outlast_ipc::Process;

const DATA: u64 = 1 << 20;
const RECORD: u64 = 72;
/// The two indices, each on its own line, before the data.
const HEADER: usize = 128;
/// A spinning side gives up after this long (the other one died).
const PATIENCE: Duration = Duration::from_secs(60);

struct Ring<'a> {
    tail: &'a AtomicU64,
    head: &'a AtomicU64,
    data: *mut u8,
}

fn view(shm: &SharedMemory) -> Option<Ring<'_>> {
    if shm.len() < HEADER + DATA as usize {
        return None;
    }
    let base = shm.as_ptr();
    // SAFETY: the segment is at least HEADER + DATA bytes, page-aligned,
    // shared between exactly two processes, and the two index words (at 0
    // and 64) are only accessed atomically.
    unsafe {
        Some(Ring {
            tail: &*(base as *const AtomicU64),
            head: &*(base.add(64) as *const AtomicU64),
            data: base.add(HEADER),
        })
    }
}

/// Where a record starting at position `pos` goes, skipping the ring's end.
fn place(pos: u64) -> (u64, u64) {
    let at = pos % DATA;
    if at + RECORD > DATA {
        (pos + DATA - at, 0)
    } else {
        (pos, at)
    }
}

fn produce((shm, count): (SharedMemory, u64)) -> Result<(), String> {
    let ring = view(&shm).ok_or("segment too small")?;
    let payload = [0xA5u8; 64];
    let mut tail = 0u64;
    let mut head = 0u64;
    let started = Instant::now();
    for _ in 0..count {
        let (pos, at) = place(tail);
        while pos + RECORD - head > DATA {
            head = ring.head.load(Ordering::Acquire);
            if started.elapsed() > PATIENCE {
                return Err("the consumer stopped".into());
            }
        }
        // SAFETY: `at + RECORD <= DATA`, and the consumer is past this record.
        unsafe {
            (ring.data.add(at as usize) as *mut u64).write(64);
            std::ptr::copy_nonoverlapping(payload.as_ptr(), ring.data.add(at as usize + 8), 64);
        }
        tail = pos + RECORD;
        ring.tail.store(tail, Ordering::Release);
    }
    Ok(())
}

/// Messages per second from a child process through the minimal ring.
pub fn rate(count: u64) -> Result<f64, String> {
    let shm = SharedMemory::anonymous(HEADER + DATA as usize).map_err(|e| e.to_string())?;
    let ring = view(&shm).ok_or("segment too small")?;
    let theirs = shm.try_clone().map_err(|e| e.to_string())?;
    let mut p = Process::new(produce, (theirs, count));
    p.start().map_err(|e| e.to_string())?;
    let mut head = 0u64;
    let mut tail = 0u64;
    let mut bytes = 0u64;
    let mut started = None;
    let waiting_since = Instant::now();
    for _ in 0..count {
        let (pos, at) = place(head);
        while tail < pos + RECORD {
            tail = ring.tail.load(Ordering::Acquire);
            if waiting_since.elapsed() > PATIENCE {
                let _ = p.kill();
                return Err("the producer stopped".into());
            }
        }
        started.get_or_insert_with(Instant::now);
        // SAFETY: the record at `at` is published and inside the data.
        bytes += unsafe { (ring.data.add(at as usize) as *const u64).read_volatile() };
        head = pos + RECORD;
        ring.head.store(head, Ordering::Release);
    }
    let elapsed = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    p.join().map_err(|e| e.to_string())??;
    if bytes != 64 * count {
        return Err(format!(
            "read {bytes} length bytes, expected {}",
            64 * count
        ));
    }
    Ok((count - 1) as f64 / elapsed.max(1e-9))
}
