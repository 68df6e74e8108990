//! `--worker-cmd PROGRAM`: its options; the task inputs are lines, read
//! from `--input` or stdin as for `--exec`.

use std::path::PathBuf;
use std::time::Duration;

use outlast_worker::jobs::worker_cmd::WorkerCmd;

use super::{args, CliJob};

/// The options of `--worker-cmd`.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Options of --worker-cmd")]
pub struct WorkerCmdArgs {
    /// The worker program, started once per worker and handed one task at
    /// a time over its stdin and stdout (JSON lines: docs/worker-protocol.md;
    /// Python: clients/python/outlast_worker.py).
    #[arg(long, value_name = "PROGRAM")]
    pub worker_cmd: String,
    /// Read the tasks' inputs, one a line, from this file [default: standard input].
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
    /// Run PROGRAM with `sh -c`: the default when it has shell syntax
    /// outside quotes (`2>/dev/null`, `cd dir && ...`, `$VAR`).
    #[arg(long)]
    pub shell: bool,
    /// Split PROGRAM into words even when it has shell syntax.
    #[arg(long, conflicts_with = "shell")]
    pub no_shell: bool,
    /// Print outputs (one JSON value a line) in input order.
    #[arg(long)]
    pub keep_order: bool,
    /// Keep each output in DIR/1/INPUT/output (with its number in `seq`)
    /// instead of printing it.
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// Seconds a task may take; a program silent longer is killed and
    /// replaced, and the task's attempt fails.
    #[arg(long, value_parser = args::seconds, value_name = "SECONDS")]
    pub task_timeout: Option<Duration>,
    /// Seconds a program has to say hello after it starts (one that loads
    /// a large model first needs more). One that cannot start ends its
    /// worker; --max-restarts stops a run whose program never starts.
    #[arg(long, value_parser = args::seconds, value_name = "SECONDS", default_value = "60")]
    pub start_timeout: Duration,
    /// The largest frame a program may write (`16M`); by default
    /// --max-message-bytes (the largest output) and a few bytes more.
    #[arg(long, value_name = "SIZE", value_parser = args::bytes)]
    pub max_frame: Option<u64>,
}

impl CliJob for WorkerCmd {
    type Args = WorkerCmdArgs;

    fn build(args: WorkerCmdArgs, _run: &super::RunContext) -> Result<WorkerCmd, String> {
        let lines = super::exec::input_lines(args.input.as_deref())?;
        let shell = args.shell
            || (!args.no_shell
                && outlast_worker::jobs::exec::shell_syntax(&args.worker_cmd).is_some());
        Ok(WorkerCmd::new(&args.worker_cmd, shell, lines)?
            .keep_order(args.keep_order)
            .results(args.results)
            .task_timeout(args.task_timeout)
            .start_timeout(args.start_timeout)
            .max_frame(
                args.max_frame
                    .map(|b| usize::try_from(b).unwrap_or(usize::MAX)),
            ))
    }
}
