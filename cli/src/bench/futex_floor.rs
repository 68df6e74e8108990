//! A reference for the blocking ping-pong: the least two processes can pay
//! to wake each other on this machine. Two futex words in a shared page,
//! each side sleeping on its word until the other stores and wakes it, no
//! spinning, no ring, no checks. `supervisor bench queue` runs it beside
//! the queue's blocking ping-pong, so the queue's figure is read against
//! what the kernel (and, on a VM, the hypervisor waking an idle CPU)
//! allows at that moment.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use outlast_ipc::os::{futex, Deadline};
use outlast_ipc::shm::SharedMemory;
use outlast_ipc::Process;

/// A side gives up after this long (the other one died).
const PATIENCE: Duration = Duration::from_secs(60);

/// The two words, each on its own cache line.
fn words(shm: &SharedMemory) -> Option<(&AtomicU32, &AtomicU32)> {
    if shm.len() < 128 {
        return None;
    }
    let base = shm.as_ptr();
    // SAFETY: the segment is at least 128 bytes and page-aligned, and the
    // words at 0 and 64 are only accessed atomically by both processes.
    unsafe {
        Some((
            &*(base as *const AtomicU32),
            &*(base.add(64) as *const AtomicU32),
        ))
    }
}

/// Sleeps until `word` holds `want` (false: the patience ran out).
fn await_value(word: &AtomicU32, want: u32) -> bool {
    let deadline = Deadline::after(PATIENCE);
    loop {
        let now = word.load(Ordering::Acquire);
        if now == want {
            return true;
        }
        if !futex::wait(word, now, deadline) {
            return false;
        }
    }
}

fn answer((shm, rounds, cpu): (SharedMemory, u32, Option<usize>)) -> Result<(), String> {
    super::affinity::pin(cpu)?;
    let (ping, pong) = words(&shm).ok_or("segment too small")?;
    for n in 1..=rounds {
        if !await_value(ping, n) {
            return Err("the pinger stopped".into());
        }
        pong.store(n, Ordering::Release);
        futex::wake(pong, 1);
    }
    Ok(())
}

/// Round trips through two futex words between this process and a child
/// (the child on `cpu` if given; the caller placed itself already): (p50, p99)
/// in microseconds.
pub fn round_trip(rounds: u32, cpu: Option<usize>) -> Result<(f64, f64), String> {
    let shm = SharedMemory::anonymous(4096).map_err(|e| e.to_string())?;
    let (ping, pong) = words(&shm).ok_or("segment too small")?;
    let theirs = shm.try_clone().map_err(|e| e.to_string())?;
    let mut p = Process::new(answer, (theirs, rounds, cpu));
    p.start().map_err(|e| e.to_string())?;
    let mut histogram = Histogram::<u64>::new(3).map_err(|e| e.to_string())?;
    // The first tenth warms both sides up and is not recorded.
    let warm_up = rounds / 10;
    for n in 1..=rounds {
        let started = Instant::now();
        ping.store(n, Ordering::Release);
        futex::wake(ping, 1);
        if !await_value(pong, n) {
            let _ = p.kill();
            return Err("the answering process stopped".into());
        }
        if n > warm_up {
            let _ = histogram.record(started.elapsed().as_nanos() as u64);
        }
    }
    p.join().map_err(|e| e.to_string())??;
    Ok((
        histogram.value_at_quantile(0.5) as f64 / 1e3,
        histogram.value_at_quantile(0.99) as f64 / 1e3,
    ))
}

/// Where a guest kernel halts its idle CPUs without polling first (the
/// cpuidle-haltpoll driver with `guest_halt_poll_ns` 0), waking one goes
/// through the hypervisor: on the Firecracker VM this was measured on,
/// 55-75 us a round trip, against 5 us with 200 us of polling. Said beside
/// the floor, so that figure is not read as the queue's.
pub fn halt_polling_note() -> String {
    const PARAMETER: &str = "/sys/module/haltpoll/parameters/guest_halt_poll_ns";
    match std::fs::read_to_string(PARAMETER) {
        Ok(ns) if ns.trim() == "0" => {
            "; this VM halts idle CPUs without polling (guest_halt_poll_ns = 0)".to_string()
        }
        _ => String::new(),
    }
}
