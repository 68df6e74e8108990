//! The built-in jobs, one file each, and the registry that finds them by name.

pub mod echo;
pub mod fault;
pub mod primes;
pub mod sleep;

use crate::job::{Job, JobSpec};

/// A job's name, a one-line description, and how to build it.
pub struct RegistryEntry {
    pub name: &'static str,
    pub about: &'static str,
    pub build: fn(&JobSpec) -> Result<Box<dyn Job>, String>,
}

/// Every built-in job.
pub const REGISTRY: &[RegistryEntry] = &[
    RegistryEntry {
        name: "primes",
        about: "count the primes below --limit, in ranges of --chunk numbers",
        build: |spec| Ok(Box::new(primes::Primes::new(spec)?)),
    },
    RegistryEntry {
        name: "sleep",
        about: "--tasks tasks that each wait --task-ms (an IO-bound stand-in)",
        build: |spec| Ok(Box::new(sleep::Sleep::new(spec)?)),
    },
    RegistryEntry {
        name: "echo",
        about: "--tasks payloads of --payload-bytes sent to a worker and back",
        build: |spec| Ok(Box::new(echo::Echo::new(spec)?)),
    },
    RegistryEntry {
        name: "fault",
        about: "tasks that abort, segfault, exit, hang, fail or write garbage at given rates",
        build: |spec| Ok(Box::new(fault::Fault::new(spec)?)),
    },
];

/// The names of the built-in jobs.
pub fn names() -> Vec<&'static str> {
    REGISTRY.iter().map(|e| e.name).collect()
}

/// The outcome of a job whose answer is how many of its tasks were done.
pub(crate) fn tasks_done(done: u64, tasks: u64, verified: Option<bool>) -> crate::job::JobOutcome {
    use crate::numbers::group_thousands;
    crate::job::JobOutcome {
        value: done.to_string(),
        summary: format!(
            "{} of {} tasks done",
            group_thousands(done),
            group_thousands(tasks)
        ),
        verified,
    }
}

/// Reads a little-endian u64 at `at`, if the bytes are there.
pub(crate) fn read_u64(bytes: &[u8], at: usize) -> Option<u64> {
    let slice = bytes.get(at..at.checked_add(8)?)?;
    Some(u64::from_le_bytes(slice.try_into().ok()?))
}

/// Sleeps `ms` milliseconds in slices, beating between them.
pub(crate) fn sleep_beating(ms: u64, ctx: &crate::job::TaskContext<'_>) {
    let end = std::time::Instant::now() + std::time::Duration::from_millis(ms);
    loop {
        let now = std::time::Instant::now();
        if now >= end {
            return;
        }
        std::thread::sleep((end - now).min(std::time::Duration::from_millis(50)));
        ctx.beat();
    }
}
