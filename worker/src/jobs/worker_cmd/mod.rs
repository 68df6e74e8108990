//! `worker-cmd`: long-lived worker programs in any language. Each worker
//! process starts the program once (on its first task, and again after
//! the program breaks or dies) and hands it tasks over its stdin and
//! stdout in the [`protocol`]: a program that needs a second of imports
//! pays it once per worker, not per task. The supervisor's guarantees hold
//! as for any job, because the worker process is still ours: the ledger,
//! retries and dead letters, heartbeats (the worker beats while its
//! program works), `--max-tasks-per-child`, `--max-worker-memory` (the
//! worker's whole process tree), graceful drain, status and metrics,
//! `--broker`.
//!
//! A program that breaks the protocol (garbage, a frame over the cap, an
//! answer for a task it does not hold, its stdout closed, no answer
//! within `--task-timeout`) is killed; the task's attempt fails with that
//! reason (retried, then a dead letter) and a new program takes its place.
//! Nothing it writes reaches the supervisor but a checked output.

pub mod program;
pub mod protocol;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::BuiltinJob;
use crate::job::{BadOutput, Job, JobOutcome, TaskContext};
use crate::numbers::plural;
use crate::work::GaveUp;
use program::{Answer, Program};

/// What a frame holds beside its output's JSON text (`{"id":N,"output":`
/// and `}`), with room to spare: the default frame cap is the run's
/// largest output plus this, so one cap (`max_message_bytes`) bounds both.
const FRAME_OVERHEAD: u64 = 4096;
/// How long a program has to say hello, unless told otherwise.
pub const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Serialize, Deserialize)]
pub struct WorkerCmd {
    /// The program and its arguments (`sh -c CMD` with `--shell`).
    argv: Vec<String>,
    task_timeout: Option<Duration>,
    start_timeout: Duration,
    /// The largest frame; `None`: the run's largest output and the frame's
    /// own bytes.
    max_frame: Option<usize>,
    /// Worker side: the running program, started on the first task.
    #[serde(skip)]
    program: RefCell<Option<Program>>,
    /// Supervisor side from here on.
    #[serde(skip)]
    lines: Vec<String>,
    #[serde(skip)]
    keep_order: bool,
    /// Outputs in files under this directory instead of stdout.
    #[serde(skip)]
    results: Option<PathBuf>,
    #[serde(skip)]
    next_to_print: u64,
    #[serde(skip)]
    waiting: BTreeMap<u64, Option<String>>,
    #[serde(skip)]
    succeeded: u64,
}

impl Clone for WorkerCmd {
    /// A copy without the running program (each worker starts its own).
    fn clone(&self) -> Self {
        WorkerCmd {
            argv: self.argv.clone(),
            task_timeout: self.task_timeout,
            start_timeout: self.start_timeout,
            max_frame: self.max_frame,
            program: RefCell::new(None),
            lines: self.lines.clone(),
            keep_order: self.keep_order,
            results: self.results.clone(),
            next_to_print: self.next_to_print,
            waiting: self.waiting.clone(),
            succeeded: self.succeeded,
        }
    }
}

impl BuiltinJob for WorkerCmd {
    const NAME: &'static str = "worker-cmd";
    const ABOUT: &'static str =
        "--worker-cmd PROGRAM: long-lived workers in any language, a task per input line";
}

impl WorkerCmd {
    /// Hands each of `lines` to a worker program started as `command`
    /// (split into words as `sh` would, or run by `sh -c` with `shell`).
    pub fn new(command: &str, shell: bool, lines: Vec<String>) -> Result<Self, String> {
        let argv = if shell {
            vec!["sh".into(), "-c".into(), command.to_string()]
        } else {
            super::exec::template::split_words(command)?
        };
        if argv.is_empty() || argv[0].is_empty() {
            return Err("--worker-cmd needs a program".into());
        }
        Ok(WorkerCmd {
            argv,
            task_timeout: None,
            start_timeout: DEFAULT_START_TIMEOUT,
            max_frame: None,
            program: RefCell::new(None),
            lines,
            keep_order: false,
            results: None,
            next_to_print: 0,
            waiting: BTreeMap::new(),
            succeeded: 0,
        })
    }

