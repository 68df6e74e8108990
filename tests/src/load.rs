//! A loaded machine for tests: [`BusyLoops`] keeps one busy process per CPU
//! running (real processes, `sh` spinning), as a machine whose cores are all
//! taken has; and CPU time as the kernel counts it ([`thread_cpu`],
//! [`process_cpu`], from `schedstat`, in nanoseconds), to assert that a
//! waiter gives the CPU away rather than how fast anything is.
//!
//! Setting `OUTLAST_TEST_LOAD` runs a whole custom-harness test binary
//! beside busy loops (see [`crate::harness::run`]).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One busy process per CPU this process may use, until dropped.
pub struct BusyLoops {
    children: Vec<Child>,
}

impl BusyLoops {
    /// Starts them (each ends by itself after ten minutes, should this
    /// process die without dropping them).
    pub fn one_per_cpu() -> BusyLoops {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::start(cpus)
    }

    /// Starts `count` of them.
    pub fn start(count: usize) -> BusyLoops {
        let children = (0..count)
            .map(|_| {
                Command::new("timeout")
                    .args(["600", "sh", "-c", "while :; do :; done"])
                    .stdin(Stdio::null())
                    .spawn()
                    .expect("start a busy loop (coreutils' timeout and sh)")
            })
            .collect();
        // Give them a moment to be running before what they load starts.
        std::thread::sleep(Duration::from_millis(50));
        BusyLoops { children }
    }

    /// Their process ids (they are children of this process).
    pub fn pids(&self) -> Vec<u32> {
        self.children.iter().map(Child::id).collect()
    }
}

impl Drop for BusyLoops {
    fn drop(&mut self) {
        for child in &mut self.children {
            // `timeout` passes SIGTERM on to its sh.
            // SAFETY: kill only sends a signal to our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

/// Nanoseconds this thread has spent on a CPU.
pub fn thread_cpu() -> u64 {
    schedstat("/proc/thread-self/schedstat")
}

/// Nanoseconds all threads of process `pid` have spent on a CPU.
pub fn process_cpu(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .map(|t| schedstat(&format!("{}/schedstat", t.path().display())))
        .sum()
}

/// How long all threads of process `pid` spent on a CPU during the next
/// `window`.
pub fn process_cpu_during(pid: u32, window: std::time::Duration) -> std::time::Duration {
    let before = process_cpu(pid);
    std::thread::sleep(window);
    std::time::Duration::from_nanos(process_cpu(pid).saturating_sub(before))
}

fn schedstat(path: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}
