//! `--load N`: busy processes beside a measurement, as a machine whose
//! cores are all taken has (a pool runs where every core is busy). Each is
//! `sh` spinning, killed when the benchmark ends or dies.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

/// Busy processes, stopped when dropped.
pub struct Load {
    children: Vec<Child>,
}

impl Load {
    /// `count` busy processes; 0 means one per CPU this process may use.
    pub fn start(count: usize) -> Result<Load, String> {
        let count = if count == 0 {
            outlast_ipc::os::contention::usable_cpus()
        } else {
            count
        };
        let mut load = Load {
            children: Vec::with_capacity(count),
        };
        for _ in 0..count {
            let mut command = Command::new("sh");
            command
                .args(["-c", "while :; do :; done"])
                .stdin(Stdio::null());
            // SAFETY: between fork and exec the hook only makes one
            // async-signal-safe call (prctl): a benchmark killed before it
            // drops its load leaves no busy process behind.
            unsafe {
                command
                    .pre_exec(|| outlast_ipc::os::process::set_parent_death_signal(libc::SIGKILL))
            };
            let child = command
                .spawn()
                .map_err(|e| format!("cannot start a busy process (sh): {e}"))?;
            load.children.push(child);
        }
        Ok(load)
    }

    pub fn count(&self) -> usize {
        self.children.len()
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
