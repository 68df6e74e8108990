//! What the run does with a control-socket command: a status snapshot,
//! scaling the fleet, killing one worker (it is replaced as any dead
//! worker), a reload, a drain or an immediate stop. Each is logged as an
//! event, as the signals that do the same are.

use super::shutdown::Phase;
use super::Engine;
use super::SlotHistory;
use crate::control::{Command, Reply, WorkerRef};
use crate::fleet::Slot;
use crate::kill::KillCause;

impl Engine {
    /// Serves the control socket's clients and the metrics' scrapers
    /// (never waits).
    pub(super) fn serve_control(&mut self) {
        if let Some(mut control) = self.control.take() {
            control.serve(|command| self.command(command));
            self.control = Some(control);
        }
        #[cfg(feature = "metrics")]
        if let Some(mut metrics) = self.metrics.take() {
            metrics.serve(|| self.metrics_text());
            self.metrics = Some(metrics);
        }
    }

    fn command(&mut self, command: Command) -> Reply {
        match command {
            Command::Status => Reply::status(self.status()),
            Command::Scale { workers } => self.scale(workers),
            Command::Kill { worker, signal } => self.kill_one(worker, signal),
            Command::Reload if self.phase != Phase::Running => Reply::error("the run is stopping"),
            Command::Reload => {
                self.reload("control");
                Reply::done(format!(
                    "replacing {} workers one by one",
                    self.reload_queue.len()
                ))
            }
            Command::Stop { now: false } if self.phase != Phase::Running => {
                Reply::error("the run is stopping already")
            }
            Command::Stop { now: false } => {
                self.drain("control: stop");
                Reply::done(format!("draining: {} tasks in flight", self.in_flight()))
            }
            // The socket's server streams these itself.
            Command::Subscribe { .. } => Reply::status(self.status()),
            Command::Stop { now: true } => {
                self.progress.event("control: stopping at once");
                self.interrupted = true;
                self.halt(KillCause::Terminated);
                Reply::done("stopping at once")
            }
        }
    }

    /// Scales the fleet to `workers`, capped at what this machine holds and
    /// (for a job of known size) at the tasks not yet settled. New workers
    /// start over the next turns, a batch per turn, as at the start of a
    /// run: the reply, `status` and the heartbeats are served meanwhile.
    fn scale(&mut self, workers: u64) -> Reply {
        if workers == 0 {
            return Reply::error("at least 1 worker");
        }
        if self.phase != Phase::Running {
            return Reply::error("the run is stopping");
        }
        let before = self.fleet_size;
        let mut target = workers;
        let mut capped = Vec::new();
        let machine = self.max_workers as u64;
        if target > machine {
            target = machine;
            capped.push(format!("this machine holds at most {machine}"));
        }
        let useful = self.ledger.remaining().max(1);
        if !self.open_ended && target > useful {
            target = useful.max(before.min(target));
            capped.push(format!("{useful} tasks are left"));
        }
        let mut added = 0u64;
        while self.fleet_size < target && self.slots.len() < self.max_workers {
            self.fleet_size += 1;
            self.slots.push(Slot::Pending);
            self.crashes_in_a_row.push(0);
            self.history.push(SlotHistory::default());
            added += 1;
        }
        while self.fleet_size > target && self.retire_worker("control") {}
        if added > 0 {
            self.progress.event(&format!(
                "control: adding {} ({before} -> {})",
                outlast_worker::numbers::plural(added, "worker"),
                self.fleet_size
            ));
        }
        let mut said = format!("{before} -> {} workers", self.fleet_size);
        if !capped.is_empty() {
            said.push_str(&format!(" ({workers} asked; {})", capped.join(", ")));
        }
        Reply::done(said)
    }

    fn kill_one(&mut self, which: WorkerRef, signal: i32) -> Reply {
        if signal <= 0 || signal >= 65 {
            return Reply::error(format!("no signal {signal}"));
        }
        let found = self.slots.iter().find_map(|s| match s {
            Slot::Live(w) => {
                let hit = match which {
                    WorkerRef::Slot(n) => w.slot + 1 == n,
                    WorkerRef::Pid(pid) => w.pid == pid,
                };
                hit.then(|| (w.pid, w.label()))
            }
            _ => None,
        });
        let Some((pid, label)) = found else {
            return Reply::error(format!("no live worker {which:?}"));
        };
        // SAFETY: kill has no memory arguments; the pid is a live worker
        // of ours, not yet reaped (its pidfd is open), so it is not reused.
        let rc = unsafe { libc::kill(pid as i32, signal) };
        if rc != 0 {
            return Reply::error(format!(
                "cannot signal {label}: {}",
                std::io::Error::last_os_error()
            ));
        }
        let what = format!("sent {} to {label}", outlast_ipc::signal_name(signal));
        self.progress.event(&format!("control: {what}"));
        Reply::done(what)
    }
}
