//! The final report of a run: the answer, how long it took, what went
//! through IPC, what crashed and what was given up on. Printed for people,
//! or as one JSON object with `--json` (a [`RunReport`] is `Serialize`:
//! `serde_json::to_string(&report)`); its outcome sets the exit code.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use outlast_worker::numbers::{group_thousands, plural};
use serde::Serialize;

use crate::ledger::DeadLetter;

/// How a run ended; each has its own exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Every task done.
    Success,
    /// The run could not go on (a worker could not be started, bad job).
    Failed,
    /// Every task done or given up on, and some were given up on.
    DeadLetters,
    /// Workers crashed more than `--max-restarts` times within `--restart-window`.
    RestartLimit,
    /// Stopped by SIGTERM, SIGINT or SIGQUIT before the end.
    Interrupted,
}

impl Outcome {
    /// The process exit code: 0, 1, 3, 4, 130 (2 is a usage error, from clap).
    pub fn exit_code(self) -> u8 {
        match self {
            Outcome::Success => 0,
            Outcome::Failed => 1,
            Outcome::DeadLetters => 3,
            Outcome::RestartLimit => 4,
            Outcome::Interrupted => 130,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failed => "failed",
            Outcome::DeadLetters => "finished with dead letters",
            Outcome::RestartLimit => "stopped: restart limit reached",
            Outcome::Interrupted => "interrupted",
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct TaskCounts {
    pub total: u64,
    pub done: u64,
    pub dead: u64,
    /// Neither done nor dead (only after an interruption or a stop).
    pub remaining: u64,
    /// Times a task went back to the queue because its worker was lost.
    pub requeued: u64,
    /// Tasks settled before this run, read back from its journal (done
    /// and dead letters; both are counted in `done` and `dead` too).
    pub resumed: u64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct IpcCounts {
    pub messages_sent: u64,
    pub messages_received: u64,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub messages_per_second: f64,
    pub megabytes_per_second: f64,
}

/// Milliseconds from a worker's exit being seen to its replacement being ready.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub count: usize,
    pub median_ms: Option<f64>,
    pub max_ms: Option<f64>,
}

impl Latency {
    pub fn of(mut samples_ms: Vec<f64>) -> Self {
        samples_ms.sort_by(f64::total_cmp);
        Latency {
            count: samples_ms.len(),
            median_ms: samples_ms.get(samples_ms.len() / 2).copied(),
            max_ms: samples_ms.last().copied(),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Restarts {
    /// Workers that died without the supervisor's doing (a signal from
    /// elsewhere, an exit, a panic), and were replaced.
    pub crashes: u64,
    /// Crash causes, e.g. "killed by SIGKILL (perhaps out of memory?)": count.
    pub causes: BTreeMap<String, u64>,
    /// Workers the supervisor killed for a fault of theirs (no heartbeat, a
    /// corrupted link, garbage), and replaced.
    pub killed: u64,
    /// Their causes, e.g. "no heartbeat (--worker-timeout)": count.
    pub kill_causes: BTreeMap<String, u64>,
    /// Workers the supervisor killed to end the run (a second interrupt,
    /// SIGQUIT, the restart limit, a stop that took too long): not restarts.
    pub stopped: u64,
    pub stop_causes: BTreeMap<String, u64>,
    /// Replaced after --max-tasks-per-child.
    pub recycled: u64,
    /// Replaced after passing --max-worker-memory.
    pub memory: u64,
    /// Replaced by a SIGHUP reload.
    pub reloaded: u64,
    /// Programs that died or were killed inside a worker that lived on,
    /// each started again before that worker's next task (`--worker-cmd`,
    /// or a job's [`TaskContext::count_program_restart`]).
    ///
    /// [`TaskContext::count_program_restart`]: crate::TaskContext::count_program_restart
    pub programs: u64,
    /// Crash to replacement ready, for replacements made without backoff.
    pub replacement: Latency,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub outcome: Outcome,
    pub exit_code: u8,
    /// Why the run stopped early, when it did.
    pub reason: Option<String>,
    pub job: String,
    pub description: String,
    /// The answer (complete or not, see `complete`).
    pub result: String,
    pub summary: String,
    /// Whether the answer was checked against a known value and matched.
    pub verified: Option<bool>,
    pub complete: bool,
    /// Workers the run started with.
    pub workers: u32,
    /// Workers the fleet had at the end (TTIN / TTOU change it).
    pub workers_at_end: u64,
    /// The most worker processes alive at once.
    pub workers_peak: u64,
    /// Worker processes started in all, replacements included.
    pub workers_started: u64,
    /// Seconds from the start until every first worker was ready.
    pub startup_seconds: Option<f64>,
    /// How the run was set up, where it differs from what was asked.
    pub notes: Vec<String>,
    pub start_method: String,
    pub wall_seconds: f64,
    pub tasks: TaskCounts,
    pub tasks_per_second: f64,
    pub ipc: IpcCounts,
    pub restarts: Restarts,
    pub dead_letters: Vec<DeadLetter>,
    /// This supervisor's part of a broker job (`--broker`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker: Option<BrokerReport>,
}

fn bytes(n: u64) -> String {
    match n {
        0..1_000 => format!("{n} B"),
        1_000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", n as f64 / 1e6),
        _ => format!("{:.2} GB", n as f64 / 1e9),
    }
}

/// `1 time`, `3 times`.
fn times(n: u32) -> String {
    plural(u64::from(n), "time")
}

/// `2 no heartbeat; 1 sent garbage`: causes with their counts.
fn counted(causes: &BTreeMap<String, u64>) -> String {
    let parts: Vec<String> = causes.iter().map(|(c, n)| format!("{n} {c}")).collect();
    parts.join("; ")
}

fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2} M/s", per_second / 1e6)
    } else if per_second >= 1e3 {
        format!("{:.1} k/s", per_second / 1e3)
    } else {
        format!("{per_second:.1}/s")
    }
}

impl fmt::Display for RunReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.summary)?;
        writeln!(f, "  job           {}", self.description)?;
        let ready = self
            .startup_seconds
            .map(|s| format!(", all ready after {:.0} ms", s * 1e3))
            .unwrap_or_default();
        let resized = if self.workers_at_end != u64::from(self.workers)
            || self.workers_peak > u64::from(self.workers)
        {
            format!(
                "; {} at the end, {} at the peak",
                self.workers_at_end, self.workers_peak
            )
        } else {
            String::new()
        };
        writeln!(
            f,
            "  workers       {} ({}{ready}){resized}",
            self.workers, self.start_method
        )?;
        writeln!(f, "  wall time     {:.3} s", self.wall_seconds)?;
        let t = &self.tasks;
        let resumed = if t.resumed > 0 {
            format!(", {} resumed from the journal", group_thousands(t.resumed))
        } else {
            String::new()
        };
        writeln!(
            f,
            "  tasks         {} of {} done, {} dead, {} remaining, {} re-queued{resumed} ({})",
            group_thousands(t.done),
            group_thousands(t.total),
            group_thousands(t.dead),
            group_thousands(t.remaining),
            group_thousands(t.requeued),
            rate(self.tasks_per_second),
        )?;
        let i = &self.ipc;
        writeln!(
            f,
            "  IPC           {} messages, {} ({} messages, {:.1} MB/s)",
            group_thousands(i.messages_sent + i.messages_received),
            bytes(i.bytes_sent + i.bytes_received),
            rate(i.messages_per_second),
            i.megabytes_per_second,
        )?;
        let r = &self.restarts;
        let mut line = plural(r.crashes, "crash");
        if !r.causes.is_empty() {
            let _ = write!(line, " ({})", counted(&r.causes));
        }
        if r.killed > 0 {
            let _ = write!(
                line,
                ", {} killed by the supervisor ({})",
                r.killed,
                counted(&r.kill_causes)
            );
        }
        if r.recycled > 0 {
            let _ = write!(line, ", {} recycled", r.recycled);
        }
        if r.reloaded > 0 {
            let _ = write!(line, ", {} reloaded", r.reloaded);
        }
        if r.memory > 0 {
            let _ = write!(line, ", {} past --max-worker-memory", r.memory);
        }
        if r.programs > 0 {
            let _ = write!(line, ", {} worker programs replaced", r.programs);
        }
        if let (Some(median), Some(max)) = (r.replacement.median_ms, r.replacement.max_ms) {
            let _ = write!(line, "; replaced in {median:.2} ms median, {max:.2} ms max");
        }
        writeln!(f, "  restarts      {line}")?;
        if let Some(b) = &self.broker {
            writeln!(
                f,
                "  broker        job {} at {} as {}: {} computed here ({} stored first, {} already stored), {} taken over, {} dead letters sent",
                b.job_id, b.url, b.consumer, b.computed, b.stored, b.duplicates, b.claimed, b.dead_letters
            )?;
            writeln!(
                f,
                "  whole job     {} of {} tasks settled{}; the answer: supervisor result {} --broker URL",
                b.cluster_done + b.cluster_dead,
                b.total,
                if b.complete { " (complete)" } else { "" },
                b.job_id
            )?;
        }
        if r.stopped > 0 {
            writeln!(
                f,
                "  supervisor    stopped {} at once ({})",
                plural(r.stopped, "worker"),
                counted(&r.stop_causes)
            )?;
        }
        for dead in &self.dead_letters {
            let code = dead
                .exit_code
                .map(|c| format!(", exit code {c}"))
                .unwrap_or_default();
            let input = dead
                .input
                .as_ref()
                .map(|i| format!(" (`{i}`)"))
                .unwrap_or_default();
            writeln!(
                f,
                "  dead letter   task {}{input}: failed {}, last: {}{code}",
                dead.task,
                times(dead.failures),
                dead.last_cause
            )?;
        }
        if let Some(reason) = &self.reason {
            writeln!(f, "  stopped       {reason}")?;
        }
        write!(
            f,
            "  outcome       {} (exit code {})",
            self.outcome.describe(),
            self.exit_code
        )
    }
}

/// What one supervisor did for a broker job (in its own report; the
/// `broker` feature).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct BrokerReport {
    /// The broker, without credentials.
    pub url: String,
    pub job_id: String,
    pub consumer: String,
    /// Whether this supervisor created the job.
    pub created: bool,
    pub total: u64,
    /// Results computed here.
    pub computed: u64,
    /// Results stored first from here.
    pub stored: u64,
    /// Results computed here that another host had stored already.
    pub duplicates: u64,
    /// Entries taken over from consumers that stopped.
    pub claimed: u64,
    /// Dead letters sent from here.
    pub dead_letters: u64,
    /// Stream entries that were not tasks of this job.
    pub garbage: u64,
    /// Fields of the results and dead-letter hashes that are no task of
    /// this job (written there by someone else): not counted as settled.
    pub foreign_fields: u64,
    /// Times the job was gone from the broker and made again from here.
    pub recreated: u64,
    /// Reconnections to the broker.
    pub reconnects: u64,
    /// The whole job's settled tasks when this supervisor left.
    pub cluster_done: u64,
    pub cluster_dead: u64,
    /// Whether every task of the job has a result or is a dead letter.
    pub complete: bool,
}
