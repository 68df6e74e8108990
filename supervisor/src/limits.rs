//! How many workers this machine can hold, worked out before any starts:
//! the supervisor raises its soft descriptor limit to the hard one, then
//! counts what each worker costs it (descriptors, a process, memory for
//! its rings and itself) against what is left. Asking for more is refused
//! with one message naming the limit that binds, instead of starting
//! thousands of workers and failing on each of the rest.

use std::fmt;

use outlast_ipc::os::{limits, procfs};

/// Descriptors the supervisor holds per live worker (its two ring
/// segments, doorbell, pidfd, report pipe), plus the worker's ends while it
/// starts.
pub const FDS_PER_WORKER: u64 = 8;
/// Descriptors kept for everything else (stdio, signals, the terminal).
const FDS_RESERVED: u64 = 64;
/// Memory a worker process costs beyond its rings (page tables, its stack
/// and heap, private copies of what it writes): an estimate.
pub const WORKER_OVERHEAD_BYTES: u64 = 1 << 20;

/// The limit that binds, with its figures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Binding {
    Descriptors { limit: u64 },
    Processes { free: u64, what: &'static str },
    Memory { available: u64, per_worker: u64 },
}

/// The most workers this machine can hold now, and why no more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Capacity {
    pub max_workers: u64,
    pub binding: Option<Binding>,
}

/// Raises the descriptor limit and works out the capacity for workers
/// whose two rings take `ring_bytes` each.
pub fn capacity(ring_bytes: usize) -> Capacity {
    let mut best = Capacity {
        max_workers: u64::MAX,
        binding: None,
    };
    let mut consider = |n: u64, binding: Binding| {
        if n < best.max_workers {
            best = Capacity {
                max_workers: n,
                binding: Some(binding),
            };
        }
    };
    if let Ok(Some(limit)) = limits::raise_open_files() {
        consider(
            limit.saturating_sub(FDS_RESERVED) / FDS_PER_WORKER,
            Binding::Descriptors { limit },
        );
    }
    // RLIMIT_NPROC counts this user's threads; root is not held to it.
    let uid = outlast_ipc::os::process::user_id();
    if uid != 0 {
        if let Ok(limits::Limit {
            soft: Some(max), ..
        }) = limits::processes()
        {
            let used = procfs::tasks_of_user(uid);
            consider(
                max.saturating_sub(used),
                Binding::Processes {
                    free: max.saturating_sub(used),
                    what: "RLIMIT_NPROC (ulimit -u)",
                },
            );
        }
    }
    let (pid_max, threads_max) = procfs::kernel_task_limits();
    if let Some(max) = [pid_max, threads_max].into_iter().flatten().min() {
        let used = procfs::task_count();
        consider(
            max.saturating_sub(used).saturating_sub(64),
            Binding::Processes {
                free: max.saturating_sub(used),
                what: "kernel.pid_max / kernel.threads-max",
            },
        );
    }
    if let Some(available) = procfs::available_memory() {
        let per_worker = 2 * ring_bytes as u64 + WORKER_OVERHEAD_BYTES;
        consider(
            available / per_worker,
            Binding::Memory {
                available,
                per_worker,
            },
        );
    }
    best
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

impl fmt::Display for Binding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Binding::Descriptors { limit } => write!(
                f,
                "each worker takes {FDS_PER_WORKER} descriptors of this process's limit of {limit} (ulimit -n, raised to the hard limit)"
            ),
            Binding::Processes { free, what } => {
                write!(f, "{what} leaves room for {free} more processes")
            }
            Binding::Memory {
                available,
                per_worker,
            } => write!(
                f,
                "each worker needs about {} (its rings and itself) and {} of memory is available (MemAvailable)",
                mib(*per_worker),
                mib(*available)
            ),
        }
    }
}

/// More workers than the machine holds (`--workers N`, `Pool::new(N)`).
/// Its words name no flag: a library's caller passed no `--workers`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{asked} workers are more than this machine can hold: {binding}; it holds at most {max}")]
pub struct TooManyWorkers {
    pub asked: u64,
    pub max: u64,
    pub binding: Binding,
}

impl Capacity {
    /// Refuses `asked` workers if they do not fit.
    pub fn check(&self, asked: u64) -> Result<(), TooManyWorkers> {
        match &self.binding {
            Some(binding) if asked > self.max_workers => Err(TooManyWorkers {
                asked,
                max: self.max_workers,
                binding: binding.clone(),
            }),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_machine_holds_a_few_workers_and_not_a_million() {
        let capacity = capacity(1 << 20);
        assert!(capacity.max_workers >= 2, "{capacity:?}");
        assert!(capacity.check(2).is_ok());
        let refused = capacity.check(1 << 40).expect_err("a trillion workers");
        let text = refused.to_string();
        assert!(
            text.starts_with("1099511627776 workers are more than this machine can hold"),
            "{text}"
        );
        assert!(!text.contains("--workers"), "a library's words: {text}");
        assert!(text.contains("at most"), "{text}");
    }
}
