//! `--job fault`: its options (the rates of each fault).

use outlast_worker::jobs::fault::{Fault, FaultSpec};

use super::{args, CliJob};

/// The options of `--job fault`.
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Options of --job fault")]
pub struct FaultArgs {
    /// How many tasks.
    #[arg(long, default_value = "1000", value_parser = args::count)]
    pub tasks: u64,
    /// Milliseconds each task takes when it finishes.
    #[arg(long, default_value = "10", value_parser = args::count)]
    pub task_ms: u64,
    #[command(flatten)]
    pub faults: FaultRates,
}

/// The rates of `--job fault` (the library's [`FaultSpec`], with options).
#[derive(Clone, Debug, clap::Args)]
#[command(next_help_heading = "Options of --job fault")]
pub struct FaultRates {
    /// Chance that an attempt aborts its worker (SIGABRT).
    #[arg(long = "abort-rate", default_value = "0", value_parser = args::rate)]
    pub abort: f64,
    /// Chance that an attempt segfaults its worker.
    #[arg(long = "segv-rate", default_value = "0", value_parser = args::rate)]
    pub segv: f64,
    /// Chance that an attempt exits its worker (code 13).
    #[arg(long = "exit-rate", default_value = "0", value_parser = args::rate)]
    pub exit: f64,
    /// Chance that an attempt hangs without beating.
    #[arg(long = "hang-rate", default_value = "0", value_parser = args::rate)]
    pub hang: f64,
    /// Chance that an attempt returns an error.
    #[arg(long = "error-rate", default_value = "0", value_parser = args::rate)]
    pub error: f64,
    /// Chance that an attempt writes garbage on its link.
    #[arg(long = "garbage-rate", default_value = "0", value_parser = args::rate)]
    pub garbage: f64,
    /// This task crashes its worker (abort) on every attempt.
    #[arg(long, value_parser = args::count)]
    pub crash_task: Option<u64>,
    /// Seeds the choice of faulty attempts, so a run can be repeated.
    #[arg(long, default_value = "1", value_parser = args::count)]
    pub seed: u64,
    /// Each finished task leaks this much memory, never freed (`4M`): a
    /// worker that grows, for --max-worker-memory.
    #[arg(long, default_value = "0", value_parser = args::bytes)]
    pub leak: u64,
}

impl From<FaultRates> for FaultSpec {
    fn from(r: FaultRates) -> Self {
        FaultSpec {
            abort: r.abort,
            segv: r.segv,
            exit: r.exit,
            hang: r.hang,
            error: r.error,
            garbage: r.garbage,
            crash_task: r.crash_task,
            seed: r.seed,
            leak: r.leak,
        }
    }
}

impl CliJob for Fault {
    type Args = FaultArgs;

    fn build(args: FaultArgs, _run: &super::RunContext) -> Result<Fault, String> {
        Fault::new(args.tasks, args.task_ms, args.faults.into())
    }
}