    /// A program silent this long on a task is killed and its attempt fails.
    pub fn task_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.task_timeout = timeout;
        self
    }

    /// How long a program has to say hello after it starts (a program
    /// that loads a large model first needs more than the default 60 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// The largest frame a program may write; by default the run's
    /// largest output (`max_message_bytes`, 1 GiB unless set) and the
    /// frame's few bytes of its own.
    pub fn max_frame(mut self, bytes: Option<usize>) -> Self {
        self.max_frame = bytes.map(|b| b.max(1024));
        self
    }

    /// Prints outputs in input order.
    pub fn keep_order(mut self, keep: bool) -> Self {
        self.keep_order = keep;
        self
    }

    /// Keeps each task's output (its JSON text and a newline) in
    /// `DIR/1/INPUT/output`, with its number in `seq`, instead of printing it.
    pub fn results(mut self, dir: Option<PathBuf>) -> Self {
        self.results = dir;
        self
    }

    /// Writes task `id`'s output under `--results`.
    fn keep(&self, root: &std::path::Path, id: u64, output: &str) {
        let line = self.lines.get(id as usize).cloned().unwrap_or_default();
        let dir = super::exec::output::results_dir(root, &[line]);
        let written = std::fs::create_dir_all(&dir)
            .and_then(|()| std::fs::write(dir.join("seq"), (id + 1).to_string()))
            .and_then(|()| std::fs::write(dir.join("output"), format!("{output}\n")));
        if let Err(e) = written {
            outlast_ipc::os::stderr::line(format_args!(
                "supervisor: cannot write --results for task {}: {e}",
                id + 1
            ));
        }
    }

    fn print(output: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(output.as_bytes());
        let _ = out.write_all(b"\n");
    }

    fn settle(&mut self, id: u64, output: Option<String>) {
        if self.keep_order {
            self.waiting.insert(id, output);
            while let Some(entry) = self.waiting.remove(&self.next_to_print) {
                if let Some(output) = entry {
                    Self::print(&output);
                }
                self.next_to_print += 1;
            }
        } else if let Some(output) = output {
            Self::print(&output);
        }
        let _ = std::io::stdout().flush();
    }

    /// The program, started (again) if it is not running; true when the
    /// one before had ended between tasks (it exited, or was killed).
    fn ensure_started(
        &self,
        slot: u32,
        max_output: u64,
        beat: &mut dyn FnMut(),
    ) -> Result<bool, String> {
        let mut held = self.program.borrow_mut();
        if held.as_mut().is_some_and(|p| !p.exited()) {
            return Ok(false);
        }
        // Gone between tasks (it exited, or was killed): a new one, and
        // no task pays for it.
        let ended = held.take().is_some();
        let max_frame = match self.max_frame {
            Some(bytes) => (bytes, "--max-frame"),
            None => (
                usize::try_from(max_output.saturating_add(FRAME_OVERHEAD)).unwrap_or(usize::MAX),
                "--max-message-bytes",
            ),
        };
        let started = Program::start(&self.argv, slot, max_frame, self.start_timeout, beat)
            .map_err(|why| format!("the worker program did not start: {why}"))?;
        *held = Some(started);
        Ok(ended)
    }
}

/// An output is checked again on this side: it must be one JSON value
/// (it came from a worker, or from a store others write to).
fn check_json(output: &str) -> Result<(), BadOutput> {
    serde_json::from_str::<serde::de::IgnoredAny>(output)
        .map(|_| ())
        .map_err(|e| BadOutput::new(format!("not a JSON value: {e}")))
}

impl Job for WorkerCmd {
    type Input = String;
    /// The output value's JSON text.
    type Output = String;
    type Error = String;

    fn name(&self) -> String {
        Self::NAME.into()
    }

    fn describe(&self) -> String {
        format!(
            "`{}` for each of {}",
            self.argv.join(" "),
            plural(self.lines.len() as u64, "line")
        )
    }

    fn task_count(&self) -> u64 {
        self.lines.len() as u64
    }

    fn input(&self, id: u64) -> String {
        self.lines.get(id as usize).cloned().unwrap_or_default()
    }

    fn run(&self, line: String, ctx: &mut TaskContext<'_>) -> Result<String, String> {
        let slot = ctx.worker();
        let max_output = ctx.max_output();
        match self.ensure_started(slot, max_output, &mut || ctx.beat()) {
            Ok(true) => ctx.count_program_restart(),
            Ok(false) => {}
            Err(why) => {
                // It would fail every task the same way (a syntax error, a
                // missing module): this worker ends as one that could not
                // start, so the run's restart limit stops a run whose program
                // never starts, instead of each task failing in turn with the
                // program's complaint printed for every attempt.
                crate::runtime::exit_cannot_start(why);
            }
        }
        let mut held = self.program.borrow_mut();
        let Some(program) = held.as_mut() else {
            return Err("the worker program is not running".into());
        };
        match program.call(ctx.id(), &line, self.task_timeout, &mut || ctx.beat()) {
            Ok(Answer::Output(value)) => Ok(value),
            Ok(Answer::Error(message)) => Err(message),
            Err(broke) => {
                // An output too large is too large every time: final, as
                // any task's output over the cap is.
                if let Some(len) = program.frame_over_cap() {
                    // The cap the user set: --max-frame's, else the
                    // largest output's (the frame's own bytes aside).
                    let max = self.max_frame.map_or(max_output, |b| b as u64);
                    ctx.refuse_as_too_large(len, max);
                }
                // Killed (its drop), and a new one for the next task.
                *held = None;
                ctx.count_program_restart();
                let why = format!(
                    "the worker program failed task {}: {broke}; it was killed, and a new one takes its place",
                    ctx.id()
                );
                outlast_ipc::os::stderr::line(format_args!("[worker {slot}] {why}"));
                Err(why)
            }
        }
    }

    fn combine(&mut self, id: u64, output: String) -> Result<(), BadOutput> {
        check_json(&output)?;
        self.succeeded += 1;
        if let Some(root) = &self.results {
            self.keep(root, id, &output);
            return Ok(());
        }
        self.settle(id, Some(output));
        Ok(())
    }

    /// Counted, not printed again (a journal's, or a broker's stored results).
    fn resume(&mut self, id: u64, output: String) -> Result<(), BadOutput> {
        check_json(&output)?;
        self.succeeded += 1;
        if self.keep_order {
            self.settle(id, None);
        }
        Ok(())
    }

    fn describe_task(&self, id: u64) -> Option<String> {
        self.lines.get(id as usize).cloned()
    }

    fn gave_up(&mut self, id: u64, _why: &GaveUp) {
        self.settle(id, None);
    }

    fn outcome(&self, complete: bool) -> JobOutcome {
        super::succeeded_outcome(self.succeeded, self.lines.len() as u64, "task", complete)
    }
}
