//! Steering a running fleet with signals, as gunicorn: HUP replaces every
//! worker one by one (each finishes what it holds first), TTIN adds a
//! worker, TTOU retires one.

use super::shutdown::Phase;
use super::{send_stop, Engine};
use crate::fleet::{Slot, StopReason};

impl Engine {
    pub(super) fn on_reload(&mut self) {
        self.reload("SIGHUP");
    }

    /// Replaces every worker one by one; `by` says who asked.
    pub(super) fn reload(&mut self, by: &str) {
        if self.phase != Phase::Running {
            return;
        }
        self.reload_queue = self
            .slots
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Slot::Live(_)))
            .map(|(i, _)| i)
            .collect();
        self.progress.event(&format!(
            "{by}: replacing {} workers one by one",
            self.reload_queue.len()
        ));
    }

    pub(super) fn on_more(&mut self) {
        self.add_worker("SIGTTIN");
    }

    pub(super) fn on_fewer(&mut self) {
        self.retire_worker("SIGTTOU");
    }

    /// One worker more; `by` says who asked. False if none could be added.
    pub(super) fn add_worker(&mut self, by: &str) -> bool {
        if self.phase != Phase::Running {
            return false;
        }
        if self.slots.len() >= self.max_workers {
            self.progress
                .event(&format!("{by}: at the most workers this machine allows"));
            return false;
        }
        self.fleet_size += 1;
        self.add_slot(Some(&format!("added ({by})")));
        true
    }

    /// One worker fewer (the last open slot); false if none could go.
    pub(super) fn retire_worker(&mut self, by: &str) -> bool {
        if self.phase != Phase::Running || self.open_count() <= 1 {
            return false;
        }
        let Some(index) = (0..self.slots.len()).rev().find(|&i| match &self.slots[i] {
            Slot::Live(w) => w.stopping.is_none(),
            Slot::Waiting { .. } | Slot::Pending => true,
            Slot::Closed => false,
        }) else {
            return false;
        };
        self.fleet_size = self.fleet_size.saturating_sub(1);
        match &mut self.slots[index] {
            Slot::Live(w) => {
                let label = w.label();
                send_stop(w, StopReason::Retire);
                self.progress.event(&format!("{by}: retiring {label}"));
            }
            slot => {
                *slot = Slot::Closed;
                self.progress
                    .event(&format!("{by}: worker {} will not be restarted", index + 1));
            }
        }
        true
    }

    pub(super) fn step_reload(&mut self) {
        if self.reloading.is_some() {
            return;
        }
        while let Some(index) = self.reload_queue.pop_front() {
            if let Some(Slot::Live(w)) = self.slots.get_mut(index) {
                if w.stopping.is_none() {
                    send_stop(w, StopReason::Reload);
                    self.reloading = Some(index);
                    return;
                }
            }
        }
    }
}
