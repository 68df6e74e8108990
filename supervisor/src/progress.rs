//! What the user watches while a run goes: a progress bar on a terminal
//! (done/total, tasks/s, IPC messages/s and MB/s, workers alive, restarts)
//! and one line per event (a worker lost and replaced, a signal acted on).
//!
//! The bar is drawn from the supervisor's own thread when it updates it (no
//! ticker thread), so the supervisor stays single-threaded and fork-safe.
//! The bar is the crate's `progress` feature (indicatif); without it, a
//! run prints its event lines alone.

#[cfg(feature = "progress")]
use std::io::IsTerminal;
use std::time::Instant;

#[cfg(feature = "progress")]
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Without the `progress` feature: no bar, ever.
#[cfg(not(feature = "progress"))]
struct ProgressBar;

#[cfg(not(feature = "progress"))]
impl ProgressBar {
    fn set_position(&self, _: u64) {}
    fn set_message(&self, _: String) {}
    fn length(&self) -> Option<u64> {
        None
    }
    fn set_length(&self, _: u64) {}
    fn println(&self, line: String) {
        outlast_ipc::os::stderr::line(format_args!("{line}"));
    }
    fn finish_and_clear(&self) {}
}

/// Figures the bar shows besides done/total.
#[derive(Clone, Copy, Debug, Default)]
pub struct Gauges {
    pub done: u64,
    pub messages: u64,
    pub bytes: u64,
    pub workers_alive: usize,
    pub crashes: u64,
}

pub struct Progress {
    bar: Option<ProgressBar>,
    quiet: bool,
    /// What is counted: `tasks`, or a pool's `items`.
    noun: &'static str,
    /// Gauges at the last redraw, for rates.
    last: Gauges,
    last_at: Instant,
}

impl Progress {
    /// A bar when stderr is a terminal and not quiet; event lines unless quiet.
    pub fn new(total: u64, quiet: bool, noun: &'static str) -> Self {
        #[cfg(not(feature = "progress"))]
        let bar: Option<ProgressBar> = {
            let _ = total;
            None
        };
        #[cfg(feature = "progress")]
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar =
                ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr_with_hz(10));
            let template =
                format!("{{elapsed_precise}} [{{bar:40.cyan/blue}}] {{human_pos}}/{{human_len}} {noun}\n{{msg}}");
            let style = ProgressStyle::with_template(&template)
            .map(|s| s.progress_chars("=> "))
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar
        });
        Progress {
            bar,
            quiet,
            noun,
            last: Gauges::default(),
            last_at: Instant::now(),
        }
    }

    /// Redraws with new figures (at most a few times a second).
    pub fn update(&mut self, gauges: Gauges) {
        let Some(bar) = &self.bar else {
            return;
        };
        let now = Instant::now();
        let secs = now.duration_since(self.last_at).as_secs_f64();
        if secs < 0.2 {
            bar.set_position(gauges.done);
            return;
        }
        let per_second = |now: u64, then: u64| now.saturating_sub(then) as f64 / secs;
        bar.set_message(format!(
            "  {:.0} {}/s · IPC {:.0} msgs/s, {:.1} MB/s · {} workers alive · {} restarts",
            per_second(gauges.done, self.last.done),
            self.noun,
            per_second(gauges.messages, self.last.messages),
            per_second(gauges.bytes, self.last.bytes) / 1e6,
            gauges.workers_alive,
            gauges.crashes
        ));
        bar.set_position(gauges.done);
        self.last = gauges;
        self.last_at = now;
    }

    /// The total grew (a pool's submissions).
    pub fn set_length(&self, total: u64) {
        if let Some(bar) = &self.bar {
            if bar.length() != Some(total) {
                bar.set_length(total);
            }
        }
    }

    /// One line about something that happened.
    pub fn event(&self, line: &str) {
        if self.quiet {
            return;
        }
        match &self.bar {
            Some(bar) => bar.println(format!("supervisor: {line}")),
            None => outlast_ipc::os::stderr::line(format_args!("supervisor: {line}")),
        }
    }

    /// Removes the bar before the report is printed.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
