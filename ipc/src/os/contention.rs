//! Whether the CPUs are oversubscribed: more threads runnable on the
//! machine than there are CPUs this process may run on. A waiter that
//! spins then takes the quantum the peer it waits for needs (measured on a
//! 2-core machine with one busy loop per core: a manager round trip took
//! 75 us on average with the server and client spinning, 10-40 us at the
//! median with both parked), so every spin in this crate asks
//! [`oversubscribed`] first.
//!
//! The count is the running field of `/proc/loadavg` (the kernel's
//! `nr_running`, a snapshot that includes the reader), read at most once
//! per clock tick and shared by every thread of the process through two
//! atomics; the CPUs are this process's affinity mask, read once. Without
//! `/proc`, nothing is oversubscribed (spinning stays bounded by each
//! waiter's budget). The count is the whole machine's: a process confined
//! by `taskset` or a cpuset to a few CPUs of a busy larger host sees the
//! host's runnable threads and parks at once (correct, a little slower).

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::OnceLock;

use super::clock::coarse_monotonic_ns;

/// How old a verdict may be before the file is read again: about a tick of
/// the coarse clock, so a read costs a few microseconds every few
/// milliseconds at most.
const FRESH_FOR_NS: u64 = 2_000_000;

static READ_AT: AtomicU64 = AtomicU64::new(0);
/// The last count read; 0 when `/proc/loadavg` could not be read.
static RUNNABLE: AtomicUsize = AtomicUsize::new(0);

/// True when more threads are runnable than CPUs this process may use:
/// spinning cannot pay, park at once.
pub fn oversubscribed() -> bool {
    runnable() > usable_cpus()
}

/// Threads runnable on the machine lately (this one included; 0 when
/// unknown), read at most once per clock tick.
pub fn runnable() -> usize {
    let now = coarse_monotonic_ns();
    let read_at = READ_AT.load(Ordering::Relaxed);
    if read_at != 0 && now.wrapping_sub(read_at) < FRESH_FOR_NS {
        return RUNNABLE.load(Ordering::Relaxed);
    }
    // One thread reads; the others use the last count meanwhile.
    if READ_AT
        .compare_exchange(read_at, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
        .is_err()
    {
        return RUNNABLE.load(Ordering::Relaxed);
    }
    let count = runnable_threads().unwrap_or(0);
    RUNNABLE.store(count, Ordering::Relaxed);
    count
}

/// CPUs this process may run on (its affinity mask), read once. The count
/// of runnable threads is machine-wide, so it is weighed against CPUs, not
/// against a cgroup's CPU quota: a container limited to two CPUs' worth of
/// time on a 64-CPU host is not oversubscribed while the host is not.
pub fn usable_cpus() -> usize {
    static CPUS: OnceLock<usize> = OnceLock::new();
    *CPUS.get_or_init(|| {
        affinity_count()
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
    })
}

fn affinity_count() -> Option<usize> {
    // SAFETY: a zeroed cpu_set_t is an empty set, and sched_getaffinity
    // writes at most size_of::<cpu_set_t>() bytes into it.
    let count = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return None;
        }
        libc::CPU_COUNT(&set)
    };
    usize::try_from(count).ok().filter(|&n| n > 0)
}

/// Threads runnable on the machine now, this one included.
fn runnable_threads() -> Option<usize> {
    let mut buf = [0u8; 128];
    let text = super::procfs::read_small("/proc/loadavg", &mut buf)?;
    parse_running(text)
}

/// The `R` of `/proc/loadavg`'s fourth field, `R/T`.
fn parse_running(text: &str) -> Option<usize> {
    let field = text.split_ascii_whitespace().nth(3)?;
    field.split('/').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_running_field() {
        assert_eq!(parse_running("0.52 0.58 0.59 3/1107 123456\n"), Some(3));
        assert_eq!(parse_running("0.52 0.58"), None);
        assert_eq!(parse_running("a b c x/1 9"), None);
    }

    #[test]
    fn this_machine_has_a_count() {
        // The reader itself is running.
        assert!(runnable_threads().is_some_and(|n| n >= 1));
        assert!(usable_cpus() >= 1);
    }
}
