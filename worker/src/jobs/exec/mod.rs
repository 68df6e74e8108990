//! `exec`: any program as the job, as GNU parallel runs it. Each task is
//! an input line (or its `--colsep` columns, or one combination of the
//! `:::` sources); the command is run once per task with GNU parallel's
//! replacement strings filled in ([`template`]), without a shell unless
//! it has shell syntax (a pipe, `;`, a redirection, `$`, a glob) or
//! `--shell`. A non-zero exit, a signal or a `--task-timeout` (the command
//! is killed) fails it: run again up to [`Exec::retries`] times (1, as GNU
//! parallel), then a dead letter with its status and the tail of its
//! stderr. A command that writes more than the run's largest message
//! (`--max-message-bytes`) is killed, and its task fails for good.
//! Each task's output is printed whole by the supervisor, never
//! interleaved with another's, in input order with `--keep-order`; or
//! tagged, or kept in files, or logged ([`output`]).
//!
//! A command runs in a process group of its own (a timeout kills the
//! group), and gets SIGKILL when its worker dies, so none outlives the run
//! (`command.rs`).

pub(crate) mod command;
pub mod output;
pub mod template;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;

use super::BuiltinJob;
use crate::job::{BadOutput, Halt, Job, JobOutcome, TaskContext};
use crate::numbers::plural;
use crate::work::GaveUp;

pub use command::run_command;
use output::{HaltOn, HaltRule, Joblog};
pub use template::{command_for, shell_quote, shell_syntax, ExecInput};

/// What a command gave, and how it ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CommandOutput {
    pub stdout: ByteBuf,
    pub stderr: ByteBuf,
    /// Its exit code (0 when killed by a signal), and the signal (0: none).
    pub exit_code: i32,
    pub signal: i32,
    /// When it started (seconds since the epoch) and how long it ran.
    pub started_unix: f64,
    pub runtime: f64,
    /// The worker slot it ran in (`{%}`).
    pub slot: u32,
}

impl CommandOutput {
    /// How it failed, with its stderr's tail; `None` if it succeeded.
    pub fn failure(&self) -> Option<String> {
        let how = match (self.exit_code, self.signal) {
            (0, 0) => return None,
            (command::TIMED_OUT, 0) => format!(
                "timed out after {:.1} s (--task-timeout): exited on SIGTERM",
                self.runtime
            ),
            (command::TIMED_OUT, sig) => format!(
                "timed out after {:.1} s (--task-timeout): ended by {}",
                self.runtime,
                outlast_ipc::signal_name(sig)
            ),
            (_, 0) => format!("exited with code {}", self.exit_code),
            (_, sig) => format!("killed by {}", outlast_ipc::signal_name(sig)),
        };
        Some(command::with_stderr_tail(how, &self.stderr))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Exec {
    template: String,
    shell: bool,
    task_timeout: Option<Duration>,
    /// Supervisor side from here on: workers are sent only their task.
    #[serde(skip)]
    inputs: Vec<Vec<String>>,
    #[serde(skip)]
    keep_order: bool,
    #[serde(skip)]
    tag: bool,
    #[serde(skip)]
    results: Option<PathBuf>,
    #[serde(skip)]
    joblog: Option<Joblog>,
    #[serde(skip)]
    halt: Option<HaltRule>,
    /// With --keep-order: the next task to print, and outputs waiting for it
    /// (`None` for a task that gave up).
    #[serde(skip)]
    next_to_print: u64,
    #[serde(skip)]
    waiting: BTreeMap<u64, Option<CommandOutput>>,
    #[serde(skip)]
    succeeded: u64,
    /// Tasks given up on (every attempt failed).
    #[serde(skip)]
    failed: u64,
    /// How many times a failing command runs (GNU parallel's `--retries`).
    #[serde(skip)]
    retries: u32,
    /// Failed runs so far of each task not settled yet.
    #[serde(skip)]
    failures: BTreeMap<u64, u32>,
    /// The last failed run of each task not settled yet: printed if the
    /// task is given up, as GNU parallel prints a failed job's output.
    #[serde(skip)]
    last_failed: BTreeMap<u64, CommandOutput>,
}

impl BuiltinJob for Exec {
    const NAME: &'static str = "exec";
    const ABOUT: &'static str =
        "--exec COMMAND once per input line (stdin, --input or ::: arguments), as GNU parallel";
}

impl Exec {
    /// Runs `template` once per line of `lines` (empty lines skipped by the CLI).
    pub fn new(template: &str, lines: Vec<String>) -> Result<Self, String> {
        Self::with_args(template, lines.into_iter().map(|l| vec![l]).collect())
    }

    /// Runs `template` once per entry of `inputs`, each a task's arguments
    /// (`{1}`, `{2}`, ...).
    pub fn with_args(template: &str, inputs: Vec<Vec<String>>) -> Result<Self, String> {
        if template::split_words(template)?.is_empty() {
            return Err("--exec needs a command".into());
        }
        Ok(Exec {
            template: template.to_string(),
            // As GNU parallel (always a shell) where it would matter.
            shell: template::shell_syntax(template).is_some(),
            task_timeout: None,
            inputs,
            keep_order: false,
            tag: false,
            results: None,
            joblog: None,
            halt: None,
            next_to_print: 0,
            waiting: BTreeMap::new(),
            succeeded: 0,
            failed: 0,
            retries: 1,
            failures: BTreeMap::new(),
            last_failed: BTreeMap::new(),
        })
    }

    /// Runs through `sh -c` (`true`), or split into words (`false`). By
    /// default, through `sh -c` when the template has shell syntax outside
    /// quotes ([`shell_syntax`]).
    pub fn shell(mut self, shell: bool) -> Self {
        self.shell = shell;
        self
    }

    /// Prints outputs in input order.
    pub fn keep_order(mut self, keep: bool) -> Self {
        self.keep_order = keep;
        self
    }

    /// Kills a command that runs longer.
    pub fn task_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.task_timeout = timeout;
        self
    }

    /// Prefixes each output line with the task's arguments and a TAB.
    pub fn tag(mut self, tag: bool) -> Self {
        self.tag = tag;
        self
    }

    /// Keeps each task's stdout, stderr and sequence number in files
    /// under `dir` instead of printing them.
    pub fn results(mut self, dir: Option<PathBuf>) -> Self {
        self.results = dir;
        self
    }

    /// Logs each command run in GNU parallel's joblog format.
    pub fn joblog(mut self, joblog: Option<Joblog>) -> Self {
        self.joblog = joblog;
        self
    }

    /// How many times a command runs when it fails (exits non-zero, is
    /// killed by a signal or by `task_timeout`) before its task is a dead
    /// letter: GNU parallel's `--retries`, 1 by default (the command's
    /// verdict stands). The run's `max_attempts` bounds it too; a worker
    /// that dies while a command runs is retried within `max_attempts`
    /// whatever this says.
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries.max(1);
        self
    }

