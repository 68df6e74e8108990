//! Ending a run: signals read from the self-pipe, the graceful drain after
//! TERM/INT (no new tasks, in-flight ones finish, then TERM, then KILL), the
//! immediate stop (second INT, QUIT, restart limit), and the normal finish
//! once every task is accounted for.

use std::time::{Duration, Instant};

use super::{send_stop, Engine};
use crate::fleet::{Slot, StopReason};
use crate::kill::KillCause;
use crate::report::Outcome;

/// After SIGTERM to workers, how long before SIGKILL.
const TERM_TO_KILL: Duration = Duration::from_secs(2);
/// Once every task is accounted for, how long workers get to exit.
const FINISH_GRACE: Duration = Duration::from_secs(5);

/// Where the run is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Running,
    /// SIGTERM/SIGINT: no new tasks; workers finish what they hold.
    Draining {
        until: Instant,
    },
    /// The graceful timeout passed: workers got SIGTERM; SIGKILL at `kill_at`.
    Terminating {
        kill_at: Instant,
    },
    /// Every task is accounted for; workers were told to stop.
    Finishing {
        kill_at: Instant,
    },
    /// Everything gets SIGKILL (second SIGINT, SIGQUIT, restart limit).
    Halting,
}

impl Engine {
    /// Acts on the signals received; true if one was SIGCHLD.
    pub(super) fn handle_signals(&mut self) -> bool {
        let Some(signals) = self.signals.as_mut() else {
            // No SIGCHLD to hear: see_exits looks at workers without pidfds anyway.
            return false;
        };
        let mut child_exited = false;
        for signal in signals.drain() {
            match signal {
                libc::SIGTERM | libc::SIGINT => self.on_interrupt(signal),
                libc::SIGQUIT => {
                    self.progress.event("SIGQUIT: stopping at once");
                    self.interrupted = true;
                    self.halt(KillCause::Quit);
                }
                libc::SIGHUP => self.on_reload(),
                libc::SIGTTIN => self.on_more(),
                libc::SIGTTOU => self.on_fewer(),
                libc::SIGCHLD => child_exited = true,
                _ => {}
            }
        }
        child_exited
    }

    /// No new tasks; the ones in flight get the graceful timeout to
    /// finish. `by` says who asked (a signal, the control socket).
    pub(super) fn drain(&mut self, by: &str) {
        if self.phase != Phase::Running {
            return;
        }
        self.interrupted = true;
        let until = Instant::now() + self.options.graceful_timeout;
        self.phase = Phase::Draining { until };
        self.progress.event(&format!(
            "{by}: no new tasks; waiting up to {:.1} s for the {} in flight (SIGINT again: stop at once)",
            self.options.graceful_timeout.as_secs_f64(),
            self.in_flight()
        ));
        self.stop_all(StopReason::Shutdown);
    }

    pub(super) fn on_interrupt(&mut self, signal: libc::c_int) {
        let name = outlast_ipc::signal_name(signal);
        match self.phase {
            Phase::Running => self.drain(&name),
            _ if signal == libc::SIGINT => {
                self.progress.event("second SIGINT: stopping at once");
                self.interrupted = true;
                self.halt(KillCause::SecondInterrupt);
            }
            _ => self.progress.event(&format!("{name}: already stopping")),
        }
    }

    /// Stops the run at once: SIGKILL to every worker, for `cause`.
    pub(super) fn halt(&mut self, cause: KillCause) {
        self.phase = Phase::Halting;
        for slot in &mut self.slots {
            match slot {
                Slot::Live(w) => w.kill(cause.clone()),
                Slot::Waiting { .. } | Slot::Pending => *slot = Slot::Closed,
                Slot::Closed => {}
            }
        }
    }

    /// The job asked to stop early (`--halt`): with `now`, every worker
    /// is killed; else no new task goes out and the ones running finish.
    pub(super) fn on_halt(&mut self, halt: outlast_worker::job::Halt) {
        let outcome = if halt.failed {
            Outcome::DeadLetters
        } else {
            Outcome::Success
        };
        if halt.now {
            self.progress
                .event(&format!("{}: stopping the tasks running now", halt.why));
            self.stop_with(outcome, halt.why);
            self.halt(KillCause::Halted);
        } else {
            self.progress.event(&format!(
                "{}: no new tasks; waiting for the {} running",
                halt.why,
                self.in_flight()
            ));
            self.stop_with(outcome, halt.why);
            self.phase = Phase::Draining {
                until: Instant::now() + self.options.graceful_timeout,
            };
            self.stop_all(StopReason::Shutdown);
        }
    }

    pub(super) fn stop_with(&mut self, outcome: Outcome, reason: String) {
        if self.stop.is_none() {
            self.stop = Some((outcome, reason));
        }
    }

    pub(super) fn stop_all(&mut self, reason: StopReason) {
        for slot in &mut self.slots {
            match slot {
                Slot::Live(w) => send_stop(w, reason),
                Slot::Waiting { .. } | Slot::Pending => *slot = Slot::Closed,
                Slot::Closed => {}
            }
        }
    }

    pub(super) fn begin_finish(&mut self) {
        self.phase = Phase::Finishing {
            kill_at: Instant::now() + FINISH_GRACE,
        };
        self.stop_all(StopReason::Shutdown);
    }

    pub(super) fn advance_shutdown(&mut self) {
        let now = Instant::now();
        match self.phase {
            Phase::Draining { until } if now >= until => {
                self.progress.event(&format!(
                    "graceful timeout: sending SIGTERM to {} workers",
                    self.live_count()
                ));
                self.phase = Phase::Terminating {
                    kill_at: now + TERM_TO_KILL,
                };
                for slot in &mut self.slots {
                    if let Slot::Live(w) = slot {
                        let _ = w.process.terminate();
                    }
                }
            }
            Phase::Terminating { kill_at } | Phase::Finishing { kill_at } if now >= kill_at => {
                self.progress.event("workers did not exit in time: SIGKILL");
                self.halt(KillCause::ShutdownTimeout);
            }
            _ => {}
        }
    }
}
