//! A snapshot of the run for its peers: what `supervisor status` shows
//! over the control socket and what the metrics endpoint exports.

use super::shutdown::Phase;
use super::Engine;
use crate::control::{IpcStatus, Status, TaskStatus, WorkerStatus};
use crate::fleet::Slot;
use outlast_worker::heartbeat::WorkerState;

impl Engine {
    pub(super) fn status(&self) -> Status {
        let secs = self.started.elapsed().as_secs_f64().max(1e-9);
        let t = &self.traffic;
        let messages = t.sent + t.received;
        let bytes = t.bytes_sent + t.bytes_received;
        let workers = self
            .slots
            .iter()
            .enumerate()
            .map(|(index, slot)| {
                let history = self.history.get(index);
                let mut s = WorkerStatus {
                    slot: index + 1,
                    pid: None,
                    state: String::new(),
                    task: None,
                    task_ms: None,
                    tasks_done: 0,
                    rss_kb: None,
                    cpu_percent: None,
                    restarts: history.map_or(0, |h| h.restarts),
                    last_exit: history.and_then(|h| h.last_exit.clone()),
                };
                s.state = match slot {
                    Slot::Live(w) => {
                        s.pid = Some(w.pid);
                        s.tasks_done = w.completed;
                        s.rss_kb = outlast_ipc::os::procfs::resident_kb(w.pid);
                        s.cpu_percent = cpu_percent(w.pid);
                        if let Some((task, since)) = w.busy_since {
                            s.task = Some(task);
                            s.task_ms = Some(since.elapsed().as_millis() as u64);
                        }
                        let state = w.last_claim.and_then(|c| WorkerState::from_word(c.state));
                        match (w.stopping, w.ready, state) {
                            (Some(_), _, _) => "stopping",
                            (None, false, _) => "starting",
                            (None, true, Some(WorkerState::Busy)) => "busy",
                            (None, true, _) => "idle",
                        }
                    }
                    Slot::Waiting { .. } | Slot::Pending => "restarting",
                    Slot::Closed => "closed",
                }
                .to_string();
                s
            })
            .collect();
        Status {
            pid: std::process::id(),
            job: self.work.describe(),
            phase: match self.phase {
                Phase::Running => "running",
                Phase::Draining { .. } => "draining",
                _ => "stopping",
            }
            .into(),
            elapsed_s: secs,
            workers_target: self.fleet_size,
            tasks: TaskStatus {
                done: self.ledger.done(),
                total: self.ledger.total(),
                requeued: self.ledger.requeued(),
                dead: self.ledger.dead_letters().len() as u64,
                per_s: self.ledger.done() as f64 / secs,
            },
            ipc: IpcStatus {
                messages,
                bytes,
                messages_per_s: messages as f64 / secs,
                mb_per_s: bytes as f64 / secs / 1e6,
            },
            workers,
        }
    }
}

/// A process's CPU time over its life, in percent of one CPU.
fn cpu_percent(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command (which may hold spaces) in parentheses.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    let start_ticks: f64 = fields.get(19)?.parse().ok()?;
    // SAFETY: sysconf has no memory arguments.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let age = uptime - start_ticks / hz;
    (age > 0.0 && hz > 0.0).then(|| 100.0 * (utime + stime) / hz / age)
}