    /// Stops the run early when `rule` is met.
    pub fn halt(mut self, rule: Option<HaltRule>) -> Self {
        self.halt = rule;
        self
    }

    /// The program and its arguments for task `input`, in worker slot `slot`.
    pub fn command_for(&self, input: &ExecInput, slot: u32) -> Result<Vec<String>, String> {
        command_for(&self.template, self.shell, input, slot)
    }

    fn input_of(&self, id: u64) -> ExecInput {
        ExecInput {
            seq: id + 1,
            args: self.inputs.get(id as usize).cloned().unwrap_or_default(),
        }
    }

    /// The command of task `id` as run in `slot`, as one line for people.
    fn command_line(&self, id: u64, slot: u32) -> String {
        match self.command_for(&self.input_of(id), slot) {
            Ok(argv) if self.shell => argv.last().cloned().unwrap_or_default(),
            Ok(argv) => argv
                .iter()
                .map(|w| shell_quote(w))
                .collect::<Vec<_>>()
                .join(" "),
            Err(e) => e,
        }
    }

    fn print(&self, id: u64, output: &CommandOutput) {
        if self.results.is_some() {
            return;
        }
        // Whole, under the stream's lock: outputs never interleave.
        if self.tag {
            let tag = self.describe_task(id).unwrap_or_default();
            let _ = std::io::stdout()
                .lock()
                .write_all(&output::tagged(&tag, &output.stdout));
            if !output.stderr.is_empty() {
                let _ = std::io::stderr()
                    .lock()
                    .write_all(&output::tagged(&tag, &output.stderr));
            }
            return;
        }
        let _ = std::io::stdout().lock().write_all(&output.stdout);
        if !output.stderr.is_empty() {
            let _ = std::io::stderr().lock().write_all(&output.stderr);
        }
    }

    /// Prints what --keep-order held back and may go now.
    fn print_ready(&mut self) {
        while let Some(entry) = self.waiting.remove(&self.next_to_print) {
            if let Some(output) = entry {
                self.print(self.next_to_print, &output);
            }
            self.next_to_print += 1;
        }
        let _ = std::io::stdout().flush();
    }

    fn settle(&mut self, id: u64, output: Option<CommandOutput>) {
        if self.keep_order {
            self.waiting.insert(id, output);
            self.print_ready();
        } else if let Some(output) = output {
            self.print(id, &output);
            let _ = std::io::stdout().flush();
        }
    }

    /// Logs one run of task `id` to the joblog and `--results`.
    fn keep(&self, id: u64, output: &CommandOutput) {
        let seq = id + 1;
        if let Some(joblog) = &self.joblog {
            if let Err(e) = joblog.record(seq, output, &self.command_line(id, output.slot)) {
                outlast_ipc::os::stderr::line(format_args!(
                    "supervisor: cannot write the joblog: {e}"
                ));
            }
        }
        if let Some(dir) = &self.results {
            let args = self.inputs.get(id as usize).map_or(&[][..], Vec::as_slice);
            if let Err(e) = output::write_results(dir, args, seq, output) {
                outlast_ipc::os::stderr::line(format_args!(
                    "supervisor: cannot write --results for task {seq}: {e}"
                ));
            }
        }
    }
}

impl Job for Exec {
    type Input = ExecInput;
    type Output = CommandOutput;
    type Error = String;

    fn name(&self) -> String {
        Self::NAME.into()
    }

    fn describe(&self) -> String {
        let how = match (self.shell, template::shell_syntax(&self.template)) {
            (true, Some(c)) => format!(" (with sh -c, for its `{}`)", c.escape_default()),
            (true, None) => " (with sh -c)".to_string(),
            (false, _) => String::new(),
        };
        format!(
            "`{}` for each of {}{how}",
            self.template,
            plural(self.inputs.len() as u64, "line"),
        )
    }

    fn task_count(&self) -> u64 {
        self.inputs.len() as u64
    }

    fn input(&self, id: u64) -> ExecInput {
        self.input_of(id)
    }

    fn run(&self, input: ExecInput, ctx: &mut TaskContext<'_>) -> Result<CommandOutput, String> {
        let slot = ctx.worker();
        let argv = self.command_for(&input, slot)?;
        let max_output = ctx.max_output();
        let mut output = run_command(&argv, self.task_timeout, max_output, &mut || ctx.beat())?;
        output.slot = slot;
        Ok(output)
    }

    /// A success is logged and printed; a failure waits for its task's
    /// last run (GNU parallel logs, keeps and prints a job's last run
    /// only), which [`gave_up`](Job::gave_up) logs and prints.
    fn combine(&mut self, id: u64, output: CommandOutput) -> Result<(), BadOutput> {
        if let Some(why) = output.failure() {
            let failures = self.failures.entry(id).or_insert(0);
            *failures += 1;
            let failed = BadOutput::task_failed(why);
            let failed = if *failures >= self.retries {
                failed.no_retry()
            } else {
                failed
            };
            self.last_failed.insert(id, output);
            return Err(failed);
        }
        self.failures.remove(&id);
        self.last_failed.remove(&id);
        self.keep(id, &output);
        self.succeeded += 1;
        self.settle(id, Some(output));
        Ok(())
    }

    /// Counted, not printed or logged again: the run that did it did that.
    fn resume(&mut self, id: u64, output: CommandOutput) -> Result<(), BadOutput> {
        if let Some(why) = output.failure() {
            return Err(BadOutput::task_failed(why));
        }
        self.succeeded += 1;
        if self.keep_order {
            self.waiting.insert(id, None);
            self.print_ready();
        }
        Ok(())
    }

    fn describe_task(&self, id: u64) -> Option<String> {
        self.inputs.get(id as usize).map(|args| args.join(" "))
    }

    /// Its last failed run is logged and printed (GNU parallel prints a
    /// failed job's output too); a task whose worker died has none.
    fn gave_up(&mut self, id: u64, _why: &GaveUp) {
        self.failed += 1;
        self.failures.remove(&id);
        let last = self.last_failed.remove(&id);
        if let Some(output) = &last {
            self.keep(id, output);
        }
        self.settle(id, last);
    }

    /// One command per worker at a time, as GNU parallel's job slots: a
    /// slow command never holds the next one back while a worker idles,
    /// and `--halt soon` starts nothing after its condition.
    fn tasks_per_worker(&self) -> Option<usize> {
        Some(1)
    }

    fn halt(&self) -> Option<Halt> {
        let rule = self.halt?;
        let total = self.inputs.len() as u64;
        if !rule.reached(self.failed, self.succeeded, total) {
            return None;
        }
        let what = match rule.on {
            HaltOn::Fail => plural(self.failed, "command") + " failed",
            HaltOn::Success => plural(self.succeeded, "command") + " succeeded",
            HaltOn::Done => plural(self.failed + self.succeeded, "command") + " finished",
        };
        Some(Halt {
            now: rule.now,
            failed: rule.on == HaltOn::Fail,
            why: format!("--halt {}: {what}", rule.text()),
        })
    }

    fn outcome(&self, complete: bool) -> JobOutcome {
        super::succeeded_outcome(
            self.succeeded,
            self.inputs.len() as u64,
            "command",
            complete,
        )
    }
}
